"""Boot time with storage holding a full year of data: the sim board's flash is filled first
(event log, a full load profile, a year of daily and monthly snapshots, top-up journal, a full
outbox), then the time from building the board to the end of the first metering tick is taken.
Runs the firmware under micropython; prints one JSON line with boot_ms_full_year.

    .venv/bin/python bench/boot.py
"""
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import mprun  # noqa: E402

METER = r'''
import sys, json, time, os
import sim_atm90e26, app as app_mod, logbook, billing
from outbox import CAPACITY
flash = sys.argv[1]
opts = {"meter_id": "boot-1", "key": bytes(32), "flash": flash, "config": {"opening_balance": 1000}}
b = sim_atm90e26.build(opts)
m = app_mod.Meter(b)
m.boot()
lb = m.log
c = logbook.DEFAULTS
# A year and more of records in every ring (the rings rotate, so they end up full).
for ring, n, size in ((lb.events, c["events"], logbook.EV_SIZE), (lb.profile, c["profile_days"] * 96, logbook.LP_SIZE),
                      (m.billing.daily, 400, billing.SNAP_SIZE), (m.billing.monthly, 13, billing.SNAP_SIZE),
                      (m.topup_log.ring, c["topups"], billing.TOPUP_SIZE)):
    rec = bytes(size)
    for _ in range(n + n // 8):
        ring.append(rec)
ob = m.sync.outbox
for i in range(CAPACITY):
    ob.put(0, b'{"seq":%d,"t":1767225600,"e":12345,"x":0,"b":1000,"c":0,"v":23000,"i":0,"p":0,"r":0,"rs":0}' % (i + 1))
m.commit()
os.umount("/flash")
runs = []
for _ in range(3):
    t0 = time.ticks_us()
    b = sim_atm90e26.build(opts)
    m = app_mod.Meter(b)
    m.boot()
    b.advance(1000)
    m.step()
    runs.append(time.ticks_diff(time.ticks_us(), t0) // 1000)
    os.umount("/flash")
runs.sort()
print(json.dumps({"boot_ms_full_year": runs[1], "boot_runs_ms": runs, "outbox_held": ob.count}))
'''


def main():
    with tempfile.TemporaryDirectory() as tmp:
        r = mprun.run_mpy(METER, args=[str(Path(tmp) / "flash.img")], heap="1m", timeout=900)
    if r.returncode or not r.result:
        print(r.describe())
        return 1
    print("boot to first tick with a year of data on flash: %d ms (median of 3: %s)" % (
        r.result["boot_ms_full_year"], r.result["boot_runs_ms"]))
    print(__import__("json").dumps(r.result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
