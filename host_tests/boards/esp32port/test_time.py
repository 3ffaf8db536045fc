"""time stand-in (boards/esp32port/time.py): the ESP32's 2^30 tick wrap, virtual sleeping, and
seconds since 2000-01-01 for time(), gmtime, localtime and mktime."""
import calendar
import random

USES_MICROPYTHON = True
Y2000 = 946684800


def test_ticks_wrap_at_2_30_and_every_run_crosses_a_wrap(esp32):
    r = esp32("""
import mptest, time
t0 = time.ticks_ms()
u0 = time.ticks_us()
mptest.check(0 < t0 < (1 << 30) and (1 << 30) - t0 <= 60000, "a boot starts within a minute of a wrap: %d" % t0)
time.sleep_ms(61000)
t1 = time.ticks_ms()
mptest.check(t1 < t0, "wrapped: %d after %d" % (t1, t0))
mptest.eq(time.ticks_diff(t1, t0), 61000, "ticks_diff across the wrap")
mptest.eq(time.ticks_diff(t0, t1), -61000, "and backwards")
mptest.eq(time.ticks_add(t0, 61000), t1, "ticks_add across the wrap")
mptest.raises(OverflowError, time.ticks_add, t0, 1 << 29)  # beyond what ticks_diff can tell
mptest.eq(time.ticks_add(t0, (1 << 29) - 1), (t0 + (1 << 29) - 1) & ((1 << 30) - 1), "the largest step")
u1 = time.ticks_us()
time.sleep_us(1500)
mptest.eq(time.ticks_diff(time.ticks_us(), u1), 1500, "sleep_us")
mptest.eq(time.ticks_diff(time.ticks_ms(), t1), 1, "the whole millisecond it made")
for _ in range(3):
    time.sleep(600)  # ticks_us wraps every 1073.7 s
mptest.check(0 <= time.ticks_us() < (1 << 30), "ticks_us stays in range")
mptest.done()
""")
    assert r["ok"], r["failures"]


def test_gmtime_mktime_on_the_2000_epoch(esp32):
    rnd = random.Random(7)
    cases = [0, 59, 86399, 86400, 951782400, 1709164800 - Y2000, 2**30 - 1, 2**31 + 12345]
    cases += [rnd.randrange(0, 60 * 365 * 86400) for _ in range(40)]
    expect = []
    for s in cases:
        t = calendar.timegm((2000, 1, 1, 0, 0, 0)) + s
        import time as ct
        g = ct.gmtime(t)
        expect.append([g.tm_year, g.tm_mon, g.tm_mday, g.tm_hour, g.tm_min, g.tm_sec, g.tm_wday, g.tm_yday])
    r = esp32("""
import mptest, time, esp32world as W
cases = %r
expect = %r
for s, e in zip(cases, expect):
    mptest.eq(list(time.gmtime(s)), e, "gmtime(%%d)" %% s)
    mptest.eq(time.mktime(tuple(e)), s, "mktime %%r" %% e)
mptest.eq(time.gmtime(0), (2000, 1, 1, 0, 0, 0, 5, 1), "gmtime(0) is 2000-01-01, a Saturday")
mptest.eq(time.localtime(12345), time.gmtime(12345), "no time zone on the port")
mptest.eq(time.mktime((2026, 13, 1, 0, 0, 0, 0, 0)), time.mktime((2027, 1, 1, 0, 0, 0, 0, 0)), "months carry")
mptest.raises(TypeError, time.mktime, (2026, 1, 1))
W.rtc_s = 825683400
mptest.eq(time.time(), 825683400, "time() is the RTC's seconds")
mptest.eq(time.gmtime()[:6], (2026, 3, 1, 12, 30, 0), "gmtime() reads the RTC")
mptest.done()
""" % (cases, expect))
    assert r["ok"], r["failures"]


def test_pacing_holds_virtual_time_to_speed_times_real_time(esp32):
    # A fake real clock: the world waits (real) only what `speed` requires, never more.
    r = esp32("""
import mptest, time, esp32world as W
class Real:
    now = 0
    slept = []
    def ticks_ms(self):
        return self.now
    def ticks_diff(self, a, b):
        return a - b
    def sleep_ms(self, n):
        self.slept.append(n)
        self.now += n
real = Real()
W.utime = real
W.setup({"speed": 100})
time.sleep_ms(1000)
mptest.eq(real.slept, [10], "1000 virtual ms at 100x: 10 real ms")
real.now += 50  # the firmware computed for 50 real ms: 5000 virtual ms are due
time.sleep_ms(2000)
mptest.eq(real.slept, [10], "no wait while behind")
time.sleep_ms(3000)
time.sleep_ms(1000)
mptest.eq(real.slept, [10, 10], "then paced again")
W.setup({"speed": 0})
time.sleep_ms(3600000)
mptest.eq(real.slept, [10, 10], "unpaced: never waits")
mptest.done()
""")
    assert r["ok"], r["failures"]


def test_stand_ins_allocate_nothing_on_the_meters_hot_path(esp32):
    # What a meter tick does through the stand-ins (ticks, pins, an SPI frame, an idle sleep with a
    # timer firing) must not need the heap: the firmware's step runs under heap_lock in its tests.
    r = esp32("""
import mptest, micropython, time, esp32world as W
from machine import Pin, SPI, Timer
W.setup({"timer_quiet_ms": 0})
cs = Pin(5, Pin.OUT, value=1)
btn = Pin(0, Pin.IN, Pin.PULL_UP)
spi = SPI(1, baudrate=1000000)
tx = bytearray(3)
rx = bytearray(3)
n = [0]
def tick(t):
    n[0] += btn.value()
Timer(0).init(period=5, callback=tick)
ok = False
time.sleep_ms(100)
def hot():  # locals only: a new module global would grow the module's dict
    for _ in range(100):
        t = time.ticks_ms()
        cs(0)
        spi.write_readinto(tx, rx)
        cs(1)
        time.sleep_ms(10)
        time.ticks_diff(time.ticks_ms(), t)
micropython.heap_lock()
try:
    hot()
    ok = True
except MemoryError:
    ok = False
micropython.heap_unlock()
mptest.check(ok, "no allocation with the heap locked")
mptest.eq(n[0], 220, "the timer ran meanwhile")
mptest.done()
""")
    assert r["ok"], r["failures"]


def test_cpu_scale_lets_the_firmwares_own_work_take_virtual_time(esp32):
    """World option cpu_scale: a device that many times slower than the host. Work between idle
    waits passes as virtual time (scaled), so the watchdog sees a loop that works too long; idle
    time is not work."""
    r = esp32("""
import mptest, time, utime
import esp32world as W
import machine

# Work (reading the clock as the firmware does) until virtual_ms have passed, or give up after
# real_limit_ms of host time; returns the virtual ms that passed.
def work(virtual_ms, real_limit_ms=10000):
    t0, r0 = time.ticks_ms(), utime.ticks_ms()
    while time.ticks_diff(time.ticks_ms(), t0) < virtual_ms and utime.ticks_diff(utime.ticks_ms(), r0) < real_limit_ms:
        pass
    return time.ticks_diff(time.ticks_ms(), t0)

W.setup({})
mptest.eq(work(1000, 20), 0, "without it, work takes no virtual time")
W.setup({"cpu_scale": 100})
mptest.check(work(2000) >= 2000, "at scale 100, host work passes as virtual time")
W.setup({"cpu_scale": 100, "speed": 10})  # paced: 1000 virtual ms of sleep wait about 100 real ms
before = utime.ticks_us()
time.sleep_ms(1000)
waited = utime.ticks_diff(W._cpu_mark, before)
mptest.check(waited >= 50000, "idle is not work: the charge starts after the wait (%d us)" % waited)
W.setup({"cpu_scale": 100})
wdt = machine.WDT(timeout=1000)
try:
    work(5000)  # 5 s of device time without feeding it
    reset = False
except W.WatchdogReset:
    reset = True
mptest.check(reset, "a loop that works too long without feeding the watchdog resets the board")
mptest.done()
""")
    assert r["ok"], r["failures"]


def test_cpu_real_makes_the_work_take_real_time_and_the_report_has_the_watchdogs_longest_wait(esp32):
    """World option cpu_real (with speed): the scaled work takes that real time too, so a device
    slower than the host reads what arrives more slowly (the overload test); the report gives
    the longest the watchdog went unfed."""
    r = esp32("""
import mptest, time, utime
import esp32world as W
import machine

def work(virtual_ms):
    t0 = time.ticks_ms()
    while time.ticks_diff(time.ticks_ms(), t0) < virtual_ms:
        pass

W.setup({"cpu_scale": 50, "speed": 1})
r0 = utime.ticks_ms()
work(300)
fast = utime.ticks_diff(utime.ticks_ms(), r0)
W.setup({"cpu_scale": 50, "speed": 1, "cpu_real": True})
r0 = utime.ticks_ms()
work(300)
slow = utime.ticks_diff(utime.ticks_ms(), r0)
mptest.check(slow >= 250 and slow > 3 * fast, "300 virtual ms of work took %d real ms (%d without cpu_real)" % (slow, fast))
W.setup({})
wdt = machine.WDT(timeout=30000)
time.sleep_ms(5000)
wdt.feed()
time.sleep_ms(1200)
wdt.feed()
mptest.eq(W.report()["wdt_max_gap_ms"], 5000, "the longest wait between feeds")
mptest.done()
""")
    assert r["ok"], r["failures"]
