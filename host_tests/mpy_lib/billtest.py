# Helpers for the billing tests under micropython. Dates are computed here by plain counting,
# independently of firmware/localtime.py, so the tests can catch its mistakes.

_MDAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def leap(y):
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


def days(y, m, d):
    n = 0
    for yy in range(1970, y):
        n += 366 if leap(yy) else 365
    for mm in range(1, m):
        n += 29 if mm == 2 and leap(y) else _MDAYS[mm - 1]
    return n + d - 1


def utc(y, m, d, h=0, mi=0, s=0, off_min=0):
    """Unix seconds of a local wall time at a fixed offset east of UTC (what the wire carries)."""
    return days(y, m, d) * 86400 + h * 3600 + mi * 60 + s - off_min * 60


# The firmware counts wall time from 2025-01-01 UTC (firmware/timebase.py); counted here again,
# so a wrong epoch in the firmware shows up as a wrong date.
EPOCH_S = days(2025, 1, 1) * 86400


def mt(y, m, d, h=0, mi=0, s=0, off_min=0):
    """Meter seconds of a local wall time at a fixed offset east of UTC (what the firmware uses)."""
    return utc(y, m, d, h, mi, s, off_min) - EPOCH_S


class Lcg:
    def __init__(self, seed):
        self.s = seed & 0x7FFFFFFF

    def next(self, n):
        self.s = (self.s * 1103515245 + 12345) & 0x7FFFFFFF
        return (self.s >> 8) % n


def events():
    """(emit function, list of (code, arg)) for Account tests."""
    got = []

    def emit(code, arg):
        got.append((code, arg))

    return emit, got
