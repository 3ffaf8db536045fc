"""Real board definitions (plain data, importable without hardware): one GPIO per function,
SPI mode per the chip's datasheet notes, and a poll tick inside the derived overflow bound."""

import pytest

import esp32_ade7953
import esp32_atm90e26
import esp32_atm90e32

BOARDS = [esp32_atm90e26, esp32_atm90e32, esp32_ade7953]


@pytest.mark.parametrize("board", BOARDS, ids=lambda b: b.NAME)
def test_pins_are_distinct(board):
    pins = list(board.PINS.values())
    assert len(pins) == len(set(pins)), board.PINS


@pytest.mark.parametrize("board", BOARDS, ids=lambda b: b.NAME)
def test_board_data(board):
    cfg = board.CONFIG
    assert cfg["max_power_w"] > 0 and cfg["tick_ms"] <= 1000
    for p in cfg.get("pulses", ()):
        assert p["unit"] in ("l", "m3/1000") and isinstance(p["per_pulse"], int)
    # the sim boards of the same name use these very definitions
    assert board.NAME.startswith("esp32-") and board.CHIP in board.NAME


ESP32_CLOCK = r'''
import sys, mptest, timebase
from billtest import utc, EPOCH_S
import esp32_atm90e26 as board

class Port2000:
    # The ESP32 port's time module: seconds since 2000-01-01 (past 2^30 from 2034), and ticks.
    now = utc(2026, 11, 27, 10, 30) - 946684800
    ms = 0
    reads = 0
    def gmtime(self, t=None):
        return (2000, 1, 1, 0, 0, 0, 5, 1) if t == 0 else _gm(t)
    def time(self):
        self.reads += 1
        return self.now
    def ticks_ms(self):
        return self.ms & 0x3FFFFFFF
    def ticks_diff(self, a, b):
        return ((a - b + 0x20000000) & 0x3FFFFFFF) - 0x20000000
    def ticks_add(self, a, d):
        return (a + d) & 0x3FFFFFFF
    def run(self, ms):  # time passes: the RTC and the ticks together
        self.ms += ms
        self.now_ms = getattr(self, "now_ms", 0) + ms
        self.now += self.now_ms // 1000
        self.now_ms %= 1000

import time as _t
def _gm(t):
    return _t.gmtime(t + 946684800)  # the unix port counts from 1970

port = Port2000()
c = board._Clock(port)
mptest.eq(c.time(), utc(2026, 11, 27, 10, 30) - EPOCH_S, "meter seconds from the port's seconds since 2000")
mptest.check(-(1 << 30) < c.time() < 1 << 30 and -(1 << 30) < c._offset < 1 << 30, "small ints only")
reads = port.reads
port.run(59000)
mptest.eq(c.time(), utc(2026, 11, 27, 10, 30, 59) - EPOCH_S, "the ticks count the seconds")
mptest.eq(port.reads, reads, "without asking the port")
port.run(3600000)
mptest.eq(c.time(), utc(2026, 11, 27, 11, 30, 59) - EPOCH_S, "an hour on")
mptest.eq(port.reads, reads + 1, "the port is read once an hour")
# Twenty years on the port's own seconds are big ints; the clock still gives small meter seconds,
# across a tick wrap, never going back when a new anchor finds the port a little behind.
port.now = utc(2045, 6, 1) - 946684800
mptest.check(port.now > (1 << 30), "the port's seconds are past 2^30 in 2045")
port.ms = 0x3FFFFFFF - 1800000   # half an hour before the ticks wrap
c.anchor(True)
t0 = c.time()
mptest.eq(t0 + EPOCH_S, utc(2045, 6, 1), "twenty years on")
last = t0
for _ in range(30):
    port.run(300700)
    t = c.time()
    mptest.check(t >= last, "never backwards")
    last = t
before = c.time()
port.now -= 2  # the RTC behind the ticks at the next anchor: held, not stepped back
c.anchor()
mptest.eq(c.time(), before, "held at a re-anchor")
port.run(10000)
mptest.eq(c.time(), before + 10, "and counting on from there")

# set_time takes Unix time and sets the RTC to that UTC date (the port's RTC counts from 2000),
# and the clock follows at once, backwards too.
set_to = []
class RTC:
    def datetime(self, dt):
        set_to.append(dt)
        port.now = utc(dt[0], dt[1], dt[2], dt[4], dt[5], dt[6]) - 946684800
class Machine:
    RTC = RTC
sys.modules["machine"] = Machine
sys.modules["time"] = port
class B:
    clock = c
board.Board.set_time(B(), utc(2026, 11, 27, 10, 30, 5))
mptest.eq(set_to, [(2026, 11, 27, 4, 10, 30, 5, 0)], "RTC set to the UTC date (weekday 4 = Friday)")
mptest.eq(c.time() + EPOCH_S, utc(2026, 11, 27, 10, 30, 5), "the clock follows the RTC at once, back 19 years")
mptest.done()
'''


def test_esp32_clock_counts_meter_seconds_and_sets_the_rtc_from_unix_time(mpy):
    res = mpy(ESP32_CLOCK, heap="128k")
    assert res.result["ok"] and res.result["checks"] >= 4
