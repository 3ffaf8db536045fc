# The ESP32's SPI flash in the virtual world: a host file as the flash image (it outlives the
# process like flash outlives a power cut) and the partition table the image was built with.
# NOR semantics: an erase sets a 4096-byte sector to 0xFF, a write can only clear bits (the file
# gets old AND new), as esp_partition_write does on the chip.
# Power cuts inside flash operations (in-process, for tests): `ops` counts every program (a write()
# call) and every 4096-byte sector an erase clears, from the Flash's construction on; when the op
# numbered `cut_at` starts, half of it happens (a program writes the first half of its bytes, an
# erase sets the first half of the sector to ones and leaves the rest as it was) and PowerCut is
# raised. To cut at the k-th op from now: flash.cut_at = flash.ops + k.
# Runs under CPython too (tools/esp32_host.py writes app images into a flash image file).
try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

SECTOR = const(4096)
TYPES = {"app": 0, "data": 1}
SUBTYPES = {
    0: {"factory": 0x00, "test": 0x20},
    1: {"ota": 0x00, "phy": 0x01, "nvs": 0x02, "coredump": 0x03, "nvs_keys": 0x04, "efuse": 0x05,
        "undefined": 0x06, "esphttpd": 0x80, "fat": 0x81, "spiffs": 0x82, "littlefs": 0x83},
}
# ESP32_GENERIC (4 MiB) is built with ports/esp32/partitions-4MiBplus.csv; at start-up the port
# adds a "vfs" partition over the rest of the flash when the table has neither "vfs" nor "ffat".
GENERIC = """
nvs,      data, nvs,     0x9000,  0x6000,
phy_init, data, phy,     0xf000,  0x1000,
factory,  app,  factory, 0x10000, 0x1F0000,
"""


class PowerCut(BaseException):
    """The power went in the middle of a flash operation (Flash.cut_at). A BaseException, so no
    `except Exception` (or OSError) in the firmware swallows it."""
    reason = "power_cut"


def _num(text):
    t = text.strip().lower()
    mult = 1
    if t.endswith("k"):
        t, mult = t[:-1], 1024
    elif t.endswith("m"):
        t, mult = t[:-1], 1024 * 1024
    return int(t, 0) * mult


def parse_table(text, flash_size):
    """Partitions from an ESP-IDF partition CSV: [(label, type, subtype, offset, size)]. Empty
    offsets follow the previous partition (apps aligned to 64 KiB, data to 4 KiB), from 0x9000."""
    parts = []
    nxt = 0x9000
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        cols = [c.strip() for c in line.split(",")]
        if len(cols) < 5:
            raise ValueError("partition table: %r needs name, type, subtype, offset, size" % line)
        label = cols[0]
        typ = TYPES[cols[1]] if cols[1] in TYPES else _num(cols[1])
        sub = SUBTYPES.get(typ, {}).get(cols[2])
        if sub is None:
            if typ == 0 and cols[2].startswith("ota_"):
                sub = 0x10 + int(cols[2][4:])
            else:
                sub = _num(cols[2])
        align = 0x10000 if typ == 0 else SECTOR
        off = _num(cols[3]) if cols[3] else (nxt + align - 1) // align * align
        size = _num(cols[4])
        if off % SECTOR or size % SECTOR or off + size > flash_size:
            raise ValueError("partition %r at 0x%x size 0x%x does not fit %d bytes of flash in sectors" % (
                label, off, size, flash_size))
        parts.append((label, typ, sub, off, size))
        nxt = off + size
    if not any(p[0] in ("vfs", "ffat") and p[1] == 1 for p in parts):
        end = max(p[3] + p[4] for p in parts) if parts else 0
        if 0 < end < flash_size:
            parts.append(("vfs", 1, 0x81, end, flash_size - end))
    return parts


class Flash:
    def __init__(self, path, size, table_path=None):
        self.size = size
        self.erases = 0
        self.ops = 0  # programs and sector erases so far (cut_at counts in these)
        self.cut_at = None  # the op that the power cut interrupts, or None
        if table_path:
            with open(table_path) as f:
                text = f.read()
        else:
            text = GENERIC
        self.parts = parse_table(text, size)
        self._buf = bytearray(SECTOR)  # scratch for read-modify-write: no allocation per write
        try:
            self._f = open(path, "r+b")
        except OSError:
            self._f = open(path, "w+b")  # a new chip: all ones
            blank = b"\xff" * SECTOR
            for _ in range(size // SECTOR):
                self._f.write(blank)
            self._f.flush()

    def _range(self, addr, n):
        if addr < 0 or n < 0 or addr + n > self.size:
            raise OSError(-0x104, "ESP_ERR_INVALID_SIZE")

    def read(self, addr, buf):
        self._range(addr, len(buf))
        self._f.seek(addr)
        self._f.readinto(buf)

    def write(self, addr, data):
        n = len(data)
        self._range(addr, n)
        self.ops += 1
        cut = self.ops == self.cut_at
        if cut:
            n //= 2
        mv = memoryview(data)
        scratch = self._buf
        done = 0
        while done < n:
            k = n - done if n - done < SECTOR else SECTOR
            old = memoryview(scratch)[:k]
            self._f.seek(addr + done)
            self._f.readinto(old)
            for i in range(k):
                old[i] &= mv[done + i]
            self._f.seek(addr + done)
            self._f.write(old)
            done += k
        if cut:
            raise PowerCut()

    def erase(self, addr, n):
        self._range(addr, n)
        if addr % SECTOR or n % SECTOR:
            raise OSError(-0x102, "ESP_ERR_INVALID_ARG")
        scratch = self._buf
        for i in range(SECTOR):
            scratch[i] = 0xFF
        for a in range(addr, addr + n, SECTOR):
            self.ops += 1
            self._f.seek(a)
            self.erases += 1
            if self.ops == self.cut_at:
                self._f.write(memoryview(scratch)[:SECTOR // 2])
                raise PowerCut()
            self._f.write(scratch)

    def close(self):
        """Flush and close the image file (the host tools, before another process opens it)."""
        self._f.close()
