"""The buzzer's patterns (firmware/buzzer.py): tone and pause lengths on the pattern's own time,
a late poll never sounds a segment that is already over, and ticks that wrap."""
import buzzer


def ticks_add(a, d):  # the ESP32's tick arithmetic: wraps at 2^30
    return (a + d) & ((1 << 30) - 1)


def ticks_diff(a, b):
    return ((a - b + (1 << 29)) & ((1 << 30) - 1)) - (1 << 29)


class Clock:
    ticks_add = staticmethod(ticks_add)
    ticks_diff = staticmethod(ticks_diff)


class Pwm:
    def __init__(self):
        self.log = []
        self.f = 0

    def freq(self, f):
        self.f = f

    def duty_u16(self, d):
        self.log.append(d)


def run(pattern, start, polls):
    p = Pwm()
    b = buzzer.Buzzer(p, Clock())
    p.log.clear()
    b.play(pattern, start)
    seen = []
    for dt in polls:
        b.poll(ticks_add(start, dt))
        seen.append((dt, p.log[-1] if p.log else None))
    return b, p, seen


def test_error_pattern_segments():
    # 1.2 kHz: 150 on, 100 off, 150 on, 100 off, 300 on
    polls = list(range(0, 900, 10))
    b, p, seen = run(buzzer.ERROR, 1000, polls)
    assert p.f == 1200
    on = [dt for dt, d in seen if d]
    assert on[0] == 0 and 140 in on and 150 not in on and 250 in on and 400 not in on and 500 in on
    assert seen[-1][1] == 0 and not b.playing()


def test_a_late_poll_skips_and_never_chirps():
    b, p, seen = run(buzzer.ACCEPT, 0, [1000])
    assert p.log == [32768, 0]  # on at play(), off at the late poll: no on-off chirp in between
    assert not b.playing()


def test_across_the_tick_wrap():
    start = (1 << 30) - 15
    b, p, seen = run(buzzer.KEY, start, [0, 20, 29, 30])
    assert [d for _, d in seen] == [32768, 32768, 32768, 0]
