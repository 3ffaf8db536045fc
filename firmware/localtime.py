# Local civil time from UTC seconds: a fixed offset plus an optional DST rule.
# Integer only and allocation-free: update(utc) recomputes the civil fields only when utc
# leaves the cached window [lo, hi) (at most one local day, cut at DST changes), so the
# per-tick cost is two compares. Shared by the tariff engine, the credit rules and billing.
# Seconds are meter seconds (timebase.py); day numbers still count from 1970 (small anyway).
from micropython import const
from timebase import EPOCH_DAYS

_DAY = const(86400)
_MAX_OFFSET_MIN = const(14 * 60)

# Shorthand DST rules: (month, week, weekday, minute, in_utc) for start and end, and the saving.
# week 1..4 = the nth such weekday, -1 = the last one; weekday 0 = Monday .. 6 = Sunday.
# The minute is wall time just before the change (standard time at start, summer time at end),
# or UTC when in_utc is set (the EU changes everywhere at 01:00 UTC).
RULES = {
    "eu": ((3, -1, 6, 60, 1), (10, -1, 6, 60, 1), 60),
    "us": ((3, 2, 6, 120, 0), (11, 1, 6, 120, 0), 60),
}


class TimeError(ValueError):
    pass


def days_from_civil(y, m, d):
    """Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's algorithm)."""
    if m <= 2:
        y -= 1
    era = y // 400
    yoe = y - era * 400
    mp = m + 9 if m <= 2 else m - 3
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def weekday(days):
    """0 = Monday for a day number since 1970-01-01 (a Thursday)."""
    return (days + 3) % 7


def _nth_weekday(y, m, week, wd):
    if week < 0:
        if m < 12:
            last = days_from_civil(y, m + 1, 1) - 1
        else:
            last = days_from_civil(y + 1, 1, 1) - 1
        return last - (weekday(last) - wd) % 7
    first = days_from_civil(y, m, 1)
    return first + (wd - weekday(first)) % 7 + 7 * (week - 1)


def _check_point(p):
    if not isinstance(p, (list, tuple)) or len(p) != 5:
        raise TimeError("dst point must be [month, week, weekday, minute, in_utc]")
    for v in p:
        if type(v) is not int:
            raise TimeError("dst point values must be integers")
    m, w, wd, mi, u = p
    if not (1 <= m <= 12 and (w == -1 or 1 <= w <= 4) and 0 <= wd <= 6 and 0 <= mi < 1440 and u in (0, 1)):
        raise TimeError("dst point out of range")
    return tuple(p)


class LocalClock:
    def __init__(self, offset_min=0, dst=None):
        """offset_min: standard-time offset east of UTC. dst: None, "eu", "us", or
        {"start": [m, week, wd, minute, in_utc], "end": [...], "save_min": 60}."""
        if type(offset_min) is not int or not -_MAX_OFFSET_MIN <= offset_min <= _MAX_OFFSET_MIN:
            raise TimeError("offset_min must be an integer in -840..840")
        self.std = offset_min * 60
        if dst is None:
            self._rule = None
        elif isinstance(dst, str):
            if dst not in RULES:
                raise TimeError("unknown dst rule %r" % dst)
            self._rule = RULES[dst]
        elif isinstance(dst, dict):
            save = dst.get("save_min", 60)
            if type(save) is not int or not 0 < save <= 120:
                raise TimeError("save_min must be an integer in 1..120")
            self._rule = (_check_point(dst.get("start")), _check_point(dst.get("end")), save)
        else:
            raise TimeError("dst must be null, a rule name or an object")
        self.lo = 1
        self.hi = 0  # empty window: the first update() computes
        self.off = self.std  # total offset now (standard + saving), seconds
        self.dst = False
        self.day = 0  # local day number since 1970-01-01
        self.year = 1970
        self.month = 1
        self.mday = 1
        self.wday = 3
        self.day_start = 0  # meter second of this local day's midnight at the current offset

    def _transition(self, y, p, is_end):
        mo, w, wd, mi, in_utc = p
        t = (_nth_weekday(y, mo, w, wd) - EPOCH_DAYS) * _DAY + mi * 60
        if in_utc:
            return t
        t -= self.std
        if is_end:
            t -= self._rule[2] * 60  # the end point is given in summer wall time
        return t

    def update(self, utc):
        if self.lo <= utc < self.hi:
            return
        off = self.std
        rule = self._rule
        start = end = 0
        self.dst = False
        if rule is not None:
            self.civil_day((utc + off) // _DAY + EPOCH_DAYS)
            start = self._transition(self.year, rule[0], False)
            end = self._transition(self.year, rule[1], True)
            if start < end:
                active = start <= utc < end
            else:  # southern hemisphere: summer spans the new year
                active = utc >= start or utc < end
            if active:
                off += rule[2] * 60
                self.dst = True
        self.off = off
        day = (utc + off) // _DAY
        self.civil_day(day + EPOCH_DAYS)
        ds = day * _DAY - off
        self.day_start = ds
        lo = ds
        hi = ds + _DAY
        if rule is not None:
            # Cut the window at a DST change inside this local day.
            if lo < start <= utc:
                lo = start
            if lo < end <= utc:
                lo = end
            if utc < start < hi:
                hi = start
            if utc < end < hi:
                hi = end
        self.lo = lo
        self.hi = hi

    def civil_day(self, z):
        """Set the date fields (day, wday, year, month, mday) for local day number z."""
        self.day = z
        self.wday = weekday(z)
        z += 719468
        era = z // 146097
        doe = z - era * 146097
        yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
        doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
        mp = (5 * doy + 2) // 153
        self.mday = doy - (153 * mp + 2) // 5 + 1
        self.month = mp + 3 if mp < 10 else mp - 9
        self.year = yoe + era * 400 + (1 if self.month <= 2 else 0)

    def minute(self, utc):
        """Local wall-clock minute of the day (call update(utc) first)."""
        return (utc - self.day_start) // 60


def from_doc(doc):
    """LocalClock from a tariff's "tz" object ({"offset_min": .., "dst": ..}); None gives UTC."""
    if doc is None:
        return LocalClock()
    if not isinstance(doc, dict):
        raise TimeError("tz must be an object")
    return LocalClock(doc.get("offset_min", 0), doc.get("dst"))
