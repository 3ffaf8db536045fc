# Clocks behind the same small interface: ticks_ms / ticks_diff / ticks_add / time.
import time
from micropython import const
import timebase

_PERIOD = const(1 << 30)  # the ESP32's ticks_ms wraps here; the simulated clock does too
_HALF = const(1 << 29)
_MASK = const((1 << 30) - 1)


# Tick arithmetic as the ESP32 port does it in C, written so that no intermediate value leaves
# the small-int range of a 32-bit port (a - b + 2^29 or a + d can pass 2^30 and allocate).
def ticks_diff(a, b):
    d = (a - b) & _MASK
    if d >= _HALF:
        d = d - _MASK - 1
    return d


def ticks_add(a, d):
    if d >= 0:
        r = a - _MASK + d - 1  # a + d - 2^30
        if r < 0:
            r = r + _MASK + 1
        return r
    r = a + d
    if r < 0:
        r = r + _MASK + 1
    return r


class SimClock:
    """Simulated time: advance() moves it; nothing else does. Starts just before a tick
    wrap so every simulation crosses one. Started from a Unix time; time() gives meter
    seconds (timebase.py), like the real boards' clocks. Every value it keeps stays a small
    int on a 32-bit port for any run length: the ticks wrap, and elapsed time is kept as
    seconds plus the milliseconds of the current second."""

    def __init__(self, utc_start, ticks_start=_PERIOD - 60000):
        self._ticks = ticks_start & _MASK
        self._s = 0  # whole simulated seconds since start
        self._sub = 0  # and milliseconds into the current one
        self._utc0 = timebase.from_unix(utc_start)  # meter seconds at start

    def advance(self, ms):
        self._ticks = ticks_add(self._ticks, ms)
        sub = self._sub + ms
        if sub >= 1000:
            self._s += sub // 1000
            sub %= 1000
        self._sub = sub

    def jump(self, seconds):
        """Wall-clock jump (e.g. an NTP correction); monotonic ticks are unaffected."""
        self._utc0 += seconds

    @property
    def elapsed_ms(self):
        """Milliseconds since start (a big int on 32-bit past 12 days: for tests, not the hot path)."""
        return self._s * 1000 + self._sub

    @property
    def elapsed_s(self):
        return self._s

    def ticks_ms(self):
        return self._ticks

    ticks_diff = staticmethod(ticks_diff)
    ticks_add = staticmethod(ticks_add)

    def time(self):
        return self._utc0 + self._s


class RealClock:
    """Wall time from the host (or the board's RTC), for network timing."""

    ticks_ms = staticmethod(time.ticks_ms)
    ticks_diff = staticmethod(time.ticks_diff)
    ticks_add = staticmethod(time.ticks_add)

    def time(self):
        return timebase.from_unix(int(time.time()))
