"""firmware/main.py: board selection, the loop, Ctrl-C to the REPL, saved settings."""
import mprun


SCRIPT = r"""
import sys, os, json, mptest, simkit, main, app
flash = sys.argv[1]

class Interrupting:
    # The sim board, but Ctrl-C arrives during the 5th tick.
    def __init__(self, b):
        self.b = b
        self.n = 0
    def __getattr__(self, k):
        return getattr(self.b, k)
    def advance(self, ms):
        self.n += 1
        if self.n == 5:
            raise KeyboardInterrupt
        self.b.advance(ms)

mptest.raises(ImportError, main.load_board, "no-such-board", {})
mod_board = main.load_board("sim-atm90e26", {"meter_id": "x", "flash": flash + "2"})
mptest.check(mod_board.config["tick_ms"] > 0, "board config present")
mptest.eq(mod_board.meter_id, "x", "load_board builds the named board")
os.umount("/flash")
b = simkit.board(flash, config={"opening_balance": 500})
m = main.start(Interrupting(b))
mptest.check(app.current is m, "app.current is the live meter")
n = main.loop(m)
mptest.eq(n, 4, "loop stops at Ctrl-C after 4 whole ticks")
t = m.clock.time()
mptest.eq(main.loop(m, 3), 3, "loop resumes for a bounded number of ticks")
mptest.eq(m.clock.time() - t, 3, "each tick is tick_ms of board time")
with open("/flash/settings.json", "w") as f:
    f.write('{"commit_wh": 7, "telemetry_s": 300}')
mptest.eq(main.apply_settings(b), 2, "saved settings are applied")
mptest.eq(b.config["commit_wh"], 7, "commit setting")
mptest.eq(b.config["telemetry_s"], 300, "telemetry setting")
mptest.eq(b.config["credit"]["low2"], 50, "credit rules untouched (they live in credit.json)")
try:
    main.board_name()
    mptest.check(False, "board_name without /board.txt or board_config must fail")
except RuntimeError as e:
    mptest.check("board.txt" in str(e), "clear message")
mptest.done()
"""


def test_main_loop_interrupt_resume_and_settings(mpy, tmp_path):
    r = mpy(SCRIPT, str(tmp_path / "f.img"), heap=mprun.APP_HEAP)
    assert r.result["ok"], r.result
    assert "meter loop paused" in r.stdout
    assert "from repl import *" in r.stdout


REALTIME = r"""
import sys, mptest, simkit, main, app, time
from simhw.clock import RealClock

class IntClock(RealClock):
    # Whole UTC seconds, as the ESP32 board's clock gives (the unix port's time.time() is a float).
    def time(self):
        return int(time.time())

class RealBoard:
    # The sim board without advance(): main.loop sleeps to real tick deadlines, as on the ESP32.
    # Ctrl-C arrives inside the 3rd watchdog feed (the end of the 3rd step).
    def __init__(self, b):
        self.b = b
        self.feeds = 0
        self.clock = IntClock()  # real time, as on the device
    def __getattr__(self, k):
        if k == "advance":
            raise AttributeError(k)
        return getattr(self.b, k)
    def feed_watchdog(self):
        self.feeds += 1
        if self.feeds == 3:
            raise KeyboardInterrupt

b = simkit.board(sys.argv[1], config={"opening_balance": 500, "tick_ms": 20})
rb = RealBoard(b)
m = main.start(rb)
t0 = time.ticks_ms()
n = main.loop(m)
took = time.ticks_diff(time.ticks_ms(), t0)
mptest.eq(n, 2, "two whole steps before Ctrl-C")
mptest.check(took >= 40, "the loop waited for real tick deadlines (%d ms)" % took)
import machine
t = app.console_timer
mptest.check(t is not None and t.period == main._HOLD_PERIOD_MS, "a timer holds the watchdog while paused")
mptest.check(t.n != 0, "not hardware timer 0: the boards sample the pulse inputs on it")
periods = main.HOLD_S * 1000 // main._HOLD_PERIOD_MS
mptest.eq(app.console_hold[0], periods, "hold starts full")
before = rb.feeds
for _ in range(periods - 1):
    t.fire()
mptest.eq(rb.feeds - before, periods - 1, "each period feeds the watchdog")
main.renew_hold()  # what every REPL command does
for _ in range(periods + 5):
    t.fire()
mptest.eq(rb.feeds - before, 2 * periods - 1, "feeding stops once the hold runs out: the watchdog reboots the meter")
main.loop(m, 1)
mptest.check(t.stopped and app.console_timer is None and app.console_hold is None, "resume releases the hold")
mptest.done()
"""

FAKE_MACHINE = """
class Timer:
    def __init__(self, n):
        self.n = n
        self.stopped = False
    def init(self, period, callback):
        self.period = period
        self.cb = callback
    def fire(self):
        self.cb(self)
    def deinit(self):
        self.stopped = True
"""


def test_paused_loop_holds_the_watchdog_for_a_bounded_time(mpy, tmp_path):
    (tmp_path / "machine.py").write_text(FAKE_MACHINE)
    import mprun
    r = mpy(REALTIME, str(tmp_path / "f.img"), heap=mprun.APP_HEAP,
            env={"MICROPYPATH": str(tmp_path) + ":" + mprun.micropypath()})
    assert r.result["ok"], r.result
    assert "reboots into metering 300 s after the last REPL command" in r.stdout


# A technician pauses the loop at full load for the whole REPL hold on each chip. The hold's timer
# keeps stepping the meter, so no energy register overflows: the meter's energy follows the chip's
# truth. (A hold that only fed the watchdog lost ~410 Wh on the ATM90E32 and ~417 Wh on the
# ADE7953 in 300 s at 5 kW: their registers fill in 18 s and 46 s at the boards' maximum power.)
HOLD_AT_FULL_LOAD = r"""
import sys, mptest, simkit, main, app, repl
name, real = sys.argv[2], __import__(sys.argv[3])
prot = dict(real.CONFIG["protection"])
prot["limiter"] = {"current_ma": 1000000}  # full load on every phase is the point, not a trip
b = simkit.board(sys.argv[1], name=name, config={"opening_balance": 10000000, "protection": prot})
p = real.CONFIG["max_power_w"] * 95 // 100 // len(b.loads)
for h in b.loads:
    h.power_w = lambda utc, dt_s, p=p: p
m = main.start(b)
for _ in range(900):  # the relay closes after its start-up delay
    b.advance(1000)
    m.step()
    if b.relay.closed and m.metering.imp_wh:
        break
mptest.check(b.relay.closed, "relay closed at full load")
period = main.hold_period_ms(m)
mptest.check(3 * period <= m.metering.max_poll_ms, "%s: hold period %d within a third of %d ms" % (
    name, period, m.metering.max_poll_ms))
mptest.check(main.hold_watchdog(m), "the hold starts")
t = app.console_timer
mptest.eq(t.n, main._HOLD_TIMER, "on the hold's own hardware timer")
full = app.console_hold[1]
mptest.eq(full * period, main.HOLD_S * 1000, "the hold lasts HOLD_S")
e0 = m.metering.imp_wh
for i in range(full):
    b.advance(period)
    t.fire()
    if i == full // 2:
        repl.status()  # a REPL command in the middle renews the hold
held_s = full * period // 1000
main.release_watchdog()
b.advance(1000)
m.step()
truth_wh = b.emu.truth_mj // 3600000
mptest.check(m.metering.imp_wh - e0 >= (p * len(b.loads) * held_s) // 3600 * 99 // 100,
             "%s: %d Wh metered over a %d s hold at %d W" % (name, m.metering.imp_wh - e0, held_s, p * len(b.loads)))
mptest.check(truth_wh - 2 <= m.metering.imp_wh <= truth_wh, "%s: meter %d Wh, truth %d Wh" % (
    name, m.metering.imp_wh, truth_wh))
mptest.eq(m.metering.rejected, 0, "no read rejected as implausible")
mptest.eq(m.step_errors, 0, "no step failed")
mptest.check(t.stopped and app.console_hold is None, "resume releases the hold")
mptest.done(period=period, metered=m.metering.imp_wh - e0)
"""


import pytest  # noqa: E402


@pytest.mark.parametrize("name,real", [("sim-atm90e26", "esp32_atm90e26"), ("sim-atm90e32", "esp32_atm90e32"),
                                       ("sim-ade7953", "esp32_ade7953")])
def test_repl_hold_keeps_metering_at_full_load(mpy, tmp_path, name, real):
    (tmp_path / "machine.py").write_text(FAKE_MACHINE)
    r = mpy(HOLD_AT_FULL_LOAD, str(tmp_path / "f.img"), name, real, heap=mprun.APP_HEAP, timeout=180,
            env={"MICROPYPATH": str(tmp_path) + ":" + mprun.micropypath()})
    assert r.result["ok"], r.result
