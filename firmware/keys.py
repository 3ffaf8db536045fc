# The meter's command key after rotation, and the unwrapping of a new key sent by the backend.
# The provisioned key comes from the board; a rotated key lives in its own A/B record store
# (kid, id of the rotating command, key), written before the rotation is acknowledged.
# Wrapping (docs/protocol.md, "rotkey"): the new key travels XORed with a one-time pad
#   pad = HMAC-SHA256(old key, "pm-kw" | meter id | command id as 4 bytes big-endian)
# inside a command that is itself MACed under the old key, so only a holder of the old key can
# read or forge it; "kcv" (first 4 bytes of HMAC(new key, "pm-kcv"), hex) proves the unwrap.
import struct
from binascii import hexlify
from hmac256 import HmacSha256
from store import RecordStore

KEY_LEN = 32
_REC = "<II32s"
_REC_SIZE = 40


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

    def load(self):
        if not self._store.load() or self._store.length != _REC_SIZE:
            return False  # no key record, or one of another layout: the provisioned key stands
        self.kid, self.rot_id, self.key = struct.unpack_from(_REC, self._store.payload, 0)
        return True

    def save(self, kid, rot_id, key):
        """Commit a new key (raises OSError on a storage fault, leaving the old one in force)."""
        struct.pack_into(_REC, self._store.payload, 0, kid, rot_id, key)
        self._store.commit()
        self.kid, self.rot_id, self.key = kid, rot_id, bytes(key)
