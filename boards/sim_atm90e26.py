# Board: the esp32-atm90e26 board with emulated parts, for host simulations under micropython.
# Same chip driver, calibration and configuration as the real board; the SPI bus goes to a
# register-level ATM90E26 emulator, the relay and button are simulated, flash is littlefs on
# a host file, and time is simulated (network timing stays real).
import atm90e26
import esp32_atm90e26 as real
from simhw.atm90e26_emu import Atm90e26Emu
from simhw.simboard import SimBoard, front_end

NAME = "sim-atm90e26"
CHIP = real.CHIP


def build(opts):
    return SimBoard(opts, NAME, real,
                    lambda cfg: Atm90e26Emu(cfg["meter_constant"], front_end(real.CAL, opts)),
                    lambda emu, cfg: atm90e26.ATM90E26(emu, emu.cs, real.CAL, cfg["meter_constant"], emu.sleep_ms))
