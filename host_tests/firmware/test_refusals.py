"""firmware/refusals.py and its use by sync.py: refused commands are counted in RAM by reason,
the first of an interval is logged at once and the rest as one summary (with the counts by reason
on the uplink), and the counting allocates nothing. Intervals are judged on the tick clock across
its wrap."""

UNIT = r"""
import micropython, mptest
import refusals
from refusals import Tally, REASONS, index
from simhw.clock import SimClock

ck = SimClock(1767225600)
mptest.eq(index("bad_mac"), REASONS.index("bad_mac"), "reason index")
mptest.eq(index("no_such_reason"), index("malformed"), "unknown reasons count as malformed")
mptest.raises(ValueError, Tally, ck, 0)
mptest.raises(ValueError, Tally, ck, 1 << 29)
t = Tally(ck, 60000)
mptest.eq(t.note(refusals.REPEAT, 5), False, "a repeat is never logged on its own")
mptest.eq(t.note(index("bad_mac"), 6), True, "the first refusal of the interval is logged")
mptest.eq(t.since, 5, "the interval starts at its first count")
# Steady state: counting and the interval check allocate nothing.
bm = index("bad_mac")
first = 0
i = 0
micropython.heap_lock()
while i < 1000:
    if t.note(bm, 7):
        first += 1
    t.due(ck.ticks_ms())
    i += 1
micropython.heap_unlock()
mptest.eq(first, 0, "the rest only counted")
mptest.eq(t.due(ck.ticks_ms()), 0, "not due within the interval")
ck.advance(59999)
mptest.eq(t.due(ck.ticks_ms()), 0, "not due at 59.999 s")
ck.advance(1)
mptest.eq(t.due(ck.ticks_ms()), 1002, "due after the interval, with all it counted")
mptest.eq((t.last[bm], t.last[refusals.REPEAT], t.total, t.summaries, t.last_since), (1001, 1, 0, 1, 5),
          "counts moved to the summary")
mptest.eq(t.by_reason(t.last), '"bad_mac":1001,"repeat":1', "summary by reason")
mptest.eq(t.due(ck.ticks_ms()), 0, "nothing counted: no summary")
ck.advance(3600000)
mptest.eq(t.due(ck.ticks_ms()), 0, "a quiet hour: no summary")
mptest.eq(t.note(index("expired"), 9), True, "a new interval logs its first refusal again")
# Across the tick wrap (2^30 ms on the ESP32): the interval is still judged right.
ck.advance((1 << 30) - 30000 - (ck.ticks_ms() % (1 << 30)))
t2 = Tally(ck, 60000)
t2.note(index("malformed"), 10)
ck.advance(45000)  # the tick counter wraps inside the interval
mptest.eq(t2.due(ck.ticks_ms()), 0, "not due across the wrap")
ck.advance(15000)
mptest.eq(t2.due(ck.ticks_ms()), 1, "due across the wrap")
mptest.eq(t.ever, 1003, "counted since boot")
mptest.done()
"""


def test_tally_counts_logs_the_first_and_summarises_without_allocating(mpy):
    r = mpy(UNIT).result
    assert r["ok"] and r["checks"] >= 19, r


APP = r"""
import json, mptest, simkit, events
from simkit import sign, TEST_KEY, unix_now

b, m = simkit.meter(simkit.fresh_flash("/tmp/refusals_app.img"), config={"refusal_report_s": 600})
rep = simkit.Replies(m)
rep.drain()
ev0 = m.events.seq
t0 = unix_now(b)
for i in range(50):
    m.on_message(m.sync.cmd_topic, b"garbage %d" % i)
good = sign(TEST_KEY, {"m": "t-0001", "id": 5, "exp": t0 + 3600, "op": "topup", "amt": 100})
m.on_message(m.sync.cmd_topic, good)
for i in range(20):
    m.on_message(m.sync.cmd_topic, good)  # replays of an applied command
forged = b"0" * 64 + b' {"m":"t-0001","id":6,"exp":%d,"op":"topup","amt":100}' % (t0 + 3600)
for i in range(30):
    m.on_message(m.sync.cmd_topic, forged)
simkit.run(b, m, 1, 1000)
out = rep.drain()
evs = [d for k, d in out if k == 1]
mptest.eq([d["ev"] for d in evs if d["ev"].startswith("cmd_")], ["cmd_refused"], "one event for the first refusal")
applied = [d for k, d in out if k == 2 and "seq" in d]
mptest.eq([(d["id"], d["res"]) for d in applied], [(5, "applied")], "the top-up's numbered reply")
answers = [d for k, d in out if k == 2 and "seq" not in d]
mptest.check(0 < len(answers) <= 16, "unnumbered answers from the budgets: %d" % len(answers))
mptest.eq(sum(1 + d.get("sup", 0) for d in answers) + m.sync.suppressed, 100, "every refusal and repeat answered or counted")
simkit.run(b, m, 60, 10000)  # 600 s later: the summary
out = rep.drain()
s = [d for k, d in out if k == 1 and d["ev"] == "cmd_refusals"]
mptest.eq(len(s), 1, "one summary")
mptest.eq(s[0]["a"], 100, "all counted")
mptest.eq(s[0]["by"], {"malformed": 50, "repeat": 20, "bad_mac": 30}, "by reason")
mptest.check(t0 <= s[0]["since"] <= s[0]["t"] - 600, "since: the first refusal")
mptest.eq(m.topups, 1, "applied once")
mptest.done()
"""


def test_app_logs_one_event_then_one_summary_by_reason(mpy):
    r = mpy(APP, heap="1m").result
    assert r["ok"] and r["checks"] >= 8, r


UNSTABLE = r"""
import mptest, events
from sync import Sync
from simhw.clock import SimClock

class L:
    state = 0
    oversized = 0
    short = 0
    def poll(self): pass

got = []
s = Sync("m-1", SimClock(1767225600), 8)
s.emit = lambda c, a: got.append((c, a))
s.link = L()
for short in (1, 2, 3, 4, 5, 0, 1, 3, 3):
    s.link.short = short
    s.poll()
mptest.eq(got, [(events.LINK_UNSTABLE, 3), (events.LINK_UNSTABLE, 3)], "one event per run of short sessions")
s.link.oversized = 3
s.poll()
mptest.eq(s.tally.ever, 3, "oversized packets counted as refusals")
mptest.eq(got[-1], (events.CMD_REFUSED, -1), "the first logged at once")
mptest.done()
"""


def test_link_unstable_once_per_run_and_oversized_packets_counted(mpy):
    r = mpy(UNSTABLE, heap="96k").result
    assert r["ok"] and r["checks"] >= 3, r
