"""REPL calibration against a reference load on each chip's emulator (whose front end is off
by a few percent), the stored record (CRC, keyed to board/chip/unit), export/import, boot check."""

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


def test_repl_entry_point_on_the_sim_board(mpy):
    # firmware/repl.py's calibrate(step, ...) calls calibration.repl_step(meter, step, ...).
    mpy("""
import mptest, simkit, app, calibration, os
FLASH = simkit.fresh_flash("/tmp/pm-cal-repl.img")
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
mptest.check(calibration.repl_step(m, "save"), "saved")
text = calibration.repl_step(m, "export")
mptest.check(calibration.decode(text, "sim-atm90e26", "atm90e26", "73696d31")["ugain"] == g, "exported, keyed to the unit")
os.remove(FLASH)
mptest.done()
""", heap="384k")
