# OTA data and the second-stage bootloader on the virtual flash (esp32flash), as ESP-IDF 5.5 has
# them with CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE=y (MicroPython's sdkconfig.base sets it):
# bootloader_utility.c chooses and loads the app, esp_ota_ops.c is what esp32.Partition calls.
# The "otadata" partition (data/ota, two 4096-byte sectors) holds an esp_ota_select_entry_t at
# the start of each sector:
#   uint32 ota_seq; uint8 seq_label[20]; uint32 ota_state; uint32 crc   (32 bytes, little endian)
# crc = esp_rom_crc32_le(UINT32_MAX, &ota_seq, 4). The valid entry with the highest seq selects
# slot ota_[(seq - 1) % number of OTA app partitions]. Every change rewrites one sector (erase,
# then program the 32 bytes): each is a cut point of Flash.cut_at.
# Functions take the Flash; partitions are its (label, type, subtype, offset, size) tuples.
# Runs under CPython too (tools/esp32_host.py reads and writes flash image files with it).
import struct
from binascii import crc32
import espimage

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

NEW = const(0)
PENDING_VERIFY = const(1)
VALID = const(2)
INVALID = const(3)
ABORTED = const(4)
UNDEFINED = 0xFFFFFFFF
STATES = {NEW: "NEW", PENDING_VERIFY: "PENDING_VERIFY", VALID: "VALID", INVALID: "INVALID",
          ABORTED: "ABORTED", UNDEFINED: "UNDEFINED"}
_SECTOR = const(4096)
_ENTRY = const(32)
_BLANK = 0xFFFFFFFF
_APP = const(0)
_DATA = const(1)
_FACTORY = const(0x00)
_OTA_0 = const(0x10)
_TEST = const(0x20)
_SUB_OTA = const(0x00)  # data subtype of otadata

# What the last bootload() decided, for the boot report: {"label", "state" (of the booted slot's
# entry after the bootloader wrote it, a STATES name or None), "rolled_back" (an image on trial
# never marked valid was aborted at this boot), "skipped" (slots whose image failed the check),
# "fault" (the booted image's sim fault)}. None before any boot.
last = None


# -- esp_err_t as MicroPython's check_esp_err raises it: OSError(-code, name) ------------------
def _err(code, name):
    return OSError(-code, name)


def _validate_failed():
    return _err(0x1503, "ESP_ERR_OTA_VALIDATE_FAILED")


# -- the partition table --------------------------------------------------------------------
def find_first(flash, typ, sub):
    for p in flash.parts:
        if p[1] == typ and p[2] == sub:
            return p
    return None


def otadata(flash):
    return find_first(flash, _DATA, _SUB_OTA)


def has_ota(flash):
    """Whether the table has OTA app slots (the bootloader and OTA calls then matter)."""
    return any(p[1] == _APP and _OTA_0 <= p[2] < _TEST for p in flash.parts)


def app_count(flash):
    """esp_ota_get_app_partition_count: ota_0, ota_1, ... up to the first one missing."""
    n = 0
    while n < 16 and find_first(flash, _APP, _OTA_0 + n) is not None:
        n += 1
    return n


def by_label(flash, label):
    for p in flash.parts:
        if p[0] == label:
            return p
    return None


# -- entries --------------------------------------------------------------------------------
def select_crc(seq):
    return crc32(struct.pack("<I", seq), 0xFFFFFFFF)


def seq_of(e):
    return struct.unpack_from("<I", e, 0)[0]


def state_of(e):
    return struct.unpack_from("<I", e, 24)[0]


def _slot(seq, n):
    # (ota_seq - 1) % count in uint32_t, as the C code computes it (seq 0 wraps to 2^32 - 1)
    return ((seq - 1) & 0xFFFFFFFF) % n


def _crc_ok(e):
    return struct.unpack_from("<I", e, 28)[0] == select_crc(seq_of(e))


def _invalid(e):
    # bootloader_common_ota_select_invalid: blank, or an image refused (no CRC check)
    return seq_of(e) == _BLANK or state_of(e) in (INVALID, ABORTED)


def _valid(e):
    return not _invalid(e) and _crc_ok(e)


def _active(e):
    """bootloader_common_get_active_otadata: the valid entry with the highest seq, or -1."""
    v0, v1 = _valid(e[0]), _valid(e[1])
    if v0 and v1:
        return 0 if seq_of(e[0]) >= seq_of(e[1]) else 1
    return 0 if v0 else (1 if v1 else -1)


def read_entries(flash):
    """The two entries (bytearrays of 32), or None without an otadata partition."""
    od = otadata(flash)
    if od is None:
        return None
    e = [bytearray(_ENTRY), bytearray(_ENTRY)]
    flash.read(od[3], e[0])
    flash.read(od[3] + _SECTOR, e[1])
    return e


def _set_state(e, state):
    struct.pack_into("<I", e, 24, state)


def _write(flash, i, e):
    # write_otadata / rewrite_ota_seq: erase the entry's sector, program the 32 bytes
    a = otadata(flash)[3] + i * _SECTOR
    flash.erase(a, _SECTOR)
    flash.write(a, e)


def _rewrite_seq(flash, e, seq, i):
    struct.pack_into("<I", e[i], 0, seq)
    struct.pack_into("<I", e[i], 28, select_crc(seq))
    _write(flash, i, e[i])


def slot_state(flash, label):
    """esp_ota_get_state_partition: the state of the first entry (sector 0, then 1) with a good
    CRC whose seq maps to this OTA slot, or None (not an OTA slot, or no such entry)."""
    p = by_label(flash, label)
    e = read_entries(flash)
    n = app_count(flash)
    if p is None or not (p[1] == _APP and _OTA_0 <= p[2] < _TEST) or e is None or not n:
        return None
    for x in e:
        if _slot(seq_of(x), n) == p[2] - _OTA_0 and _crc_ok(x):
            return state_of(x)
    return None


def entries_info(flash):
    """Both entries as dicts (for reports and host tools): seq, state name, crc_ok, slot."""
    e = read_entries(flash)
    if e is None:
        return None
    n = app_count(flash)
    out = []
    for x in e:
        seq = seq_of(x)
        blank = seq == _BLANK
        out.append({"seq": None if blank else seq, "state": STATES.get(state_of(x), state_of(x)),
                    "crc_ok": _crc_ok(x),
                    "slot": None if blank or not n else "ota_%d" % _slot(seq, n)})
    return out


# -- images ---------------------------------------------------------------------------------
def image(flash, p):
    """espimage.check of the image in partition p: its dict, or None when it would not boot."""
    base = p[3]

    def read(off, buf):
        flash.read(base + off, buf)

    return espimage.check(read, p[4])


def install_image(flash, label, data):
    """Write an image into a slot as esptool does (erase the sectors it covers, then program):
    the host tools and tests, never the firmware."""
    p = by_label(flash, label)
    if p is None or p[1] != _APP:
        raise ValueError("no app partition %r" % label)
    if len(data) > p[4]:
        raise ValueError("%d bytes do not fit %s (%d)" % (len(data), label, p[4]))
    flash.erase(p[3], (len(data) + _SECTOR - 1) // _SECTOR * _SECTOR)
    flash.write(p[3], data)


def erase_otadata(flash):
    """What flashing ota_data_initial.bin (all ones) does: the bootloader starts from scratch."""
    od = otadata(flash)
    if od is not None:
        flash.erase(od[3], od[4])


# -- the bootloader -------------------------------------------------------------------------
def bootload(flash):
    """One run of the second-stage bootloader: updates the OTA data as bootloader_utility.c
    does and returns the label of the app it starts, or None when no partition holds an image
    that passes esp_image_verify (the chip then resets into the bootloader for ever)."""
    global last
    slots = {}
    for p in flash.parts:
        if p[1] == _APP and _OTA_0 <= p[2] < _TEST:
            slots[p[2] - _OTA_0] = p
    count = len(slots)  # bs->app_count: one per OTA app partition in the table
    factory = find_first(flash, _APP, _FACTORY)
    od = otadata(flash)
    rolled = False
    initial = False
    if od is None:
        index = -1  # FACTORY_INDEX
    elif od[4] < 2 * _SECTOR:
        last = {"label": None, "state": None, "rolled_back": False, "skipped": [], "fault": None}
        return None  # "ota_info partition size is too small": the bootloader gives up
    else:
        e = read_entries(flash)
        for i in (0, 1):
            if state_of(e[i]) == PENDING_VERIFY:
                # The app booted on trial and never confirmed itself: it is not tried again.
                _set_state(e[i], ABORTED)
                _write(flash, i, e[i])
                rolled = True
        if (_invalid(e[0]) and _invalid(e[1])) or count == 0:
            if factory is not None:
                index = -1
            else:
                index = 0
                initial = all(seq_of(x) == _BLANK or not _crc_ok(x) for x in e)
        else:
            a = _active(e)
            if a != -1:
                index = _slot(seq_of(e[a]), count)
                if state_of(e[a]) == NEW:
                    _set_state(e[a], PENDING_VERIFY)  # this boot is the new app's trial
                    _write(flash, a, e[a])
            else:
                index = -1  # no valid entry: factory, else every slot in turn
    # bootloader_utility_load_boot_image: the chosen index, then down to the factory app, then
    # the OTA slots above it, then the test app.
    order = list(range(index, -2, -1)) + list(range(index + 1, count))
    skipped = []
    for idx in order:
        p = factory if idx == -1 else slots.get(idx)
        if p is None:
            continue
        info = image(flash, p)
        if info is None:
            skipped.append(p[0])
            continue
        if idx >= 0 and initial:
            # set_actual_ota_seq: no factory app and blank OTA data: record what booted
            x = bytearray(b"\xff" * _ENTRY)
            struct.pack_into("<I", x, 24, VALID)
            _rewrite_seq(flash, [x], idx + 1, 0)
        return _booted(flash, p, rolled, skipped, info)
    test = find_first(flash, _APP, _TEST)
    if test is not None:
        info = image(flash, test)
        if info is not None:
            return _booted(flash, test, rolled, skipped, info)
    last = {"label": None, "state": None, "rolled_back": rolled, "skipped": skipped, "fault": None}
    return None


def _booted(flash, p, rolled, skipped, info):
    global last
    s = slot_state(flash, p[0])
    last = {"label": p[0], "state": None if s is None else STATES.get(s, s), "rolled_back": rolled,
            "skipped": skipped, "fault": info["fault"], "version": info["version"]}
    return p[0]


# -- esp_ota_ops.c ---------------------------------------------------------------------------
def _default_boot(flash):
    # find_default_boot_partition: factory, else the first OTA slot, else the test app
    p = find_first(flash, _APP, _FACTORY)
    if p is not None:
        return p
    for s in range(_OTA_0, _TEST):
        p = find_first(flash, _APP, s)
        if p is not None:
            return p
    return find_first(flash, _APP, _TEST)


def boot_partition(flash):
    """esp_ota_get_boot_partition: the partition the OTA data selects, or None."""
    e = read_entries(flash)
    if e is None:
        return None
    n = app_count(flash)
    if (_invalid(e[0]) and _invalid(e[1])) or not n:
        return _default_boot(flash)
    a = _active(e)
    if a == -1:
        return _default_boot(flash)
    return find_first(flash, _APP, _OTA_0 + _slot(seq_of(e[a]), n))


def next_update(flash, start):
    """esp_ota_get_next_update_partition(start): the OTA slot after `start`, else the first one;
    None without OTA slots."""
    default = None
    after = False
    for s in range(_OTA_0, _TEST):
        p = find_first(flash, _APP, s)
        if p is None:
            continue
        if default is None:
            default = p
        if p == start:
            after = True
        elif after:
            return p
    return default


def set_boot(flash, p):
    """esp_ota_set_boot_partition(p), raising as check_esp_err does: the image must pass
    esp_image_verify (else OSError(-0x1503, "ESP_ERR_OTA_VALIDATE_FAILED"), the OTA data
    untouched); then the other sector gets the entry selecting p, state NEW."""
    if image(flash, p) is None:
        raise _validate_failed()
    if p[1] != _APP:
        raise _err(0x102, "ESP_ERR_INVALID_ARG")
    od = otadata(flash)
    if p[2] == _FACTORY:
        if od is None:
            raise _err(0x105, "ESP_ERR_NOT_FOUND")
        flash.erase(od[3], od[4])  # the factory app: blank OTA data boots it
        return
    # esp_rewrite_ota_data
    e = read_entries(flash)
    if e is None:
        raise _err(0x105, "ESP_ERR_NOT_FOUND")
    n = app_count(flash)
    sid = p[2] & 0x0F
    if sid >= n:
        raise _err(0x102, "ESP_ERR_INVALID_ARG")
    a = _active(e)
    if a != -1:
        # the smallest seq above the active one that maps to this slot (it may equal it)
        seq = seq_of(e[a])
        i = 0
        while seq > (sid + 1) % n + i * n:
            i += 1
        nxt = 1 - a
        _set_state(e[nxt], NEW)
        _rewrite_seq(flash, e, (sid + 1) % n + i * n, nxt)
    else:
        _set_state(e[0], NEW)
        _rewrite_seq(flash, e, sid + 1, 0)


def mark_valid(flash):
    """esp_ota_mark_app_valid_cancel_rollback: the active entry becomes VALID (rewritten only if
    it was not). OSError(1, "ESP_FAIL") when no entry is active (a factory app running)."""
    e = read_entries(flash)
    if e is None:
        raise _err(0x105, "ESP_ERR_NOT_FOUND")
    a = _active(e)
    if a == -1 or not app_count(flash):
        raise _err(-1, "ESP_FAIL")
    if state_of(e[a]) != VALID:
        _set_state(e[a], VALID)
        _rewrite_seq(flash, e, seq_of(e[a]), a)


def report(flash, running):
    """The boot report's "ota" part: the running slot, its image's version, its entry's state
    now, and what the bootloader did at this boot."""
    b = last or {}
    version = None
    s = None
    if running is not None:
        p = by_label(flash, running)
        buf = bytearray(espimage.FIRST)
        flash.read(p[3], buf)
        version = espimage.desc_version(buf)
        s = slot_state(flash, running)
    boot = boot_partition(flash)
    return {"running": running, "version": version, "state": None if s is None else STATES.get(s, s),
            "rolled_back": b.get("rolled_back", False), "boot_state": b.get("state"),
            "skipped": b.get("skipped", []), "fault": b.get("fault"),
            "next_boot": boot[0] if boot else None, "entries": entries_info(flash)}
