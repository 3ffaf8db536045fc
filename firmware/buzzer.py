# The buzzer: a piezo on a PWM output, playing short patterns without blocking the loop.
# A pattern is bytes: the tone in 100 Hz, then tone and pause lengths in turn, in 10 ms; poll()
# from the main loop moves it on. Nothing allocates; a new pattern replaces the one playing.
from micropython import const

KEY = b"\x1b\x03"  # 2.7 kHz, 30 ms: a key was taken
ACCEPT = b"\x1b\x08\x06\x14"  # two beeps, the second long: a token was accepted
ERROR = b"\x0c\x0f\x0a\x0f\x0a\x1e"  # 1.2 kHz, three: refused, or a key that does nothing now
LOW_1 = b"\x1b\x14\x14\x14"  # two 200 ms beeps: credit below the first warning level
LOW_2 = b"\x1b\x14\x0f\x14\x0f\x14\x0f\x3c"  # three and a long one: below the second level
_DUTY = const(32768)  # half duty: the loudest square wave


class Buzzer:
    def __init__(self, pwm, clock):
        self._pwm = pwm
        self._diff = clock.ticks_diff
        self._add = clock.ticks_add
        self._pat = None
        self._i = 0  # index of the segment sounding (odd: a tone, even: a pause)
        self._at = 0  # when it started (ticks)
        self.played = 0
        pwm.duty_u16(0)

    def play(self, pattern, now):
        self._pat = pattern
        self._i = 1
        self._at = now
        self.played += 1
        self._pwm.freq(pattern[0] * 100)
        self._pwm.duty_u16(_DUTY)

    def playing(self):
        return self._pat is not None

    def poll(self, now):
        p = self._pat
        if p is None:
            return
        i = self._i
        while self._diff(now, self._at) >= p[i] * 10:
            self._at = self._add(self._at, p[i] * 10)  # pattern time: lengths do not drift
            i += 1
            if i >= len(p):
                self._pwm.duty_u16(0)
                self._pat = None
                return
        if i != self._i:  # only the segment reached sounds: a late poll skips, never chirps
            self._i = i
            self._pwm.duty_u16(_DUTY if i & 1 else 0)
