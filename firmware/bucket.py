# Token bucket on the tick clock: `burst` at once, one more every `refill_ms`.
# tick(now) runs every loop step and keeps the bucket's stamp younger than refill_ms (a full
# bucket keeps no history). A stamp left alone for 2^29 ms (6.2 days) would make ticks_diff
# negative on the ESP32, and a lazily refilled bucket would then stay empty for days.
# Allocates nothing.
from micropython import const

_HALF = const(1 << 29)


class TokenBucket:
    def __init__(self, clock, burst, refill_ms):
        if burst < 1 or not 0 < refill_ms < _HALF:
            raise ValueError("token bucket: burst >= 1, 0 < refill < 2^29 ms")
        self._clock = clock
        self.burst = burst
        self._refill_ms = refill_ms
        self.tokens = burst
        self._since = clock.ticks_ms()
        self.refused = 0

    def tick(self, now):
        if self.tokens >= self.burst:
            self._since = now
            return
        ck = self._clock
        d = ck.ticks_diff(now, self._since)
        if d < 0:  # not ticked for over 2^29 ms (never in the loop): as good as refilled
            self.tokens = self.burst
            self._since = now
            return
        while d >= self._refill_ms and self.tokens < self.burst:
            self.tokens += 1
            d -= self._refill_ms
            self._since = ck.ticks_add(self._since, self._refill_ms)
        if self.tokens >= self.burst:
            self._since = now

    def take(self, now):
        """Spend a token if there is one (True); otherwise count the refusal (False)."""
        self.tick(now)
        if self.tokens:
            self.tokens -= 1
            return True
        self.refused += 1
        return False
