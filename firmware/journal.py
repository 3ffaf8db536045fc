# Fixed-capacity record rings on littlefs, with rotation.
# A ring is a directory of segment files named by segment number; segment s holds the records
# with seq in [s * per_seg, (s + 1) * per_seg). Each record is [seq u32][payload][crc32 u32], so a
# stale or damaged record is never returned as data. Rotation deletes whole old segments, so the
# ring always keeps at least `capacity` records and never rewrites old ones. littlefs makes each
# write visible only at close, so a power cut loses at most the record being appended.
# With path=None the ring lives in RAM (same interface, lost at reset).
import os
import struct
from binascii import crc32
from micropython import const

_SEG_BYTES = const(4096)  # aim for one erase block per segment
_ENOENT = const(2)
_ENOSPC = const(28)
_EIO = const(5)
# Entries a ring's directory may hold: the per-type rings share one (3 segments x ~60 types);
# more means a directory listing that does not end (see _segments).
_MAX_ENTRIES = const(1024)


class Ring:
    def __init__(self, path, rec_size, capacity, per_seg=0, prefix=""):
        """path: the ring's directory; with `prefix`, the ring's segments are the files
        `<path>/<prefix><seg>` and the directory may hold other rings (other prefixes)."""
        if type(rec_size) is not int or rec_size <= 0 or type(capacity) is not int or capacity <= 0:
            raise ValueError("rec_size and capacity must be positive ints")
        self.path = path
        self._prefix = prefix
        self.rec_size = rec_size
        self.capacity = capacity
        self._len = rec_size + 8
        self._buf = bytearray(self._len)
        self.first_seq = 0  # oldest readable record
        self.next_seq = 0  # seq the next append gets
        if path is None:
            self._per = capacity
            self._mem = bytearray(self._len * capacity)
            return
        self._mem = None
        self._per = per_seg or max(1, min(capacity, _SEG_BYTES // self._len))
        # full segments that cover `capacity`, plus the one being filled
        self._keep = (capacity + self._per - 1) // self._per + 1
        self._scan()

    # -- files ------------------------------------------------------------------
    def _name(self, seg):
        return "%s/%s%d" % (self.path, self._prefix, seg)

    def _segments(self):
        segs = []
        p = self._prefix
        k = len(p)
        left = _MAX_ENTRIES
        for e in os.ilistdir(self.path):
            # Bounded: on a flash returning errors littlefs can hand out the same entries forever.
            left -= 1
            if left < 0:
                raise OSError(_EIO)
            n = e[0]
            if n[:k] == p and n[k:].isdigit():
                segs.append(int(n[k:]))
        segs.sort()
        return segs

    def _scan(self):
        try:
            os.mkdir(self.path)
        except OSError:
            pass  # exists
        segs = self._segments()
        if not segs:
            return
        last = segs[-1]
        # A cut between creating a segment and trimming can leave one extra: trim it now.
        while len(segs) > self._keep:
            self._remove(segs.pop(0))
        size = os.stat(self._name(last))[6]
        n = size // self._len
        if size % self._len:
            n = self._per  # a damaged tail: close this segment, its readable records stay
        self.next_seq = last * self._per + min(n, self._per)
        self.first_seq = segs[0] * self._per

    def _remove(self, seg):
        try:
            os.remove(self._name(seg))
        except OSError as e:
            if e.args[0] != _ENOENT:
                raise

    def _write(self, seq):
        seg = seq // self._per
        slot = seq - seg * self._per
        name = self._name(seg)
        if slot == 0:
            f = open(name, "wb")
        else:
            try:
                f = open(name, "r+b")
            except OSError as e:
                if e.args[0] != _ENOENT:
                    raise
                # A failing read can make littlefs report an existing segment as missing, and
                # "wb" would then wipe its earlier records: ask again before creating it.
                try:
                    f = open(name, "r+b")
                except OSError as e:
                    if e.args[0] != _ENOENT:
                        raise
                    f = open(name, "wb")  # really gone: its earlier records are lost anyway
        try:
            # Seek rather than append: a write that reported an error but landed is overwritten.
            f.seek(slot * self._len)
            f.write(self._buf)
        finally:
            f.close()

    def _trim(self, newest_seg):
        first = (newest_seg - self._keep + 1) * self._per
        for seg in range(self.first_seq // self._per, newest_seg - self._keep + 1):
            self._remove(seg)
        if first > self.first_seq:
            self.first_seq = first

    def _drop_oldest(self):
        """Free space by rotating out the oldest segment early; False if nothing is left to drop."""
        seg = self.first_seq // self._per
        if seg >= self.next_seq // self._per:
            return False
        self._remove(seg)
        self.first_seq = (seg + 1) * self._per
        return True

    # -- records ----------------------------------------------------------------
    def append(self, data):
        """Store `data` (at most rec_size bytes, zero-padded) as the next record; returns its seq.
        Raises OSError if the file system refuses (after rotating early once on a full disk)."""
        n = len(data)
        if n > self.rec_size:
            raise ValueError("record longer than rec_size")
        seq = self.next_seq
        b = self._buf
        struct.pack_into("<I", b, 0, seq)
        b[4:4 + n] = data
        for i in range(4 + n, 4 + self.rec_size):
            b[i] = 0
        struct.pack_into("<I", b, self._len - 4, crc32(memoryview(b)[:self._len - 4]))
        if self._mem is not None:
            o = (seq % self._per) * self._len
            self._mem[o:o + self._len] = b
            self.next_seq = seq + 1
            if self.next_seq - self.first_seq > self.capacity:
                self.first_seq = self.next_seq - self.capacity
            return seq
        try:
            self._write(seq)
        except OSError as e:
            if e.args[0] != _ENOSPC or not self._drop_oldest():
                raise
            self._write(seq)
        self.next_seq = seq + 1
        if seq % self._per == 0:
            self._trim(seq // self._per)
        return seq

    def read(self, seq, buf):
        """Copy record `seq` into buf[:rec_size]. False once rotated out, not yet written, or damaged."""
        if seq < self.first_seq or seq >= self.next_seq:
            return False
        b = self._buf
        if self._mem is not None:
            o = (seq % self._per) * self._len
            b[:] = memoryview(self._mem)[o:o + self._len]
        else:
            seg = seq // self._per
            try:
                with open(self._name(seg), "rb") as f:
                    f.seek((seq - seg * self._per) * self._len)
                    if f.readinto(b) != self._len:
                        return False
            except OSError:
                return False
        if struct.unpack_from("<I", b, 0)[0] != seq:
            return False
        if struct.unpack_from("<I", b, self._len - 4)[0] != crc32(memoryview(b)[:self._len - 4]):
            return False
        buf[:self.rec_size] = memoryview(b)[4:4 + self.rec_size]
        return True

    def last(self, buf):
        """Read the newest readable record into buf; returns its seq or -1."""
        seq = self.next_seq - 1
        while seq >= self.first_seq:
            if self.read(seq, buf):
                return seq
            seq -= 1
        return -1
