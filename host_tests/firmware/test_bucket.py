"""firmware/bucket.py: the token bucket that rate-limits remote relay commands and the answers
to unauthenticated commands. It refills on the tick, so a quiet spell of any length (past the
2^29 ms after which ticks_diff of an old stamp turns negative on the ESP32, across tick wraps)
leaves it full; the app test sends real commands after eight quiet days."""

UNIT = r"""
import micropython, mptest
from bucket import TokenBucket
from simhw.clock import SimClock

ck = SimClock(1767225600)
b = TokenBucket(ck, 2, 60000)
now = ck.ticks_ms
mptest.eq([b.take(now()), b.take(now()), b.take(now())], [True, True, False], "burst of 2")
ck.advance(59000)
mptest.eq(b.take(now()), False, "not refilled before 60 s")
ck.advance(1000)
mptest.eq(b.take(now()), True, "one token after 60 s")
mptest.eq(b.refused, 2, "refusals counted")
ck.advance(600000)
b.tick(now())
mptest.eq(b.tokens, 2, "never more than the burst")

# Empty, then quiet for days: ticked by the loop (every 5 s) or, defensively, not at all.
for ticked in (True, False):
    for days in (7, 9, 13, 20):
        b = TokenBucket(ck, 4, 900000)
        for _ in range(4):
            b.take(now())
        mptest.eq(b.take(now()), False, "empty")
        n = days * 86400 // 5
        while n:
            n -= 1
            ck.advance(5000)
            if ticked:
                b.tick(now())
        mptest.eq(b.take(now()), True, "a command %d quiet days later (ticked: %s)" % (days, ticked))
        mptest.eq(b.tokens, 3, "full again after %d days (ticked: %s)" % (days, ticked))

mptest.raises(ValueError, TokenBucket, ck, 0, 1000)
mptest.raises(ValueError, TokenBucket, ck, 1, 0)
mptest.raises(ValueError, TokenBucket, ck, 1, 1 << 29)

b = TokenBucket(ck, 3, 10000)
t = now()
micropython.heap_lock()
i = 0
while i < 1000:
    ck.advance(3000)
    t = now()
    b.tick(t)
    b.take(t)
    i += 1
micropython.heap_unlock()
mptest.done()
"""

APP = r"""
import mptest, simkit, app, relay, sys
from simkit import sign, TEST_KEY as KEY
flash = simkit.fresh_flash(sys.argv[1])
b = simkit.board(flash, config={"opening_balance": 100000})
m = app.Meter(b)
m.boot()
out = simkit.Replies(m)
cid = [100]


def relay_cmd(op, **kw):
    cid[0] += 1
    doc = {"m": "t-0001", "id": cid[0], "exp": simkit.unix_now(b) + 600, "op": op}
    doc.update(kw)
    m.on_message(b"cmd", sign(KEY, doc))
    rs = [r for r in out.replies() if r.get("id") == cid[0]]
    return rs[-1]["res"] if rs else None


def junk():
    m.on_message(b"cmd", b"not a command")
    return [r for r in out.replies() if r.get("id") == 0]


def idle(days, tick_ms=60000):
    n = days * 86400000 // tick_ms
    ob = m.sync.outbox
    while n:
        n -= 1
        b.advance(tick_ms)
        m.step()
        while ob.count:  # no backend: telemetry is dropped as if delivered
            ob.pop()


for _ in range(3):
    b.advance(1000)
    m.step()
ops = ["disconnect", "reconnect", "disconnect", "reconnect"]
got = [relay_cmd(op, direct=True) if op == "reconnect" else relay_cmd(op) for op in ops]
mptest.eq(got, ["applied"] * 4, "a burst of four relay commands")
mptest.eq(relay_cmd("disconnect"), "rate_limited", "the fifth is refused")
answered = sum(len(junk()) for _ in range(10))
mptest.eq(answered, 8, "eight unauthenticated commands answered, the rest counted")
t0 = b.clock.ticks_ms()
idle(8)
mptest.check(b.clock.ticks_diff(b.clock.ticks_ms(), t0) < 0, "eight days: an old stamp's ticks_diff is negative")
mptest.eq(relay_cmd("disconnect"), "applied", "a relay command after eight quiet days")
a = junk()
mptest.eq(len(a), 1, "an unauthenticated command after eight quiet days is answered")
mptest.eq(a[0].get("sup") if a else None, 2, "with the count of the ones not answered before")
mptest.done()
"""


def test_bucket_refills_on_the_tick_across_long_quiet_spells(mpy):
    res = mpy(UNIT, heap="128k", timeout=300)
    assert res.result["checks"] >= 20


def test_app_takes_relay_commands_and_answers_after_eight_quiet_days(mpy, tmp_path):
    import mprun
    res = mpy(APP, tmp_path / "flash.img", heap=mprun.APP_HEAP, timeout=300)
    assert res.result["ok"]
