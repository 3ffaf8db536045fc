# Shared fakes for the relay and protection tests (MicroPython side).
from simhw.clock import SimClock
import events


class Out:
    """Records what the relay control asks of its driver."""

    def __init__(self):
        self.closed = None
        self.delay_ms = None
        self.calls = 0

    def command(self, closed, delay_ms=0):
        self.closed = closed
        self.delay_ms = delay_ms
        self.calls += 1

    def power_up(self, closed, delay_ms=0):
        self.command(closed, delay_ms)


class Log:
    """emit() target that keeps (code, arg) pairs."""

    def __init__(self):
        self.items = []

    def __call__(self, code, arg):
        self.items.append((code, arg))

    def codes(self):
        return [c for c, _ in self.items]

    def last(self, code):
        for c, a in reversed(self.items):
            if c == code:
                return a
        return None

    def count(self, code):
        return sum(1 for c, _ in self.items if c == code)

    def clear(self):
        self.items = []


class Ring:
    """emit() into a preallocated EventRing (for heap-locked runs)."""

    def __init__(self, clock, n=64):
        self.ring = events.EventRing(n)
        self._clock = clock

    def __call__(self, code, arg):
        self.ring.raise_(code, arg, self._clock.time())

    def codes(self):
        r = self.ring
        out = []
        for s in range(r.oldest_seq(), r.seq):
            out.append(r.get(s)[0])
        return out


class FakeMetering:
    def __init__(self):
        self.ok = True
        self.v_cv = 23000
        self.i_ma = 0
        self.p_w = 0


def clock():
    return SimClock(1767225600)


def fixed_rand(value):
    return lambda n: value % n
