"""ATM90E32 emulator under CPython: 32-clock frames, CfgRegAccEn write gating, LastSPIData,
clear-on-read energy per phase and total, power-on values after SoftReset, faults."""

import atm90e32 as R
from simhw.atm90e32_emu import Atm90e32Emu


def xfer(emu, addr, read, value=0):
    tx = bytes([(0x80 if read else 0) | (addr >> 8) & 3, addr & 0xFF, value >> 8, value & 0xFF])
    rx = bytearray(4)
    emu.write_readinto(tx, rx)
    emu.cs(1)
    return (rx[2] << 8) | rx[3]


def test_config_writes_need_cfgregaccen():
    emu = Atm90e32Emu()
    assert xfer(emu, R.SAG_PEAK_DET_CFG, True) == 0x143F
    xfer(emu, R.SAG_PEAK_DET_CFG, False, 0xFF3F)
    assert xfer(emu, R.SAG_PEAK_DET_CFG, True) == 0x143F  # locked: ignored
    xfer(emu, R.CFG_REG_ACC_EN, False, 0x55AA)
    xfer(emu, R.SAG_PEAK_DET_CFG, False, 0xFF3F)
    assert xfer(emu, R.LAST_SPI_DATA, True) == 0xFF3F
    assert xfer(emu, R.SAG_PEAK_DET_CFG, True) == 0xFF3F
    xfer(emu, R.SOFT_RESET, False, 0x789A)
    assert xfer(emu, R.SAG_PEAK_DET_CFG, True) == 0x143F
    assert xfer(emu, R.CFG_REG_ACC_EN, True) == 0


def test_energy_per_phase_and_total_clear_after_lastspidata():
    emu = Atm90e32Emu(3200)
    xfer(emu, R.CFG_REG_ACC_EN, False, 0x55AA)
    xfer(emu, R.METER_EN, False, 1)
    for ch, p in enumerate((3600, 7200, 0)):
        emu.set_channel(ch, p)
    emu.advance(1000)  # 1 Wh + 2 Wh = 320 + 640 counts of 0.01 pulse
    assert xfer(emu, R.AP_ENERGY_T + 1, True) == 320
    assert xfer(emu, R.LAST_SPI_DATA, True) == 320  # the cleared value is still recoverable
    assert xfer(emu, R.AP_ENERGY_T + 1, True) == 0
    assert xfer(emu, R.AP_ENERGY_T + 2, True) == 640
    assert xfer(emu, R.AP_ENERGY_T, True) == 960
    assert emu.truth_mj == 3 * 3600000


def test_metering_off_until_meteren_and_loss_is_reported():
    emu = Atm90e32Emu(3200)
    emu.set_channel(0, 3600)
    emu.advance(1000)
    assert xfer(emu, R.AP_ENERGY_T, True) == 0
    assert emu.lost_in_chip_mj == 3600000  # drawn while the chip was not metering


def test_stuck_bit_and_flip():
    emu = Atm90e32Emu()
    emu.inject("stuck")
    assert xfer(emu, R.SAG_PEAK_DET_CFG, True) == 0x943F
    emu.advance(emu.STUCK_MS)
    assert xfer(emu, R.SAG_PEAK_DET_CFG, True) == 0x143F
    emu.inject("flip")
    v = xfer(emu, R.SAG_PEAK_DET_CFG, True)
    assert bin(v ^ 0x143F).count("1") == 1
