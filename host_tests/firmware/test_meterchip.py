"""The shared driver part: signed calibration register formats (phase and offsets)."""

import pytest

import ade7953
import atm90e26
import meterchip


def test_sign_magnitude_phase_registers():
    # ATM90E26 Lphi: sign in bit 15, magnitude in bits 9:0.
    assert meterchip.to_signed(atm90e26.PHI_FORM, 0x8028) == -40
    assert meterchip.to_signed(atm90e26.PHI_FORM, 0x0028) == 40
    assert meterchip.from_signed(atm90e26.PHI_FORM, -40) == 0x8028
    # ADE7953 PHCALx: a negative value is |v| + 0x200, range +-383 (the notes' Tasmota rule).
    assert meterchip.from_signed(ade7953.PHI_FORM, -5) == 0x205
    assert meterchip.to_signed(ade7953.PHI_FORM, 0x205) == -5
    assert meterchip.from_signed(ade7953.PHI_FORM, 383) == 383
    with pytest.raises(ValueError):
        meterchip.from_signed(ade7953.PHI_FORM, 384)
    with pytest.raises(ValueError):
        meterchip.from_signed(atm90e26.PHI_FORM, -1024)


def test_twos_complement_offsets_round_trip():
    for form, bits in ((meterchip.TWOS16, 16), (meterchip.TWOS24, 24)):
        top = (1 << (bits - 1)) - 1
        for n in (0, 1, -1, top, -top, 1234, -5000):
            raw = meterchip.from_signed(form, n)
            assert 0 <= raw < (1 << bits)
            assert meterchip.to_signed(form, raw) == n
        assert meterchip.from_signed(form, -1) == (1 << bits) - 1
        with pytest.raises(ValueError):
            meterchip.from_signed(form, top + 1)


def test_formats_under_micropython(mpy):
    mpy("""
import mptest, meterchip, atm90e26, ade7953, atm90e32
for form in (atm90e26.PHI_FORM, ade7953.PHI_FORM, atm90e32.PHI_FORM, meterchip.TWOS16, meterchip.TWOS24):
    top = form[3]
    for n in (0, 1, -1, top, -top, top // 3, -(top // 7)):
        mptest.eq(meterchip.to_signed(form, meterchip.from_signed(form, n)), n, "round trip %d" % n)
    mptest.raises(ValueError, meterchip.from_signed, form, top + 1)
    mptest.raises(ValueError, meterchip.from_signed, form, -top - 1)
mptest.eq(meterchip.from_signed(ade7953.PHI_FORM, -5), 0x205, "ADE7953 negative phase")
mptest.done()
""", heap="128k")  # all three drivers at once


@pytest.mark.parametrize("chip", ["atm90e26", "atm90e32", "ade7953"])
def test_init_waits_for_the_chip_after_its_soft_reset(mpy, chip):
    # The emulators ignore the bus for the chip's start-up time after a reset. A driver that did
    # not wait would take the chip for absent on every init; with the board's delay it waits.
    res = mpy("""
import sys, mptest
from meterchip import ChipError
name = sys.argv[1]
mod = __import__(name)
if name == "atm90e26":
    from simhw.atm90e26_emu import Atm90e26Emu as Emu
elif name == "atm90e32":
    from simhw.atm90e32_emu import Atm90e32Emu as Emu
else:
    from simhw.ade7953_emu import Ade7953Emu as Emu
cls = getattr(mod, name.upper())
emu = Emu()
mptest.check(emu.STARTUP_MS > 0, "the emulator models a start-up time")
no_wait = cls(emu, emu.cs) if name == "ade7953" else cls(emu, emu.cs, None, 3200)
mptest.raises(ChipError, no_wait.init)
emu = Emu()
waited = []
def delay(ms):
    waited.append(ms)
    emu.sleep_ms(ms)
chip = cls(emu, emu.cs, None, delay) if name == "ade7953" else cls(emu, emu.cs, None, 3200, delay)
chip.init()
mptest.check(waited and waited[0] >= emu.STARTUP_MS, "waited %r ms first" % (waited,))
mptest.eq(chip.state(), 0, "configured")
mptest.done(waited=waited)
""", chip, heap="128k")
    assert res.result["ok"]
