"""firmware/report.py: periodic, by-exception, load profile and snapshot reporting."""

REPORT = r'''
import mptest, micropython
from report import Reporter
from simhw.clock import SimClock
import sync as sync_mod
from billtest import EPOCH_S

class Mt: imp_wh = 0; exp_wh = 0; p_w = 100
class M:
    clock = SimClock(1767225600 - 600)
    metering = Mt()
    sync = None
calls = []
class S:
    exception = False
    def telemetry(self, m, t): calls.append(("tele", t))
    def load_profile(self, m, t, de, dx): calls.append(("lp", t, de))
m = M()
m.sync = S()
r = Reporter(m, {"telemetry_s": 900, "lp_s": 900, "report_step_w": 1000, "report_min_s": 60})
def run(seconds):
    for _ in range(seconds):
        m.clock.advance(1000)
        m.metering.imp_wh += 1
        r.step(m.clock.ticks_ms())
run(599)
mptest.eq(calls, [], "nothing before anything is due")
run(1)
mptest.eq(calls, [("lp", 1767225600 - EPOCH_S, 600)], "interval end in meter seconds (snapshots are billing's, not the reporter's)")
calls.clear()
run(30)
m.metering.p_w = 2500  # a power step, but within report_min_s of... the last report was at start
run(1)
mptest.eq([c[0] for c in calls], ["tele"], "power step reported at once")
calls.clear()
m.metering.p_w = 100
run(30)
mptest.eq(calls, [], "not more often than report_min_s")
run(30)
mptest.eq([c[0] for c in calls], ["tele"], "the step back reported once allowed")
calls.clear()
m.sync.exception = True
run(61)
mptest.eq([c[0] for c in calls], ["tele"], "an exceptional event reports early")
mptest.eq(m.sync.exception, False, "flag consumed")
calls.clear()
run(899)
mptest.eq([c[0] for c in calls], ["lp", "tele"], "periodic telemetry every telemetry_s")
micropython.heap_lock()
try:
    for _ in range(100):
        m.clock.advance(1000)
        r.step(m.clock.ticks_ms())
    ok = True
except MemoryError:
    ok = False
micropython.heap_unlock()
mptest.check(ok, "a tick with nothing due allocates nothing")
mptest.eq(r.exceptions, 3, "early reports counted")
mptest.done()
'''


def test_reporting_policy(mpy):
    r = mpy(REPORT, heap="96k").result  # report and sync compiled from source (frozen on a device)
    assert r["ok"] and r["checks"] > 0
