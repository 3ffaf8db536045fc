# Offline 20-digit top-up tokens (docs/tokens.md): typed at the REPL or a keypad.
# 19 data digits carry a 63-bit block  type(3) | id(24) | amount(16) | mac(20)  and a Damm
# check digit follows. The MAC is HMAC-SHA256 under a key derived from the meter's own key,
# over the meter id and the full fields, so a token works on one meter only. Token ids have a
# counter and a window of their own (tokenids.py), apart from MQTT commands: a paper token stays
# good whatever the backend sends meanwhile, is applied once, and may be typed out of order among
# the newest 64. Bad MACs lock token entry out for a time that doubles with each further
# failure; the lockout survives power cuts.
from micropython import const
import struct
from hmac256 import HmacSha256, equal
import tokenids

CREDIT = const(0)  # add `amount` minor units to the balance
DEBT = const(1)  # add `amount` to the debt to recover
TEST = const(2)  # no money: proves the keypad, the key and the counter
TYPE_NAMES = ("credit", "debt", "test")

_ID_BITS = const(24)
_ID_MASK = const(0xFFFFFF)
_MAC_MASK = const(0xFFFFF)
_MANT_MAX = const(16383)
_DIGITS = const(20)

# Lockout: after _FREE_TRIES bad tokens in a row, refuse entry for _LOCK_BASE_S, doubling per
# further bad token up to _LOCK_MAX_S.
_FREE_TRIES = const(3)
_LOCK_BASE_S = const(10)
_LOCK_MAX_S = const(3600)

_DAMM = (
    b"\x00\x03\x01\x07\x05\x09\x08\x06\x04\x02", b"\x07\x00\x09\x02\x01\x05\x04\x08\x06\x03",
    b"\x04\x02\x00\x06\x08\x07\x01\x03\x05\x09", b"\x01\x07\x05\x00\x09\x08\x03\x04\x02\x06",
    b"\x06\x01\x02\x03\x00\x04\x05\x09\x07\x08", b"\x03\x06\x07\x04\x02\x00\x09\x05\x08\x01",
    b"\x05\x08\x06\x09\x07\x02\x00\x01\x03\x04", b"\x08\x09\x04\x05\x03\x06\x02\x00\x01\x07",
    b"\x09\x04\x03\x08\x06\x01\x07\x02\x00\x05", b"\x02\x05\x08\x01\x04\x03\x06\x07\x09\x00",
)


def damm(digits):
    """Damm check digit of a string of decimal digits (catches every single-digit error
    and every adjacent transposition)."""
    c = 0
    for ch in digits:
        c = _DAMM[c][ord(ch) - 48]
    return c


def encode_amount(amount):
    """16-bit amount field: 14-bit mantissa x 10^(2-bit exponent); None if not exact."""
    for e in range(4):
        p = 10 ** e
        if amount % p == 0 and amount // p <= _MANT_MAX:
            return (e << 14) | (amount // p)
    return None


def decode_amount(field):
    return (field & _MANT_MAX) * 10 ** (field >> 14)


def mac_message(meter_id, typ, full_id, amount_field):
    return b"pm-token-v1" + meter_id.encode() + struct.pack("<BIH", typ, full_id, amount_field)


def derive_key(meter_key):
    """Token key: a separate key derived from the meter key, so a token MAC can never double
    as an MQTT command MAC or the other way round."""
    return HmacSha256(meter_key).digest(b"pm-token-key-v1")


def full_id(low, top):
    """The full token id whose low 24 bits are `low`, nearest above top - 2^23."""
    base = top - (1 << (_ID_BITS - 1))
    if base < 0:
        base = 0
    cand = (base & ~_ID_MASK) | low
    if cand <= base:
        cand += 1 << _ID_BITS
    return cand


# Verdicts of check().
OK = const(0)
USED = const(1)  # already applied (typed or relayed): nothing to do
REFUSED = const(2)


class Tokens:
    def __init__(self, meter_id, meter_key, commands):
        self.meter_id = meter_id
        self._mac = HmacSha256(derive_key(meter_key)) if meter_key else None
        self._old = None  # the token MAC under the key before the last rotation
        self.old_until = 0  # meter second until which its tokens are still taken
        self.commands = commands  # auth.Commands: only its `lost` (the record, both windows with it)
        self.ids = tokenids.TokenIds()  # the token ids used (persisted)
        self.bad = 0  # consecutive bad tokens (persisted)
        self.lock_until = 0  # meter second until which entry is locked out (persisted)
        self.accepted = 0
        self.refused = 0

    def set_key(self, key, prev=None, until=0):
        """A rotated key: tokens made with it from now on; those made with `prev` are taken until
        meter second `until` (a utility's paper tokens already handed out), then refused old_key."""
        self._mac = HmacSha256(derive_key(key))
        self._old = HmacSha256(derive_key(prev)) if prev else None
        self.old_until = until

    def _tag(self, mac, typ, cid, af):
        d = mac.digest(mac_message(self.meter_id, typ, cid, af))
        return ((d[0] << 12) | (d[1] << 4) | (d[2] >> 4)) & _MAC_MASK

    def locked(self, now):
        if self.lock_until > now + _LOCK_MAX_S:
            self.lock_until = now + _LOCK_MAX_S  # the clock went back: never lock longer than the cap
        return now < self.lock_until

    def check(self, text, now):
        """(verdict, type, id, amount, reason). Counts bad MACs towards the lockout; the caller
        applies an OK token, then calls ids.remember(id)."""
        if self._mac is None:
            return self._refuse("no_key")
        if not isinstance(text, str):
            return self._refuse("malformed")
        digits = text.replace(" ", "").replace("-", "")
        if len(digits) != _DIGITS or not digits.isdigit():
            return self._refuse("malformed")
        if self.locked(now):
            return self._refuse("locked")
        if damm(digits[:-1]) != ord(digits[-1]) - 48:
            return self._refuse("check_digit")  # a typo: not counted, the check digit is public
        v = int(digits[:-1])
        if v >> 63:
            return self._refuse("malformed")
        typ = v >> 60
        low = (v >> 36) & _ID_MASK
        af = (v >> 20) & 0xFFFF
        mac = v & _MAC_MASK
        cid = full_id(low, self.ids.top)
        got = struct.pack("<I", mac)
        current = equal(struct.pack("<I", self._tag(self._mac, typ, cid, af)), got)
        if not current and (self._old is None or not equal(struct.pack("<I", self._tag(self._old, typ, cid, af)), got)):
            self.failed(now)
            return self._refuse("bad_mac")
        self.bad = 0
        if not current and now >= self.old_until:
            return self._refuse("old_key", typ, cid)  # genuine, but its grace after the rotation is over
        if typ >= len(TYPE_NAMES):
            return self._refuse("unknown_type", typ, cid)
        if self.commands.lost:
            return self._refuse("replay_lost", typ, cid)  # the used ids went with the record
        verdict, res = self.ids.seen(cid)
        if verdict == tokenids.USED:
            return USED, typ, cid, decode_amount(af), None
        if verdict != tokenids.OK:
            return self._refuse(res, typ, cid)
        self.accepted += 1
        return OK, typ, cid, decode_amount(af), None

    def failed(self, now):
        """A token that is not genuine (here or in another token system the meter takes): it
        counts towards the one lockout."""
        if self.bad < 255:  # persisted in a byte: saturate, so the lockout stays at its longest
            self.bad += 1
        if self.bad >= _FREE_TRIES:
            s = _LOCK_BASE_S << (self.bad - _FREE_TRIES) if self.bad - _FREE_TRIES < 12 else _LOCK_MAX_S
            self.lock_until = now + (s if s < _LOCK_MAX_S else _LOCK_MAX_S)

    def _refuse(self, reason, typ=0, cid=0):
        self.refused += 1
        return REFUSED, typ, cid, 0, reason
