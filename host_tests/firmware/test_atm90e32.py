"""ATM90E32 driver: 32-clock frames, PLconst derivation, init through CfgRegAccEn with every
write confirmed via LastSPIData, per-phase and total energy and values."""

import atm90e32 as R


def test_plconst_from_meter_constant_matches_datasheet_default():
    d = R.ATM90E32(_Bus(), lambda v: None, None, 3200)
    # 450e9 / 3200 = 140 625 000 = 0x0861C468 (the datasheet default)
    assert (d.cal["plconst_h"], d.cal["plconst_l"]) == (0x0861, 0xC468)
    assert R.cal_addr("ugain_b") == 0x65 and R.cal_addr("igain_c") == 0x6A and R.cal_addr("pgain_b") == 0x49


class _Bus:
    def __init__(self):
        self.frames = []

    def write_readinto(self, tx, rx):
        self.frames.append(bytes(tx))
        rx[:] = b"\x00\x00\xab\xcd"


def test_frame_layout():
    bus = _Bus()
    d = R.ATM90E32(bus, lambda v: None)
    assert d.read(R.IRMS_A) == 0xABCD
    d._write(R.CFG_REG_ACC_EN, 0x55AA)
    d.read(0x2F0)  # only 10 address bits are decoded
    assert bus.frames == [bytes([0x80, 0xDD, 0, 0]), bytes([0x00, 0x7F, 0x55, 0xAA]),
                          bytes([0x82, 0xF0, 0, 0])]


def test_init_per_phase_energy_and_values_micropython(mpy):
    mpy("""
import mptest, atm90e32 as R
from simhw.atm90e32_emu import Atm90e32Emu
emu = Atm90e32Emu(3200)
d = R.ATM90E32(emu, emu.cs, {"ugain_b": 0x8100}, 3200)
d.init()
mptest.eq(d.state(), R.OK, "configured")
mptest.eq(emu.regs[0x65], 0x8100, "calibration written")
mptest.eq(emu.regs[R.CFG_REG_ACC_EN], 0, "configuration locked again")
emu.regs[0x61] = 0x1234      # cannot be changed while locked
d._write(0x61, 0x8000)
emu.cs(1)
mptest.eq(emu.regs[0x61], 0x1234, "locked write ignored")
emu.regs[0x61] = 0x8000
for ch, p in ((0, 1000), (1, 2000), (2, 3000)):
    emu.set_channel(ch, p)
emu.advance(3600 * 1000)  # 6 kWh in an hour: 1 920 000 counts, far past 16 bits
d.read_energy()
e = list(d.energy)
mptest.eq(e[0], 0xFFFF & (6000 * 320), "total wraps in 1 h at 6 kW: poll faster")
mptest.check(emu.overflows > 0, "overflow reported by the emulator")
emu.advance(1000)
d.read_energy()
e = list(d.energy)
mptest.eq(e[0], 6000 * 320 // 3600, "total counts in 1 s (0.01 pulse, 3200/kWh)")
mptest.eq([e[2], e[4], e[6]], [88, 177, 266], "per phase (320 counts per Wh)")
d.read_inst()
mptest.eq(list(d.v_cv), [23000, 23179, 23000], "voltages (phase B gain 0x8100 vs true 0x8000)")
mptest.eq(list(d.p_w), [1000, 2000, 3000], "powers")
mptest.eq(list(d.i_ma), [4347, 8695, 13043], "currents")
mptest.done()
""", heap="128k")


def test_diagnose_healthy_absent_reset_and_unlocked_config_micropython(mpy):
    mpy("""
import mptest, atm90e32 as R
from simhw.atm90e32_emu import Atm90e32Emu
emu = Atm90e32Emu(3200)
d = R.ATM90E32(emu, emu.cs, None, 3200)
d.init()
bad, detail = d.diagnose()
mptest.eq(bad, [], "healthy chip: no problems")
mptest.check("SagPeakDetCfg 0xff3f" in detail and "(locked)" in detail, detail)
emu.inject("absent")
mptest.eq(d.diagnose()[0], ["chip absent: MISO reads all ones"], "absent")
emu.advance(emu.ABSENT_MS)
mptest.eq(d.diagnose()[0], [], "answers again")
emu.inject("resets")
bad, _ = d.diagnose()
mptest.check(any("reset" in b and "SagPeakDetCfg" in b for b in bad), "reset named: %r" % (bad,))
mptest.check(any("MeterEn" in b for b in bad), "metering off after the reset: %r" % (bad,))
d.init()
mptest.eq(d.diagnose()[0], [], "healthy after init")
# Configuration access left open: config registers stay writable and no golden CRC is latched.
d.write_verified(R.CFG_REG_ACC_EN, 0x55AA)
bad, detail = d.diagnose()
mptest.eq(bad, ["configuration not locked (CfgRegAccEn still 0x55aa)"], "unlocked")
mptest.check("(unlocked)" in detail, detail)
d.write_verified(R.METER_EN, 0)
mptest.check("metering off (MeterEn 0x0000)" in d.diagnose()[0], "MeterEn cleared")
mptest.done()
""", heap="128k")
