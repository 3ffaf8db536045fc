"""firmware/report.py: periodic, by-exception, load profile and snapshot reporting."""

# A meter reduced to what the reporter reads, and a sync that records what it is asked to send.
STUB = r'''
import mptest, micropython
from report import Reporter
from simhw.clock import SimClock
from billtest import EPOCH_S

class Mt: imp_wh = 0; exp_wh = 0; p_w = 100
class M:
    clock = SimClock(1767225600 - 600)
    metering = Mt()
    sync = None
calls = []
'''

REPORT = STUB + r'''
class S:
    exception = False
    def telemetry(self, m, t, lp=0): calls.append(("tele", t, lp) if lp else ("tele", t))
    def load_profile(self, m, t, de, dx): calls.append(("lp", t, de))
m = M()
m.sync = S()
# A backend still on revision 4 asked for lp messages (lp_topic): the policy as it was.
r = Reporter(m, {"telemetry_s": 900, "lp_s": 900, "report_step_w": 1000, "report_min_s": 60, "lp_topic": True})
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


FOLDED = STUB + r'''
class S:
    exception = False
    def telemetry(self, m, t, lp=0): calls.append((t + EPOCH_S, lp))
    def load_profile(self, m, t, de, dx): calls.append(("lp message",))
m = M()
m.sync = S()
TELE_S = int(__import__("sys").argv[1])
r = Reporter(m, {"telemetry_s": TELE_S, "lp_s": 900, "report_step_w": 1000, "report_min_s": 60})
def run(seconds):
    for _ in range(seconds):
        m.clock.advance(1000)
        m.metering.imp_wh += 1
        r.step(m.clock.ticks_ms())
run(600)
mptest.eq([c for c in calls if c[1]], [(1767225600, 900)], "the interval's end: one report that says it closes the interval")
calls.clear()
run(86400)
ends = [c for c in calls if c[1]]
mptest.eq(len(ends), 96, "a day: 96 interval reports")
mptest.check(all(t % 900 == 0 for t, _ in ends), "each at a UTC multiple of lp_s")
mptest.eq(len(calls) - len(ends), 86400 // TELE_S - 96 if TELE_S < 900 else 0, "plain periodic reports only between interval ends")
mptest.check(("lp message",) not in calls, "no lp messages")
calls.clear()
run(100)
m.metering.p_w = 2500
run(1)
mptest.eq(len(calls), 1, "a power step still reported at once")
mptest.eq(calls[0][1], 0, "as a plain report")
calls.clear()
run(799)
mptest.eq([c for c in calls if c[1]], [(1767225600 + 86400 + 900, 900)], "the next interval's end comes as always")
def tick():
    m.clock.advance(1000)
    r.step(m.clock.ticks_ms())
mptest.allocates_nothing(tick, 100, "a tick with nothing due allocates nothing")
mptest.done()
'''


def test_load_profile_rides_in_the_telemetry_that_closes_each_interval(mpy):
    for tele_s in (900, 300):
        r = mpy(FOLDED, tele_s, heap="96k").result
        assert r["ok"] and r["checks"] > 0, (tele_s, r)


def test_reporting_policy(mpy):
    r = mpy(REPORT, heap="96k").result  # report and sync compiled from source (frozen on a device)
    assert r["ok"] and r["checks"] > 0
