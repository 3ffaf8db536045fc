# Billing snapshots (frozen registers) and the top-up journal, the basis of the customer's
# electronic bill. At each local midnight the cumulative registers are frozen into the daily
# ring (>= 62 kept) and at each month change into the monthly ring (>= 12 kept). Rings follow
# the storage journal interface: append(buf) -> seq, read(seq, buf) -> bool, first_seq, next_seq.
# Registers are cumulative since manufacture: a period's figures are the difference of two
# snapshots, so a lost snapshot never loses energy or money from the ones after it.
from micropython import const
import struct
from tariff import MAX_RATES, MAX_BLOCKS
from timebase import to_unix

DAILY = const(1)
MONTHLY = const(2)
DAYS_KEPT = const(62)
_RETRY_S = const(60)  # a freeze the flash refused is tried again this much later
MONTHS_KEPT = const(13)  # twelve whole months and the one before them, so each has a difference

# kind, year, month, day (the period that closed), meter second of the freeze, energy Wh per rate and
# per block, money charged by the tariff, seconds of standing charge, money debited from the
# account, balance, debt, topped up (all cumulative).
SNAP_FMT = "<BxHBBxxi%di%diiiiiii" % (MAX_RATES, MAX_BLOCKS)
SNAP_SIZE = struct.calcsize(SNAP_FMT)
_FIELDS = ("kind", "year", "month", "day", "utc")


class Billing:
    def __init__(self, daily, monthly):
        self.daily = daily
        self.monthly = monthly
        self.day = 0  # local day number of the last day seen (persisted)
        self.y = 0
        self.m = 0
        self.d = 0
        self._buf = bytearray(SNAP_SIZE)
        self.frozen = 0
        self.faults = 0  # freezes the flash refused (each retried)
        self._retry = 0  # meter second from which a refused freeze is tried again (0: none)

    def restore_day(self, day, lc):
        """After boot: the day number from the record; the date fields are recomputed."""
        self.day = day
        if day:
            lc.civil_day(day)
            self.y, self.m, self.d = lc.year, lc.month, lc.mday
            lc.lo, lc.hi = 1, 0  # the clock's cached window no longer matches its fields

    def tick(self, meter, lc, utc):
        """Freeze when the local day has changed since the last call; returns the number of
        snapshots taken (0 on almost every tick), or -1 when the flash refused one: the day then
        stays open and the freeze is tried again a minute later. Days only move forward: a clock
        set back never freezes a day twice. The app commits the new day after this, so a power
        cut in between freezes the day again at the next boot: _freeze() finds it there."""
        if lc.day <= self.day:
            return 0
        r = self._retry
        if r and r - _RETRY_S <= utc < r:
            return 0
        first = self.day == 0
        y, m, d = self.y, self.m, self.d
        if not first:
            try:
                n = self._freeze(self.daily, DAILY, y, m, d, utc, meter)
                if (lc.year, lc.month) != (y, m):
                    n += self._freeze(self.monthly, MONTHLY, y, m, 0, utc, meter)
            except OSError:
                self.faults += 1
                self._retry = utc + _RETRY_S
                return -1
            self.frozen += n
        self._retry = 0
        self.day = lc.day
        self.y, self.m, self.d = lc.year, lc.month, lc.mday
        return 0 if first else n

    def _freeze(self, ring, kind, y, m, d, utc, meter):
        """Append the snapshot of period (kind, y, m, d) unless the ring's newest already is it."""
        b = self._buf
        if ring.next_seq > ring.first_seq and ring.read(ring.next_seq - 1, b):
            k, yy, mm, dd = struct.unpack_from("<BxHBB", b, 0)
            if (k, yy, mm, dd) == (kind, y, m, d):
                return 1  # frozen before a power cut undid the day's commit: sent again, not taken again
        self._pack(kind, y, m, d, utc, meter)
        ring.append(b)
        return 1

    def _pack(self, kind, y, m, d, utc, meter):
        t = meter.tariff
        a = meter.account
        struct.pack_into(SNAP_FMT, self._buf, 0, kind, y, m, d, utc, *(
            tuple(t.rate_wh) + tuple(t.block_wh) + (
                t.charged_minor, t.standing_s, a.charged, a.balance, a.debt, a.topped_up)))

    def last(self, ring, back=0):
        """Snapshot `back` periods before the newest of `ring` as a dict, or None."""
        seq = ring.next_seq - 1 - back
        if seq < ring.first_seq or not ring.read(seq, self._buf):
            return None
        return decode(self._buf)


def decode(buf):
    v = struct.unpack_from(SNAP_FMT, buf, 0)
    doc = dict(zip(_FIELDS, v[:5]))
    doc["rate_wh"] = list(v[5:5 + MAX_RATES])
    o = 5 + MAX_RATES
    doc["block_wh"] = list(v[o:o + MAX_BLOCKS])
    o += MAX_BLOCKS
    for i, k in enumerate(("charged_minor", "standing_s", "charged", "balance", "debt", "topped_up")):
        doc[k] = v[o + i]
    return doc


def _regs(values):
    # Registers as a compact JSON list without trailing zeros (unused rates and blocks), so a
    # snapshot fits the outbox's message slot.
    n = len(values)
    while n > 1 and not values[n - 1]:
        n -= 1
    return "[" + ",".join(str(v) for v in values[:n]) + "]"


def to_json(doc):
    """The uplink form of a snapshot (without the sequence number the sync layer adds)."""
    if doc["kind"] == DAILY:
        date = "%04d-%02d-%02d" % (doc["year"], doc["month"], doc["day"])
    else:
        date = "%04d-%02d" % (doc["year"], doc["month"])
    return ('"t":%d,"snap":"%s","date":"%s","e":%s,"blk":%s,"tm":%d,"ss":%d,'
            '"c":%d,"b":%d,"debt":%d,"tu":%d}') % (
        to_unix(doc["utc"]), "d" if doc["kind"] == DAILY else "m", date,
        _regs(doc["rate_wh"]), _regs(doc["block_wh"]),
        doc["charged_minor"], doc["standing_s"], doc["charged"], doc["balance"], doc["debt"],
        doc["topped_up"])


def show(ring, n=62):
    """REPL: print the newest `n` snapshots of a ring, oldest first."""
    buf = bytearray(SNAP_SIZE)
    start = ring.next_seq - n
    if start < ring.first_seq:
        start = ring.first_seq
    for seq in range(start, ring.next_seq):
        if ring.read(seq, buf):
            d = decode(buf)
            print("%04d-%02d-%02d  rates %s  blocks %s  charged %d  balance %d  debt %d" % (
                d["year"], d["month"], d["day"], d["rate_wh"], d["block_wh"], d["charged"],
                d["balance"], d["debt"]))


# -- top-up journal ----------------------------------------------------------------------
# Every accepted or refused top-up: meter second, command/token id, source, token type, result code, amount.
SRC_MQTT = const(0)
SRC_TOKEN = const(1)
RESULTS = ("applied", "refused_max_balance", "bad_amount", "used", "stale_id", "bad_mac", "check_digit",
           "locked", "malformed", "no_key", "unknown_type", "store_fault", "bad_args", "replay_lost", "id_jump",
           "old_key", "unsupported", "bad_value")
TOPUP_FMT = "<iIBBBxi"
TOPUP_SIZE = struct.calcsize(TOPUP_FMT)
TOPUPS_KEPT = const(64)


def result_code(name):
    for i in range(len(RESULTS)):
        if RESULTS[i] == name:
            return i
    return len(RESULTS)  # unknown reasons still get journalled


class TopupLog:
    def __init__(self, ring):
        self.ring = ring
        self._buf = bytearray(TOPUP_SIZE)

    def add(self, utc, cid, source, typ, result, amount):
        struct.pack_into(TOPUP_FMT, self._buf, 0, utc, cid, source, typ,
                         result if type(result) is int else result_code(result), amount)
        return self.ring.append(self._buf)

    def entries(self, n=TOPUPS_KEPT):
        """The newest `n` entries, oldest first, as dicts (REPL and tests; "utc" in Unix seconds)."""
        out = []
        start = max(self.ring.first_seq, self.ring.next_seq - n)
        for seq in range(start, self.ring.next_seq):
            if self.ring.read(seq, self._buf):
                utc, cid, src, typ, res, amt = struct.unpack_from(TOPUP_FMT, self._buf, 0)
                out.append({"utc": to_unix(utc), "id": cid, "src": ("mqtt", "token")[src & 1], "type": typ,
                            "result": RESULTS[res] if res < len(RESULTS) else "other", "amount": amt})
        return out
