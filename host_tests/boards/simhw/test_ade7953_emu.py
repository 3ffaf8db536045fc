"""ADE7953 emulator under CPython: the 0xAD unlock before 0x120, read-with-reset energy (and its
LCYCMODE switch), 32-bit sign-extended aliases, write protection, LAST_* registers, faults."""

import ade7953 as R
from simhw.ade7953_emu import Ade7953Emu


def xfer(emu, addr, rw, value=0):
    n = R.width(addr)
    tx = bytes([addr >> 8, addr & 0xFF, rw]) + value.to_bytes(n, "big")
    rx = bytearray(len(tx))
    emu.write_readinto(tx, rx)
    emu.cs(1)
    return int.from_bytes(rx[3:], "big")


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
    assert xfer(emu, R.CONFIG, 0x80) == 0xFFFF  # not answering while it starts up
    emu.sleep_ms(emu.STARTUP_MS)
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


def test_reset_loses_exactly_the_unread_energy():
    emu = Ade7953Emu()
    emu.set_channel(0, 3600)
    emu.set_channel(1, 1800)
    emu.advance(1000)  # 1 Wh on A, 0.5 Wh on B, not read
    emu.inject("resets")
    assert emu.lost_in_chip_mj == 5400000
    emu.sleep_ms(emu.STARTUP_MS)
    assert xfer(emu, R.AENERGYA, 0x80) == 0
    assert emu.injected["resets"] == 1
