# RSA signature verification for release manifests (docs/ota.md): RSASSA-PKCS1-v1_5 with SHA-256
# (RFC 8017, 8.2.2), public exponent 65537, 2048- to 4096-bit keys. MicroPython has no public-key
# crypto, but it has big integers: with e = 65537 = 2^16 + 1 a verification is 16 squarings and
# one multiplication modulo n. The expected encoding is built in full and compared with what the
# signature opens to, never parsed: parsing the padding is how forged signatures get accepted.
# Importable by CPython too (the headend's tools name keys with key_id).
try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x
import hashlib

_MIN = const(256)  # modulus bytes: 2048 bits ...
_MAX = const(512)  # ... to 4096 (shorter keys are forgeable; longer ones cost time for nothing)
_DIGEST = const(32)  # SHA-256
# DER of DigestInfo{sha256, NULL} ahead of the digest (RFC 8017, 9.2 note 1). Only this form
# (with the NULL parameters) is signed by the headend, so only this form is accepted.
_SHA256_INFO = b"\x30\x31\x30\x0d\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x01\x05\x00\x04\x20"


def verify(modulus, signature, digest):
    """True when `signature` (big-endian bytes, the modulus' length) is the release key's
    signature of the SHA-256 `digest` under the public key `modulus` (big-endian bytes, no
    leading zero byte). False for anything else, bad input included: it never raises."""
    for b in (modulus, signature, digest):
        if not isinstance(b, (bytes, bytearray)):
            return False
    k = len(modulus)
    if not _MIN <= k <= _MAX or modulus[0] == 0 or len(signature) != k or len(digest) != _DIGEST:
        return False
    n = int.from_bytes(modulus, "big")
    s = int.from_bytes(signature, "big")
    # RFC 8017 5.2.2: s must be a representative in [0, n-1]; 0 and 1 are their own e-th power
    # under every key, so they say nothing about the key holder. An even n is no RSA modulus.
    if n & 1 == 0 or s < 2 or s >= n:
        return False
    # s^65537 mod n without 3-argument pow (not on every build): square 16 times, multiply once.
    m = s
    for _ in range(16):
        m = m * m % n
    m = m * s % n
    got = m.to_bytes(k, "big")
    # EMSA-PKCS1-v1_5 (RFC 8017, 9.2): 00 01 FF..FF 00 DigestInfo digest, padding to length k
    # (here always >= 202 bytes of FF, far above the minimum 8).
    want = bytearray(k)
    want[1] = 1
    end = k - _DIGEST - len(_SHA256_INFO)  # where DigestInfo starts
    for i in range(2, end - 1):
        want[i] = 0xFF
    want[end:k - _DIGEST] = _SHA256_INFO
    want[k - _DIGEST:] = digest
    diff = 0
    for i in range(k):  # no early exit: the time does not tell where the first difference is
        diff |= got[i] ^ want[i]
    return diff == 0


def key_id(modulus):
    """The key's name in manifests: the first 8 bytes of SHA-256 of the modulus, hex (16 chars)."""
    h = hashlib.sha256(bytes(modulus)).digest()
    return "".join("%02x" % b for b in h[:8])
