# Block devices for littlefs in simulations: a host file (survives the process, like flash
# survives a reboot) with the extended block protocol VfsLfs2 uses.


class FileBlockDevice:
    def __init__(self, path, blocks=64, block_size=4096):
        self.bs = block_size
        self.n = blocks
        self.programs = 0
        self.erases = 0
        self.bytes_programmed = 0
        self._blank = b"\xff" * block_size  # preallocated: an erase must not need heap
        try:
            self._f = open(path, "r+b")
        except OSError:
            self._f = open(path, "w+b")
            for _ in range(blocks):
                self._f.write(self._blank)
            self._f.flush()

    def readblocks(self, block, buf, offset=0):
        self._f.seek(block * self.bs + offset)
        self._f.readinto(buf)

    def writeblocks(self, block, buf, offset=0):
        self._f.seek(block * self.bs + offset)
        self._f.write(buf)
        self.programs += 1
        self.bytes_programmed += len(buf)

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return self.n
        if op == 5:  # block size
            return self.bs
        if op == 6:  # erase
            self._f.seek(arg * self.bs)
            self._f.write(self._blank)
            self.erases += 1
            return 0
        if op == 3:  # sync
            self._f.flush()
        return 0


def mount(dev, path):
    """Mount littlefs from dev at path, formatting a new meter's blank flash; an unmountable one is
    reformatted only as a last resort. Returns store.MOUNTED / FORMATTED_BLANK / REFORMATTED."""
    import store

    return store.mount(dev, path)


def remount(dev, path):
    import store

    return store.remount(dev, path)
