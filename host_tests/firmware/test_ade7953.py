"""ADE7953 driver and emulator: widths by address, frames, the 0xAD unlock before 0x120,
read-with-reset energy (and its LCYCMODE switch), 32-bit sign-extended aliases, LAST_* registers."""

import ade7953 as R
from simhw.ade7953_emu import Ade7953Emu


def xfer(emu, addr, rw, value=0):
    n = R.width(addr)
    tx = bytes([addr >> 8, addr & 0xFF, rw]) + value.to_bytes(n, "big")
    rx = bytearray(len(tx))
    emu.write_readinto(tx, rx)
    emu.cs(1)
    return int.from_bytes(rx[3:], "big")


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


def test_unlock_read_with_reset_and_aliases():
    emu = Ade7953Emu()
    assert xfer(emu, R.CONFIG, 0x80) == 0x8004
    xfer(emu, R.RESERVED_120, 0, 0x30)  # without the key: ignored
    assert xfer(emu, R.RESERVED_120, 0x80) == 0
    xfer(emu, R.UNLOCK, 0, 0xAD)
    xfer(emu, R.RESERVED_120, 0, 0x30)
    assert xfer(emu, R.RESERVED_120, 0x80) == 0x30
    emu.set_channel(0, -3600)  # exporting on channel A: negative energy
    emu.advance(1000)
    # -1 Wh = -23716 counts; the 32-bit alias returns it sign-extended (the emulator resets
    # on reads of the 24-bit address only)
    assert xfer(emu, R.AENERGYA + 0x100, 0x80) == 0x100000000 - 23716
    assert xfer(emu, R.AENERGYA, 0x80) == 0x1000000 - 23716
    assert xfer(emu, R.AENERGYA, 0x80) == 0  # read-with-reset
    assert xfer(emu, R.LAST_OP, 0x80) == 0x35
    xfer(emu, R.LCYCMODE, 0, 0x00)  # RSTREAD off: reads no longer clear
    emu.advance(1000)
    assert xfer(emu, R.AENERGYA, 0x80) == xfer(emu, R.AENERGYA, 0x80) != 0
    xfer(emu, R.CONFIG, 0, 0x0084)  # software reset
    assert xfer(emu, R.CONFIG, 0x80) == 0x8004
    assert xfer(emu, R.LCYCMODE, 0x80) == 0x40


def test_write_protect_and_last_rwdata():
    emu = Ade7953Emu()
    xfer(emu, R.AP_NOLOAD, 0, 0x123456)
    assert xfer(emu, R.LAST_ADD, 0x80) == R.AP_NOLOAD
    assert xfer(emu, R.LAST_OP, 0x80) == 0x35  # now the read of LAST_ADD
    xfer(emu, R.AP_NOLOAD, 0, 0x123456)
    assert xfer(emu, R.LAST_RWDATA_24, 0x80) == 0x123456
    xfer(emu, R.WRITE_PROTECT, 0, 0x04)  # protect 24/32-bit registers
    xfer(emu, R.AP_NOLOAD, 0, 0x000001)
    assert xfer(emu, R.AP_NOLOAD, 0x80) == 0x123456


def test_driver_init_and_both_channels_micropython(mpy):
    mpy("""
import mptest, ade7953 as R
from simhw.ade7953_emu import Ade7953Emu
emu = Ade7953Emu()
d = R.ADE7953(emu, emu.cs)
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
