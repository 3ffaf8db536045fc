"""ADE7953 driver: widths by address, frames, init against the emulator, both channels."""

import ade7953 as R


def test_widths_by_address():
    assert [R.width(a) for a in (0x004, 0x0FE, 0x102, 0x1FF, 0x21E, 0x31E, 0x702, 0x800)] == \
        [1, 1, 2, 2, 3, 4, 1, 1]


def test_frame_layout():
    frames = []

    class Bus:
        def write_readinto(self, tx, rx):
            frames.append(bytes(tx))

    d = R.ADE7953(Bus(), lambda v: None)
    d._write(R.UNLOCK, 0xAD)
    d._write(R.RESERVED_120, 0x0030)
    d.read(R.AENERGYA)
    assert frames == [bytes([0x00, 0xFE, 0x00, 0xAD]), bytes([0x01, 0x20, 0x00, 0x00, 0x30]),
                      bytes([0x02, 0x1E, 0x80, 0, 0, 0])]


def test_driver_init_and_both_channels_micropython(mpy):
    mpy("""
import mptest, ade7953 as R
from simhw.ade7953_emu import Ade7953Emu
emu = Ade7953Emu()
d = R.ADE7953(emu, emu.cs, None, emu.sleep_ms)
d.init()
mptest.eq(d.state(), R.OK, "configured")
mptest.eq(emu.regs[R.RESERVED_120], 0x30, "0x120 set after the unlock key")
emu.set_channel(0, 1000)
emu.set_channel(1, -500)
emu.advance(3600)
d.read_energy()
mptest.eq(list(d.energy), [23716, 11858, 23716, 0, 0, 11858], "A imports 1 Wh, B exports 0.5 Wh")
d.read_inst()
mptest.eq(list(d.p_w), [1000, -500], "powers")
mptest.eq(d.v_cv[0], 23000, "voltage")
mptest.eq(d.f_chz, 5000, "frequency from the period register")
mptest.done()
""", heap="128k")


def test_diagnose_healthy_absent_reset_and_rstread_off_micropython(mpy):
    mpy("""
import mptest, ade7953 as R
from simhw.ade7953_emu import Ade7953Emu
emu = Ade7953Emu()
d = R.ADE7953(emu, emu.cs, None, emu.sleep_ms)
d.init()
bad, detail = d.diagnose()
mptest.eq(bad, [], "healthy chip: no problems")
mptest.check("AP_NOLOAD 0x00720c" in detail and "RSTREAD on" in detail and "CONFIG 0x0004" in detail, detail)
emu.inject("absent")
mptest.eq(d.diagnose()[0], ["chip absent: MISO reads all ones"], "absent")
emu.advance(emu.ABSENT_MS)
mptest.eq(d.diagnose()[0], [], "answers again")
emu.inject("resets")
emu.sleep_ms(emu.STARTUP_MS)  # the chip answers again after its start-up time
bad, _ = d.diagnose()
mptest.check(any("reset" in b and "AP_NOLOAD" in b for b in bad), "reset named: %r" % (bad,))
mptest.check(any(b.startswith("CONFIG 0x8004") for b in bad), "CONFIG back at power-on: %r" % (bad,))
d.init()
mptest.eq(d.diagnose()[0], [], "healthy after init")
# RSTREAD cleared: energy registers would accumulate and be counted again on every poll.
d.write_verified(R.LCYCMODE, 0)
mptest.eq(d.diagnose()[0], ["energy registers not read-with-reset (LCYCMODE 0x00, RSTREAD off)"], "RSTREAD off")
d.write_verified(R.LCYCMODE, 0x40)
d.write_verified(R.CONFIG, 0x8004)
mptest.eq(d.diagnose()[0], ["CONFIG 0x8004, not the 0x0004 written (COMM_LOCK, HPF)"], "COMM_LOCK set")
mptest.done()
""", heap="128k")
