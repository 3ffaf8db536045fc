"""ATM90E26 emulator: register map and behaviours from the datasheet notes, under CPython
(it must run there too) and MicroPython."""


import atm90e26 as R  # noqa: E402
from simhw.atm90e26_emu import Atm90e26Emu  # noqa: E402


def xfer(emu, cmd, value=0):
    rx = bytearray(3)
    emu.write_readinto(bytes([cmd, value >> 8, value & 0xFF]), rx)
    emu.cs(1)
    return (rx[1] << 8) | rx[2]


def test_power_on_values_and_soft_reset():
    emu = Atm90e26Emu()
    assert xfer(emu, 0x80 | R.FUNC_EN) == 0x000C
    assert xfer(emu, 0x80 | R.CAL_START) == 0x6886
    assert xfer(emu, 0x80 | R.CS1) == 0x55CB  # computed over the default bank
    xfer(emu, R.FUNC_EN, 0x0030)
    assert xfer(emu, 0x80 | R.FUNC_EN) == 0x0030
    xfer(emu, R.SOFT_RESET, 0x1234)  # wrong code: no effect
    assert xfer(emu, 0x80 | R.FUNC_EN) == 0x0030
    xfer(emu, R.SOFT_RESET, 0x789A)
    assert xfer(emu, 0x80 | R.FUNC_EN) == 0xFFFF  # silent for its start-up time
    emu.advance(emu.STARTUP_MS)
    assert xfer(emu, 0x80 | R.FUNC_EN) == 0x000C


def test_write_commits_only_on_cs_rise_and_lastdata_echoes():
    emu = Atm90e26Emu()
    rx = bytearray(3)
    emu.write_readinto(bytes([R.FUNC_EN, 0x00, 0x30]), rx)
    assert emu.regs[R.FUNC_EN] == 0x000C  # not yet: CS still low
    emu.cs(1)
    assert emu.regs[R.FUNC_EN] == 0x0030
    assert xfer(emu, 0x80 | R.LAST_DATA) == 0x0030
    xfer(emu, 0x80 | R.URMS)
    assert xfer(emu, 0x80 | R.LAST_DATA) == 0  # the value of the last read


def test_calstart_state_machine_and_checksum_errors():
    emu = Atm90e26Emu()
    xfer(emu, R.CAL_START, 0x5678)
    xfer(emu, R.L_GAIN, 0x1D39)
    assert xfer(emu, 0x80 | R.CS1) == 0x7121  # reads back what the chip computes
    xfer(emu, R.CS1, 0x1111)  # wrong checksum written
    xfer(emu, R.CAL_START, 0x8765)
    assert xfer(emu, 0x80 | R.SYS_STATUS) & 0xC000 == 0xC000
    xfer(emu, R.CS1, 0x7121)
    xfer(emu, R.CAL_START, 0x8765)
    assert xfer(emu, 0x80 | R.SYS_STATUS) & 0xC000 == 0
    xfer(emu, R.CAL_START, 0x5678)  # restores the bank's power-on values
    assert xfer(emu, 0x80 | R.L_GAIN) == 0


def test_energy_counts_clear_on_read_and_wrap():
    emu = Atm90e26Emu(3200)
    xfer(emu, R.CAL_START, 0x5678)
    xfer(emu, R.ADJ_START, 0x5678)
    emu.set_channel(0, 3600)
    emu.advance(1000)  # 1 Wh = 3.2 pulses = 32 counts of 0.1 pulse
    assert xfer(emu, 0x80 | R.AP_ENERGY) == 32
    assert xfer(emu, 0x80 | R.AP_ENERGY) == 0
    assert emu.truth_mj == 3600000
    emu.set_channel(0, 13800)
    emu.advance(600 * 1000)  # 2.3 kWh > 6553.5 pulses: the register wraps
    assert emu.overflows == 1
    assert xfer(emu, 0x80 | R.AP_ENERGY) == (2300 * 32) % 65536


def test_absent_and_dropped_frames_read_all_ones():
    emu = Atm90e26Emu()
    emu.inject("absent")
    assert xfer(emu, 0x80 | R.FUNC_EN) == 0xFFFF
    emu.advance(emu.ABSENT_MS)
    assert xfer(emu, 0x80 | R.FUNC_EN) == 0x000C
    emu.inject("drop")
    xfer(emu, R.FUNC_EN, 0x0030)  # dropped: never reaches the chip
    assert xfer(emu, 0x80 | R.FUNC_EN) == 0x000C
    assert emu.injected["drop"] == 1


def test_emulator_runs_under_micropython(mpy):
    mpy("""
import mptest, atm90e26 as R
from simhw.atm90e26_emu import Atm90e26Emu
emu = Atm90e26Emu()
rx = bytearray(3)
emu.write_readinto(bytes([0x80 | R.CS2, 0, 0]), rx)
mptest.eq((rx[1] << 8) | rx[2], 0x6BB9, "CS2 of the defaults")
mptest.done()
""", heap="96k")  # driver module + emulator (64-bit unix objects)
