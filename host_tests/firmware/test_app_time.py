"""firmware/app.py on the simulated board under micropython, years ahead: every wall-time value
the step keeps or passes around is a meter second inside the ESP32's small-int range, and every
time that leaves the meter over MQTT is still Unix seconds equal to the simulated wall clock.
(The unix port's small ints are 62 bits wide, so heap_lock alone could not show a big int.)"""
import json

import pytest

SCRIPT = r'''
import sys, os, json, mptest
import sim_atm90e26, app, sync as sync_mod
from billtest import utc, days
ARGS = json.loads(sys.stdin.read())
FLASH = ARGS["flash"]
START = ARGS["start"]  # Unix seconds
STEPS = ARGS["steps"]  # (wall-clock jump in s, then this many 10 s steps), ...
SMALL = 1 << 30
try:
    os.remove(FLASH)
except OSError:
    pass
tariff = {"v": 1, "kind": "tou_block", "scale": 100, "rates": [3000, 1000], "tz": {"offset_min": 60, "dst": "eu"},
          "days": [[[0, 1], [420, 0], [1320, 1]]], "weeks": [[0, 0, 0, 0, 0, 0, 0]],
          "blocks": {"reset": "month", "thresholds_wh": [100], "adders": [0, 500]}, "standing_per_day": 2000}
cfg = {"opening_balance": 10 ** 6, "tariff": tariff, "telemetry_s": 600,
       "credit": {"max_balance": 10 ** 7, "friendly": {"hours": [[1200, 360]]}}}
b = sim_atm90e26.build({"meter_id": "time-1", "key": bytes(32), "seed": 5, "flash": FLASH, "broker": None,
                        "config": cfg, "utc_start": START})
m = app.Meter(b)
m.boot()
m.sync.link = None  # what each step queues is read from the outbox right after the step
ob = m.sync.outbox
jumped = 0

def wall():
    # The simulated wall clock in Unix seconds, from the start and what moved it (not the firmware's epoch).
    return START + b.clock.elapsed_ms // 1000 + jumped

def wall_values():
    t = m.tariff
    lc = t.t.tz
    bl = m.billing
    v = {"clock": m.clock.time(), "tariff_lo": t._lo, "tariff_hi": t._hi, "tz_lo": lc.lo, "tz_hi": lc.hi,
         "tz_day_start": lc.day_start, "log_quarter_end": (m.log._quarter + 1) * 900,
         "report_slot_end": (m.reporter._slot + 1) * m.reporter.lp_s, "boot": m.sync.boot,
         "token_lock": m.tokens.lock_until, "day": m.account.last_day, "bill_day": bl.day}
    e = m.events.get(m.events.seq - 1)
    if e is not None:
        v["event"] = e[2]
    if t.passive is not None:
        v["activate_at"] = t.passive.activate_at
    return v

# A tariff scheduled a day ahead (Unix in the document) waits as a meter second, then activates.
doc = dict(tariff)
doc["activate_at"] = START + 86400
mptest.eq(m.set_tariff(doc), 0, "passive tariff scheduled")
mptest.eq(m.tariff.passive.activate_at, m.clock.time() + 86400, "activate_at held in meter seconds")
big = {}
steps = 0
checked_t = {"tele": 0, "lp": 0, "evt": 0, "snap": 0}
bad_t = []
for jump, n in STEPS:
    if jump:
        b.clock.jump(jump)
        jumped += jump
    for i in range(n):
        b.advance(10000)
        m.step()
        steps += 1
        for k, x in wall_values().items():
            if not -SMALL < x < SMALL:
                big[k] = x
        now = wall()
        mptest.eq(m.clock.time() + (START - m.clock.time() + b.clock.elapsed_ms // 1000 * 0), m.clock.time() + START - m.clock.time(), "")  if False else None
        while ob.count:
            k, p = ob.peek()
            ob.pop()
            kind = sync_mod._NAMES[k].decode()
            if kind not in checked_t:
                continue
            d = json.loads(p)
            t = d["t"]
            if kind == "tele" and "lp" in d:
                kind = "lp"  # revision 5: the report that closes a load-profile interval
            # Telemetry, snapshots and this step's events carry the time of the step; a load-profile
            # record the quarter-hour boundary it closes.
            want = now - now % 900 if kind == "lp" else now
            if kind == "evt" and t < now:
                want = t if START <= t else now  # an event raised before this step (e.g. at boot)
            if t != want:
                bad_t.append((kind, t, want))
            checked_t[kind] += 1
mptest.eq(big, {}, "wall-time values outside the small-int range")
mptest.eq(bad_t[:5], [], "uplink times equal the simulated wall clock in Unix seconds")
mptest.eq(json.loads(m.sync.birth()[1])["boot"], START, "birth: boot time in Unix seconds")
mptest.check(m.tariff.activations == 1 and m.tariff.passive is None, "the scheduled tariff activated")
mptest.check(checked_t["tele"] > 3 and checked_t["lp"] > 3 and checked_t["snap"] >= 2 and checked_t["evt"] > 0,
             "all uplink kinds checked: %r" % checked_t)
# The local calendar still agrees with plain counting at the end (Unix seconds -> days since 1970).
lc = m.tariff.t.tz
end = wall()
mptest.eq(lc.day, (end + lc.off) // 86400, "local day number since 1970")
mptest.eq(m.billing.day, lc.day, "billing is on today")
mptest.done(steps=steps, end=end, year=lc.year, checked=checked_t)
'''


def _plan(months):
    # Each simulated month: a jump of about a month of wall time (days and month ends are crossed
    # at once, as after a long power cut), then a few hours of 10 s steps (quarter hours, telemetry).
    plan = [[0, 1200]]
    for _ in range(months):
        plan.append([30 * 86400 + 3 * 3600 + 17, 400])
    return plan


@pytest.mark.parametrize("start,months,year", [
    (1767225600, 12, 2026),  # 2026-01-01: a simulated year ahead
    (2366841600, 12, 2045),  # 2045-01-01: twenty years ahead
    (2806272000, 1, 2059),  # 2058-12-05: near the end of the meter clock's range, across the new year
])
def test_step_keeps_wall_time_small_and_sends_unix_time(mpy, tmp_path, start, months, year):
    args = {"flash": str(tmp_path / "flash.img"), "start": start, "steps": _plan(months)}
    res = mpy(SCRIPT, stdin=json.dumps(args), heap="512k", timeout=180)
    assert res.result["ok"], res.result["failures"]
    assert res.result["year"] == year and res.result["end"] > start + months * 30 * 86400
