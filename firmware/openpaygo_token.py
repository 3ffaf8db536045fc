# OpenPAYGO Token, decoded on the meter, written from the standard's description: a device holds a
# 16-byte secret key and a 9-digit starting code. A standard (9-digit) token is the starting code
# with its last three digits replaced by the value (shifted by the starting code's), pushed through
# `count` steps of a SipHash-2-4 chain, with the value put back into its last three digits. Even
# counts carry Add-Time tokens; odd counts carry Set-Time, Disable-PAYG (value 998) and
# Counter-Sync (value 999). An extended (12-digit) token does the same with six value digits
# (values up to 999 999) on a 40-bit chain: Add-Time and Set-Time only. The meter finds the count by walking the chain, and
# keeps the highest count applied and which of the 16 below it were used, so an Add-Time token may
# be entered late (out of order), each at most once.
from micropython import const
import struct
from siphash24 import siphash24

ADD = const(1)  # the standard's token types
SET = const(2)
DISABLE = const(3)
SYNC = const(4)

MAX_VALUE = const(995)  # the largest Add/Set value
_DISABLE_VALUE = const(998)
_SYNC_VALUE = const(999)
_JUMP = const(64)  # a token may be at most this many counts ahead of the last one
_JUMP_SYNC = const(100)
_OLDER = const(16)  # Add-Time tokens up to this many counts behind may still be entered once
_OFFSET = const(73741825)  # 2^30 - 10^9: folds a 30-bit value into 9 digits
_OFFSET_X = 99511627777  # 2^40 - 10^12: folds a 40-bit value into 12 digits (a big int anyway)


def _code9(h):
    """A 64-bit hash as a 9-digit code: its halves XORed, bits 2..31, folded below 10^9."""
    x = (((h >> 32) ^ h) & 0xFFFFFFFF) >> 2
    return x - _OFFSET if x > 999999999 else x


def _next(code, key):
    """The chain's next 9-digit code."""
    b = struct.pack(">I", code)
    return _code9(siphash24(key, b + b))


def _next_x(code, key):
    """The extended chain's next 12-digit code."""
    x = (siphash24(key, struct.pack(">Q", code)) >> 24) & 0xFFFFFFFFFF
    return x - _OFFSET_X if x > 999999999999 else x


def starting_code(key):
    """The starting code the standard derives from the key alone (when none is provisioned)."""
    return _code9(siphash24(key, key))


class Decoder:
    """One device's OpenPAYGO state: `count` (the highest count applied) and `used` (bit i: count
    - i was used, i < 17), persisted with the balance by the caller."""

    def __init__(self, key, start):
        if len(key) != 16 or not 0 <= start <= 999999999:
            raise ValueError("OpenPAYGO key: 16 bytes; starting code: 9 digits")
        self._key = key
        self._start = start
        self.count = 0
        self.used = 0

    def check(self, digits):
        """(type, value, count) of a valid new token, or (None, reason, 0): "malformed",
        "bad_mac" (no count matches: another key, a typo, or too far ahead) or "used".
        Changes nothing: apply, then call remember()."""
        if not isinstance(digits, str) or not 1 <= len(digits) <= 12 or not digits.isdigit():
            return None, "malformed", 0
        token = int(digits)
        ext = len(digits) > 9
        mod = 1000000 if ext else 1000
        base = token % mod
        value = (base - self._start % mod) % mod
        last = self.count
        code = self._start - self._start % mod + base
        older = False
        step = _next_x if ext else _next
        for n in range(last + (_JUMP_SYNC if value == _SYNC_VALUE and not ext else _JUMP) + 1):
            if code - code % mod + base == token:
                if ext:
                    typ = SET if n % 2 else ADD
                else:
                    typ = ADD if not n % 2 else (SYNC if value == _SYNC_VALUE else
                                                  DISABLE if value == _DISABLE_VALUE else SET)
                if self._valid(n, value, typ):
                    if typ in (ADD, SET) and value > MAX_VALUE and not ext:
                        return None, "bad_value", n
                    return typ, value, n
                older = True
            code = step(code, self._key)
        return (None, "used", 0) if older else (None, "bad_mac", 0)

    def _valid(self, n, value, typ):
        last = self.count
        if value == _SYNC_VALUE:
            return n > last - _JUMP
        if n > last:
            return True
        d = last - n
        return d < _OLDER and typ == ADD and not (self.used >> d) & 1

    def remember(self, typ, value, n):
        """Record an applied token (the standard's update of the used counts)."""
        if n > self.count:
            shift = n - self.count
            self.used = (self.used << shift) & 0x1FFFF if shift <= _OLDER else 0
            self.count = n
        d = self.count - n
        if typ != ADD or value in (_SYNC_VALUE, _DISABLE_VALUE):
            self.used = 0x1FFFF  # any other kind spends every count below it
        elif d <= _OLDER:
            self.used |= 1 << d
