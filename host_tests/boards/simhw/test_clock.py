"""The simulated clock keeps the ESP32's tick arithmetic (wrap at 2^30) and stays inside the
small-int range of a 32-bit port however long a simulation runs: no step of the clock
allocates, across five wraps and two months of simulated time."""

CASES = r"""
import micropython, mptest
from simhw.clock import SimClock, ticks_diff, ticks_add
from billtest import utc

MASK = (1 << 30) - 1
HALF = 1 << 29


def ref_diff(a, b):  # the definition (with big ints allowed)
    return ((a - b + HALF) & MASK) - HALF


def ref_add(a, d):
    return (a + d) & MASK


edge = (0, 1, HALF - 1, HALF, HALF + 1, MASK - 1, MASK)
bad = 0
for a in edge:
    for b in edge:
        bad += ticks_diff(a, b) != ref_diff(a, b)
    for d in (0, 1, -1, HALF - 1, -HALF, 60000, -60000):
        bad += ticks_add(a, d) != ref_add(a, d)
x = 12345
for _ in range(3000):  # an LCG walk over the whole tick range
    x = (x * 1103515245 + 12345) & MASK
    y = (x * 69069 + 1) & MASK
    d = (y & (HALF - 1)) - (HALF >> 1)
    bad += ticks_diff(x, y) != ref_diff(x, y)
    bad += ticks_add(x, d) != ref_add(x, d)
mptest.eq(bad, 0, "tick arithmetic differs from the definition")

c = SimClock(utc(2026, 1, 1))
t0 = c.ticks_ms()
s0 = c.time()


def run(c, t0, n):
    wraps = 0
    last = t0
    while n:
        n -= 1
        c.advance(5000)
        t = c.ticks_ms()
        if t < last:
            wraps += 1
        last = t
        ticks_diff(t, t0)
        c.time()
    return wraps


micropython.heap_lock()
wraps = run(c, t0, 1000000)  # 10^6 x 5 s = 57.9 days: five tick wraps (2^30 ms = 12.4 days)
micropython.heap_unlock()
mptest.eq(wraps, 5, "tick wraps in 57.9 days")
mptest.eq(c.time() - s0, 5000000, "seconds counted")
mptest.eq(c.elapsed_s, 5000000, "elapsed seconds")
mptest.eq(ticks_diff(c.ticks_ms(), t0), ref_diff(c.ticks_ms(), t0), "diff across wraps")
mptest.done(wraps=wraps)
"""


def test_clock_is_32bit_clean_and_wraps_like_the_esp32(mpy):
    res = mpy(CASES, timeout=300)
    assert res.result["wraps"] == 5
