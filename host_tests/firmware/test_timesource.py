"""firmware/timesource.py: the clock's state machine after a power cut (docs/time.md). The RTC back
at 2000 is raised to the floor (UNCERTAIN, the calendar held at the floor); SNTP may move it
forward of the floor by any amount once (NETWORK), never back, and never moves lower(), what
expiry, lockouts and the floor run on; the backend's time is trusted (TRUSTED), also backwards;
a day with no source lets the calendar run on the clock (ESTIMATED); a reset that kept the RTC
keeps the state in the RTC's memory, a power cut loses it. No ticks: the state machine counts
meter seconds, so tick wrap cannot reach it (checked across 2^30 ms anyway)."""

UNIT = r"""
import micropython, mptest, timebase
import timesource as T
from simhw.clock import SimClock
from billtest import mt

FLOOR = mt(2026, 3, 10, 9, 30)  # the last trusted time before the cut (meter seconds)
TRUE = mt(2026, 3, 14, 18, 0)  # when the power came back


class Rig:
    # The ESP32 after a power cut: the RTC at 2000-01-01, a time server, the RTC's memory.
    def __init__(self, rtc_unix=946684800, answer=None, kept=None):
        self.clock = SimClock(rtc_unix)
        self.answer = answer  # meter seconds the server says, or None (no answer)
        self.mem = kept
        self.ev = []
        self.ts = T.TimeSource(self.clock, self.set, self.sntp, self.keep, self.emit, 55, 56)

    def set(self, t):
        self.clock.jump(t - self.clock.time())

    def sntp(self):
        if self.answer is None:
            raise OSError(116)
        return self.answer + self.clock.elapsed_s

    def keep(self, b):
        self.mem = bytes(b)

    def emit(self, code, arg):
        self.ev.append((code, arg))


# -- a power cut: raised to the floor, calendar held, SNTP moves it to the truth ----------------
r = Rig(answer=TRUE)
r.ts.boot(FLOOR, None)
ts = r.ts
mptest.eq(ts.state, T.UNCERTAIN, "RTC at 2000 below the floor: uncertain")
mptest.eq(r.clock.time(), FLOOR, "the clock starts from the floor (TLS dates pass there)")
r.clock.advance(600000)
mptest.eq(ts.bill_time(r.clock.time()), FLOOR, "the calendar stands at the floor while uncertain")
mptest.eq(ts.lower(), FLOOR + 600, "lower(): the floor plus the time since boot")
mptest.check(ts.wants_network(), "uncertain: asks the time server")
mptest.eq(ts.query(), True, "SNTP answer forward of the floor is taken")
mptest.eq(ts.state, T.NETWORK, "network time")
mptest.eq(r.clock.time(), TRUE + 600, "the clock is the server's")
mptest.eq(ts.bill_time(r.clock.time()), TRUE + 600, "the calendar runs on it")
mptest.eq(ts.lower(), FLOOR + 600, "but lower() is still what the meter knows by itself")
mptest.eq(ts.query(), False, "asked once: a set clock is not moved by SNTP again")
mptest.eq(r.ev[-1], (55, T.NETWORK), "time_set event")
r.clock.advance(3600000)
mptest.eq(ts.lower(), FLOOR + 4200, "lower() keeps counting")
r.set(TRUE - 86400)  # the backend's signed time, a day back: the authority
ts.authoritative()
mptest.eq((ts.state, ts.skew, ts.lower()), (T.TRUSTED, 0, TRUE - 86400), "trusted, back as well")

# -- the server lies -----------------------------------------------------------------------------
r = Rig(answer=FLOOR - 3600)
r.ts.boot(FLOOR, None)
mptest.eq(r.ts.query(), False, "an answer below the floor is refused")
mptest.eq((r.ts.state, r.clock.time(), r.ts.refused), (T.UNCERTAIN, FLOOR, 1), "nothing moved")
mptest.eq(r.ev[-1], (56, 0), "time_refused event")
r = Rig(answer=TRUE + 40 * 86400)  # forward by weeks: could be a long outage, can be a lie
r.ts.boot(FLOOR, None)
mptest.eq(r.ts.query(), True, "forward by any amount: an outage can be that long")
mptest.eq(r.ts.lower(), FLOOR, "a lie forward never reaches lower() (expiry, lockouts, the floor)")
r.ts.offer(FLOOR)
mptest.eq(r.clock.time(), TRUE + 40 * 86400, "and a second answer changes nothing")
for bad in (None, "1", 1.5, 1 << 30):
    r = Rig()
    r.ts.boot(FLOOR, None)
    mptest.eq(r.ts.offer(bad), False, "not a time: %r" % (bad,))

# -- no server: a day held at the floor, then the clock's own calendar ------------------------
r = Rig()
r.ts.boot(FLOOR, None)
mptest.eq(r.ts.query(), False, "no answer")
r.clock.advance(86399000)
mptest.eq(r.ts.bill_time(r.clock.time()), FLOOR, "held for up to a day")
r.clock.advance(1000)
mptest.eq(r.ts.bill_time(r.clock.time()), FLOOR + 86400, "then the clock (a lower bound of the truth)")
mptest.eq(r.ts.state, T.ESTIMATED, "estimated")
r.answer = TRUE
mptest.eq(r.ts.query(), True, "SNTP still welcome when estimated")

# -- resets that kept the RTC: the state comes back from the RTC's memory -----------------------
r = Rig(answer=TRUE)
r.ts.boot(FLOOR, None)
r.ts.query()
kept, t = r.mem, r.clock.time()
r2 = Rig(rtc_unix=timebase.to_unix(t), kept=kept)
r2.ts.boot(FLOOR, kept)
mptest.eq((r2.ts.state, r2.ts.lower()), (T.NETWORK, FLOOR), "a watchdog reset does not make SNTP's word trusted")
r3 = Rig(rtc_unix=timebase.to_unix(t), kept=None)
r3.ts.boot(FLOOR, b"")
mptest.eq(r3.ts.state, T.TRUSTED, "an RTC that kept counting, nothing in its memory: trusted")
r4 = Rig(rtc_unix=timebase.to_unix(t), kept=kept)
r4.ts.boot(t + 10, kept)
mptest.eq(r4.ts.state, T.UNCERTAIN, "the RTC below the floor: uncertain whatever the memory says")
r5 = Rig(rtc_unix=timebase.to_unix(FLOOR + 100))
r5.ts.boot(FLOOR, b"pmT1\x02\x00\x00\x00\xff\xff\xff\x7f")
mptest.eq(r5.ts.lower(), FLOOR, "a kept skew never puts lower() below the floor")

# -- ticks: idle past 2^29 ms and across wraps, nothing changes meaning ------------------------
r = Rig()
r.ts.boot(FLOOR, None)
t0 = r.clock.ticks_ms()
for _ in range(7):
    r.clock.advance(1 << 28)  # 7 x 3.1 days: past 2^29 ms and two tick wraps
mptest.check(r.clock.ticks_diff(r.clock.ticks_ms(), t0) < 0, "an old tick stamp's diff is negative by now")
mptest.eq(r.ts.state, T.UNCERTAIN, "still uncertain (no source)")
mptest.eq(r.ts.bill_time(r.clock.time()), FLOOR + (7 << 28) // 1000, "estimated after a day, on the clock")
r.answer = TRUE
mptest.check(r.ts.query(), "SNTP after 22 idle days")

# -- the hot path allocates nothing -----------------------------------------------------------
r = Rig(answer=TRUE)
r.ts.boot(FLOOR, None)
ts = r.ts
c = r.clock


def hot(n):
    while n:
        c.advance(1000)
        ts.bill_time(c.time())
        ts.lower()
        n -= 1


micropython.heap_lock()
hot(1000)
micropython.heap_unlock()
mptest.done()
"""


def test_timesource_state_machine(mpy):
    res = mpy(UNIT, heap="128k", timeout=300)
    assert res.result["checks"] >= 30


APP = r"""
import sys, os, json, mptest, simkit, app, events, timebase
import timesource as T
from billtest import utc, mt
from simkit import sign, TEST_KEY as KEY

FLASH = sys.argv[1]
TARIFF = {"v": 1, "kind": "tou", "scale": 100, "rates": [1000, 3000],
          "days": [[[0, 0], [720, 1]]], "weeks": [[0, 0, 0, 0, 0, 0, 0]]}  # UTC: 0 mornings, 1 afternoons
CFG = {"opening_balance": 10 ** 6, "tariff": TARIFF, "credit": {"max_balance": 10 ** 7}}
BEFORE = utc(2026, 3, 10, 9, 0)  # the first power-up (morning: rate 0)
AFTER = utc(2026, 3, 10, 19, 0)  # the power comes back (evening: rate 1)
Y2000 = 946684800


def board(start, sntp=None):
    return simkit.board(FLASH, config=CFG, seed=3, utc_start=start, sntp=sntp, broker=("127.0.0.1", 9))


def run(m, n):
    simkit.run(m.board, m, n)


def power_cut_then(sntp):
    # A morning online, then the power is off until the evening: the RTC comes back at 2000.
    simkit.fresh_flash(FLASH)
    b = board(BEFORE)
    m = app.Meter(b)
    m.boot()
    run(m, 60)
    m.commit()
    floor = m.time_floor
    b = board(Y2000, dict(sntp, utc=AFTER))
    m = app.Meter(b)
    m.boot()
    return m, floor


# -- SNTP answers: the first connect attempt sets the clock, the evening rate applies ---------------
m, floor = power_cut_then({})
mptest.eq(floor, timebase.from_unix(BEFORE) + 600, "the floor: the last commit of the morning")
mptest.eq((m.timesrc.state, m.clock.time()), (T.UNCERTAIN, floor), "booted at 2000: raised to the floor")
mptest.eq(m.sync.birth()[1].count(b'"tq":0'), 1, "the birth says the clock is uncertain")
run(m, 1)  # the step's sync polls the link: its connect phase asks the time server
mptest.eq(m.board.sntp_queries, 1, "one SNTP query, in the link's connect phase")
mptest.eq(m.timesrc.state, T.NETWORK, "network time")
mptest.check(abs(m.clock.time() - timebase.from_unix(AFTER) - 10) <= 1, "the clock is the evening's")
r0, r1 = m.tariff.rate_wh[0], m.tariff.rate_wh[1]
run(m, 180)
mptest.eq(m.tariff.rate_wh[0], r0, "nothing more at the morning rate")
mptest.check(m.tariff.rate_wh[1] > r1, "the evening's energy at the evening rate")
m.commit()
mptest.check(m.time_floor <= floor + 200 * 10, "the floor moves on the meter's own count, not SNTP's word")
mptest.eq(m.sync.birth()[1].count(b'"tq":2'), 1, "the birth says network time")
# The backend's signed time: trusted, the floor follows.
out = simkit.Replies(m)
now = timebase.to_unix(m.clock.time())
m.on_message(b"cmd", sign(KEY, {"m": "t-0001", "id": 7, "exp": now + 600, "op": "time", "utc": now}))
rep = [r for r in out.replies() if r.get("id") == 7]
mptest.eq(rep[0]["res"] if rep else None, "applied", "time command applied")
mptest.eq((m.timesrc.state, m.time_floor), (T.TRUSTED, timebase.from_unix(now)), "trusted; the floor is the backend's time")
# A trusted clock bounds the expiry: a command valid for 40 days is refused, and the answer says
# what the meter's clock reads (so a backend can sign again in its time).
bal = m.account.balance
m.on_message(b"cmd", sign(KEY, {"m": "t-0001", "id": 9, "exp": now + 40 * 86400, "op": "topup", "amt": 500}))
ans = [r for r in out.replies() if r.get("id") == 9]
mptest.eq([(r["res"], r["t"]) for r in ans], [("exp_far", timebase.to_unix(m.clock.time()))], "exp_far, with the clock")
mptest.eq(m.account.balance, bal, "nothing applied")

# -- no time server: the calendar held at the floor (its rate) ----------------------------------
m, floor = power_cut_then({"down": True})
r0, r1 = m.tariff.rate_wh[0], m.tariff.rate_wh[1]
run(m, 180)
mptest.eq(m.timesrc.state, T.UNCERTAIN, "still uncertain")
mptest.check(m.board.sntp_queries >= 1, "it asked")
mptest.eq(m.tariff.rate_wh[1], r1, "nothing at the evening rate it cannot know")
mptest.check(m.tariff.rate_wh[0] > r0, "priced at the floor's rate")
out = simkit.Replies(m)
m.on_message(b"cmd", sign(KEY, {"m": "t-0001", "id": 9, "exp": AFTER + 40 * 86400, "op": "topup", "amt": 500}))
rep = [r for r in out.replies() if r.get("id") == 9]
mptest.eq(rep[0]["res"] if rep else None, "applied", "an uncertain clock bounds no expiry (it may be far behind)")

# -- a lying server: backwards refused, forward taken for the calendar only ------------------------
m, floor = power_cut_then({"lie_s": -86400})
run(m, 3)
mptest.eq((m.timesrc.state, m.clock.time() - floor), (T.UNCERTAIN, 30), "an answer before the floor is refused")
names = [events.name(m.events.get(s)[0]) for s in range(m.events.oldest_seq(), m.events.seq)]
mptest.check("time_refused" in names, "time_refused event: %r" % names)
m, floor = power_cut_then({"lie_s": 30 * 86400})
run(m, 3)
mptest.eq(m.timesrc.state, T.NETWORK, "forward: taken (an outage can be that long)")
out = simkit.Replies(m)
m.on_message(b"cmd", sign(KEY, {"m": "t-0001", "id": 8, "exp": AFTER + 600, "op": "topup", "amt": 500}))
rep = [r for r in out.replies() if r.get("id") == 8]
mptest.eq(rep[0]["res"] if rep else None, "applied", "a fresh command is not 'expired' by a lie")
m.commit()
mptest.check(m.time_floor <= floor + 40, "the floor does not follow the lie")
mptest.done()
"""


def test_power_cut_reboot_takes_sntp_in_the_connect_phase_and_bills_the_right_rate(mpy, tmp_path):
    import mprun
    res = mpy(APP, tmp_path / "flash.img", heap=mprun.APP_HEAP, timeout=300)
    assert res.result["ok"]
