# ESP32 port stand-in: esp32 (the Partition class), following ports/esp32/esp32_partition.c of
# MicroPython 1.28 and the stubs' signatures. Partitions are windows on the virtual flash
# (esp32flash): a block device with 4096-byte blocks by default, erased by ioctl(6) or by a plain
# writeblocks() (littlefs uses the extended protocol: writes with an offset, erases by ioctl).
# On a table with OTA slots, BOOT, RUNNING, set_boot(), get_next_update() and
# mark_app_valid_cancel_rollback() are ESP-IDF's esp_ota_ops (esp32ota) on the OTA data, and the
# running slot is the one the bootloader started at this boot (esp32world.running).
import esp32world as _w
import esp32ota

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
            f = _w.flash
            if f is not None and esp32ota.has_ota(f):
                p = _running(f) if id == Partition.RUNNING else esp32ota.boot_partition(f)
                part = [p] if p else []
            else:
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

    def _span(self, off, n):
        # esp_partition_read/write/erase_range stay inside the partition (a write past a slot's
        # end must not land in the next partition): the flash address, or OSError as the port.
        if off < 0 or off > self._size:
            raise OSError(-0x102, "ESP_ERR_INVALID_ARG")
        if n > self._size - off:
            raise OSError(-0x104, "ESP_ERR_INVALID_SIZE")
        return self._addr + off

    def readblocks(self, block, buf, offset=0):
        _w.flash.read(self._span(block * self._bs + offset, len(buf)), buf)

    def writeblocks(self, block, buf, offset=None):
        off = block * self._bs
        if offset is None:
            # A simple write erases first (whole sectors when blocks are sector-sized).
            if self._bs >= _NATIVE:
                _w.flash.erase(self._span(off, len(buf)), len(buf))
            else:
                raise OSError(95, "block sizes below 4096 are not modelled")  # EOPNOTSUPP
        else:
            off += offset
        _w.flash.write(self._span(off, len(buf)), buf)

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
            _w.flash.erase(self._span(arg * _NATIVE, _NATIVE), _NATIVE)
            return 0
        return None

    def _tuple(self):
        return (self._label, self._type, self._sub, self._addr, self._size)

    def set_boot(self):
        """esp_ota_set_boot_partition: the image must pass esp_image_verify, else
        OSError(-0x1503, "ESP_ERR_OTA_VALIDATE_FAILED") and the OTA data stays as it was."""
        f = _w.flash
        if f is not None and esp32ota.has_ota(f):
            esp32ota.set_boot(f, self._tuple())
        # Without OTA slots nothing is modelled: the port would check the factory image and then
        # raise OSError(-0x105, "ESP_ERR_NOT_FOUND") for the missing otadata partition.

    def get_next_update(self):
        """esp_ota_get_next_update_partition(self): the OTA slot after this one, else ota_0;
        OSError(ENOENT) without OTA slots, as the port."""
        f = _w.flash
        p = esp32ota.next_update(f, self._tuple()) if f is not None else None
        if p is None:
            raise OSError(2)
        o = object.__new__(Partition)
        o._init(p, _NATIVE)
        return o

    @classmethod
    def mark_app_valid_cancel_rollback(cls):
        """esp_ota_mark_app_valid_cancel_rollback: the selected slot's OTA entry becomes VALID
        (written only when it is not VALID yet, whatever state it had, NEW included)."""
        f = _w.flash
        if f is not None and esp32ota.has_ota(f):
            esp32ota.mark_valid(f)
        # Without OTA slots nothing is modelled: the port raises OSError(-0x105,
        # "ESP_ERR_NOT_FOUND") when the table has no otadata partition.

    def __repr__(self):
        return "<Partition type=%u, subtype=%u, address=%u, size=%u, label=%s, encrypted=0>" % (
            self._type, self._sub, self._addr, self._size, self._label)


def _running(f):
    # The slot the bootloader started; before any boot (a test on a bare world), the one the OTA
    # data selects.
    if _w.running is not None:
        return esp32ota.by_label(f, _w.running)
    return esp32ota.boot_partition(f)


def _find(type, subtype, label):
    f = _w.flash
    if f is None:
        return []
    return [p for p in f.parts if p[1] == type and (subtype == 0xFF or p[2] == subtype)
            and (label is None or p[0] == label)]
