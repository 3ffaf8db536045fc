# ESP32 port stand-in: time, following extmod/modtime.c and ports/esp32/modtime.c (MicroPython
# 1.28). Ticks wrap at 2^30 like the ESP32's; sleeping lets virtual time pass (esp32world); time()
# counts seconds since 2000-01-01 from the virtual RTC (the ESP32's epoch), and gmtime, localtime
# and mktime use that epoch (there is no time zone on the port: localtime is gmtime).
from micropython import const
import esp32world as _w

_HALF = const(0x20000000)
_DAY = const(86400)

ticks_ms = _w.ticks_ms
ticks_us = _w.ticks_us
ticks_cpu = _w.ticks_us  # the port counts CPU cycles; microseconds keep the same wrap
ticks_diff = _w.tdiff
sleep_ms = _w.sleep_ms
sleep_us = _w.sleep_us


def ticks_add(ticks, delta):
    if not -_HALF < delta < _HALF:
        raise OverflowError("ticks interval overflow")
    return _w.tadd(ticks, delta)


def sleep(seconds):
    _w.sleep_ms(int(1000 * seconds))


def time():
    return _w.rtc_s


def time_ns():
    return (_w.rtc_s * 1000 + _w.rtc_ms) * 1000000


def _days_to_date(days):
    # Days since 2000-01-01 to (year, month, day), on the proleptic Gregorian calendar.
    z = days + 730425  # days since 0000-03-01
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (1 if m <= 2 else 0), m, d


def _date_to_days(y, m, d):
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 730425


def gmtime(secs=None):
    if secs is None:
        secs = _w.rtc_s
    secs = int(secs)
    days = secs // _DAY
    s = secs - days * _DAY
    y, m, d = _days_to_date(days)
    yday = days - _date_to_days(y, 1, 1) + 1
    return (y, m, d, s // 3600, s // 60 % 60, s % 60, (days + 5) % 7, yday)  # 2000-01-01 was a Saturday


localtime = gmtime


def mktime(t):
    if not 8 <= len(t) <= 9:
        raise TypeError("mktime needs a tuple of length 8 or 9")
    y, mo = t[0], t[1] - 1
    y += mo // 12  # out-of-range fields carry, as timeutils_mktime does
    mo = mo % 12 + 1
    return (_date_to_days(y, mo, 1) + t[2] - 1) * _DAY + t[3] * 3600 + t[4] * 60 + t[5]
