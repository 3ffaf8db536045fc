# Load limiter with the fake clock: over-threshold duration, retry, latch after too many trips
# in the window, cancel by customer or backend, power-cut restore, and no allocation per tick.
import micropython
import mptest
import events
import relay as R
import limiter as L
from relay_fixtures import Out, Ring, clock as mkclock, fixed_rand


def rig(**kw):
    ck = mkclock()
    ring = Ring(ck, 64)
    out = Out()
    rc = R.RelayControl(out, ring, rand=fixed_rand(7))
    rc.restore(R.CONNECTED, 0)
    lim = L.Limiter(rc, ck, ring, **kw)
    rc.on_confirm = lim.cancel
    return ck, ring, rc, lim


def run(ck, rc, lim, seconds, p_w, i_ma=0):
    """Ticks of 1 s; demand only flows while the relay is connected."""
    for _ in range(seconds):
        ck.advance(1000)
        on = rc.state == R.CONNECTED
        lim.step(ck.ticks_ms(), p_w if on else 0, i_ma if on else 0)


# Over-threshold duration: 30 s over -> open; a dip restarts the count.
ck, ring, rc, lim = rig(power_w=3000, over_s=30, retry_s=120)
run(ck, rc, lim, 1, 3500)  # first sample over: the count starts here
run(ck, rc, lim, 29, 3500)
mptest.eq(rc.state, R.CONNECTED, "29 s over: still connected")
run(ck, rc, lim, 1, 2900)
run(ck, rc, lim, 29, 3500)
mptest.eq(rc.state, R.CONNECTED, "a dip restarts the over-threshold timer")
run(ck, rc, lim, 2, 3500)
mptest.eq((rc.state, rc.reasons), (R.DISCONNECTED, R.LOAD), "30 s over: open for load")
mptest.eq(lim.state, L.TRIPPED, "tripped")
mptest.check(events.LIMIT_TRIP in ring.codes(), "trip event")
# Retry after 120 s, with no randomised delay for a single home's retry.
run(ck, rc, lim, 119, 3500)
mptest.eq(rc.state, R.DISCONNECTED, "still open at 119 s")
run(ck, rc, lim, 1, 3500)
mptest.eq(rc.state, R.CONNECTED, "retry at 120 s")
mptest.eq(rc.reasons, 0, "load reason lifted")
mptest.check(events.LIMIT_RETRY in ring.codes(), "retry event")

# Current threshold alone trips too.
ck, ring, rc, lim = rig(current_ma=60000, over_s=5)
run(ck, rc, lim, 7, 0, 61000)
mptest.eq(rc.state, R.DISCONNECTED, "over-current trips")

# 4 trips within 30 min latch: no retry, stays open until cleared.
ck, ring, rc, lim = rig(power_w=3000, over_s=30, retry_s=120, max_trips=4, window_s=1800)
for k in range(3):
    run(ck, rc, lim, 31, 3500)
    mptest.eq(lim.state, L.TRIPPED, "trip %d" % (k + 1))
    run(ck, rc, lim, 120, 3500)
run(ck, rc, lim, 31, 3500)
mptest.eq(lim.state, L.LATCHED, "fourth trip in the window latches")
run(ck, rc, lim, 3600, 3500)
mptest.eq(rc.state, R.DISCONNECTED, "latched: still open an hour later")
mptest.eq(lim.trips_total, 4, "lifetime trips")
# The customer's local confirm clears the latch and closes at once.
mptest.eq(rc.confirm_local(), True, "customer clears the latch")
mptest.eq((rc.state, lim.state), (R.CONNECTED, L.IDLE), "connected, limiter idle")
run(ck, rc, lim, 31, 3500)
mptest.eq(lim.state, L.TRIPPED, "after a clear the count starts again (trip, not latch)")

# Backend reset of a latch: the relay waits for the customer (ready for reconnection).
ck, ring, rc, lim = rig(power_w=3000, over_s=1, retry_s=10, max_trips=2, window_s=600)
run(ck, rc, lim, 2, 5000)
run(ck, rc, lim, 10, 5000)
run(ck, rc, lim, 2, 5000)
mptest.eq(lim.state, L.LATCHED, "latched after 2 quick trips")
lim.cancel()
mptest.eq(rc.state, R.READY, "backend reset of a latch -> ready for reconnection")

# Trips spread wider than the window never latch.
ck, ring, rc, lim = rig(power_w=3000, over_s=1, retry_s=10, max_trips=2, window_s=600)
run(ck, rc, lim, 2, 5000)
run(ck, rc, lim, 700, 100)
run(ck, rc, lim, 2, 5000)
mptest.eq(lim.state, L.TRIPPED, "second trip outside the window: no latch")

# The customer can cancel a retry cycle: the relay closes now, the cycle stops.
ck, ring, rc, lim = rig(power_w=3000, over_s=1, retry_s=120)
run(ck, rc, lim, 2, 5000)
mptest.eq(lim.state, L.TRIPPED, "tripped")
rc.confirm_local()
mptest.eq((rc.state, lim.state), (R.CONNECTED, L.IDLE), "customer cancelled the retry cycle")
mptest.check(events.LIMIT_CANCELLED in ring.codes(), "cancel event")
# The backend can cancel it too (the retry will not run behind a remote disconnect).
ck, ring, rc, lim = rig(power_w=3000, over_s=1, retry_s=120)
run(ck, rc, lim, 2, 5000)
rc.remote_disconnect()
lim.cancel()
run(ck, rc, lim, 300, 5000)
mptest.eq((rc.state, rc.reasons, lim.state), (R.DISCONNECTED, R.REMOTE, L.IDLE), "remote hold outlives the cycle")

# Restore after a power cut: a pending retry restarts its delay; a latch stays.
ck, ring, rc, lim = rig(power_w=3000, over_s=1, retry_s=120)
rc.restore(R.DISCONNECTED, R.LOAD, 0)
lim.restore(False, 9)
mptest.eq((lim.state, lim.trips_total), (L.TRIPPED, 9), "restored tripped")
run(ck, rc, lim, 120, 0)
mptest.eq(rc.state, R.CONNECTED, "retry runs after boot")
ck, ring, rc, lim = rig(power_w=3000)
rc.restore(R.DISCONNECTED, R.LOAD, 1)
lim.restore(True, 4)
run(ck, rc, lim, 3600, 0)
mptest.eq(rc.state, R.DISCONNECTED, "latch survives a power cut")

# No allocation per tick: watching, over, trip, retry.
ck, ring, rc, lim = rig(power_w=3000, over_s=5, retry_s=10)
ok = locked_ok = None
micropython.heap_lock()
try:
    for n in range(200):
        ck.advance(1000)
        on = rc.state == R.CONNECTED
        lim.step(ck.ticks_ms(), (3500 if n % 60 < 40 else 100) if on else 0, 0)
    ok = True
except MemoryError:
    ok = False
micropython.heap_unlock()
mptest.check(ok, "limiter step allocated under heap_lock")
mptest.check(lim.trips_total >= 2 and lim.retries >= 2, "the locked run tripped and retried")

# Days later: trips older than the window never count again, however old they get. On the
# ESP32 ticks wrap at 2^30 ms and ticks_diff of a stamp over 2^29 ms (6.2 days) old is negative:
# an old trip kept as a stamp would look recent, and one overload a week later would latch.
for idle_days in (7, 9, 13, 20):
    ck, ring, rc, lim = rig(power_w=3000, over_s=30, retry_s=120, max_trips=4, window_s=1800)
    for _ in range(3):
        run(ck, rc, lim, 31, 3500)  # a trip
        run(ck, rc, lim, 121, 0)  # the retry closes the relay
    mptest.eq((lim.state, lim.trips_total), (L.IDLE, 3), "three trips, not latched")
    t0 = ck.ticks_ms()
    wraps = 0
    last = t0
    for _ in range(idle_days * 86400 // 5):  # the loop keeps ticking (5 s apart here), no load
        ck.advance(5000)
        t = ck.ticks_ms()
        wraps += t < last
        last = t
        lim.step(t, 200, 0)
    run(ck, rc, lim, 31, 3500)
    mptest.eq(lim.state, L.TRIPPED, "one overload %d days later trips and retries (not latched)" % idle_days)
    r = ring.ring
    trip = [r.get(q)[1] for q in range(r.oldest_seq(), r.seq) if r.get(q)[0] == events.LIMIT_TRIP][-1]
    mptest.eq(trip, 1, "it is the only trip in the window")
    if idle_days == 20:
        mptest.check(wraps >= 1, "the idle period crossed a tick wrap")

mptest.raises(ValueError, L.Limiter, rc, ck, ring, 100, 0, 30, 120, 4, 7 * 86400)  # window past 2^29 ms
mptest.raises(ValueError, L.Limiter, rc, ck, ring, -1)
mptest.raises(ValueError, L.Limiter, rc, ck, ring, 100, 0, 30, 0)
mptest.done()
