"""The device loop (firmware/runner.py) on the sim board under MicroPython."""

LOOP = r"""
import mptest, simkit, runner, app
b = simkit.board(simkit.fresh_flash("/tmp/pm-test-runner.img"), config={"opening_balance": 1000, "tick_ms": 1000})

def sleep_ms(ms):  # simulated sleep: time passes for the clock and the emulated load
    b.emu.set_load(3600)
    b.emu.advance(ms)
    b.clock.advance(ms)

r = runner.Runner(b, sleep_ms)
mptest.check(app.current is r.meter, "the running meter is published for the REPL")
r.start()
r.run(ticks=600)
mptest.eq(r.step_errors, 0, "no step failed")
# 3600 W = 1 Wh per second. The first step runs before any time passed and the energy of the
# last second is read by the next step, so 600 steps have read 599 s of load.
mptest.eq(r.meter.metering.imp_wh, 599, "one step per tick")
# A step that raises is counted and the loop goes on.
orig = r.meter.metering.poll
def broken(dt):
    raise ValueError("injected")
r.meter.metering.poll = broken
r.run(ticks=5)
mptest.eq(r.step_errors, 5, "failing steps counted")
mptest.check(isinstance(r.last_error, ValueError), "last error kept")
r.meter.metering.poll = orig
r.run(ticks=10)
mptest.eq(r.step_errors, 5, "loop recovered")
mptest.eq(r.meter.metering.imp_wh, 614, "metering resumed: the failed steps' energy is read late, not lost")
mptest.done()
"""


def test_runner_steps_once_per_tick_and_survives_errors(mpy):
    r = mpy(LOOP, heap="384k")
    assert r.result["ok"], r.result["failures"]


def test_load_board_from_name(mpy):
    r = mpy("import runner, json\nm = runner.load_board('sim-atm90e26')\nprint(json.dumps({'name': m.NAME}))\n",
            heap="384k")
    assert r.result == {"name": "sim-atm90e26"}
