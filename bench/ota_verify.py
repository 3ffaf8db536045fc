#!/usr/bin/env python3
"""What a firmware update's signature check costs the meter (firmware/rsaverify.py, docs/ota.md),
on the 32-bit build with the firmware frozen, as the meter image runs it (`make bench` builds it;
PM_RUNTIME picks another runtime). Prints one JSON line:
  verify_ms          one RSA-3072 PKCS#1 v1.5 / SHA-256 verification, median of 21, this host's CPU
  verify_ms_2048     the same with a 2048-bit key
  verify_ms_4096     the same with a 4096-bit key
  verify_heap_bytes  heap one 3072-bit verification allocates (gc.mem_alloc after gc.collect, the
                     collector off until it returns): its temporaries, all garbage afterwards; the
                     live peak is a few times the modulus length, far less
Keys and signatures are made by the `cryptography` library (tools/release_key.py)."""
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import mprun  # noqa: E402
import release_key  # noqa: E402

RUNS = 21
CODE = r'''
import gc, json, time, hashlib
from binascii import unhexlify
import rsaverify
out = {}
with open(%r) as f:
    cases = json.loads(f.read())
for bits, n, s, msg in cases:
    n, s = unhexlify(n), unhexlify(s)
    d = hashlib.sha256(msg.encode()).digest()
    ts = []
    for _ in range(%d):
        gc.collect()
        t = time.ticks_us()
        ok = rsaverify.verify(n, s, d)
        ts.append(time.ticks_diff(time.ticks_us(), t))
        if not ok:
            raise SystemExit("signature refused")
    ts.sort()
    out[str(bits)] = ts[len(ts) // 2]
    if bits == 3072:
        gc.collect()
        gc.disable()
        a = gc.mem_alloc()
        rsaverify.verify(n, s, d)
        out["heap"] = gc.mem_alloc() - a
        gc.enable()
print(json.dumps(out))
'''


def main():
    rt = os.environ.get("PM_RUNTIME") or "micropython32"
    os.environ["PM_RUNTIME"] = rt
    with tempfile.TemporaryDirectory(prefix="bench-ota-verify-") as tmp:
        cases = []
        for bits in (2048, 3072, 4096):
            key = release_key.load(release_key.generate(os.path.join(tmp, "k%d.pem" % bits), bits))
            msg = "release manifest %d" % bits
            cases.append([bits, release_key.modulus(key).hex(), release_key.sign(key, msg.encode()).hex(), msg])
        path = os.path.join(tmp, "cases.json")
        with open(path, "w") as f:
            json.dump(cases, f)
        res = mprun.run_mpy(CODE % (path, RUNS), heap="256k", timeout=600)
    if res.returncode != 0 or res.result is None:
        raise SystemExit("bench ota_verify failed\n" + res.describe())
    r = res.result
    print(json.dumps({"verify_ms": round(r["3072"] / 1000.0, 2), "verify_ms_2048": round(r["2048"] / 1000.0, 2),
                      "verify_ms_4096": round(r["4096"] / 1000.0, 2), "verify_heap_bytes": r["heap"],
                      "verify_runtime": rt}))


if __name__ == "__main__":
    main()
