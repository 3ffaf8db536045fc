"""HMAC-SHA256 on MicroPython (no hmac module there) against RFC 4231 and CPython's hmac."""
import hashlib
import hmac
import json

CASES = [
    # RFC 4231 test cases 1, 2 and 6 (key longer than the block size).
    ("0b" * 20, b"Hi There".hex()),
    (b"Jefe".hex(), b"what do ya want for nothing?".hex()),
    ("aa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First".hex()),
    ("01" * 64, ("ab" * 300)),
]


def test_matches_rfc4231_and_cpython(mpy):
    code = (
        "import json\nfrom binascii import hexlify, unhexlify\nfrom hmac256 import HmacSha256, equal\n"
        "cases = json.loads(%r)\n"
        "out = [hexlify(HmacSha256(unhexlify(k)).digest(unhexlify(m))).decode() for k, m in cases]\n"
        "print(json.dumps({'macs': out, 'eq': [equal(b'abc', b'abc'), equal(b'abc', b'abd'), equal(b'ab', b'abc')]}))\n"
    ) % json.dumps(CASES)
    r = mpy(code)
    expect = [hmac.new(bytes.fromhex(k), bytes.fromhex(m), hashlib.sha256).hexdigest() for k, m in CASES]
    assert r.result["macs"] == expect
    assert r.result["macs"][0] == "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
    assert r.result["eq"] == [True, False, False]


def test_empty_key_is_refused(mpy):
    r = mpy("from hmac256 import HmacSha256\ntry:\n    HmacSha256(b'')\n    print('{\"refused\": false}')\n"
            "except ValueError:\n    print('{\"refused\": true}')\n")
    assert r.result == {"refused": True}
