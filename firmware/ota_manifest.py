# Release manifests of firmware images (docs/ota.md): what an update is, signed with the utility's
# release key. The meter verifies the signature over the manifest's exact bytes with the public
# key it carries (not the per-meter command key: a leaked meter key must not let anyone flash
# firmware), then checks every field against itself before a byte of the image is written.
#   {"v":1,"version":"1.2.0","board":["esp32-atm90e26"],"size":1900544,"sha256":"<64 hex>",
#    "min_record":4,"kid":"<16 hex>"[,"downgrade_from":"1.3.0"]}
# Versions are MAJOR.MINOR.PATCH, compared as numbers. An older version is refused unless the
# manifest (signed like any other) names the exact version it may replace in "downgrade_from":
# a downgrade release cannot be replayed onto meters that run anything else.
from micropython import const
import json
import hashlib
from binascii import unhexlify
import rsaverify

MAX_TEXT = 600  # bytes of manifest a job record keeps (ota.py)
_V = 1

# Refusal reasons, as the reply's "why" and the ota_failed event's argument (index + 1).
REASONS = ("no_release_key", "bad_signature", "bad_manifest", "wrong_board", "too_big", "downgrade",
           "same_version", "record_too_old", "no_ota", "busy", "hash_mismatch", "bad_image",
           "write_failed", "selftest", "unknown_key", "cancelled")
NO_RELEASE_KEY = const(0)
BAD_SIGNATURE = const(1)
BAD_MANIFEST = const(2)
WRONG_BOARD = const(3)
TOO_BIG = const(4)
DOWNGRADE = const(5)
SAME_VERSION = const(6)
RECORD_TOO_OLD = const(7)
NO_OTA = const(8)
BUSY = const(9)
HASH_MISMATCH = const(10)
BAD_IMAGE = const(11)
WRITE_FAILED = const(12)
SELFTEST = const(13)
UNKNOWN_KEY = const(14)
CANCELLED = const(15)


def vcode(text):
    """MAJOR.MINOR.PATCH as one int (8 bits each), or -1 when `text` is not such a version."""
    if not isinstance(text, str):
        return -1
    parts = text.split(".")
    if len(parts) != 3:
        return -1
    v = 0
    for p in parts:
        if not p or len(p) > 3 or not p.isdigit() or int(p) > 255:
            return -1
        v = v << 8 | int(p)
    return v


def vtext(code):
    return "%d.%d.%d" % (code >> 16 & 255, code >> 8 & 255, code & 255)


class Manifest:
    def __init__(self, text, doc):
        self.text = text  # the signed bytes, kept by the job record
        self.kid = doc["kid"]
        board = doc["board"]
        self.boards = board if isinstance(board, list) else [board]
        self.version = doc["version"]
        self.vcode = vcode(self.version)
        self.size = doc["size"]
        self.sha256 = unhexlify(doc["sha256"])
        self.downgrade_from = vcode(doc.get("downgrade_from", ""))
        self.min_record = doc["min_record"]


def parse(text):
    """The Manifest of signed bytes `text`, or a reason index when they do not make one."""
    if not isinstance(text, (bytes, bytearray)) or len(text) > MAX_TEXT:
        return BAD_MANIFEST
    try:
        doc = json.loads(bytes(text))
        board = doc["board"]
        ok = (doc.get("v") == _V and vcode(doc.get("version")) > 0 and type(doc.get("size")) is int
              and 0 < doc["size"] < 1 << 30 and isinstance(doc.get("sha256"), str)
              and len(doc["sha256"]) == 64 and type(doc.get("min_record")) is int
              and isinstance(doc.get("kid"), str)
              and ("downgrade_from" not in doc or vcode(doc["downgrade_from"]) > 0)
              and (isinstance(board, str) or (isinstance(board, list) and board)))
        if ok:
            return Manifest(bytes(text), doc)
    except (ValueError, KeyError, TypeError):
        pass
    return BAD_MANIFEST


def verify(text, sig, release_key):
    """Check the release signature over `text`; the Manifest, or a reason index."""
    if not release_key:
        return NO_RELEASE_KEY
    if not rsaverify.verify(release_key, sig, hashlib.sha256(text).digest()):
        return BAD_SIGNATURE
    m = parse(text)
    if type(m) is int:
        return m
    if m.kid != rsaverify.key_id(release_key):
        return UNKNOWN_KEY  # signed with this key, yet naming another: a tooling mistake, not ours to guess
    return m


def admissible(m, board_name, running, record_version, slot_size):
    """A reason index when a verified manifest must not be installed on this meter, else None."""
    if board_name not in m.boards:
        return WRONG_BOARD
    if m.size > slot_size:
        return TOO_BIG
    if m.min_record > record_version:
        return RECORD_TOO_OLD
    if m.vcode == running:
        return SAME_VERSION
    if m.vcode < running and m.downgrade_from != running:
        return DOWNGRADE
    return None
