"""The ESP32 boards' storage (esp32_atm90e26.mount_data): /data on the meter image's "meter"
partition with the store's littlefs geometry, or on a stock image the root file system as the
port's _boot.py mounted it. Run under MicroPython with stand-ins for the port's esp32 and
flashbdev modules; the partition's size comes from boards/esp32_meter/partitions.csv."""

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CSV = REPO / "boards" / "esp32_meter" / "partitions.csv"
BLOCK = 4096
STOCK_ROOT_BLOCKS = 512  # ESP32_GENERIC (4 MiB): the root file system is 2 MiB


def partition_blocks(label):
    for line in CSV.read_text().splitlines():
        cols = [c.strip() for c in line.split("#", 1)[0].split(",")]
        if len(cols) >= 5 and cols[0] == label:
            return int(cols[4], 0) // BLOCK
    raise AssertionError("no %r partition in %s" % (label, CSV))


# The port's esp32 module as the board sees it: Partition.find by type and label.
ESP32 = """
import sys
class Partition:
    TYPE_APP = 0
    TYPE_DATA = 1
    parts = {}
    @staticmethod
    def find(type=0, subtype=255, label=None, block_size=4096):
        p = Partition.parts.get(label)
        return [p] if p is not None and type == Partition.TYPE_DATA else []
class esp32:
    pass
esp32.Partition = Partition
sys.modules["esp32"] = esp32
"""


def test_device_partition_a_commit_rarely_erases(mpy, tmp_path):
    """On the meter image the record commit costs a fraction of an erase, counted on a
    FileBlockDevice the size of the "meter" partition (far below one per commit: the stock root
    file system's geometry costs one each, see the fallback test)."""
    blocks = partition_blocks("meter")
    res = mpy(ESP32 + """
import os, vfs, mptest, store, record
from simhw.blockdev import FileBlockDevice
dev = FileBlockDevice(%r, blocks=%d)
Partition.parts["meter"] = dev
import esp32_atm90e26 as board
state, fallback, fs = board.mount_data("/data")
mptest.eq(state, store.FORMATTED_BLANK, "a new meter's partition is formatted")
mptest.check(not fallback, "not the fallback")
mptest.check(fs[0] is dev and fs[1:] == ("/data", store.LFS_READ, store.LFS_PROG),
             "the partition at /data with the store's geometry: %%r" %% (fs[1:],))
mptest.eq(os.statvfs("/data")[2], %d, "littlefs sees the whole partition")
s = store.RecordStore("/data/state.a", "/data/state.b", record.SIZE)
e0 = dev.erases
for i in range(1000):
    s.payload[0] = i & 0xFF
    s.commit()
erases = dev.erases - e0
mptest.check(erases <= 150, "erases per 1000 commits: %%d (one per commit on the root fs)" %% erases)
# A reboot mounts the partition as it is and finds the record.
vfs.umount("/data")
state, fallback, fs = board.mount_data("/data")
mptest.eq(state, store.MOUNTED, "mounted again, not formatted")
t = store.RecordStore("/data/state.a", "/data/state.b", record.SIZE)
mptest.check(t.load() and t.seq == 1000 and t.payload[0] == 999 & 0xFF, "the last record")
class B:
    _fs = fs
mptest.check(board.Board.remount(B()), "the board remounts /data after a flash error")
mptest.check(t.load() and t.seq == 1000, "and it is still there")
vfs.umount("/data")
mptest.done(erases_per_1000=erases)
""" % (str(tmp_path / "meter.img"), blocks, blocks), heap="1m")
    assert res.result["ok"], res.result["failures"]


FALLBACK = ESP32 + """
import os, struct, vfs, mptest, store, record
from simhw.cutdev import CutBlockDevice
# A stock image: no "meter" partition; the root file system was formatted and mounted by the
# port (inisetup/_boot.py) with VfsLfs2's defaults. 128 blocks: the stock root's geometry, smaller.
root = CutBlockDevice(128)
vfs.VfsLfs2.mkfs(root)
vfs.mount(vfs.VfsLfs2(root), "/r")
class flashbdev:
    bdev = root
sys.modules["flashbdev"] = flashbdev
import esp32_atm90e26 as board
"""


def test_fallback_on_a_stock_image_works_says_so_and_survives_power_cuts(mpy):
    res = mpy(FALLBACK + """
state, fallback, fs = board.mount_data("/r/data")
mptest.eq(state, store.MOUNTED, "nothing to mount or format")
mptest.check(fallback, "the fallback, which the app raises as store_fallback")
mptest.check(fs == (root, "/r", store.ROOT_READ, store.ROOT_PROG), "the root fs as _boot.py mounted it")
mptest.check("data" in os.listdir("/r"), "/data is a directory on the root file system")
# Smaller logs there, unless the board chose: the root also holds the firmware files.
c = board.fallback_config(board.CONFIG)
mptest.eq(c["storage"]["outbox"], board.FALLBACK_OUTBOX, "a smaller outbox")
mptest.check("storage" not in board.CONFIG, "the board's own config untouched")
mptest.eq(board.fallback_config({"storage": {"outbox": 99}})["storage"]["outbox"], 99, "a board's choice kept")

SIZE = record.SIZE
def fill(payload, seq):  # every byte of the record tells which commit wrote it
    payload[:] = bytes([seq & 0xFF]) * SIZE
    struct.pack_into("<I", payload, 0, seq)
def good(st):
    p = st.payload
    return struct.unpack_from("<I", p, 0)[0] == st.seq and p[4:] == bytes([st.seq & 0xFF]) * (SIZE - 4)

s = store.RecordStore("/r/data/state.a", "/r/data/state.b", SIZE)
e0 = root.erases
for seq in range(1, 201):
    fill(s.payload, seq)
    s.commit()
erases = root.erases - e0
mptest.check(erases >= 180, "the record is not inline there: %d erases for 200 commits" % erases)
class B:
    _fs = fs
mptest.check(board.Board.remount(B()), "the board remounts the root file system after a flash error")
t = store.RecordStore("/r/data/state.a", "/r/data/state.b", SIZE)
mptest.check(t.load() and t.seq == 200 and good(t), "record intact after the remount")
vfs.umount("/r")

# Power lost at every program and erase of 16 more commits: the root still mounts as it is, and
# the record is the last committed one or the one being written, whole.
image = bytes(root.mem)
K = 16
def run(cut):
    dev = CutBlockDevice(128, image=image)
    dev.cut_at = cut
    vfs.mount(vfs.VfsLfs2(dev), "/c")
    st = store.RecordStore("/c/data/state.a", "/c/data/state.b", SIZE)
    st.load()
    acked = st.seq
    for _ in range(K):
        fill(st.payload, acked + 1)
        try:
            st.commit()
        except OSError:
            break  # power lost
        acked = st.seq
    try:
        vfs.umount("/c")
    except OSError:
        pass
    return dev, acked

dev, acked = run(0)
writes = dev.writes
mptest.eq(acked, 200 + K, "a clean run commits all")
bad = []
erase_cuts = 0
for cut in range(1, writes + 1):
    dev, acked = run(cut)
    erase_cuts += dev.cut_kind == 2
    surv = dev.survivor()
    r = store.mount(surv, "/c", store.ROOT_READ, store.ROOT_PROG)
    st = store.RecordStore("/c/data/state.a", "/c/data/state.b", SIZE)
    ok = r == store.MOUNTED and st.load() and good(st) and st.damaged == 0 and st.seq in (acked, acked + 1)
    if not ok:
        bad.append((cut, r, acked, st.seq, st.damaged))
    if r != store.UNMOUNTED:
        vfs.umount("/c")
mptest.check(writes >= 3 * K, "every commit programs and erases: %d writes" % writes)
mptest.check(erase_cuts > 0, "some cuts tore an erase")
mptest.eq(bad, [], "cuts that lost the record or damaged the file system")
mptest.done(cut_points=writes, erase_cuts=erase_cuts)
""", heap="4m", timeout=120)
    assert res.result["ok"], res.result["failures"]
    assert res.result["cut_points"] >= 48
    assert "no 'meter' partition" in res.stdout  # the board says so on the console


FILL_LOGS = """
import os, vfs, mptest, store, record, logbook, events, billing
from outbox import Outbox
from simhw.cutdev import CutBlockDevice

def fill_logs(path, outbox):
    # Every ring of the default layout past its capacity, as after months of metering.
    s = store.RecordStore(path + "/state.a", path + "/state.b", record.SIZE)
    s.commit()
    s.commit()
    lb = logbook.Logbook(path)
    ob = Outbox(outbox, path + "/outbox")
    c = logbook.DEFAULTS
    rings = [(lb.events, c["events"]), (lb.profile, c["profile_days"] * 96)]
    for name, size in (("daily", billing.SNAP_SIZE), ("monthly", billing.SNAP_SIZE), ("topups", billing.TOPUP_SIZE)):
        rings.append((lb.ring(name, size), c[name]))
    for ring, n in rings:
        rec = bytes(ring.rec_size)
        for _ in range(n + n // 4):
            ring.append(rec)
    for code in range(1, len(events.NAMES)):  # every event type has its last-10 ring
        for _ in range(12):
            lb.event(code, 0, 1767225600)
    for _ in range(outbox + outbox // 4):
        ob.put(0, b"x" * 200)
    s.commit()  # the record still commits on the full layout
    return lb.faults + ob.faults

def used(path):
    st = os.statvfs(path)
    return st[2] - st[3]
"""


def test_the_logs_at_full_size_leave_the_meter_partition_room(mpy):
    """littlefs needs free blocks to copy on write and to level wear: with every log at its default
    size the meter partition must keep at least a tenth of its blocks free."""
    blocks = partition_blocks("meter")
    res = mpy(FILL_LOGS + """
from outbox import CAPACITY
dev = CutBlockDevice(%d)
store.mount(dev, "/m")
faults = fill_logs("/m", CAPACITY)
n = used("/m")
mptest.eq(faults, 0, "no flash errors")
mptest.check(n * 10 <= %d * 9, "%%d of %d blocks in use" %% n)
mptest.done(used=n)
""" % (blocks, blocks, blocks), heap="8m", timeout=180)
    assert res.result["ok"], res.result["failures"]


def test_the_fallback_logs_and_the_firmware_files_fit_the_stock_root(mpy, tmp_path):
    """On a stock image the root file system holds the firmware as .mpy files (make deploy) besides
    /data: with the fallback's smaller outbox and every other log at full size, littlefs keeps free
    blocks there too (the record is not inline there: every commit needs one)."""
    import sys
    sys.path.insert(0, str(REPO / "tools"))
    import build
    cross = build.mpy_cross()
    sizes = []
    for src in sorted((REPO / "firmware").glob("*.py")) + sorted((REPO / "boards").glob("esp32_*.py")):
        out = tmp_path / (src.stem + ".mpy")
        subprocess.run(cross + ["-march=xtensawin", "-o", str(out), str(src)], check=True, capture_output=True)
        sizes.append(out.stat().st_size)
    res = mpy(FILL_LOGS + """
import esp32_atm90e26 as board
dev = CutBlockDevice(%d)
store.mount(dev, "/r", store.ROOT_READ, store.ROOT_PROG)
for i, size in enumerate(%r):  # the deployed firmware
    with open("/r/m%%d.mpy" %% i, "wb") as f:
        f.write(bytes(size))
firmware = used("/r")
os.mkdir("/r/data")
outbox = board.fallback_config(board.CONFIG)["storage"]["outbox"]
faults = fill_logs("/r/data", outbox)
n = used("/r")
mptest.eq(faults, 0, "no flash errors")
mptest.check(n * 100 <= %d * 95, "%%d of %d blocks in use (firmware %%d)" %% (n, firmware))
mptest.done(used=n, firmware=firmware)
""" % (STOCK_ROOT_BLOCKS, sizes, STOCK_ROOT_BLOCKS, STOCK_ROOT_BLOCKS), heap="8m", timeout=300)
    assert res.result["ok"], res.result["failures"]
