# Power-loss-safe record store: two slots (A/B) on littlefs, each holding
# [payload][seq u32][crc32 u32]. A commit rewrites the older slot, so a power cut
# mid-write can only damage that slot; boot picks the valid slot with the highest seq.
# littlefs itself makes each file's new contents visible only at close.
import struct
from binascii import crc32

_TRAILER = "<II"


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

    def _read(self, path, into):
        try:
            with open(path, "rb") as f:
                n = f.readinto(into)
        except OSError:
            return -2  # missing or unreadable
        if n != len(into):
            return -1
        seq, crc = struct.unpack_from(_TRAILER, into, self._size)
        if crc32(memoryview(into)[: self._size + 4]) != crc:
            return -1
        return seq

    def load(self):
        """Fill `payload` from the newest valid slot. Returns False when neither slot is valid."""
        other = bytearray(len(self._buf))
        best = -1
        self.damaged = 0
        for i in (0, 1):
            seq = self._read(self._paths[i], other)
            if seq == -1:
                self.damaged += 1
            elif seq > best:
                best = seq
                self._buf[:] = other
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
