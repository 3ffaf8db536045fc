# A piezo buzzer on a PWM output, as machine.PWM drives it (freq(), duty_u16()): it records each
# tone it sounded (start tick, length, frequency) in a preallocated ring, so what the customer
# heard can be checked, and driving it never allocates.
from array import array

_N = 64  # tones kept


class BuzzerEmu:
    def __init__(self, clock, freq=2700):
        self._clock = clock
        self._freq = freq
        self._duty = 0
        self._start = 0
        self.log = array("i", bytes(4 * 3 * _N))  # start, ms, freq per tone
        self.count = 0  # tones since power-up (the ring holds the last _N)

    def freq(self, f=None):
        if f is None:
            return self._freq
        self._freq = f

    def duty_u16(self, d=None):
        if d is None:
            return self._duty
        c = self._clock
        if d and not self._duty:
            self._start = c.ticks_ms()
        elif self._duty and not d:
            i = (self.count % _N) * 3
            self.log[i] = self._start
            self.log[i + 1] = c.ticks_diff(c.ticks_ms(), self._start)
            self.log[i + 2] = self._freq
            self.count += 1
        self._duty = d

    def sounding(self):
        return self._duty != 0

    def tones(self):
        """[(start, ms, freq), ...] oldest first (allocates: for tests)."""
        n = self.count if self.count < _N else _N
        first = self.count - n
        out = []
        for j in range(first, self.count):
            i = (j % _N) * 3
            out.append((self.log[i], self.log[i + 1], self.log[i + 2]))
        return out
