# Power-loss-safe record store: two slots (A/B) on littlefs, each holding
# [payload][seq u32][crc32 u32]. A commit rewrites the older slot, so a power cut
# mid-write can only damage that slot; boot picks the valid slot with the highest seq.
# littlefs itself makes each file's new contents visible only at close.
import struct
import vfs
from binascii import crc32
from micropython import const

_TRAILER = "<II"
_MOUNT_TRIES = const(3)
_LOAD_TRIES = const(3)
_ENOENT = const(2)

# mount() results
MOUNTED = const(0)
FORMATTED_BLANK = const(1)  # a new meter's flash (never used beyond an interrupted format)
REFORMATTED = const(2)  # the file system could not be mounted and was formatted: data lost
UNMOUNTED = const(3)  # not even a fresh format mounts: the meter runs without storage


def _never_used(dev):
    """True if nothing beyond littlefs' superblock pair (blocks 0 and 1) was ever written: a new
    meter's flash, or a format that a power cut interrupted. Every block littlefs uses starts
    with programmed bytes (a revision count or data), so looking at each block's head is enough."""
    buf = bytearray(16)
    for block in range(2, dev.ioctl(4, 0)):
        if dev.readblocks(block, buf, 0):  # a driver may report errors by return code
            raise OSError(5)  # unknown, not "used": mount() retries
        for b in buf:
            if b != 0xFF:
                return False
    return True


# littlefs keeps a file inline in its directory's metadata when it fits the cache (4 x the larger
# of read and prog size here); otherwise every rewrite of the file takes a new block and an erase.
# The hot record must stay inline: at 256 bytes with the default 32-byte sizes it cost one erase
# per commit (1015 per 1000), with 128 it costs 101 per 1000 (bench/storage.py). So the ESP32
# board mounts /data from its own "meter" partition with these (boards/esp32_meter/partitions.csv).
LFS_READ = const(128)
LFS_PROG = const(128)
INLINE_MAX = const(4 * 128)
# The root file system of the ESP32 port, mounted by its _boot.py with VfsLfs2's defaults: inline
# limit 128 bytes, so the record is not inline there (the stock-image fallback, docs/storage.md).
ROOT_READ = const(32)
ROOT_PROG = const(32)


def _lfs(dev, rs, ps):
    return vfs.VfsLfs2(dev, readsize=rs, progsize=ps)


def _blank(dev):
    """_never_used(dev), with retries; False (not a new meter's) when it cannot be read."""
    for _ in range(_MOUNT_TRIES):
        try:
            return _never_used(dev)
        except OSError:
            pass
    return False


def mount(dev, path, rs=LFS_READ, ps=LFS_PROG):
    """Mount littlefs from block device `dev` at `path` (read/prog sizes rs/ps: the store's own
    unless a test or benchmark reproduces another geometry). A failed mount is retried (an I/O error
    can be transient); reformatting is the last resort and is reported as REFORMATTED so the app
    raises an event and treats the record as lost, until the app has committed that (fsmark.py).
    UNMOUNTED if even a fresh format fails."""
    for _ in range(_MOUNT_TRIES):
        try:
            vfs.mount(_lfs(dev, rs, ps), path)
            import fsmark  # only here: a stock image's /data (no mount of its own) never loads it
            return REFORMATTED if fsmark.pending(path, lambda: _blank(dev)) else MOUNTED
        except OSError:
            pass
    # Was it a new meter's blank flash (a factory format, nothing lost) or damaged storage? A read
    # error here is retried like the mount: one transient error must not make a new meter look
    # like one that lost its data (it would start in safe mode without its opening balance).
    blank = _blank(dev)
    for _ in range(_MOUNT_TRIES):  # a transient error during the format is retried as well
        try:
            vfs.VfsLfs2.mkfs(dev, readsize=rs, progsize=ps)
            vfs.mount(_lfs(dev, rs, ps), path)
            import fsmark
            fsmark.mark(path, fsmark.BLANK if blank else fsmark.REFORMAT)
            return FORMATTED_BLANK if blank else REFORMATTED
        except OSError:
            pass
    return UNMOUNTED


def remount(dev, path, rs=LFS_READ, ps=LFS_PROG):
    """Mount again after an I/O error: littlefs' in-RAM state may no longer match the flash then
    (files can look missing), so nothing may be read or written through the old mount. Never
    formats. Returns True when mounted."""
    try:
        vfs.umount(path)
    except OSError:
        pass
    for _ in range(_MOUNT_TRIES):
        try:
            vfs.mount(_lfs(dev, rs, ps), path)
            return True
        except OSError:
            pass
    return False


_LONGER = const(-3)  # _read(): a slot longer than this firmware's record


class RecordStore:
    def __init__(self, path_a, path_b, size):
        self._paths = (path_a, path_b)
        self._size = size  # payload bytes
        self._buf = bytearray(size + 8)
        self.payload = memoryview(self._buf)[:size]  # fill this, then commit()
        self.seq = 0
        self.commits = 0
        self.bytes_written = 0
        self.damaged = 0  # slots found unreadable or corrupt at the last load
        # Payload bytes of the record load() found: a record written by another firmware version
        # may be shorter (an older layout) or longer (a newer one: `length` is then past `size`).
        self.length = 0

    def _read(self, path, into):
        """(seq, payload length) of the slot at `path`, read into `into`; seq -2 when the slot
        is missing or empty, -1 when it is damaged. A slot longer than `into` (a newer firmware's
        record) reports its length with only its head read: the caller must not use it."""
        try:
            with open(path, "rb") as f:
                n = f.readinto(into)
                more = f.read(1) if n == len(into) else b""
        except OSError as e:
            return (-2 if e.args[0] == _ENOENT else -1), 0  # missing, or unreadable (damaged)
        if n == 0:
            return -2, 0  # created but never written: a first commit into this slot was cut short
        if more:
            return _LONGER, len(into) + 1
        if n < 8:
            return -1, 0
        size = n - 8
        seq, crc = struct.unpack_from(_TRAILER, into, size)
        if crc32(memoryview(into)[: size + 4]) != crc:
            return -1, 0
        return seq, size

    def load(self):
        """Fill `payload` from the newest valid slot, falling back to the other one when the newest
        is damaged. Returns False when neither slot is valid; `damaged` counts the bad slots."""
        found = False
        for _ in range(_LOAD_TRIES):  # a read error can be transient: look again before falling back
            found = self._load()
            if not self.damaged:
                break
        return found

    def _load(self):
        other = bytearray(len(self._buf))
        best = -1
        self.damaged = 0
        self.length = 0
        for i in (0, 1):
            seq, n = self._read(self._paths[i], other)
            if seq == -1:
                self.damaged += 1
            elif seq == _LONGER:
                # Not damage: a record too long for this firmware. Hand over its head, so the
                # caller can tell a newer version and leave both slots alone.
                self._buf[:] = other
                self.length = n
                return True
            elif seq > best:
                best = seq
                self._buf[:] = other
                self.length = n
        if best < 0:
            return False
        self.seq = best
        return True

    def commit(self):
        """Write payload as the next record; raises OSError if the file system refuses."""
        self.seq += 1
        struct.pack_into("<I", self._buf, self._size, self.seq)
        struct.pack_into("<I", self._buf, self._size + 4, crc32(memoryview(self._buf)[: self._size + 4]))
        try:
            with open(self._paths[self.seq & 1], "wb") as f:
                f.write(self._buf)
        except OSError:
            self.seq -= 1  # retry into the same slot: the other one holds the last good record
            raise
        self.commits += 1
        self.bytes_written += len(self._buf)
