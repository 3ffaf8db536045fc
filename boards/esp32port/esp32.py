# ESP32 port stand-in: esp32 (the Partition class), following ports/esp32/esp32_partition.c of
# MicroPython 1.28 and the stubs' signatures. Partitions are windows on the virtual flash
# (esp32flash): a block device with 4096-byte blocks by default, erased by ioctl(6) or by a plain
# writeblocks() (littlefs uses the extended protocol: writes with an offset, erases by ioctl).
import esp32world as _w

_NATIVE = 4096


class Partition:
    BOOT = 0
    RUNNING = 1
    TYPE_APP = 0
    TYPE_DATA = 1

    def __init__(self, id, block_size=_NATIVE):
        if isinstance(id, int):
            if id not in (Partition.BOOT, Partition.RUNNING):
                raise ValueError()
            part = _find(0, 0xFF, None)  # one app partition (no OTA): it is boot and running
        else:
            part = _find(0, 0xFF, id) or _find(1, 0xFF, id)
        if not part:
            raise OSError(2)  # ENOENT, as the port
        self._init(part[0], block_size)

    def _init(self, p, block_size):
        self._label, self._type, self._sub, self._addr, self._size = p
        self._bs = block_size

    @staticmethod
    def find(type=0, subtype=0xFF, label=None, block_size=_NATIVE):
        out = []
        for p in _find(type, subtype, label):
            o = object.__new__(Partition)
            o._init(p, block_size)
            out.append(o)
        return out

    def info(self):
        return (self._type, self._sub, self._addr, self._size, self._label, False)

    def readblocks(self, block, buf, offset=0):
        _w.flash.read(self._addr + block * self._bs + offset, buf)

    def writeblocks(self, block, buf, offset=None):
        a = self._addr + block * self._bs
        if offset is None:
            # A simple write erases first (whole sectors when blocks are sector-sized).
            if self._bs >= _NATIVE:
                _w.flash.erase(a, len(buf))
            else:
                raise OSError(95, "block sizes below 4096 are not modelled")  # EOPNOTSUPP
        else:
            a += offset
        _w.flash.write(a, buf)

    def ioctl(self, op, arg):
        if op in (1, 2, 3):  # INIT, DEINIT, SYNC
            return 0
        if op == 4:  # BLOCK_COUNT
            return self._size // self._bs
        if op == 5:  # BLOCK_SIZE
            return self._bs
        if op == 6:  # BLOCK_ERASE
            if self._bs != _NATIVE:
                return -22  # -EINVAL
            _w.flash.erase(self._addr + arg * _NATIVE, _NATIVE)
            return 0
        return None

    def set_boot(self):
        pass

    def get_next_update(self):
        raise OSError(2)  # no OTA partitions in the tables modelled here

    @classmethod
    def mark_app_valid_cancel_rollback(cls):
        pass

    def __repr__(self):
        return "<Partition type=%u, subtype=%u, address=%u, size=%u, label=%s, encrypted=0>" % (
            self._type, self._sub, self._addr, self._size, self._label)


def _find(type, subtype, label):
    f = _w.flash
    if f is None:
        return []
    return [p for p in f.parts if p[1] == type and (subtype == 0xFF or p[2] == subtype)
            and (label is None or p[0] == label)]
