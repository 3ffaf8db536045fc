"""ATM90E32 emulator under CPython: 32-clock frames, CfgRegAccEn write gating, LastSPIData,
clear-on-read energy per phase and total, power-on values after SoftReset, faults, and the
configuration CRC (golden CRC, digest, error status, upsets; also under MicroPython)."""

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
    emu.sleep_ms(emu.STARTUP_MS)
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


def test_crc_is_ccitt_false():
    from simhw.atm90e32_emu import crc16

    assert crc16(b"123456789") == 0x29B1  # the published CRC-16/CCITT-FALSE check value
    assert crc16(b"") == 0xFFFF


def _unlock_write(emu, addr, value):
    xfer(emu, R.CFG_REG_ACC_EN, False, 0x55AA)
    xfer(emu, addr, False, value)
    xfer(emu, R.CFG_REG_ACC_EN, False, 0)


def test_digest_is_the_crc_of_the_configuration_registers():
    from simhw.atm90e32_emu import crc16

    emu = Atm90e32Emu()
    words = b"".join(bytes([emu.regs[a] >> 8, emu.regs[a] & 0xFF]) for a in range(0x70))
    assert xfer(emu, R.CRC_DIGEST, True) == crc16(words)
    assert xfer(emu, R.LAST_SPI_DATA, True) == crc16(words)
    before = xfer(emu, R.CRC_DIGEST, True)
    xfer(emu, R.U_GAIN_A, False, 0x8123)  # locked: ignored, nothing changes
    assert xfer(emu, R.CRC_DIGEST, True) == before
    xfer(emu, R.CFG_REG_ACC_EN, False, 0x55AA)
    xfer(emu, R.U_GAIN_A, False, 0x8123)
    assert xfer(emu, R.CRC_DIGEST, True) != before
    emu.regs[R.U_GAIN_A] = 0x8000
    emu.upset(R.U_GAIN_A, 0)  # (direct pokes bypass the CRC model; an upset does not)
    emu.upset(R.U_GAIN_A, 0)
    emu.upset(R.U_GAIN_A + 1, 0)
    emu.upset(R.U_GAIN_A + 1, 0)
    assert xfer(emu, R.CRC_DIGEST, True) == crc16(
        b"".join(bytes([emu.regs[a] >> 8, emu.regs[a] & 0xFF]) for a in range(0x70)))


def test_golden_crc_latched_on_lock_and_error_while_locked():
    emu = Atm90e32Emu()
    assert xfer(emu, R.CRC_ERR_STATUS, True) == 0  # no golden CRC before the first lock
    emu.upset(R.PQ_GAIN_A, 3)
    assert xfer(emu, R.CRC_ERR_STATUS, True) == 0
    _unlock_write(emu, R.SAG_PEAK_DET_CFG, 0xFF3F)  # locking latches the golden CRC
    golden = xfer(emu, R.CRC_DIGEST, True)
    for _ in range(3):
        emu.advance(1000)
        assert xfer(emu, R.CRC_ERR_STATUS, True) == 0
        assert xfer(emu, R.CRC_DIGEST, True) == golden  # stable while nothing changes
    emu.upset(R.I_GAIN_A + 4, 15)
    assert xfer(emu, R.CRC_DIGEST, True) != golden
    assert xfer(emu, R.CRC_ERR_STATUS, True) == 1
    assert xfer(emu, R.LAST_SPI_DATA, True) == 1
    xfer(emu, R.CFG_REG_ACC_EN, False, 0x55AA)
    assert xfer(emu, R.CRC_ERR_STATUS, True) == 0  # not compared while the configuration is open
    emu.upset(R.I_GAIN_A + 4, 15)  # flipped back
    xfer(emu, R.CFG_REG_ACC_EN, False, 0)
    assert xfer(emu, R.CRC_ERR_STATUS, True) == 0
    emu.upset(R.METER_EN, 4)
    assert xfer(emu, R.CRC_ERR_STATUS, True) == 1
    xfer(emu, R.SOFT_RESET, False, 0x789A)  # power-on values, golden CRC and status cleared
    emu.sleep_ms(emu.STARTUP_MS)
    assert xfer(emu, R.CRC_ERR_STATUS, True) == 0
    assert not emu.upset_live


def test_golden_crc_can_be_written_under_aa55_only():
    emu = Atm90e32Emu()
    xfer(emu, R.CRC_DIGEST, False, 0x1234)  # no effect while locked
    xfer(emu, R.CFG_REG_ACC_EN, False, 0)
    assert xfer(emu, R.CRC_ERR_STATUS, True) == 0
    xfer(emu, R.CFG_REG_ACC_EN, False, 0xAA55)
    xfer(emu, R.CRC_DIGEST, False, xfer(emu, R.CRC_DIGEST, True) ^ 1)  # a wrong golden CRC
    assert xfer(emu, R.CRC_ERR_STATUS, True) == 1
    assert xfer(emu, R.SAG_PEAK_DET_CFG, True) == 0x143F  # config writes still need 0x55AA


def test_upset_fault_flips_one_config_bit_and_is_counted():
    emu = Atm90e32Emu()
    before = list(emu.regs)
    emu.inject("upset")
    assert emu.injected["upset"] == 1 and emu.upset_live
    diff = [(a, before[a] ^ emu.regs[a]) for a in range(len(before)) if before[a] != emu.regs[a]]
    assert len(diff) == 1 and diff[0][0] < 0x70 and bin(diff[0][1]).count("1") == 1
    for bad in ((0x70, 0), (0, 16)):
        try:
            emu.upset(*bad)
            raise AssertionError("accepted %r" % (bad,))
        except ValueError:
            pass
    assert emu.injected["upset"] == 1  # a refused upset changed nothing


def test_upset_mis_metering_is_charged_to_lost():
    # An upset energy gain over-counts until the driver re-initialises: truth = counted + lost.
    emu = Atm90e32Emu(3200)
    xfer(emu, R.CFG_REG_ACC_EN, False, 0x55AA)
    xfer(emu, R.METER_EN, False, 1)
    xfer(emu, R.CFG_REG_ACC_EN, False, 0)
    emu.set_channel(0, 3600)
    emu.upset(R.PQ_GAIN_A, 14)  # phase A energy gain +50 %
    emu.advance(1000)
    counted = xfer(emu, R.AP_ENERGY_T, True)
    assert counted == 480  # 1 Wh at 320 counts per Wh, times 1.5
    assert emu.truth_mj == 3600000
    assert emu.lost_num == 3600000 * emu._cn - counted * emu._cd  # negative: over-counted
    assert emu.lost_in_chip_mj == -1800000


def test_only_known_fault_kinds_can_be_scheduled():
    from simhw.atm90e26_emu import Atm90e26Emu

    emu = Atm90e26Emu()
    try:
        emu.schedule({"meteor": 1, "resets": 1}, 60000)
        raise AssertionError("the emulator accepted an unknown fault kind")
    except ValueError as e:
        assert "meteor" in str(e)
    assert emu._schedule == [] and "meteor" not in emu.injected
    e32 = Atm90e32Emu()
    e32.schedule({"upset": 2, "resets": 1}, 60000)
    assert sorted(k for _, k in e32._schedule) == ["resets", "upset", "upset"]


def test_crc_model_runs_under_micropython(mpy):
    mpy("""
import mptest, atm90e32 as R
from simhw.atm90e32_emu import Atm90e32Emu, crc16
mptest.eq(crc16(b"123456789"), 0x29B1, "CCITT-FALSE check value")
emu = Atm90e32Emu()
emu.regs[R.CFG_REG_ACC_EN] = 0x55AA
emu._write(R.CFG_REG_ACC_EN, 0)
golden = emu.crc()
words = bytearray()
for a in range(0x70):
    words.append(emu.regs[a] >> 8)
    words.append(emu.regs[a] & 0xFF)
mptest.eq(golden, crc16(words), "digest over 0x00-0x6F, high byte first")
mptest.eq(emu.crc_error(), 0, "locked and intact")
emu.upset(0x62, 1)
mptest.eq(emu.crc_error(), 1, "upset seen")
mptest.done()
""", heap="128k")  # driver constants and emulator compiled from source
