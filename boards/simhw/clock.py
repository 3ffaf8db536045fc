# Clocks behind the same small interface: ticks_ms / ticks_diff / ticks_add / time.
import time
from micropython import const
import timebase

_PERIOD = const(1 << 30)  # the ESP32's ticks_ms wraps here; the simulated clock does too
_HALF = const(1 << 29)
_MASK = const((1 << 30) - 1)


class SimClock:
    """Simulated time: advance() moves it; nothing else does. Starts just before a tick
    wrap so every simulation crosses one. Started from a Unix time; time() gives meter
    seconds (timebase.py), like the real boards' clocks."""

    def __init__(self, utc_start, ticks_start=_PERIOD - 60000):
        self._ms = 0  # simulated milliseconds since start
        self._t0 = ticks_start
        self._utc0 = timebase.from_unix(utc_start)  # meter seconds at start

    def advance(self, ms):
        self._ms += ms

    def jump(self, seconds):
        """Wall-clock jump (e.g. an NTP correction); monotonic ticks are unaffected."""
        self._utc0 += seconds

    @property
    def elapsed_ms(self):
        return self._ms

    def ticks_ms(self):
        return (self._t0 + self._ms) & _MASK

    @staticmethod
    def ticks_diff(a, b):
        return ((a - b + _HALF) & _MASK) - _HALF

    @staticmethod
    def ticks_add(a, d):
        return (a + d) & _MASK

    def time(self):
        return self._utc0 + self._ms // 1000


class RealClock:
    """Wall time from the host (or the board's RTC), for network timing."""

    ticks_ms = staticmethod(time.ticks_ms)
    ticks_diff = staticmethod(time.ticks_diff)
    ticks_add = staticmethod(time.ticks_add)

    def time(self):
        return timebase.from_unix(int(time.time()))
