"""firmware/rsaverify.py: RSASSA-PKCS1-v1_5 / SHA-256 verification on MicroPython (both runtimes)
and CPython, against the `cryptography` library through tools/release_key.py: its signatures
verify, and every forgery and malformed encoding is refused, including the ones a verifier that
parses the padding would take (encodings made here and signed with the raw private exponent)."""
import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))
import release_key  # noqa: E402

# DER DigestInfo prefixes (RFC 8017, 9.2 note 1) and hand-made relatives.
INFO = bytes.fromhex("3031300d060960864801650304020105000420")  # SHA-256, what is signed
SHA1_INFO = bytes.fromhex("3021300906052b0e03021a05000414")  # SHA-1, 20-byte digest
SHA1_INFO_32 = bytes.fromhex("302d300906052b0e03021a05000420")  # SHA-1's OID around 32 bytes
SHA512_INFO = bytes.fromhex("3051300d060960864801650304020305000440")  # SHA-512, 64-byte digest
SHA512_INFO_32 = bytes.fromhex("3031300d060960864801650304020305000420")  # SHA-512's OID, 32 bytes
NO_NULL_INFO = bytes.fromhex("302f300b0609608648016503040201" "0420")  # parameters absent

MSGS = (b"", b'{"v":1,"version":"1.1.0","boards":["esp32-atm90e26"]}', bytes(range(256)) * 40)


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """One release key of each size, made once (the 4096-bit one takes a while)."""
    d = tmp_path_factory.mktemp("rsa")
    return {bits: release_key.load(release_key.generate(str(d / ("k%d.pem" % bits)), bits))
            for bits in (2048, 3072, 4096)}


def raw_sign(key, em):
    """The private-key operation on an encoded message of our making (to build malformed ones)."""
    pn = key.private_numbers()
    n = pn.public_numbers.n
    k = (n.bit_length() + 7) // 8
    assert len(em) == k and int.from_bytes(em, "big") < n
    return pow(int.from_bytes(em, "big"), pn.d, n).to_bytes(k, "big")


def encode(k, digest, info=INFO, ff=None, block=1, tail=b"", fill=False, sep=b"\0"):
    """00 `block` FF*ff `sep` info digest tail: k bytes with ff=None (the padding that makes
    it so); fill=True puts zero bytes in front of a shorter one."""
    body = sep + info + digest + tail
    if ff is None:
        ff = k - 2 - len(body)
    em = bytes([0, block]) + b"\xff" * ff + body
    if fill:
        em = bytes(k - len(em)) + em
    assert len(em) == k, (len(em), k)
    return em


def forgeries(key):
    """(name, modulus, signature, digest) that must all be refused, for one key."""
    n = release_key.modulus(key)
    k = len(n)
    ni = int.from_bytes(n, "big")
    msg = MSGS[1]
    d = hashlib.sha256(msg).digest()
    sig = release_key.sign(key, msg)
    pad = k - 3 - len(INFO) - 32  # the right number of FF bytes

    def flip(b, i, bit=1):
        b = bytearray(b)
        b[i] ^= bit
        return bytes(b)

    out = [
        ("flipped_sig_last", n, flip(sig, -1), d),
        ("flipped_sig_mid", n, flip(sig, k // 2, 0x10), d),
        ("flipped_sig_first", n, flip(sig, 0, 0x01), d),
        ("flipped_digest_first", n, sig, flip(d, 0, 0x80)),
        ("flipped_digest_last", n, sig, flip(d, 31)),
        ("flipped_modulus_mid", flip(n, k // 2, 4), sig, d),
        ("flipped_modulus_low", flip(n, -1, 2), sig, d),
        ("even_modulus", flip(n, -1, 1), sig, d),
        ("sig_short", n, sig[1:], d),
        ("sig_long_lead", n, b"\0" + sig, d),
        ("sig_long_tail", n, sig + b"\0", d),
        ("sig_empty", n, b"", d),
        ("digest_short", n, sig, d[:31]),
        ("digest_long", n, sig, d + b"\0"),
        ("modulus_leading_zero", b"\0" + n, b"\0" + sig, d),
        ("s_0", n, bytes(k), d),
        ("s_1", n, (1).to_bytes(k, "big"), d),
        ("s_n_minus_1", n, (ni - 1).to_bytes(k, "big"), d),
        ("s_n", n, n, d),
        ("s_n_plus_1", n, (ni + 1).to_bytes(k, "big"), d),
        ("s_all_ff", n, b"\xff" * k, d),
        # The right scheme under other hashes: cryptography's own SHA-1 and SHA-512 signatures.
        ("sha1_signature", n, key.sign(msg, padding.PKCS1v15(), hashes.SHA1()), d),
        ("sha1_signature_own_digest", n, key.sign(msg, padding.PKCS1v15(), hashes.SHA1()),
         hashlib.sha1(msg).digest() + bytes(12)),
        ("sha512_signature", n, key.sign(msg, padding.PKCS1v15(), hashes.SHA512()), d),
        ("sha512_signature_own_digest", n, key.sign(msg, padding.PKCS1v15(), hashes.SHA512()),
         hashlib.sha512(msg).digest()[:32]),
        # The same SHA-256 digest under another algorithm's DigestInfo.
        ("sha1_info_same_digest", n, raw_sign(key, encode(k, d, SHA1_INFO_32)), d),
        ("sha1_info_sha1_digest", n, raw_sign(key, encode(k, hashlib.sha1(msg).digest(), SHA1_INFO)), d),
        ("sha512_info_same_digest", n, raw_sign(key, encode(k, d, SHA512_INFO_32)), d),
        ("sha512_info_sha512_digest", n, raw_sign(key, encode(k, hashlib.sha512(msg).digest(), SHA512_INFO)), d),
        ("digest_info_without_null", n, raw_sign(key, encode(k, d, NO_NULL_INFO)), d),
        # Malformed padding, signed with the private exponent.
        ("seven_ff_leading_zeros", n, raw_sign(key, encode(k, d, ff=7, fill=True)), d),
        ("seven_ff_then_garbage", n, raw_sign(key, encode(k, d, ff=7, tail=b"\x00" * (pad - 7))), d),
        ("zero_ff", n, raw_sign(key, encode(k, d, ff=0, fill=True)), d),
        ("fe_in_padding", n, raw_sign(key, flip(encode(k, d), 20)), d),
        ("fe_last_padding_byte", n, raw_sign(key, flip(encode(k, d), 2 + pad - 1)), d),
        ("zero_in_padding", n, raw_sign(key, flip(encode(k, d), 12, 0xFF)), d),
        ("block_type_0", n, raw_sign(key, encode(k, d, block=0)), d),
        ("block_type_2", n, raw_sign(key, encode(k, d, block=2)), d),
        ("block_type_2_random", n, raw_sign(key, bytes([0, 2]) + bytes((i * 37) % 255 + 1 for i in range(pad))
                                            + b"\0" + INFO + d), d),
        ("leading_01", n, raw_sign(key, b"\x01" + encode(k, d)[1:]), d),
        ("no_separator", n, raw_sign(key, encode(k, d, sep=b"\xff")), d),
        ("separator_01", n, raw_sign(key, encode(k, d, sep=b"\x01")), d),
        # The digest not at the end: a parser that stops after it takes these (Bleichenbacher 2006).
        ("garbage_after_digest", n, raw_sign(key, encode(k, d, ff=8, tail=b"\x55" * (pad - 8))), d),
        ("one_byte_after_digest", n, raw_sign(key, encode(k, d, ff=pad - 1, tail=b"\x00")), d),
        ("digest_in_front_of_itself", n, raw_sign(key, encode(k, d, ff=pad - 32, tail=d)), d),
        # DigestInfo with wrong DER lengths (the digest still 32 bytes at the end).
        ("info_octet_length_21", n, raw_sign(key, encode(k, d, INFO[:-1] + b"\x21")), d),
        ("info_octet_length_1f", n, raw_sign(key, encode(k, d, INFO[:-1] + b"\x1f")), d),
        ("info_outer_length", n, raw_sign(key, encode(k, d, INFO[:1] + b"\x32" + INFO[2:])), d),
        ("info_inner_length", n, raw_sign(key, encode(k, d, INFO[:3] + b"\x0e" + INFO[4:])), d),
        ("info_oid_length", n, raw_sign(key, encode(k, d, INFO[:5] + b"\x0a" + INFO[6:])), d),
        ("info_long_form_length", n, raw_sign(key, encode(k, d, b"\x30\x81\x31" + INFO[2:])), d),
    ]
    return out


@pytest.fixture(scope="module")
def cases(keys):
    """(name, modulus, signature, digest, expected) for every check, all keys."""
    out = []
    for bits, key in keys.items():
        n = release_key.modulus(key)
        assert len(n) * 8 == bits
        for i, msg in enumerate(MSGS):
            out.append(("ok_%d_%d" % (bits, i), n, release_key.sign(key, msg), hashlib.sha256(msg).digest(), True))
        # The exact encoding made by hand: proves the raw signing above makes what the forgeries need.
        d = hashlib.sha256(MSGS[1]).digest()
        out.append(("hand_made_exact_%d" % bits, n, raw_sign(key, encode(len(n), d)), d, True))
        out += [(name + "_%d" % bits, nn, s, dd, False) for name, nn, s, dd in forgeries(key)]
    msg = MSGS[1]
    d = hashlib.sha256(msg).digest()
    out.append(("other_key", release_key.modulus(keys[3072]), release_key.sign(keys[2048], msg), d, False))
    out.append(("other_key_padded", release_key.modulus(keys[3072]),
                bytes(128) + release_key.sign(keys[2048], msg), d, False))
    # A 1024-bit key is too short to trust, however right its signature (cryptography agrees it is).
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    ssig = small.sign(msg, padding.PKCS1v15(), hashes.SHA256())
    small.public_key().verify(ssig, msg, padding.PKCS1v15(), hashes.SHA256())
    out.append(("modulus_1024", release_key.modulus(small), ssig, d, False))
    # A 4104-bit modulus (513 bytes): over the bound, refused before any arithmetic.
    big = release_key.modulus(keys[4096])
    out.append(("modulus_513_bytes", b"\x01" + big, bytes(513), d, False))
    names = [c[0] for c in out]
    assert len(names) == len(set(names))
    return out


SCRIPT = r'''
import json
from binascii import unhexlify
import rsaverify
out = {}
first = None
with open(%r) as f:
    for line in f:
        name, n, s, d = json.loads(line)
        n, s, d = unhexlify(n), unhexlify(s), unhexlify(d)
        if first is None:
            first = (n, s, d)
        out[name] = rsaverify.verify(n, s, d)
        if name.startswith("ok_") and name.endswith("_0"):
            out["kid_" + name] = rsaverify.key_id(n)
n, s, d = first
assert rsaverify.verify(n, s, d)
out["bytearray"] = rsaverify.verify(bytearray(n), bytearray(s), bytearray(d))
junk = [(None, s, d), (n, None, d), (n, s, None), (1, 2, 3), ("a" * len(n), s, d), (n, "c" * len(s), d),
        (n, s, "x" * 32), (list(n), s, d),
        (n, list(s), d), (n, s, list(d)), (b"", b"", b""), (n, s, b""), (int.from_bytes(n, "big"), s, d),
        (n, int.from_bytes(s, "big"), d), (memoryview(n), s, d), ((), (), ()), (n, s, 12345)]
res = []
for a in junk:
    try:
        res.append(rsaverify.verify(*a))
    except Exception as e:
        res.append("raised %%r" %% (e,))
out["junk"] = res
print(json.dumps(out))
'''
JUNK_COUNT = 17


def write_cases(cases, path):
    with open(path, "w") as f:
        for name, n, s, d, _ in cases:
            f.write(json.dumps([name, n.hex(), s.hex(), d.hex()]) + "\n")


def test_micropython_verifies_cryptography_and_refuses_forgeries(mpy, cases, tmp_path):
    path = tmp_path / "cases.jsonl"
    write_cases(cases, path)
    r = mpy(SCRIPT % str(path), heap="256k", timeout=600).result
    wrong = [name for name, _, _, _, expect in cases if r[name] is not expect]
    assert not wrong, wrong
    assert sum(1 for c in cases if not c[4]) >= 150
    assert r["bytearray"] is True
    assert r["junk"] == [False] * JUNK_COUNT
    for name, n, _, _, _ in cases:
        if "kid_" + name in r:  # the firmware names each key as the headend does
            assert r["kid_" + name] == release_key.key_id(n)


def test_cpython_imports_and_agrees(cases):
    # Imported without the host tests' stand-in `micropython` module: the guard takes over.
    p = subprocess.run([sys.executable, "-c",
                        "import sys; sys.path.insert(0, 'firmware'); import rsaverify; "
                        "assert 'micropython' not in sys.modules; print(rsaverify.key_id(b'\\x01' * 256))"],
                       cwd=REPO, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == release_key.key_id(b"\x01" * 256)
    import rsaverify
    wrong = [name for name, n, s, d, expect in cases if rsaverify.verify(n, s, d) is not expect]
    assert not wrong, wrong
    name, n, s, d, _ = cases[0]
    odd = [(None, s, d), (list(n), s, d), (n, list(s), d), (n, s, list(d)), (n, s, "x" * 32),
           (n.hex(), s, d), (memoryview(n), s, d), (n, s, 3), (1, 2, 3)]
    assert [rsaverify.verify(*a) for a in odd] == [False] * len(odd)
    for name, n, _, _, _ in cases:
        assert rsaverify.key_id(n) == release_key.key_id(n)
        assert len(release_key.key_id(n)) == 16


def test_release_key_file_cli_and_signatures(keys, tmp_path):
    path = tmp_path / "release.pem"
    p = subprocess.run([sys.executable, str(REPO / "tools" / "release_key.py"), "new", str(path), "--bits", "2048"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8
    key = release_key.load(str(path))
    n = release_key.modulus(key)
    assert len(n) == 256 and n[0] >= 0x80
    assert p.stdout.splitlines() == ["key id %s, 2048 bits" % release_key.key_id(n), "modulus %s" % n.hex()]
    q = subprocess.run([sys.executable, str(REPO / "tools" / "release_key.py"), "public", str(path)],
                       capture_output=True, text=True, timeout=60)
    assert q.returncode == 0 and q.stdout == p.stdout
    # Never overwrites a key: meters carry its public half.
    before = path.read_bytes()
    with pytest.raises(FileExistsError):
        release_key.generate(str(path), 2048)
    r = subprocess.run([sys.executable, str(REPO / "tools" / "release_key.py"), "new", str(path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "exists" in r.stderr and path.read_bytes() == before
    with pytest.raises(ValueError):
        release_key.generate(str(tmp_path / "small.pem"), 1024)
    assert not (tmp_path / "small.pem").exists()
    # load refuses what meters could not verify.
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    (tmp_path / "k1024.pem").write_bytes(small.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with pytest.raises(ValueError):
        release_key.load(str(tmp_path / "k1024.pem"))
    # Signatures are the modulus' length and verify with cryptography too.
    for bits, key in keys.items():
        sig = release_key.sign(key, b"data")
        assert len(sig) == len(release_key.modulus(key)) == bits // 8
        key.public_key().verify(sig, b"data", padding.PKCS1v15(), hashes.SHA256())
