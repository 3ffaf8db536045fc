"""Smallest `-X heapsize` (KiB) in which `tools/sim.py` runs 24 simulated hours online.

Bisects between 32 and 512 KiB in 8 KiB steps; each probe is a full run against a private
Mosquitto. Prints one JSON line: {"min_heap_kib": N, "probes": [...]}.
"""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STEP = 8


def runs(kib, hours):
    p = subprocess.run([sys.executable, str(ROOT / "tools" / "sim.py"), "--hours", str(hours),
                        "--heap", "%dk" % kib], capture_output=True, text=True, cwd=ROOT, timeout=600)
    return p.returncode == 0


def main():
    hours = int(sys.argv[1]) if len(sys.argv) > 1 else 24
    lo, hi = 32 // STEP, 512 // STEP  # lo fails (assumed), hi must pass
    probes = []
    if not runs(hi * STEP, hours):
        print(json.dumps({"min_heap_kib": None, "error": "fails even at %d KiB" % (hi * STEP)}))
        return 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        ok = runs(mid * STEP, hours)
        probes.append([mid * STEP, ok])
        if ok:
            hi = mid
        else:
            lo = mid
    print(json.dumps({"min_heap_kib": hi * STEP, "min_heap_hours": hours, "probes": probes}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
