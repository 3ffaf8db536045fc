"""journal.Ring: fixed-capacity record rings on littlefs (run under MicroPython)."""

PRELUDE = """
import os, mptest
from journal import Ring
from simhw.cutdev import CutBlockDevice
import store
dev = CutBlockDevice(48)
mptest.eq(store.mount(dev, "/f"), store.FORMATTED_BLANK, "blank flash formatted")
def rec(i):
    return bytes([(i + k) & 0xFF for k in range(10)])
buf = bytearray(10)
"""


def test_append_read_and_rotation(mpy):
    res = mpy(PRELUDE + """
r = Ring("/f/r", 10, 50)
mptest.eq((r.first_seq, r.next_seq), (0, 0), "empty ring")
mptest.check(not r.read(0, buf), "nothing to read yet")
for i in range(300):
    mptest.eq(r.append(rec(i)), i, "append returns seq")
mptest.eq(r.next_seq, 300, "next_seq")
mptest.check(300 - r.first_seq >= 50, "keeps at least capacity records")
mptest.check(300 - r.first_seq < 50 + r._per + 1, "keeps at most capacity + one segment")
mptest.check(not r.read(r.first_seq - 1, buf), "rotated out -> False")
ok = True
for s in range(r.first_seq, 300):
    ok = ok and r.read(s, buf) and bytes(buf) == rec(s)
mptest.check(ok, "every retained record reads back")
files = [e[0] for e in os.ilistdir("/f/r")]
mptest.check(len(files) <= r._keep, "old segments deleted: %r" % files)
# Reopen (a reboot): same window, appends continue
r2 = Ring("/f/r", 10, 50)
mptest.eq((r2.first_seq, r2.next_seq), (r.first_seq, r.next_seq), "state survives reopen")
mptest.eq(r2.append(rec(300)), 300, "seq continues")
mptest.check(r2.read(300, buf) and bytes(buf) == rec(300), "new record reads")
mptest.eq(r2.last(buf), 300, "last")
mptest.done()
""", heap="2m")
    assert res.result["ok"]


def test_short_records_padded_and_bad_input(mpy):
    res = mpy(PRELUDE + """
r = Ring("/f/s", 10, 8)
r.append(b"ab")
mptest.check(r.read(0, buf) and bytes(buf) == b"ab" + bytes(8), "zero padded")
mptest.raises(ValueError, r.append, bytes(11))
mptest.eq(r.next_seq, 1, "a refused record changes nothing")
mptest.raises(ValueError, Ring, "/f/x", 0, 8)
mptest.raises(ValueError, Ring, "/f/x", 8, 0)
mptest.done()
""", heap="2m")
    assert res.result["ok"]


def test_damaged_record_is_not_returned(mpy):
    res = mpy(PRELUDE + """
r = Ring("/f/d", 10, 8)
for i in range(3):
    r.append(rec(i))
with open("/f/d/0", "r+b") as f:
    f.seek(18 + 6)  # inside record 1's payload
    f.write(b"\\x00\\x00")
mptest.check(r.read(0, buf), "record 0 intact")
mptest.check(not r.read(1, buf), "record 1 fails its CRC")
mptest.check(r.read(2, buf) and bytes(buf) == rec(2), "record 2 intact")
mptest.done()
""", heap="2m")
    assert res.result["ok"]


def test_full_disk_rotates_early(mpy):
    res = mpy(PRELUDE + """
r = Ring("/f/full", 10, 2000)
for i in range(600):
    r.append(rec(i))
first = r.first_seq
try:
    with open("/f/filler", "wb") as f:
        while True:
            f.write(bytes(512))
            f.flush()
except OSError:
    pass
n = 0
for i in range(600, 900):
    r.append(rec(i))
    n += 1
mptest.eq(n, 300, "appends keep working on a full disk")
mptest.check(r.first_seq > first, "by dropping the oldest segments early")
mptest.check(r.read(899, buf) and bytes(buf) == rec(899), "newest record readable")
mptest.done()
""", heap="2m")
    assert res.result["ok"]


def test_ram_ring(mpy):
    res = mpy("""
import mptest
from journal import Ring
r = Ring(None, 4, 5)
for i in range(12):
    r.append(bytes([i] * 4))
mptest.eq((r.first_seq, r.next_seq), (7, 12), "RAM ring keeps exactly capacity")
b = bytearray(4)
mptest.check(r.read(11, b) and b == bytearray([11] * 4), "newest")
mptest.check(r.read(7, b) and b == bytearray([7] * 4), "oldest")
mptest.check(not r.read(6, b), "rotated out")
mptest.done()
""")
    assert res.result["ok"]


def test_rings_sharing_a_directory_by_prefix(mpy):
    # The per-type event rings live in one directory, told apart by a prefix: each keeps its own
    # window, rotation removes only its own segments, and "1." never takes "11."'s files.
    res = mpy(PRELUDE + """
rings = {c: Ring("/f/t", 10, 10, 5, "%d." % c) for c in (1, 11, 2)}
for i in range(40):
    for c, r in rings.items():
        r.append(rec(c * 100 + i))
for c in rings:
    r = Ring("/f/t", 10, 10, 5, "%d." % c)  # reopened: its window comes from its own files
    mptest.eq(r.next_seq, 40, "ring %d: seq" % c)
    mptest.check(40 - r.first_seq >= 10, "ring %d keeps at least 10" % c)
    ok = all(r.read(s, buf) and bytes(buf) == rec(c * 100 + s) for s in range(r.first_seq, 40))
    mptest.check(ok, "ring %d reads its own records" % c)
names = sorted(e[0] for e in os.ilistdir("/f/t"))
mptest.eq(len(names), 9, "three segments of each of three rings: %r" % names)
mptest.check(all(n.split(".")[0] in ("1", "11", "2") for n in names), "nothing else")
mptest.done()
""", heap="2m")
    assert res.result["ok"]
