# HMAC-SHA256 (RFC 2104) on top of hashlib.sha256: MicroPython ships no hmac module.
from micropython import const
import hashlib

_BLOCK = const(64)


class HmacSha256:
    """Keyed MAC with the padded key blocks computed once per key."""

    def __init__(self, key):
        if not key:
            raise ValueError("empty key")
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        ipad = bytearray(_BLOCK)
        opad = bytearray(_BLOCK)
        for i in range(len(key)):
            ipad[i] = key[i]
            opad[i] = key[i]
        for i in range(_BLOCK):
            ipad[i] ^= 0x36
            opad[i] ^= 0x5C
        self._ipad = bytes(ipad)
        self._opad = bytes(opad)

    def digest(self, msg):
        inner = hashlib.sha256(self._ipad)
        inner.update(msg)
        outer = hashlib.sha256(self._opad)
        outer.update(inner.digest())
        return outer.digest()


def equal(a, b):
    """Compare two MACs in time independent of where they differ."""
    if len(a) != len(b):
        return False
    d = 0
    for i in range(len(a)):
        d |= a[i] ^ b[i]
    return d == 0
