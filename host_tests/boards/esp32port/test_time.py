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
