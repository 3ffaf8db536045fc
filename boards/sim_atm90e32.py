# Board: the esp32-atm90e32 board with emulated parts (three-phase ATM90E32 register-level
# emulator, simulated relay, button, flash and time), for host simulations under micropython.
import atm90e32
import esp32_atm90e32 as real
from simhw.atm90e32_emu import Atm90e32Emu
from simhw.simboard import SimBoard

NAME = "sim-atm90e32"
CHIP = real.CHIP


def build(opts):
    return SimBoard(opts, NAME, real,
                    lambda cfg: Atm90e32Emu(cfg["meter_constant"], opts.get("true_cal")),
                    lambda emu, cfg: atm90e32.ATM90E32(emu, emu.cs, real.CAL, cfg["meter_constant"], emu.sleep_ms),
                    channels=3)
