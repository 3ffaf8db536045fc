"""OpenPAYGO Token decode time on the host's MicroPython (docs/tokens.md): one SipHash chain step,
and the worst case, a token that matches no count (every count up to last + 64 is walked).

    PM_RUNTIME=micropython32 .venv/bin/python bench/openpaygo.py
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import mprun  # noqa: E402

SCRIPT = r'''
import time, json, openpaygo_token as o
key = bytes(range(16))
t0 = time.ticks_us()
for _ in range(200):
    o._next(123456789, key)
step = time.ticks_diff(time.ticks_us(), t0) // 200
out = {"openpaygo_step_us": step}
for n in (0, 500, 5000):
    d = o.Decoder(key, 123456789)
    d.count = n
    t0 = time.ticks_ms()
    d.check("000000001")
    out["openpaygo_worst_ms_at_count_%d" % n] = time.ticks_diff(time.ticks_ms(), t0)
print(json.dumps(out))
'''


def main():
    r = mprun.run_mpy(SCRIPT, heap="256k", timeout=600)
    if r.result is None:
        print(r.describe())
        return 1
    print("runtime %s: one chain step %d us; a token matching nothing at count 0 / 500 / 5000: %d / %d / %d ms" % (
        mprun.runtime(), r.result["openpaygo_step_us"], r.result["openpaygo_worst_ms_at_count_0"],
        r.result["openpaygo_worst_ms_at_count_500"], r.result["openpaygo_worst_ms_at_count_5000"]))
    print(json.dumps(r.result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
