# Load limiter (DLMS IC 71 in spirit, CLOU/STS timing by default): active power or RMS current
# above its threshold for `over_s` opens the relay with reason LOAD; after `retry_s` the reason
# clears and the contacts close again by themselves. `max_trips` trips within `window_s` latch:
# the relay then stays open until the customer confirms locally or the backend resets the
# limiter. The customer (button/REPL) or the backend can always cancel a retry cycle.
# step() runs every tick and allocates nothing.
from micropython import const
from array import array
import events
import relay as relay_mod

IDLE = const(0)  # watching
TRIPPED = const(1)  # open, retry pending
LATCHED = const(2)  # open until cleared
STATE_NAMES = ("idle", "tripped", "latched")
_MAX_S = const(536870)  # 2^29 ms in seconds


class Limiter:
    def __init__(self, relay, clock, emit, power_w=0, current_ma=0, over_s=30, retry_s=120,
                 max_trips=4, window_s=1800):
        # Intervals are compared on the tick clock: each must stay under 2^29 ms (6.2 days).
        if (power_w < 0 or current_ma < 0 or not 0 <= over_s < _MAX_S or not 1 <= retry_s < _MAX_S
                or max_trips < 1 or not 1 <= window_s < _MAX_S):
            raise ValueError("limiter config")
        self._relay = relay
        self._clock = clock
        self._emit = emit
        self.power_w = power_w  # 0 = no power threshold
        self.current_ma = current_ma  # 0 = no current threshold
        self._over_ms = over_s * 1000
        self._retry_ms = retry_s * 1000
        self._window_ms = window_s * 1000
        self._max = max_trips
        self._trip_at = array("i", bytes(4 * max_trips))  # trips inside the window (ticks), oldest first
        self._n = 0  # valid entries
        self.state = IDLE
        self._over = False
        self._since = 0
        self._tripped_at = 0
        self.trips_total = 0  # lifetime, persisted
        self.retries = 0
        self.latches = 0
        self.changed = False  # durable state changed (latch, counters); the app commits

    def latched(self):
        return self.state == LATCHED

    def enabled(self):
        return self.power_w > 0 or self.current_ma > 0

    def retry_in_s(self, now):
        """Seconds until a tripped limiter lets the supply back (the customer display), else 0."""
        if self.state != TRIPPED:
            return 0
        left = self._retry_ms - self._clock.ticks_diff(now, self._tripped_at)
        return (left + 999) // 1000 if left > 0 else 0

    # -- persistence ------------------------------------------------------------
    def restore(self, latched, trips_total):
        """After boot: a latch persists; a pending retry restarts its delay from now."""
        self.trips_total = trips_total
        now = self._clock.ticks_ms()
        if latched:
            self.state = LATCHED
        elif self._relay.reasons & relay_mod.LOAD:
            self.state = TRIPPED
            self._tripped_at = now
        else:
            self.state = IDLE

    # -- per tick -------------------------------------------------------------------
    def step(self, now, p_w, i_ma):
        ck = self._clock
        if self._n:
            self._expire(now)
        st = self.state
        if st == TRIPPED:
            if ck.ticks_diff(now, self._tripped_at) >= self._retry_ms:
                self.state = IDLE
                self.retries += 1
                self._emit(events.LIMIT_RETRY, self.retries)
                self._relay.clear_reason(relay_mod.LOAD)
            return
        if st == LATCHED:
            return
        over = (self.power_w > 0 and p_w > self.power_w) or (self.current_ma > 0 and i_ma > self.current_ma)
        if not over:
            self._over = False
            return
        if not self._over:
            self._over = True
            self._since = now
            return
        if ck.ticks_diff(now, self._since) >= self._over_ms:
            self._trip(now)

    def _expire(self, now):
        """Drop trips that left the window. Done every tick, so no stamp is kept long enough
        (2^29 ms, 6.2 days) for ticks_diff to wrap negative and make an old trip look recent."""
        ck = self._clock
        t = self._trip_at
        n = self._n
        i = 0
        while i < n:
            d = ck.ticks_diff(now, t[i])
            if 0 <= d < self._window_ms:
                break  # oldest first: the rest are younger
            i += 1
        if i:
            j = 0
            while i + j < n:
                t[j] = t[i + j]
                j += 1
            self._n = j

    def _trip(self, now):
        self._over = False
        t = self._trip_at
        if self._n == self._max:  # full: the oldest makes room
            i = 1
            while i < self._n:
                t[i - 1] = t[i]
                i += 1
            self._n -= 1
        t[self._n] = now
        self._n += 1
        self.trips_total += 1
        self.changed = True
        self._expire(now)
        recent = self._n
        r = self._relay
        if recent >= self._max:
            self.state = LATCHED
            self.latches += 1
            self._emit(events.LIMIT_LATCHED, recent)
            r.require_confirm()
        else:
            self.state = TRIPPED
            self._tripped_at = now
            self._emit(events.LIMIT_TRIP, recent)
        r.set_reason(relay_mod.LOAD)

    # -- commands ---------------------------------------------------------------------
    def cancel(self):
        """Customer (local confirm) or backend: stop a retry cycle or undo a latch. The LOAD
        reason clears; whether the contacts close now is the relay control's decision."""
        if self.state == IDLE and not self._relay.reasons & relay_mod.LOAD:
            return False
        self.state = IDLE
        self._over = False
        self._n = 0
        self.changed = True
        self._emit(events.LIMIT_CANCELLED, 0)
        self._relay.clear_reason(relay_mod.LOAD)
        return True
