# The meter's durable logs, each a fixed-capacity ring on littlefs (journal.Ring):
#   events   every event (seq, utc, code, arg), at least 128; plus the last 10 of each type
#   profile  15-minute load profile: cumulative registers at each quarter-hour boundary
#   daily / monthly  billing snapshots at each day / month boundary (UTC)
#   topups   applied top-ups: command id, amount, balance after
# The hot record (store.py) stays the single source of truth for money and energy; these logs
# are written after it, so a power cut can at worst miss the newest log entry, never disagree
# with the balance. Storage errors here are counted and never stop the meter.
import struct
from micropython import const
from journal import Ring

_QUARTER_S = const(900)
_DAY_S = const(86400)
_MIN_UTC = const(1735689600)  # 2025-01-01: before this the clock is not set, so no profile
_PER_TYPE = const(10)

EV_FMT = "<IiH"  # utc, arg, code
EV_SIZE = struct.calcsize(EV_FMT)
# utc of the boundary, import Wh, export Wh, balance, relay state, flags
LP_FMT = "<IIIiBB"
LP_SIZE = struct.calcsize(LP_FMT)
LP_BOOT = const(1)  # the interval ending here contains a power-up (it may be short)
# utc, import Wh, export Wh, balance, charged, topped up
SNAP_FMT = "<IIIiii"
SNAP_SIZE = struct.calcsize(SNAP_FMT)
TOPUP_FMT = "<IIii"  # utc, command id, amount, balance after
TOPUP_SIZE = struct.calcsize(TOPUP_FMT)

# Defaults sized for a 2 MiB littlefs data partition (see docs/storage.md).
DEFAULTS = {"events": 128, "profile_days": 92, "daily": 400, "monthly": 240, "topups": 128}


def month_index(utc):
    """Months since 1970-01 of a UTC time (civil calendar, integers only)."""
    z = utc // _DAY_S + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    m = mp + 3 if mp < 10 else mp - 9
    y = yoe + era * 400 + (1 if m <= 2 else 0)
    return (y - 1970) * 12 + m - 1


class Logbook:
    def __init__(self, root, cfg=None):
        c = dict(DEFAULTS)
        if cfg:
            c.update(cfg)
        self._dir = root + "/log"
        self.faults = 0
        self.on_error = None  # called after a flash error (the app remounts)
        self._buf = bytearray(SNAP_SIZE)
        self._by_type = {}
        self._ev_sent = 0  # next seq of the RAM event ring to persist
        self.events = self._ring("ev", EV_SIZE, c["events"])
        self.profile = self._ring("lp", LP_SIZE, c["profile_days"] * 96)
        self.daily = self._ring("day", SNAP_SIZE, c["daily"])
        self.monthly = self._ring("mon", SNAP_SIZE, c["monthly"])
        self.topups = self._ring("top", TOPUP_SIZE, c["topups"])
        self._quarter = self._last_period(self.profile, _QUARTER_S)
        self._day = self._last_period(self.daily, _DAY_S)
        self._month = self._last_period(self.monthly, 0)
        self._booted = True

    def _ring(self, name, size, capacity):
        import os
        try:
            try:
                os.mkdir(self._dir)
            except OSError:
                pass
            return Ring(self._dir + "/" + name, size, capacity)
        except OSError:
            self.faults += 1
            return None

    def _last_period(self, ring, period_s):
        if ring is None:
            return -1
        try:
            if ring.last(self._buf) < 0:
                return -1
        except OSError:
            self.faults += 1
            return -1
        utc = struct.unpack_from("<I", self._buf, 0)[0]
        return month_index(utc) if period_s == 0 else utc // period_s

    def _append(self, ring, data):
        if ring is None:
            return -1
        try:
            return ring.append(data)
        except OSError:
            self.faults += 1
            if self.on_error is not None:
                self.on_error()
            return -1

    # -- events -----------------------------------------------------------------
    def drain(self, ring):
        """Persist the events raised since the last call from the app's RAM EventRing."""
        while self._ev_sent < ring.seq:
            e = ring.get(self._ev_sent)
            self._ev_sent += 1
            if e is not None:
                self.event(e[0], e[1], e[2])
        if ring.oldest_seq() > self._ev_sent:
            self._ev_sent = ring.oldest_seq()

    def event(self, code, arg, utc):
        b = self._buf
        struct.pack_into(EV_FMT, b, 0, utc, arg, code)
        rec = memoryview(b)[:EV_SIZE]
        self._append(self.events, rec)
        r = self._by_type.get(code)
        if r is None:
            r = self._ring("t%d" % code, EV_SIZE, _PER_TYPE)
            if r is None:
                return
            self._by_type[code] = r
        self._append(r, rec)

    def last_of_type(self, code):
        """The retained events of one type, oldest first, as (utc, arg, code) tuples."""
        r = self._by_type.get(code)
        if r is None:
            r = self._ring("t%d" % code, EV_SIZE, _PER_TYPE)
            if r is None:
                return []
            self._by_type[code] = r
        out = []
        b = bytearray(EV_SIZE)
        for seq in range(r.first_seq, r.next_seq):
            if r.read(seq, b):
                out.append(struct.unpack(EV_FMT, b))
        return out

    # -- periodic records ---------------------------------------------------------
    def tick(self, m, utc):
        """Called every loop step: writes the profile / snapshot records due at `utc`."""
        if utc < _MIN_UTC:
            return
        q = utc // _QUARTER_S
        if q == self._quarter:
            return  # the common case: nothing due, nothing allocated
        self._quarter = q
        mt = m.metering
        a = m.account
        b = self._buf
        struct.pack_into(LP_FMT, b, 0, q * _QUARTER_S, mt.imp_wh, mt.exp_wh, a.balance,
                         m.relay.state, LP_BOOT if self._booted else 0)
        self._booted = False
        self._append(self.profile, memoryview(b)[:LP_SIZE])
        d = utc // _DAY_S
        if d != self._day:
            self._day = d
            struct.pack_into(SNAP_FMT, b, 0, d * _DAY_S, mt.imp_wh, mt.exp_wh, a.balance,
                             a.charged, a.topped_up)
            self._append(self.daily, b)
            mo = month_index(utc)
            if mo != self._month:
                self._month = mo
                self._append(self.monthly, b)

    def topup(self, utc, cid, amount, balance):
        b = self._buf
        struct.pack_into(TOPUP_FMT, b, 0, utc, cid, amount, balance)
        self._append(self.topups, memoryview(b)[:TOPUP_SIZE])
