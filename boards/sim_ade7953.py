# Board: the esp32-ade7953 board with emulated parts (ADE7953 register-level emulator, two
# current channels each driven by a household), for host simulations under micropython.
import ade7953
import esp32_ade7953 as real
from simhw.ade7953_emu import Ade7953Emu
from simhw.simboard import SimBoard, front_end

NAME = "sim-ade7953"
CHIP = real.CHIP


def build(opts):
    return SimBoard(opts, NAME, real, lambda cfg: Ade7953Emu(front_end(real.CAL, opts)),
                    lambda emu, cfg: ade7953.ADE7953(emu, emu.cs, real.CAL, emu.sleep_ms), channels=2)
