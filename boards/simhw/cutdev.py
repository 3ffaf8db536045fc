# A RAM flash for littlefs (extended block protocol) that can lose power or fail on purpose.
#   cut_at = N    the N-th program or erase is torn (half of it lands) and power is lost:
#                 from then on every program and erase is refused (-EIO) and changes nothing.
#   fail_at = N   the N-th operation (read, program or erase) returns -EIO; with sticky=True
#                 every later operation fails too (a dying chip), otherwise only that one.
# Errors are reported by return code, never by raising: littlefs calls back into Python from
# C frames, sometimes with the heap locked (finalisers); copies fall back to index loops then.
from micropython import const

_EIO = const(-5)


class CutBlockDevice:
    def __init__(self, blocks=128, block_size=4096, image=None):
        self.bs = block_size
        self.n = blocks
        if image is not None:
            self.mem = bytearray(image)  # the bytes that survived, on a fresh device
        else:
            self.mem = bytearray(b"\xff" * (blocks * block_size))
        self._mv = memoryview(self.mem)
        self._blank = b"\xff" * block_size
        self.programs = 0
        self.erases = 0
        self.reads = 0
        self.bytes_programmed = 0
        self.writes = 0  # programs + erases: the cut counter
        self.ops = 0  # reads + programs + erases: the I/O-error counter
        self.cut_at = 0
        self.fail_at = 0
        self.sticky = False
        self.dead = False  # power lost
        self.cut_kind = 0  # 1 = the cut tore a program, 2 = an erase
        self.failures = 0  # I/O errors returned

    def survivor(self):
        """A powered-up device holding what was on this one (no cut, no faults armed)."""
        return CutBlockDevice(self.n, self.bs, self.mem)

    def _fault(self):
        self.ops += 1
        if self.fail_at and (self.ops == self.fail_at or (self.sticky and self.ops > self.fail_at)):
            self.failures += 1
            return True
        return False

    def _cut(self):
        """Count a program/erase; True if power goes at this one."""
        self.writes += 1
        return self.cut_at and self.writes == self.cut_at

    def readblocks(self, block, buf, offset=0):
        if self._fault():
            return _EIO
        self.reads += 1
        o = block * self.bs + offset
        try:
            buf[:] = self._mv[o:o + len(buf)]
        except MemoryError:  # heap locked (a finaliser closing a file): copy without allocating
            mem = self.mem
            for i in range(len(buf)):
                buf[i] = mem[o + i]
        return 0

    def writeblocks(self, block, buf, offset=0):
        if self.dead or self._fault():
            return _EIO
        n = len(buf)
        if self._cut():
            n //= 2  # torn: the first half lands
            self.dead = True
            self.cut_kind = 1
        o = block * self.bs + offset
        try:
            self._mv[o:o + n] = memoryview(buf)[:n]  # littlefs only programs erased bytes
        except MemoryError:
            mem = self.mem
            for i in range(n):
                mem[o + i] = buf[i]
        if self.dead:
            return _EIO
        self.programs += 1
        self.bytes_programmed += n
        return 0

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return self.n
        if op == 5:  # block size
            return self.bs
        if op == 6:  # erase
            if self.dead or self._fault():
                return _EIO
            n = self.bs
            if self._cut():
                n //= 2
                self.dead = True
                self.cut_kind = 2
            o = arg * self.bs
            try:
                self._mv[o:o + n] = memoryview(self._blank)[:n]
            except MemoryError:
                mem = self.mem
                for i in range(o, o + n):
                    mem[i] = 0xFF
            if self.dead:
                return _EIO
            self.erases += 1
            return 0
        return 0
