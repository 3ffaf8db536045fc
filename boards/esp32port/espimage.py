# ESP-IDF application images, as the bootloader and esp_ota_set_boot_partition see them
# (esp_app_format.h, esp_app_desc.h, esp_image_format.c of ESP-IDF 5.5): built for the host's OTA
# tests and checked by the bootloader stand-in (esp32ota). Runs under CPython too (the host tools
# flash an image into a slot as esptool would), so: struct, hashlib and json only.
#   build(version, ...)      the bytes of an image whose app descriptor carries `version`
#   check(read, limit)       what esp_image_verify accepts: a dict of what is in it, or None
#   desc_version(first)      the version in an image's first 288 bytes
# Layout: a 24-byte esp_image_header_t, segments (each an 8-byte header and data_len bytes, a
# multiple of 4), zero padding up to a checksum byte at the end of a 16-byte block (0xEF XOR every
# byte of segment data), then the SHA-256 of everything before it (hash_appended = 1).
# The first segment is DROM and starts with the 256-byte esp_app_desc_t; the second carries the
# host's fault marker (b"PMSIM" + JSON) when the image is to misbehave: its app is unusable
# ("crash") or the metering chip stays silent ("selftest"), so tests can ship a bad release.
import struct
import hashlib
import json

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

HEADER = "<BBBBIB3sHBHH4sB"  # esp_image_header_t, packed: 24 bytes
DESC = "<II8s32s32s16s16s32s32sHHB3s72s"  # esp_app_desc_t: 256 bytes
_MAGIC = const(0xE9)
_DESC_MAGIC = 0xABCD5432  # a long int on the ESP32's 31-bit small ints: not a const()
_MAX_SEGMENTS = const(16)
_HEAD = const(24)
_SEG = const(8)
_DESC_LEN = const(256)
FIRST = const(288)  # header, first segment header, app descriptor
_CHUNK = const(4096)
_PAGE = const(0x10000)  # flash MMU page: a mapped segment's data sits at its address modulo this
_MAX_LEN = const(0x1000000)  # a segment of 16 MiB or more is refused
_CHIP_REV = const(301)  # the host's chip: ESP32 v3.1 (ESP32-D0WD-V3 of the WROOM-32E)
_MAX_REV = const(399)  # what ESP-IDF 5.5 writes for the ESP32: up to v3.99
MARKER = b"PMSIM"
FAULTS = ("crash", "selftest")
IDF_VER = "v5.5.1"
# Load addresses (ESP32 memory map): DROM and IROM are mapped from flash through the cache,
# DRAM and IRAM are loaded by the bootloader.
_DROM = 0x3F400020
_DRAM = 0x3FFB0000
_IRAM = 0x40080000
_IROM = 0x400D0000
_IROM_END = 0x40400000
_DROM_LOW = 0x3F400000
_DROM_END = 0x3F800000


def _mapped(addr):
    return (_DROM_LOW <= addr < _DROM_END) or (_IROM <= addr < _IROM_END)


def _field(text, n):
    b = text.encode() if isinstance(text, str) else bytes(text)
    if len(b) >= n:
        raise ValueError("%r is longer than the %d-byte field" % (text, n - 1))
    return b


def _fill(out, start, n, seed):
    """n pseudo-random bytes from `seed` (SHA-256 in counter mode) into out[start:]: filler."""
    i = 0
    pos = 0
    while pos < n:
        d = hashlib.sha256(seed + struct.pack("<I", i)).digest()
        k = n - pos if n - pos < 32 else 32
        out[start + pos:start + pos + k] = d[:k]
        pos += k
        i += 1


def _xor_in(x, mv):
    # The checksum, a chunk at a time: chunks of up to 4096 bytes XORed as little-endian ints (the
    # loop runs in C); _checksum folds the result's bytes into one. Which byte of a chunk lands
    # where does not matter: every byte is XORed into the same one in the end.
    for a in range(0, len(mv), _CHUNK):
        x ^= int.from_bytes(mv[a:a + _CHUNK], "little")
    return x


def _checksum(x):
    acc = 0xEF  # ESP_ROM_CHECKSUM_INITIAL
    for b in x.to_bytes(_CHUNK, "little"):
        acc ^= b
    return acc


def build(version, size=None, fault=None, project="micropython", chip_id=0, payload_seed=0):
    """A structurally real ESP32 application image with `version` in its app descriptor, about
    `size` bytes long when given (filler code up to it), carrying the host's `fault` marker."""
    if fault is not None and fault not in FAULTS:
        raise ValueError("fault %r: one of %r or None" % (fault, FAULTS))
    seed = ("%s|%s|%d" % (version, project, payload_seed)).encode()
    desc = struct.pack(DESC, _DESC_MAGIC, 0, b"", _field(version, 32), _field(project, 32),
                       b"00:00:00", b"Jan  1 2026", _field(IDF_VER, 32),
                       hashlib.sha256(b"elf|" + seed).digest(), 0, 99, 0, b"", b"")
    sim = bytearray(64)
    if fault is not None:
        m = MARKER + json.dumps({"fault": fault}).encode()
        sim[:len(m)] = m
    else:
        _fill(sim, 0, 64, b"dram|" + seed)
    iram = bytearray(1024)
    _fill(iram, 0, 1024, b"iram|" + seed)
    segs = [(_DROM, desc), (_DRAM, sim), (_IRAM, iram)]
    body = _HEAD + sum(_SEG + len(d) for _, d in segs)
    # The rest as one mapped code segment (IROM): its data must sit at its load address modulo
    # the 64 KiB MMU page, as esptool places it (app partitions start on a page).
    rest = (size - body - _SEG - 16 - 32) & ~3 if size else 0
    if rest > _IROM_END - _IROM - _PAGE:
        raise ValueError("size %d: more than the IROM segment holds" % size)
    if rest > 0:
        body += _SEG + rest
    pad = ((body + 1 + 15) & ~15) - body
    out = bytearray(body + pad + 32)
    mv = memoryview(out)
    struct.pack_into(HEADER, out, 0, _MAGIC, len(segs) + (1 if rest > 0 else 0), 2, 0x30, _IRAM + 0x400,
                     0xEE, b"", chip_id, 0, 0, _MAX_REV, b"", 1)
    off = _HEAD
    x = 0
    for addr, data in segs:
        struct.pack_into("<II", out, off, addr, len(data))
        out[off + _SEG:off + _SEG + len(data)] = data
        x = _xor_in(x, data)
        off += _SEG + len(data)
    if rest > 0:
        struct.pack_into("<II", out, off, _IROM + (off + _SEG) % _PAGE, rest)
        _fill(out, off + _SEG, rest, b"irom|" + seed)
        x = _xor_in(x, mv[off + _SEG:off + _SEG + rest])
    out[body + pad - 1] = _checksum(x)
    out[body + pad:] = hashlib.sha256(mv[:body + pad]).digest()
    return bytes(out)


def check(read, length_limit):
    """Validate an image as esp_image_verify does: read(offset, buf) fills buf from the image
    (offset from its start), never past length_limit (the partition's size). A dict of "size"
    (bytes with the hash), "version", "project", "chip_id" and "fault", or None when the
    bootloader would refuse it. Reads go through one 4 KiB buffer."""
    try:
        return _check(read, length_limit)
    except (OSError, ValueError):  # unreadable, or text that is not text
        return None


def _check(read, limit):
    buf = bytearray(_CHUNK)
    mv = memoryview(buf)
    if limit < FIRST:
        return None
    read(0, mv[:_HEAD])
    h = struct.unpack(HEADER, buf[:_HEAD])
    magic, count, chip, min_rev, max_rev, hashed = h[0], h[1], h[7], h[9], h[10], h[12]
    if magic != _MAGIC or count > _MAX_SEGMENTS:
        return None
    # bootloader_common_check_chip_validity: this chip (ESP32, v3.1) in the image's range
    if chip != 0 or _CHIP_REV < min_rev or (max_rev not in (0, 0xFFFF) and _CHIP_REV > max_rev):
        return None
    sha = hashlib.sha256(buf[:_HEAD])
    x = 0
    info = {"size": 0, "version": None, "project": None, "chip_id": chip, "fault": None}
    off = _HEAD
    for i in range(count):
        if off + _SEG > limit:
            return None
        read(off, mv[:_SEG])
        seg = bytes(buf[:_SEG])
        sha.update(seg)
        addr, n = struct.unpack("<II", seg)
        data = off + _SEG
        if n & 3 or n >= _MAX_LEN or data + n > limit:
            return None
        if _mapped(addr) and data % _PAGE != addr % _PAGE:
            return None  # verify_segment_header: a mapped segment off its MMU page offset
        if i == 0 and n < _DESC_LEN:
            return None
        pos = 0
        while pos < n:
            k = n - pos if n - pos < _CHUNK else _CHUNK
            read(data + pos, mv[:k])
            chunk = bytes(buf[:k])
            if pos == 0 and i == 0:
                if not _desc(chunk, info):
                    return None
            elif pos == 0 and i == 1 and chunk[:len(MARKER)] == MARKER:
                info["fault"] = _fault(chunk)
            sha.update(chunk)
            x ^= int.from_bytes(chunk, "little")
            pos += k
        off = data + n
    pad = ((off + 1 + 15) & ~15) - off
    end = off + pad + (32 if hashed else 0)
    if end > limit:
        return None  # "Image length doesn't fit in partition length"
    read(off, mv[:pad])
    tail = bytes(buf[:pad])
    if tail[-1] != _checksum(x):
        return None
    sha.update(tail)
    if hashed:
        read(off + pad, mv[:32])
        if bytes(buf[:32]) != sha.digest():
            return None
    info["size"] = end
    return info


def _text(b):
    n = b.find(b"\0")
    return (b if n < 0 else b[:n]).decode()


def _desc(chunk, info):
    d = struct.unpack(DESC, chunk[:_DESC_LEN])
    if d[0] != _DESC_MAGIC:
        return False
    info["version"] = _text(d[3])
    info["project"] = _text(d[4])
    return True


def _fault(chunk):
    try:
        f = json.loads(_text(chunk[len(MARKER):])).get("fault")
    except (ValueError, AttributeError):
        return None
    return f if f in FAULTS else None


def desc_version(first_bytes):
    """The app descriptor's version in an image's first 288 bytes, or None when they do not
    start an image with one."""
    if len(first_bytes) < FIRST or first_bytes[0] != _MAGIC:
        return None
    d = struct.unpack(DESC, bytes(first_bytes[_HEAD + _SEG:FIRST]))
    if d[0] != _DESC_MAGIC:
        return None
    try:
        return _text(d[3])
    except ValueError:
        return None
