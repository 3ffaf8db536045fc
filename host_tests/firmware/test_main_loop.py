"""main.loop in real-time mode (the device's path) on the sim board under MicroPython: one step per
tick, the link serviced while waiting, and a failing step counted without stopping the loop."""
import mprun


LOOP = r"""
import mptest, simkit, main, app
b = simkit.board(simkit.fresh_flash("/tmp/pm-test-loop.img"), config={"opening_balance": 1000, "tick_ms": 1000})
waits = [0, 0]  # how many waits, the longest (a list of them all would not fit the heap)

def wait_ms(ms):  # stands in for the idle on the MQTT socket: time passes for clock and load
    waits[0] += 1
    waits[1] = max(waits[1], ms)
    b.emu.set_load(3600 if b.relay.closed else 0)
    b.emu.advance(ms)
    b.clock.advance(ms)

m = main.start(b)
mptest.check(app.current is m, "the running meter is published for the REPL")
while not b.relay.closed:  # the randomised reconnect delay after power-up
    main.loop(m, 1, wait_ms)
wh0 = m.metering.imp_wh
n = main.loop(m, 600, wait_ms)
mptest.eq(n, 600, "600 ticks")
mptest.eq(m.step_errors, 0, "no step failed")
# 3600 W = 1 Wh per second: 600 one-second ticks read 600 Wh (+/- the second in flight).
mptest.check(abs(m.metering.imp_wh - wh0 - 600) <= 1, "one step per tick: %d Wh" % (m.metering.imp_wh - wh0))
mptest.check(waits[0] >= 600 * 10 and 0 < waits[1] <= 100,
             "the link is serviced at least every 100 ms while waiting: %r" % waits)
# A step that raises is counted and the loop goes on; the chip keeps the energy for later.
orig = m.metering.poll
def broken(dt):
    raise ValueError("injected")
m.metering.poll = broken
main.loop(m, 5, wait_ms)
mptest.eq(m.step_errors, 5, "failing steps counted")
mptest.check(isinstance(m.last_error, ValueError), "last error kept")
m.metering.poll = orig
wh1 = m.metering.imp_wh
main.loop(m, 10, wait_ms)
mptest.eq(m.step_errors, 5, "loop recovered")
mptest.check(abs(m.metering.imp_wh - wh1 - 15) <= 1, "the failed steps' energy is read late, not lost")
mptest.done()
"""


def test_loop_steps_once_per_tick_services_link_and_survives_errors(mpy):
    r = mpy(LOOP, heap=mprun.APP_HEAP)
    assert r.result["ok"], r.result["failures"]
