"""firmware/ota_manifest.py: release manifests verified on MicroPython against signatures made by the
`cryptography` library (tools/release_key.py), and every rule a manifest must pass on a meter."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import ota_release  # noqa: E402
import release_key  # noqa: E402

BOARD = "esp32-atm90e26"
SHA = "ab" * 32


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    good = release_key.load(release_key.generate(str(d / "k.pem")) or str(d / "k.pem"))
    other = release_key.load(release_key.generate(str(d / "o.pem"), 2048) or str(d / "o.pem"))
    return good, other


def manifest(version="1.1.0", boards=(BOARD,), size=200000, min_record=4, kid=None, key=None, **more):
    doc = {"v": 1, "version": version, "board": list(boards), "size": size, "sha256": SHA,
           "min_record": min_record, "kid": kid or release_key.key_id(release_key.modulus(key))}
    doc.update(more)
    return json.dumps(doc, separators=(",", ":")).encode()


SCRIPT = r'''
import json, mptest
from binascii import unhexlify
import ota_manifest as M
cases = json.loads(open(%r).read())
n = unhexlify(cases["n"])
out = {}
for name, text, sig in cases["verify"]:
    m = M.verify(text.encode("latin-1") if name == "not_json" else text.encode(), unhexlify(sig), n if name != "no_key" else None)
    out[name] = M.REASONS[m] if type(m) is int else "ok"
for name, text, running, rec, slot in cases["admit"]:
    m = M.verify(text.encode(), unhexlify(cases["sigs"][name]), n)
    why = M.admissible(m, %r, M.vcode(running), rec, slot)
    out[name] = "ok" if why is None else M.REASONS[why]
out["vcodes"] = [M.vcode(t) for t in cases["vcodes"]]
out["vtext"] = M.vtext(M.vcode("1.2.3"))
print(json.dumps(out))
'''


def test_manifests_verify_and_are_admitted_only_by_the_rules(mpy, keys, tmp_path):
    key, other = keys
    n = release_key.modulus(key)
    good = manifest(key=key)
    cases = {"n": n.hex(), "verify": [], "admit": [], "sigs": {}}

    def v(name, text, sig):
        cases["verify"].append([name, text.decode("latin-1"), sig.hex()])

    v("good", good, release_key.sign(key, good))
    v("no_key", good, release_key.sign(key, good))
    v("other_key", good, release_key.sign(other, good))
    v("tampered", good.replace(b"200000", b"200001"), release_key.sign(key, good))
    bad_sig = bytearray(release_key.sign(key, good))
    bad_sig[100] ^= 1
    v("flipped_sig", good, bytes(bad_sig))
    v("short_sig", good, release_key.sign(key, good)[1:])
    v("unknown_kid", manifest(key=key, kid="0" * 16), release_key.sign(key, manifest(key=key, kid="0" * 16)))
    for name, text in (("not_json", b"{not json"), ("no_version", good.replace(b'"version":"1.1.0",', b"")),
                       ("bad_version", manifest(version="1.1", key=key)),
                       ("version_256", manifest(version="1.256.0", key=key)),
                       ("size_zero", manifest(size=0, key=key)), ("size_str", manifest(size="1", key=key)),
                       ("no_board", manifest(boards=(), key=key)), ("v2", good.replace(b'"v":1', b'"v":2')),
                       ("bad_downgrade_from", manifest(key=key, downgrade_from="x")),
                       ("too_long", manifest(key=key, boards=["b%03d" % i for i in range(120)]))):
        v(name, text, release_key.sign(key, text))
    admit = [  # name, manifest, running version, record version, slot size
        ("fits", manifest(key=key), "1.0.0", 4, 0x1F0000),
        ("other_board", manifest(key=key, boards=("esp32-ade7953",)), "1.0.0", 4, 0x1F0000),
        ("two_boards", manifest(key=key, boards=("esp32-ade7953", BOARD)), "1.0.0", 4, 0x1F0000),
        ("too_big", manifest(key=key, size=0x1F0001), "1.0.0", 4, 0x1F0000),
        ("exactly_the_slot", manifest(key=key, size=0x1F0000), "1.0.0", 4, 0x1F0000),
        ("record_newer_needed", manifest(key=key, min_record=5), "1.0.0", 4, 0x1F0000),
        ("same", manifest(key=key), "1.1.0", 4, 0x1F0000),
        ("older", manifest(key=key), "1.2.0", 4, 0x1F0000),
        ("older_patch", manifest(key=key, version="1.1.9"), "1.1.10", 4, 0x1F0000),
        ("downgrade_named", manifest(key=key, downgrade_from="1.2.0"), "1.2.0", 4, 0x1F0000),
        ("downgrade_other", manifest(key=key, downgrade_from="1.3.0"), "1.2.0", 4, 0x1F0000),
        ("newer_minor_over_patch", manifest(key=key, version="1.10.0"), "1.9.255", 4, 0x1F0000),
    ]
    for name, text, running, rec, slot in admit:
        cases["admit"].append([name, text.decode(), running, rec, slot])
        cases["sigs"][name] = release_key.sign(key, text).hex()
    cases["vcodes"] = ["0.0.1", "1.2.3", "255.255.255", "1.2", "1.2.3.4", "a.b.c", "01.2.3", "", "1..3", "-1.2.3"]
    path = tmp_path / "cases.json"
    path.write_text(json.dumps(cases))
    r = mpy(SCRIPT % (str(path), BOARD), heap="512k", timeout=300).result
    assert r["good"] == "ok"
    assert r["no_key"] == "no_release_key"
    assert r["other_key"] == r["tampered"] == r["flipped_sig"] == r["short_sig"] == "bad_signature"
    assert r["unknown_kid"] == "unknown_key"
    for name in ("not_json", "no_version", "bad_version", "version_256", "size_zero", "size_str", "no_board",
                 "v2", "bad_downgrade_from", "too_long"):
        assert r[name] == "bad_manifest", name
    assert r["fits"] == r["two_boards"] == r["exactly_the_slot"] == r["downgrade_named"] == "ok"
    assert r["newer_minor_over_patch"] == "ok"  # numbers, not text: 1.10.0 > 1.9.255
    assert r["other_board"] == "wrong_board"
    assert r["too_big"] == "too_big"
    assert r["record_newer_needed"] == "record_too_old"
    assert r["same"] == "same_version"
    assert r["older"] == r["older_patch"] == r["downgrade_other"] == "downgrade"
    assert r["vcodes"] == [1, 0x010203, 0xFFFFFF, -1, -1, -1, 0x010203, -1, -1, -1]
    assert r["vtext"] == "1.2.3"


def test_the_headend_and_the_meter_agree_on_versions_and_reasons():
    import ota_manifest as M  # the firmware's, under CPython (conftest's shim)
    import ota_rollout
    import ota_sim

    assert ota_rollout.REASONS == ota_sim.REASONS == M.REASONS
    for t in ("0.0.0", "1.2.3", "9.10.11", "255.0.1", "1.2", "x.1.2", "256.0.0", "1.2.3 "):
        assert ota_release.vcode(t) == M.vcode(t), t
    assert ota_release.MAX_MANIFEST == M.MAX_TEXT
