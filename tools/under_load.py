#!/usr/bin/env python3
"""Run a command while CPU-bound processes keep the machine busy (`make test-under-load`).

A CI machine is never idle: a test that passes only on an idle one depends on scheduling. This
starts --burners processes that spin on the CPU, runs the command --runs times in a row (stopping
at the first failure), stops the burners, and prints one JSON line: runs, passed, burners, and
each run's seconds and exit status. Exit status: the first failing run's, else 0.

    python tools/under_load.py --burners 2 --runs 3 -- make test
"""

import argparse
import json
import multiprocessing
import subprocess
import sys
import time


def _burn():
    x = 0
    while True:  # pure CPU, no allocation growth: the load a parallel build or test job makes
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--burners", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args(argv)
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    if not cmd:
        ap.error("no command given")
    burners = [multiprocessing.Process(target=_burn, daemon=True) for _ in range(a.burners)]
    for p in burners:
        p.start()
    runs, status = [], 0
    try:
        for _ in range(a.runs):
            t0 = time.monotonic()
            rc = subprocess.call(cmd)
            runs.append({"seconds": round(time.monotonic() - t0), "status": rc})
            if rc:
                status = rc
                break
    finally:
        for p in burners:
            p.terminate()
            p.join()
    print(json.dumps({"runs": len(runs), "passed": sum(r["status"] == 0 for r in runs), "burners": a.burners,
                      "each": runs}))
    return status


if __name__ == "__main__":
    sys.exit(main())
