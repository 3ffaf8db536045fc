"""store: A/B hot record and the mount policy (run under MicroPython)."""

PRELUDE = """
import os, mptest, store
from simhw.cutdev import CutBlockDevice
dev = CutBlockDevice(32)
mptest.eq(store.mount(dev, "/f"), store.FORMATTED_BLANK, "blank flash: formatted")
def fresh():
    return store.RecordStore("/f/a", "/f/b", 16)
def commit(s, v):
    s.payload[:] = bytes([v] * 16)
    s.commit()
"""


def test_newest_valid_slot_and_fallback(mpy):
    res = mpy(PRELUDE + """
s = fresh()
mptest.check(not s.load(), "nothing yet")
mptest.eq(s.damaged, 0, "nothing damaged")
for v in (1, 2, 3):
    commit(s, v)
t = fresh()
mptest.check(t.load(), "loads")
mptest.eq((t.seq, bytes(t.payload)), (3, bytes([3] * 16)), "newest")
# Corrupt the newest slot (seq 3 lives in slot a): fall back to seq 2 and say so
with open("/f/b", "r+b") as f:  # odd seqs live in slot b
    f.seek(5)
    f.write(b"\\x00")
t = fresh()
mptest.check(t.load(), "falls back")
mptest.eq((t.seq, bytes(t.payload), t.damaged), (2, bytes([2] * 16), 1), "last good record")
commit(t, 9)  # rewrites the damaged slot, keeps the good one
u = fresh()
mptest.check(u.load(), "loads")
mptest.eq((u.seq, u.damaged), (3, 0), "repaired")
with open("/f/a", "wb") as f:
    f.write(b"junk")
with open("/f/b", "wb") as f:
    f.write(b"junk")
v = fresh()
mptest.check(not v.load(), "no valid slot")
mptest.eq(v.damaged, 2, "both damaged")
mptest.done()
""", heap="1m")
    assert res.result["ok"]


def test_failed_commit_keeps_last_record(mpy):
    res = mpy(PRELUDE + """
s = fresh()
commit(s, 1)
commit(s, 2)
dev.fail_at = dev.ops + 1
dev.sticky = True
try:
    commit(s, 3)
    mptest.check(False, "commit must raise")
except OSError:
    pass
mptest.eq(s.seq, 2, "seq not advanced")
dev.fail_at = 0
mptest.check(store.remount(dev, "/f"), "remounted after the error")
t = fresh()
mptest.check(t.load() and bytes(t.payload) == bytes([2] * 16), "last committed record kept")
mptest.done()
""", heap="1m")
    assert res.result["ok"]


def test_mount_policy(mpy):
    res = mpy(PRELUDE + """
with open("/f/x", "wb") as f:
    f.write(b"keep")
os.mkdir("/f/d")  # a directory: littlefs now uses blocks beyond the superblock pair
os.umount("/f")
mptest.eq(store.mount(dev, "/f"), store.MOUNTED, "a good file system mounts")
mptest.eq(open("/f/x").read(), "keep", "data kept")
os.umount("/f")
dev.fail_at = dev.ops + 1  # one transient read error while mounting
mptest.eq(store.mount(dev, "/f"), store.MOUNTED, "a transient error is retried, not formatted")
mptest.eq(open("/f/x").read(), "keep", "data kept")
os.umount("/f")
for b in (0, 1):  # smash both superblocks
    for i in range(64):
        dev.mem[b * 4096 + i] = 0x55
mptest.eq(store.mount(dev, "/f"), store.REFORMATTED, "unmountable: reformatted, and reported")
mptest.check("x" not in os.listdir("/f"), "its data is gone")
os.umount("/f")
dead = CutBlockDevice(32)
dead.fail_at = 1
dead.sticky = True
mptest.eq(store.mount(dead, "/g"), store.UNMOUNTED, "a dead chip: no exception, UNMOUNTED")
for cut in range(1, 7):
    torn = CutBlockDevice(32)
    torn.cut_at = cut  # power lost while the factory format runs
    try:
        os.VfsLfs2.mkfs(torn, readsize=store.LFS_READ, progsize=store.LFS_PROG)
    except OSError:
        pass
    torn = torn.survivor()
    r = store.mount(torn, "/h")
    mptest.check(r in (store.MOUNTED, store.FORMATTED_BLANK),
                 "an interrupted format (cut at write %d) is a new meter, not data loss: %d" % (cut, r))
    os.umount("/h")
mptest.done()
""", heap="1m")
    assert res.result["ok"]


def test_hot_record_stays_inline_so_a_commit_rarely_erases(mpy):
    """The whole record must fit littlefs' inline limit at the project's mount parameters; if it
    grew past it, every commit would take a new block and an erase (20 years of wear at once)."""
    res = mpy("""
import os, mptest, store, record
from simhw.cutdev import CutBlockDevice
mptest.check(record.SIZE + 8 <= store.INLINE_MAX, "record %d + trailer fits inline" % record.SIZE)
dev = CutBlockDevice(128)
mptest.eq(store.mount(dev, "/w"), store.FORMATTED_BLANK, "fresh flash")
s = store.RecordStore("/w/state.a", "/w/state.b", record.SIZE)
e0 = dev.erases
for _ in range(1000):
    s.commit()
mptest.check(dev.erases - e0 < 200, "erases per 1000 commits: %d" % (dev.erases - e0))
# The same record through littlefs' default 32-byte sizes: a block per commit (what this prevents).
os.umount("/w")
dev2 = CutBlockDevice(128)
os.VfsLfs2.mkfs(dev2)
os.mount(os.VfsLfs2(dev2), "/v")
s2 = store.RecordStore("/v/state.a", "/v/state.b", record.SIZE)
e0 = dev2.erases
for _ in range(1000):
    s2.commit()
mptest.check(dev2.erases - e0 > 900, "default sizes: %d erases per 1000 commits" % (dev2.erases - e0))
mptest.done()
""", heap="4m")  # two 512 KiB RAM flashes, each built from a 512 KiB copy: 2m fragments on the 32-bit build
    assert res.result["ok"], res.result["failures"]


def test_a_transient_error_while_a_new_meter_formats_is_not_data_loss(mpy):
    """One I/O error anywhere in a blank flash's first mount, blank check or format must still give
    a new meter (FORMATTED_BLANK, opening balance applied), never REFORMATTED (safe mode, no
    opening balance) or UNMOUNTED. The full power-cut sweep found both."""
    res = mpy("""
import os, gc, mptest, store
from simhw.cutdev import CutBlockDevice
probe = CutBlockDevice(32)
store.mount(probe, "/p")
total = probe.ops  # operations a clean first mount takes
os.umount("/p")
bad = []
for n in range(1, total + 1):
    gc.collect()
    dev = CutBlockDevice(32)
    dev.fail_at = n  # this one operation fails, once
    r = store.mount(dev, "/f")
    if r != store.FORMATTED_BLANK:
        bad.append((n, r))
    if r != store.UNMOUNTED:
        os.umount("/f")
mptest.check(total > 50, "the first mount does real work: %d operations" % total)
mptest.eq(bad, [], "every single transient error gives a new meter")
mptest.done()
""", heap="4m", timeout=120)
    assert res.result["ok"], res.result["failures"]
