# The meter's command key after rotation, and the unwrapping of a new key sent by the backend.
# The provisioned key comes from the board; a rotated key lives in its own A/B record store
# (kid, id of the rotating command, key, the key before it and when it was replaced), written
# before the rotation is acknowledged. The key before is kept only so that offline tokens issued
# under it stay good for a grace period (token.py); the next rotation overwrites it.
# Wrapping (docs/protocol.md, "rotkey"): the new key travels XORed with a one-time pad
#   pad = HMAC-SHA256(old key, "pm-kw" | meter id | command id as 4 bytes big-endian)
# inside a command that is itself MACed under the old key, so only a holder of the old key can
# read or forge it; "kcv" (first 4 bytes of HMAC(new key, "pm-kcv"), hex) proves the unwrap.
import struct
from binascii import hexlify
from hmac256 import HmacSha256
from store import RecordStore

KEY_LEN = 32
_REC = "<II32s32si"  # kid, rot_id, key, previous key, meter second of the rotation
_REC_SIZE = 76
_REC_V1 = "<II32s"  # before the previous key was kept: its rotation has no token grace
_REC_V1_SIZE = 40


def pad(old_key, meter_id, cid):
    return HmacSha256(old_key).digest(b"pm-kw" + meter_id.encode() + struct.pack(">I", cid))


def unwrap(old_key, meter_id, cid, wrapped):
    p = pad(old_key, meter_id, cid)
    return bytes(wrapped[i] ^ p[i] for i in range(KEY_LEN))


def kcv(key):
    return hexlify(HmacSha256(key).digest(b"pm-kcv")[:4]).decode()


class KeyStore:
    def __init__(self, root):
        self._store = RecordStore(root + "/key.a", root + "/key.b", _REC_SIZE)
        self.kid = 0
        self.rot_id = 0  # id of the command that installed this key
        self.key = None
        self.prev = None  # the key it replaced (None: unknown)
        self.at = 0  # meter second of the rotation

    def load(self):
        if not self._store.load():
            return False  # no key record: the provisioned key stands
        p = self._store.payload
        if self._store.length == _REC_SIZE:
            self.kid, self.rot_id, self.key, prev, self.at = struct.unpack_from(_REC, p, 0)
            self.prev = prev if prev != bytes(KEY_LEN) else None
        elif self._store.length == _REC_V1_SIZE:
            self.kid, self.rot_id, self.key = struct.unpack_from(_REC_V1, p, 0)
            self.prev, self.at = None, 0
        else:
            return False  # a layout this firmware does not know
        return True

    def save(self, kid, rot_id, key, prev=None, at=0):
        """Commit a new key (raises OSError on a storage fault, leaving the old one in force)."""
        struct.pack_into(_REC, self._store.payload, 0, kid, rot_id, key, prev or bytes(KEY_LEN), at)
        self._store.commit()
        self.kid, self.rot_id, self.key = kid, rot_id, bytes(key)
        self.prev, self.at = (bytes(prev) if prev else None), at
