# SipHash-2-4 (Aumasson and Bernstein, 2012): a keyed 64-bit hash with a 128-bit key, the MAC
# behind OpenPAYGO Token (openpaygo.py). Written from the paper's definition: the four 64-bit
# state words, two compression rounds per 8-byte block, four finalisation rounds. The words are
# Python ints (big ints above 2^30 on a 32-bit port): a token is decoded rarely, so this is not a
# hot path; it allocates.
from micropython import const

_M = const(0xFFFFFFFFFFFFFFFF)


def _rotl(x, b):
    return ((x << b) | (x >> (64 - b))) & _M


def _le(b, i):
    """The little-endian 64-bit word at b[i:i+8]."""
    v = 0
    for k in range(7, -1, -1):
        v = (v << 8) | b[i + k]
    return v


def siphash24(key, msg):
    """The 64-bit SipHash-2-4 of bytes `msg` under the 16-byte `key`, as an int."""
    if len(key) != 16:
        raise ValueError("SipHash key: 16 bytes")
    k0 = _le(key, 0)
    k1 = _le(key, 8)
    v = [k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D, k0 ^ 0x6C7967656E657261, k1 ^ 0x7465646279746573]
    n = len(msg)
    end = n - n % 8
    for i in range(0, end, 8):
        _absorb(v, _le(msg, i))
    last = (n & 0xFF) << 56
    for k in range(n - end):
        last |= msg[end + k] << (8 * k)
    _absorb(v, last)
    v[2] ^= 0xFF
    for _ in range(4):
        _round(v)
    return v[0] ^ v[1] ^ v[2] ^ v[3]


def _absorb(v, m):
    v[3] ^= m
    _round(v)
    _round(v)
    v[0] ^= m


def _round(v):
    v0, v1, v2, v3 = v
    v0 = (v0 + v1) & _M
    v1 = _rotl(v1, 13) ^ v0
    v0 = _rotl(v0, 32)
    v2 = (v2 + v3) & _M
    v3 = _rotl(v3, 16) ^ v2
    v0 = (v0 + v3) & _M
    v3 = _rotl(v3, 21) ^ v0
    v2 = (v2 + v1) & _M
    v1 = _rotl(v1, 17) ^ v2
    v2 = _rotl(v2, 32)
    v[0], v[1], v[2], v[3] = v0, v1, v2, v3
