#!/usr/bin/env python3
"""The utility's firmware release key (docs/ota.md): RSA, e = 65537, 3072 bits by default.

Signs release manifests with RSASSA-PKCS1-v1_5 and SHA-256 (the `cryptography` library); meters
verify with firmware/rsaverify.py and the public modulus they carry, and know the key by its id
(the first 8 bytes of SHA-256 of the modulus, hex).

    python tools/release_key.py new PATH [--bits N]   # a new key (PKCS#8 PEM, mode 0600)
    python tools/release_key.py public PATH           # its id and public modulus (hex)
"""
import argparse
import hashlib
import os
import sys

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

SIZES = (2048, 3072, 4096)  # what meters accept: 256 to 512 modulus bytes (firmware/rsaverify.py)


def generate(path, bits=3072):
    """Write a new key to `path` and return the path. Never overwrites a file: a replaced release
    key would orphan every meter that carries the old one."""
    if bits not in SIZES:
        raise ValueError("key size %d: use %s bits" % (bits, ", ".join(map(str, SIZES))))
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    # O_EXCL: refuse an existing file; the mode is set at creation, so the key is never readable
    # by others, not even for a moment.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return path


def load(path):
    """The private key at `path` (PEM); ValueError unless it is an RSA key meters can verify."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (TypeError, UnsupportedAlgorithm) as e:  # encrypted, or an algorithm we do not know
        raise ValueError("%s: %s" % (path, e)) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("%s is not an RSA key" % path)
    pub = key.public_key().public_numbers()
    if pub.e != 65537 or not SIZES[0] <= pub.n.bit_length() <= SIZES[-1]:
        raise ValueError("%s: meters verify RSA keys of %d-%d bits with e = 65537"
                         % (path, SIZES[0], SIZES[-1]))
    return key


def sign(key, data):
    """RSASSA-PKCS1-v1_5 signature of SHA-256(data), big-endian, the modulus' length."""
    return key.sign(bytes(data), padding.PKCS1v15(), hashes.SHA256())


def modulus(key):
    """The public modulus as big-endian bytes, no leading zero (what meters carry)."""
    n = key.public_key().public_numbers().n
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


def key_id(mod):
    """The key's id in manifests: the first 8 bytes of SHA-256 of the modulus, hex (as firmware)."""
    return hashlib.sha256(bytes(mod)).hexdigest()[:16]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=("new", "public"))
    ap.add_argument("path")
    ap.add_argument("--bits", type=int, default=3072, choices=SIZES)
    a = ap.parse_args(argv)
    try:
        if a.action == "new":
            generate(a.path, a.bits)
        n = modulus(load(a.path))
    except (OSError, ValueError) as e:
        print("release_key: %s" % (("%s: %s" % (a.path, e.strerror)) if getattr(e, "strerror", None) else e),
              file=sys.stderr)
        return 2
    print("key id %s, %d bits" % (key_id(n), len(n) * 8))
    print("modulus %s" % n.hex())
    return 0


if __name__ == "__main__":
    sys.exit(main())
