"""ATM90E26 driver: frame layout, CS1/CS2 checksum math against the research-note vectors
(datasheet algorithm, values from published drivers and tests), init sequence."""

import pytest


import atm90e26  # noqa: E402

# (bank contents, expected checksum) from metering_ics.md section 1.5
VECTORS = [
    ((0x0015, 0xD174, 0, 0, 0, 0, 0x08BD, 0, 0x0AEC, 0, 0x9422), 0x55CB),
    ((0x00B9, 0xC1F3, 0x1D39, 0, 0, 0, 0x08BD, 0, 0x0AEC, 0, 0x9422), 0x4A34),
    ((0x0015, 0xD174, 0x1D39, 0, 0, 0, 0x08BD, 0, 0x0AEC, 0, 0x9422), 0x7121),
    ((0x6720, 0x7A13, 0x7530, 0, 0, 0, 0, 0, 0, 0), 0x6BB9),
    ((0xD464, 0x6E49, 0x7530, 0, 0, 0, 0, 0, 0, 0), 0xD294),
    ((0x6763, 0x7B19, 0x7530, 0, 0x0008, 0, 0, 0, 0, 0), 0x2B0B),
    ((0x679B, 0x492B, 0x7530, 0, 0, 0, 0, 0, 0, 0), 0xDB1B),
    ((0x6799, 0x4912, 0x7530, 0, 0, 0, 0, 0, 0, 0), 0xE000),
    ((0x67D6, 0x55F8, 0x3FF8, 0, 0, 0, 0, 0, 0, 0), 0xDBC1),
]


@pytest.mark.parametrize("bank,expected", VECTORS)
def test_checksum_vectors_cpython(bank, expected):
    assert atm90e26.checksum(bank) == expected


def test_checksum_vectors_and_framing_micropython(mpy):
    vec = repr(VECTORS)
    mpy("""
import mptest, atm90e26 as R
from fakespi import FakeSPI
for bank, cs in %s:
    mptest.eq(R.checksum(bank), cs, "checksum")
# Driver computes CS over the whole bank, defaults included (never hard-coded).
d = R.ATM90E26(FakeSPI(), lambda v: None, {"pgain": 0x1D39})
mptest.eq(d.cs1, 0x7121, "cs1 from calibration over defaults")
mptest.eq(d.cs2, 0x6BB9, "cs2 of default bank 2")
# Frames: [R/W|addr][hi][lo], 3 bytes, read bit 7 set; CS low around each frame.
def answer(tx, rx):
    rx[1] = 0x12
    rx[2] = 0x34
spi = FakeSPI(answer)
cs = []
d = R.ATM90E26(spi, cs.append)
mptest.eq(d.read(R.URMS), 0x1234, "read value from bytes 1-2")
d.write(R.FUNC_EN, 0x0030)
mptest.eq(spi.frames, [bytes([0xC9, 0, 0]), bytes([0x02, 0x00, 0x30])], "frames")
mptest.eq(cs, [1, 0, 1, 0, 1], "CS idles high, low per frame")
mptest.done()
""" % vec)


def test_init_against_emulator_and_checksum_error_detection(mpy):
    mpy("""
import mptest, atm90e26 as R
from simhw.atm90e26_emu import Atm90e26Emu
emu = Atm90e26Emu(3200)
d = R.ATM90E26(emu, emu.cs, {"pgain": 0x1D39, "ugain": 0x6800}, 3200, emu.sleep_ms)
d.init()
mptest.eq((d.read(R.CAL_START), d.read(R.ADJ_START)), (0x8765, 0x8765), "both banks checked (CalStart/AdjStart 0x8765)")
mptest.eq(d.state(), R.OK, "configured")
mptest.eq(d.read(R.CS1), d.cs1, "chip computed the same CS1")
mptest.eq(d.read(R.SYS_STATUS) & 0xF000, 0, "no checksum error")
# A driver whose checksum disagrees with the chip is refused by the chip, and init says so.
d.cs2 ^= 1
e = mptest.raises(R.ChipError, d.init)
mptest.check(e is not None and "CS2" in str(e.args[0]), "CS2 error named")
mptest.eq(emu.regs[R.SYS_STATUS] & 0x3000, 0x3000, "AdjErr set by the chip")
mptest.check(not emu.metering_on(), "metering stopped on a bad checksum")
mptest.done()
""", heap="128k")


def test_diagnose_healthy_absent_reset_and_checksum_error_micropython(mpy):
    mpy("""
import mptest, atm90e26 as R
from simhw.atm90e26_emu import Atm90e26Emu
emu = Atm90e26Emu(3200)
d = R.ATM90E26(emu, emu.cs, {"pgain": 0x1D39}, 3200, emu.sleep_ms)
d.init()
bad, detail = d.diagnose()
mptest.eq(bad, [], "healthy chip: no problems")
mptest.check("CS1 0x%04x" % d.cs1 in detail and "SysStatus 0x0000" in detail, detail)
# Absent: MISO reads all ones.
emu.inject("absent")
bad, detail = d.diagnose()
mptest.eq(bad, ["chip absent: MISO reads all ones"], "absent")
emu.advance(emu.ABSENT_MS)
mptest.eq(d.diagnose()[0], [], "answers again")
# Silent reset: FuncEn back at power-on, banks no longer checked.
emu.inject("resets")
emu.sleep_ms(emu.STARTUP_MS)  # the chip answers again after its start-up time
bad, _ = d.diagnose()
mptest.check(any("reset" in b and "FuncEn" in b for b in bad), "reset named: %r" % (bad,))
mptest.check(any("check mode" in b and "0x6886" in b for b in bad), "banks off: %r" % (bad,))
mptest.check(not any("CS1" in b or "CS2" in b for b in bad), "no checksum blamed: %r" % (bad,))
d.init()
mptest.eq(d.diagnose()[0], [], "healthy after init")
# A wrong CS1 in the chip: it refuses the metering bank.
d.write_verified(R.CAL_START, 0x5678)
d.write_verified(R.L_GAIN, 0x1D39)
d.write_verified(R.CS1, d.cs1 ^ 0x0100)
d.write_verified(R.CAL_START, 0x8765)
bad, _ = d.diagnose()
mptest.eq(len(bad), 1, "one problem: %r" % (bad,))
mptest.check(bad[0].startswith("CS1 (metering bank) mismatch") and "0x%04x" % d.cs1 in bad[0], bad[0])
mptest.eq(d.state(), R.RESET, "the state agrees that metering stopped")
mptest.done()
""", heap="128k")
