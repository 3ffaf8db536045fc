# The rings on flash as the power-cut sweep (tools/powercut_mp.py) checks them after every reboot,
# under MicroPython: the event log, the last events of each type, the load profile, the daily and
# monthly snapshots, the top-up journal and the outbox (docs/storage.md, "Rings"). Each is opened
# from flash with the geometry the firmware gives it, as the firmware's next boot will:
#   every record it claims (first_seq .. next_seq - 1) reads back whole (seq and CRC);
#   no record the firmware had finished writing before the cut is missing: next_seq did not go
#   back past what the running firmware's ring said at the end of the last whole loop step;
#   it holds at least its capacity (or everything written), unless the disk was filled on purpose.
import os
import struct
import logbook
import billing
import outbox
from journal import Ring

_OUTBOX_REC = 256 + 3  # outbox._MSG_SIZE + its header: the outbox's ring record
_PER_TYPE = 10  # logbook: the last 10 events of each type ...
_PER_TYPE_SEG = 5  # ... in segments of 5


def geometry(cfg):
    """name -> (directory, record size, capacity, records per segment, prefix) of every ring the
    firmware keeps with storage config `cfg` (the board's config["storage"])."""
    c = dict(logbook.DEFAULTS)
    c.update(cfg or {})
    return {
        "events": ("log/ev", logbook.EV_SIZE, c["events"], 0, ""),
        "profile": ("log/lp", logbook.LP_SIZE, c["profile_days"] * 96, 0, ""),
        "daily": ("log/daily", billing.SNAP_SIZE, c["daily"], 0, ""),
        "monthly": ("log/monthly", billing.SNAP_SIZE, c["monthly"], 0, ""),
        "topups": ("log/topups", billing.TOPUP_SIZE, c["topups"], 0, ""),
        "outbox": ("outbox", _OUTBOX_REC, c.get("outbox", outbox.CAPACITY), 0, ""),
    }


def live(m):
    """name -> the running firmware's Ring object, for every ring it has open."""
    out = {}
    log = m.log
    for name, r in (("events", log.events), ("profile", log.profile)):
        if r is not None:
            out[name] = r
    if m.billing is not None:
        out["daily"] = m.billing.daily
        out["monthly"] = m.billing.monthly
    if m.topup_log is not None:
        out["topups"] = m.topup_log.ring
    ob = m.sync.outbox
    if ob._path is not None:  # not the RAM ring it falls back to when the flash refuses
        out["outbox"] = ob._ring
    for code in log._by_type:
        out["t%d" % code] = log._by_type[code]
    return out


def written(m):
    """name -> next_seq of every ring of the running firmware (what it has finished writing)."""
    rings = live(m)
    return {k: rings[k].next_seq for k in rings}


def _type_codes(root):
    # The per-type rings share log/t: their segments are "<code>.<seg>".
    codes = {}
    try:
        for e in os.ilistdir(root + "/log/t"):
            n = e[0]
            dot = n.find(".")
            if dot > 0 and n[:dot].isdigit():
                codes[int(n[:dot])] = 1
    except OSError:
        pass
    return sorted(codes)


def on_flash(root, cfg):
    """name -> (Ring, capacity) of every ring on flash (None for a ring that cannot be opened)."""
    out = {}
    g = geometry(cfg)
    for name in g:
        d, size, cap, per, prefix = g[name]
        try:
            os.stat(root + "/" + d)
        except OSError:
            continue  # not created yet
        out[name] = (_open(root + "/" + d, size, cap, per, prefix), cap)
    for code in _type_codes(root):
        out["t%d" % code] = (_open(root + "/log/t", logbook.EV_SIZE, _PER_TYPE, _PER_TYPE_SEG, "%d." % code),
                             _PER_TYPE)
    return out


def _open(path, size, cap, per, prefix):
    try:
        return Ring(path, size, cap, per, prefix)
    except OSError:
        return None


class Check:
    """What check() found: records read, damaged ones, rings that went back or hold too little."""

    def __init__(self):
        self.records = 0
        self.damaged = 0
        self.went_back = 0
        self.short = 0
        self.notes = []

    def note(self, what):
        if len(self.notes) < 3:
            self.notes.append(what)


def check(root, cfg, floors, full, chk, reader=None):
    """Check every ring on flash against `floors` (name -> next_seq the firmware had written
    before the cut). `full`: the disk was filled on purpose (a ring may then have rotated early).
    reader(name, seq, buf): called with each record read, for a scenario's own checks."""
    rings = on_flash(root, cfg)
    for name in floors:
        if floors[name] and name not in rings:
            chk.went_back += 1
            chk.note("ring %s is gone (had %d records)" % (name, floors[name]))
    for name in rings:
        r, cap = rings[name]
        if r is None:
            chk.damaged += 1
            chk.note("ring %s cannot be opened" % name)
            continue
        if r.next_seq < floors.get(name, 0):
            chk.went_back += 1
            chk.note("ring %s: next_seq %d < %d written before the cut" % (name, r.next_seq, floors[name]))
        if not full and r.next_seq - r.first_seq < min(cap, r.next_seq):
            chk.short += 1
            chk.note("ring %s holds %d..%d, capacity %d" % (name, r.first_seq, r.next_seq, cap))
        buf = bytearray(r.rec_size)
        for seq in range(r.first_seq, r.next_seq):
            chk.records += 1
            if not r.read(seq, buf):
                chk.damaged += 1
                chk.note("ring %s record %d unreadable" % (name, seq))
            elif reader is not None:
                reader(name, seq, buf)
    return rings


def snapshot_date(buf):
    """(kind, year, month, day) of a billing snapshot record."""
    return struct.unpack_from("<BxHBB", buf, 0)
