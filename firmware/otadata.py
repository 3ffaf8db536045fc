# ESP-IDF's OTA data, read by the firmware: which app slot the bootloader chose and in what state.
# MicroPython's esp32.Partition can set the boot slot and mark the running one valid, but not tell
# whether this boot is a trial (the bootloader's PENDING_VERIFY) or whether a trial rolled back:
# both are in the "otadata" partition, two sectors each starting with an esp_ota_select_entry_t
#   uint32 ota_seq; uint8 seq_label[20]; uint32 ota_state; uint32 crc  (crc32 over ota_seq)
# The entry with the highest valid seq is the selection; its slot is ota_(seq - 1) % slots.
# `part` is the board's Partition class (esp32.Partition, or a stand-in with its API).
from micropython import const
import struct
from binascii import crc32

NEW = const(0)
PENDING_VERIFY = const(1)
VALID = const(2)
INVALID = const(3)
ABORTED = const(4)
UNDEFINED = const(-1)  # 0xFFFFFFFF: written without rollback support
_SECTOR = const(4096)
_ENTRY = const(32)
_TYPE_APP = const(0)
_TYPE_DATA = const(1)
_SUB_OTA = const(0)
_OTA_0 = const(0x10)


def ota_slots(part):
    """Labels of the OTA app slots, ota_0 first ([] on a table without OTA)."""
    slots = [p for p in part.find(_TYPE_APP) if _OTA_0 <= p.info()[1] < _OTA_0 + 16]
    slots.sort(key=lambda p: p.info()[1])
    return [p.info()[4] for p in slots]


def selection(part):
    """(slot label, state) the OTA data selects, or None when it selects nothing (blank)."""
    found = part.find(_TYPE_DATA, _SUB_OTA)
    slots = ota_slots(part)
    if not found or not slots:
        return None
    buf = bytearray(_ENTRY)
    best = None
    for sector in (0, 1):
        found[0].readblocks(sector, buf)
        seq, state, crc = struct.unpack_from("<I20xII", buf, 0)
        if seq == 0xFFFFFFFF or crc != crc32(buf[0:4], 0xFFFFFFFF):
            continue
        if best is None or seq > best[0]:
            best = (seq, state)
    if best is None:
        return None
    state = best[1]
    return slots[(best[0] - 1) % len(slots)], (UNDEFINED if state == 0xFFFFFFFF else state)


def running_label(part):
    try:
        return part(part.RUNNING).info()[4]
    except (OSError, ValueError):
        return None


def on_trial(part):
    """True when the running image is the bootloader's trial (PENDING_VERIFY): it rolls back at
    the next reset unless marked valid first."""
    s = selection(part)
    return s is not None and s[1] == PENDING_VERIFY and s[0] == running_label(part)
