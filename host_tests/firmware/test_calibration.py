"""REPL calibration against a reference load on each chip's emulator (whose front end is off
by a few percent), the stored record (CRC, keyed to board/chip/unit), export/import, boot check."""

import mprun
import pytest

import calibration

CASES = [
    # chip, emulator's true gains (what a perfect calibration finds), channel
    ("atm90e26", {"ugain": 0x6A00, "igain": 0x7800, "pgain": 0x0400}, 0),
    ("atm90e32", {"ugain_b": 0x8300, "igain_b": 0x7E00, "pgain_b": 0xFC00}, 1),
    ("ade7953", {"ugain": 0x420000, "igain_b": 0x3F0000, "pgain_b": 0x410000}, 1),
]


@pytest.mark.parametrize("chip,true_cal,ch", CASES)
def test_guided_calibration_round_trip(mpy, chip, true_cal, ch):
    res = mpy("""
import sys, json, mptest, chipkit, calibration, os
name, true_cal, ch = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
k = chipkit.Kit(name, true_cal=true_cal)
mptest.check(k.m.start(), "init")
emu, chip = k.emu, k.chip
k.load(2300)           # reference load: 10 A resistive at 230 V on every channel
emu.advance(1000)
chip.read_inst()
before = (chip.v_cv[ch], chip.i_ma[ch], chip.p_w[ch])
mptest.check(before != (23000, 10000, 2300), "uncalibrated readings are off: %r" % (before,))
path = "/tmp/pm-cal-%s.json" % name
cal = calibration.Calibration(k.m, chip, path, "test-board", b"\\x01\\x02", samples=2,
                              tick=lambda: emu.advance(1000))
cal.voltage(230.0, ch)
cal.current(10.0, ch)
cal.power(2300, ch)
emu.advance(1000)
chip.read_inst()
after = (chip.v_cv[ch], chip.i_ma[ch], chip.p_w[ch])
mptest.check(abs(after[0] - 23000) <= 2, "voltage %d cV" % after[0])
mptest.check(abs(after[1] - 10000) <= 2, "current %d mA" % after[1])
mptest.check(abs(after[2] - 2300) <= 1, "power %d W" % after[2])
for q in ("ugain", "igain"):
    key = chip.cal_key(q, ch)
    mptest.check(abs(chip.cal_value(key) - true_cal[key]) * 1000 <= true_cal[key], "%s near the true gain" % key)
# Energy follows the power calibration: an hour at 2300 W per channel.
e0 = k.metered_mj()
t0 = emu.truth_mj
k.run(3600, 1)
err = (k.metered_mj() - e0) - (emu.truth_mj - t0)
mptest.check(abs(err) * 500 <= emu.truth_mj - t0, "energy within 0.2 %%: %d mJ" % err)
# Multi-point current check
k.load(230)
mptest.check(abs(cal.check_current(1.0, ch)) <= 3000, "1 A point")
k.load(6900)
mptest.check(abs(cal.check_current(30.0, ch)) <= 1000, "30 A point")
mptest.eq(len(cal.points), 2, "points recorded")
import events
mptest.eq([c for c in k.codes() if c in (events.CHIP_UPSET, events.CHIP_RESET, events.CHIP_FAULT)], [],
          "calibrating is neither an upset nor a reset nor a fault")
# Save, then a fresh driver (as after a reboot) loads and verifies the record.
cal.save()
k2 = chipkit.Kit(name, true_cal=true_cal)
mptest.eq(calibration.load_into(k2.chip, path, "test-board", b"\\x01\\x02"), "ok", "boot check")
mptest.eq(k2.chip.cal, chip.cal, "same calibration after reboot")
mptest.check(k2.m.start(), "init with the stored calibration")
# Export / import: the text round-trips; a damaged or foreign record changes nothing.
text = cal.export()
k3 = chipkit.Kit(name, true_cal=true_cal)
k3.m.start()
cal3 = calibration.Calibration(k3.m, k3.chip, path + ".3", "test-board", b"\\x01\\x02", samples=1,
                               tick=lambda: None)
before3 = dict(k3.chip.cal)
bad = text.replace('"crc":', '"crc":1')
mptest.raises(calibration.CalError, cal3.import_, bad)
other = calibration.Calibration(k3.m, k3.chip, path, "test-board", b"\\x09", tick=lambda: None)
mptest.raises(calibration.CalError, other.import_, text)
mptest.eq(k3.chip.cal, before3, "nothing changed by bad imports")
cal3.import_(text)
mptest.eq(k3.chip.cal, chip.cal, "imported")
# A record for another unit is refused at boot, the defaults stay, and metering says so.
k4 = chipkit.Kit(name)
mptest.eq(calibration.load_into(k4.chip, path, "test-board", b"\\x09"), "invalid", "foreign record")
k4.m.start()
import events
mptest.check(events.CAL_INVALID in k4.codes(), "cal_invalid event")
os.remove(path)
mptest.done(before=before, after=after)
""", chip, __import__("json").dumps(true_cal), ch, heap="160k")
    assert res.result["ok"]


def test_record_crc_and_keying_cpython():
    text = calibration.encode("b", "atm90e26", "0102", {"ugain": 0x6A00})
    assert calibration.decode(text, "b", "atm90e26", "0102") == {"ugain": 0x6A00}
    with pytest.raises(calibration.CalError, match="CRC"):
        calibration.decode(text.replace("27136", "27137"), "b", "atm90e26", "0102")
    with pytest.raises(calibration.CalError, match="belongs"):
        calibration.decode(text, "b", "atm90e32", "0102")
    with pytest.raises(calibration.CalError):
        calibration.decode("{not json", "b", "atm90e26", "0102")


def test_out_of_range_reference_is_refused_and_changes_nothing(mpy):
    mpy("""
import mptest, chipkit, calibration
k = chipkit.Kit("atm90e26")
k.m.start()
k.load(2300)
cal = calibration.Calibration(k.m, k.chip, "/tmp/x.json", "b", b"1", samples=1,
                              tick=lambda: k.emu.advance(1000))
before = dict(k.chip.cal)
mptest.raises(calibration.CalError, cal.voltage, 120.0)   # 48 % off: wiring, not calibration
mptest.raises(calibration.CalError, cal.current, -1)
mptest.eq(k.chip.cal, before, "unchanged")
mptest.done()
""", heap="160k")


def test_repl_entry_point_on_the_sim_board(mpy, tmp_path):
    # firmware/repl.py's calibrate(step, ...) calls calibration.repl_step(meter, step, ...).
    mpy("""
import sys, mptest, simkit, app, calibration, os
FLASH = simkit.fresh_flash(sys.argv[1])
b = simkit.board(FLASH)
m = app.Meter(b)
m.boot()
for _ in range(30):
    b.advance(1000)
    m.step()
before = calibration.repl_step(m, "show")
mptest.eq(before["ugain"], 0x6720, "the board's gains")
v = m.metering._chip.v_cv[0]
g = calibration.repl_step(m, "voltage", v / 100 * 1.01)   # reference reads 1 % higher
mptest.check(abs(g - 0x6720 * 101 // 100) <= 2, "gain moved by 1 %%: 0x%x" % g)
mptest.eq(calibration.repl_step(m, "nonsense"), None, "unknown step refused")
mptest.eq(calibration.repl_step(m, "voltage"), None, "missing reference refused")
shown = calibration.repl_step(m, "show")
mptest.eq(calibration.repl_step(m, "phase", 2300), None, "phase needs a reactive load")
mptest.eq(calibration.repl_step(m, "offset", "power", 10), None, "no power offset step")
mptest.eq(calibration.repl_step(m, "show"), shown, "refusals changed nothing")
mptest.check(calibration.repl_step(m, "save"), "saved")
text = calibration.repl_step(m, "export")
mptest.check(calibration.decode(text, "sim-atm90e26", "atm90e26", "73696d31")["ugain"] == g, "exported, keyed to the unit")
os.remove(FLASH)
mptest.done()
""", str(tmp_path / "flash.img"), heap=mprun.APP_HEAP)


PHASE_CASES = [
    # chip, the front end's errors (gains, phase, RMS offsets as the registers that cancel them), channel
    ("atm90e26", {"ugain": 0x6A00, "igain": 0x7800, "pgain": 0x0400, "phi": 0x8000 | 40,
                  "uoffset": 0xFFFF & -3000, "ioffset": 0xFFFF & -6000}, 0),
    ("atm90e32", {"ugain_c": 0x8300, "igain_c": 0x7E00, "pgain_c": 0xFC00, "phi_c": 35,
                  "uoffset_c": 2500, "ioffset_c": 0xFFFF & -5000}, 2),
    ("ade7953", {"ugain": 0x420000, "igain_a": 0x3F0000, "pgain_a": 0x410000, "phi_a": 0x200 | 45,
                 "uoffset": 0xFFFFFF & -2600, "ioffset_a": 1200}, 0),
]


@pytest.mark.parametrize("chip,true_cal,ch", PHASE_CASES)
def test_phase_and_offset_calibration(mpy, chip, true_cal, ch):
    """After the gains at PF 1, a phase error still bills a reactive load wrong and an RMS offset
    still misreads a small current; the phase and offset steps remove both, and the gains hold."""
    res = mpy("""
import sys, json, mptest, chipkit, calibration
name, true_cal, ch = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
k = chipkit.Kit(name, true_cal=true_cal)
mptest.check(k.m.start(), "init")
emu, chip = k.emu, k.chip
cal = calibration.Calibration(k.m, chip, "/tmp/pm-cal-ph.json", "b", b"1", samples=2,
                              tick=lambda: emu.advance(1000))

def read(arr):
    emu.advance(1000)
    chip.read_inst()
    return arr[ch]

def energy_err_ppm(seconds):
    e0, t0 = k.metered_mj(), emu.truth_mj
    k.run(seconds, 1)
    t = emu.truth_mj - t0
    return ((k.metered_mj() - e0) - t) * 1000000 // t

k.load(2300)
cal.voltage(230.0, ch)
cal.current(10.0, ch)
cal.power(2300, ch)
k.load(1150, pf_milli=500)            # the same 10 A at PF 0.5 lagging
p_before = read(chip.p_w)
e_before = energy_err_ppm(600)
mptest.check(abs(p_before - 1150) >= 10, "the phase error shows at PF 0.5: %d W" % p_before)
mptest.check(abs(e_before) >= 3000, "and bills wrong: %d ppm" % e_before)
key = chip.cal_key("phi", ch)
cal.phase(1150, ch)
import meterchip
true_phi = meterchip.to_signed(chip.CAL_FORMS["phi"], true_cal[key])
mptest.check(abs(chip.cal_signed(key) - true_phi) <= 2, "phase register %d, the front end's %d" % (
    chip.cal_signed(key), true_phi))
p_after = read(chip.p_w)
mptest.check(abs(p_after - 1150) <= 1, "power at PF 0.5 after: %d W" % p_after)
e_after = energy_err_ppm(3600)
mptest.check(abs(e_after) <= 3000 and 3 * abs(e_after) <= abs(e_before),
             "energy at PF 0.5 within 0.3 %%, three times better: %d ppm" % e_after)

k.load(115)                          # 0.5 A at PF 1: where a current offset shows
i_before = read(chip.i_ma)
mptest.check(abs(i_before - 500) >= 5, "the offset shows at 0.5 A: %d mA" % i_before)
cal.offset("current", 0.5, ch)
i_after = read(chip.i_ma)
mptest.check(abs(i_after - 500) <= 1, "0.5 A after: %d mA" % i_after)
k.load(2300)
cal.current(10.0, ch)                # the gain again: it had absorbed part of the offset
i_full = read(chip.i_ma)
mptest.check(abs(i_full - 10000) <= 2, "10 A: %d mA" % i_full)
k.load(115)
i_low = read(chip.i_ma)
mptest.check(abs(i_low - 500) <= 1, "0.5 A still: %d mA" % i_low)

for c in range(emu.n):
    emu.set_channel(c, 10, 2300, 1000)   # 23 V: where a voltage offset shows
v_before = read(chip.v_cv)
cal.offset("voltage", 23.0, ch)
v_after = read(chip.v_cv)
mptest.check(abs(v_after - 2300) <= 1, "23 V after: %d cV (before %d)" % (v_after, v_before))
k.load(2300)
cal.voltage(230.0, ch)
v_full = read(chip.v_cv)
mptest.check(abs(v_full - 23000) <= 2, "230 V: %d cV" % v_full)
for c in range(emu.n):
    emu.set_channel(c, 10, 2300, 1000)
v_low = read(chip.v_cv)
mptest.check(abs(v_low - 2300) <= 1, "23 V still: %d cV" % v_low)
import events
mptest.eq([c for c in k.codes() if c in (events.CHIP_UPSET, events.CHIP_RESET, events.CHIP_FAULT)], [],
          "trimming is neither an upset nor a reset nor a fault")
mptest.done(p_before=p_before, p_after=p_after, e_before=e_before, e_after=e_after,
            i_before=i_before, i_after=i_after, v_before=v_before, v_after=v_after)
""", chip, __import__("json").dumps(true_cal), ch, heap="160k")
    assert res.result["ok"]


def test_phase_and_offset_steps_refuse_bad_conditions_and_change_nothing(mpy):
    mpy("""
import mptest, chipkit, calibration
k = chipkit.Kit("atm90e26", true_cal={"phi": 0x8000 | 40})
k.m.start()
cal = calibration.Calibration(k.m, k.chip, "/tmp/x.json", "b", b"1", samples=1,
                              tick=lambda: k.emu.advance(1000))
before = dict(k.chip.cal)
k.load(2300)                                        # PF 1: no phase information in it
mptest.raises(calibration.CalError, cal.phase, 2300)
k.load(2300, -950)                                  # nearly resistive, leading
try:
    cal.phase(2300)
    mptest.check(False, "PF -0.95 accepted")
except calibration.CalError as e:
    mptest.check("sees -0.950" in str(e), str(e))
mptest.raises(calibration.CalError, cal.offset, "power", 10)
mptest.raises(calibration.CalError, cal.offset, "current", 0)
k.load(1150, 500)
mptest.raises(calibration.CalError, cal.phase, 800)   # 30 % off: wiring, not phase
mptest.eq(k.chip.cal, before, "unchanged")
# A front end the phase register does not move (the ideal emulator): refused, left as it was.
k2 = chipkit.Kit("atm90e26")
k2.m.start()
k2.load(1150, 500)
cal2 = calibration.Calibration(k2.m, k2.chip, "/tmp/x.json", "b", b"1", samples=1,
                               tick=lambda: k2.emu.advance(1000))
before2 = dict(k2.chip.cal)
mptest.raises(calibration.CalError, cal2.phase, 1160)
mptest.eq(k2.chip.cal, before2, "unchanged after a trim that could not work")
mptest.check(k2.m.ok, "metering runs on")
mptest.done()
""", heap="160k")


def test_neutral_gain_calibration_ends_false_tamper_events(mpy):
    # ATM90E26: the live/neutral tamper check compares the two currents. A neutral channel 15 %
    # off reads like a bypass on an honest installation; calibrating it ends that, and a real
    # bypass is still seen afterwards.
    res = mpy("""
import mptest, chipkit, calibration, events
k = chipkit.Kit("atm90e26", true_cal={"igain_n": 0x7530 * 100 // 115})
mptest.check(k.m.start(), "init")
k.load(2300)
k.run(10, 1)
mptest.eq(k.codes().count(events.TAMPER_LN), 1, "false tamper before the neutral is calibrated")
cal = calibration.Calibration(k.m, k.chip, "/tmp/x.json", "b", b"1", samples=2,
                              tick=lambda: k.emu.advance(1000))
g = cal.neutral(10.0)
mptest.check(abs(g - 0x7530 * 100 // 115) <= 2, "neutral gain 0x%x" % g)
k.emu.advance(1000)
k.chip.read_inst()
mptest.check(abs(k.chip.i_n_ma - 10000) <= 2, "neutral reads %d mA" % k.chip.i_n_ma)
k.run(60, 1)
mptest.eq(k.codes().count(events.TAMPER_LN), 1, "no new tamper on an honest installation")
k.emu.n_ratio_milli = 500            # half the current bypasses the neutral: a real tamper
k.run(10, 1)
mptest.eq(k.codes().count(events.TAMPER_LN), 2, "a real bypass is still seen")
k3 = chipkit.Kit("atm90e32")
k3.m.start()
cal3 = calibration.Calibration(k3.m, k3.chip, "/tmp/x.json", "b", b"1", samples=1, tick=lambda: None)
mptest.raises(calibration.CalError, cal3.neutral, 10.0)
mptest.done()
""", heap="160k")
    assert res.result["ok"]
