# The meter's durable logs, each a fixed-capacity ring on littlefs (journal.Ring):
#   events   every event (seq, utc, code, arg), at least 128; plus the last 10 of each type
#            (utc: meter seconds, timebase.py, as every time in these logs)
#   profile  15-minute load profile: cumulative registers at each quarter-hour boundary
# and, through ring(), the rings other modules fill: daily / monthly billing snapshots and the
# top-up journal (firmware/billing.py decides their records).
# The hot record (store.py) stays the single source of truth for money and energy; these logs
# are written after it, so a power cut can at worst miss the newest log entry, never disagree
# with the balance. Storage errors here are counted and never stop the meter.
import struct
from micropython import const
from journal import Ring

_QUARTER_S = const(900)
_MIN_UTC = const(0)  # the meter epoch, 2025-01-01: before this the clock is not set, so no profile
_PER_TYPE = const(10)
# The per-type rings share one directory, in segments of 5 records (90 bytes): small enough to
# stay inline in littlefs' metadata even on a stock image's root (limit 128), where a directory
# and a block per segment for each event type cost 4-6 blocks a type.
_PER_TYPE_SEG = const(5)

EV_FMT = "<iiH"  # utc, arg, code
EV_SIZE = struct.calcsize(EV_FMT)
# utc of the boundary, import Wh, export Wh, balance, relay state, flags
LP_FMT = "<iIIiBB"
LP_SIZE = struct.calcsize(LP_FMT)
LP_BOOT = const(1)  # the interval ending here contains a power-up (it may be short)
# Defaults sized for the meter image's 1984 KiB "meter" partition: 247 of its 496 blocks when full
# (boards/esp32_meter/partitions.csv, docs/storage.md).
DEFAULTS = {"events": 128, "profile_days": 92, "daily": 400, "monthly": 240, "topups": 128}


class Logbook:
    def __init__(self, root, cfg=None):
        c = dict(DEFAULTS)
        if cfg:
            c.update(cfg)
        self._dir = root + "/log"
        self.faults = 0
        self.on_error = None  # called after a flash error (the app remounts)
        self._buf = bytearray(LP_SIZE if LP_SIZE > EV_SIZE else EV_SIZE)
        self._by_type = {}
        self._ev_sent = 0  # next seq of the RAM event ring to persist
        self.events = self._ring("ev", EV_SIZE, c["events"])
        self._drop_old_type_dirs()
        self.profile = self._ring("lp", LP_SIZE, c["profile_days"] * 96)
        self.sizes = c
        self._quarter = self._last_period(self.profile, _QUARTER_S)
        self._booted = True

    def ring(self, name, size, capacity=None):
        """A ring in the log directory (capacity from the storage config by name), or None."""
        return self._ring(name, size, capacity or self.sizes[name])

    def _drop_old_type_dirs(self):
        # A firmware before the shared directory kept a directory per event type (log/t<code>):
        # give their blocks back (once; a cut midway finishes at the next boot). The main event
        # log keeps those events; only the per-type history starts afresh.
        import os
        try:
            old = [e[0] for _, e in zip(range(256), os.ilistdir(self._dir))  # bounded (journal.py)
                   if len(e[0]) > 1 and e[0][0] == "t" and e[0][1:].isdigit()]
            for n in old:
                d = self._dir + "/" + n
                for f in [e[0] for _, e in zip(range(64), os.ilistdir(d))]:
                    os.remove(d + "/" + f)
                os.rmdir(d)
        except OSError:
            self.faults += 1

    def _ring(self, name, size, capacity, prefix=""):
        import os
        try:
            try:
                os.mkdir(self._dir)
            except OSError:
                pass
            if prefix:
                return Ring(self._dir + "/" + name, size, capacity, _PER_TYPE_SEG, prefix)
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
        utc = struct.unpack_from("<i", self._buf, 0)[0]
        return utc // period_s

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
            r = self._ring("t", EV_SIZE, _PER_TYPE, "%d." % code)
            if r is None:
                return
            self._by_type[code] = r
        self._append(r, rec)

    def last_of_type(self, code):
        """The retained events of one type, oldest first, as (utc, arg, code) tuples."""
        r = self._by_type.get(code)
        if r is None:
            r = self._ring("t", EV_SIZE, _PER_TYPE, "%d." % code)
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
        """Called every loop step: writes the load-profile record due at `utc`."""
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
