#!/usr/bin/env python3
"""Power-cut sweep of the firmware's storage (`make powercut`).

Runs tools/powercut_mp.py under MicroPython: one clean run to count the scenario's flash
programs/erases and block operations, then
  cut     power lost at every program/erase N (torn write, dead flash afterwards), reboot
          on the surviving bytes, re-deliver unacknowledged commands, check
  once    the N-th block operation fails once (I/O error)
  sticky  the N-th block operation fails, and every one after it
  full    the file system is filled up at tick N
and checks: no acknowledged top-up lost, none applied twice, energy monotonic, relay state equal
to the last committed intent, no unreadable mount, no uncaught exception. The work is split over
--jobs MicroPython processes. The last line is one JSON object; the exit status is 1 on any failure.

    python tools/powercut.py            # full sweep: every cut point
    python tools/powercut.py --quick    # a strided sweep for `make test`
    python tools/powercut.py --geometry root   # on a stock image's root file system (the
                                               # ESP32 board's fallback, docs/storage.md)
"""

import argparse
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mprun  # noqa: E402

SCRIPT = "tools/powercut_mp.py"
HEAP = "8m"
# On the root geometry littlefs' small caches leave the harness' heap more fragmented: the
# 384 KiB RAM flashes of a full-disk run need more room to find a gap.
HEAP_ROOT = "16m"
SUM_KEYS = ("runs", "cut_points", "erases_cut", "lost", "applied_twice", "unreadable", "relay_mismatch",
            "record_mismatch", "crashes", "reboots", "failed_runs", "refused_full", "io_errors",
            "io_error_runs", "full_runs", "formats_redone", "log_damaged", "log_records_checked")
FAIL_KEYS = ("lost", "applied_twice", "unreadable", "relay_mismatch", "record_mismatch", "crashes",
             "log_damaged", "failed_runs")
MIN_CUT_POINTS = 400


def run_mp(args, geometry="meter", timeout=1800):
    args = tuple(args) + (geometry,)
    res = mprun.run_mpy(SCRIPT, args=args, heap=HEAP_ROOT if geometry == "root" else HEAP, timeout=timeout)
    for line in res.stdout.splitlines():
        if line.startswith("FAIL"):
            print("  " + line)
    if res.result is None:
        raise SystemExit("powercut: %s %s crashed\n%s" % (SCRIPT, " ".join(map(str, args)), res.describe()))
    return res.result


def sweep(mode, first, last, stride, jobs, geometry="meter"):
    """Run N = first, first+stride, ... <= last split over `jobs` interleaved workers."""
    parts = []
    for k in range(jobs):
        start = first + k * stride
        if start <= last:
            parts.append((mode, start, last, stride * jobs))
    with ThreadPoolExecutor(max_workers=jobs) as ex:
        results = list(ex.map(lambda p: run_mp(p, geometry), parts))
    total = {k: 0 for k in SUM_KEYS}
    total["energy_lost_max_wh"] = 0
    for r in results:
        for k in SUM_KEYS:
            total[k] += r.get(k, 0)
        total["energy_lost_max_wh"] = max(total["energy_lost_max_wh"], r.get("energy_lost_max_wh", 0))
    return total


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="strided sweep (for make test)")
    ap.add_argument("--jobs", type=int, default=max(1, min(4, os.cpu_count() or 1)))
    ap.add_argument("--geometry", choices=("meter", "root"), default="meter",
                    help="littlefs read/prog sizes: the meter image's partition (default) or a stock "
                         "image's root file system")
    args = ap.parse_args(argv)

    dry = run_mp(("dry", 0, 0, 1), args.geometry)
    if dry.get("failed_runs"):
        print("powercut: the clean run itself fails its checks")
        print(json.dumps({"ok": False, **dry}))
        return 1
    writes, ops = dry["writes"], dry["ops"]
    print("scenario: %d ticks of consumption, %d Wh, top-ups worth %d, commands and relay changes; "
          "littlefs geometry: %s" % (150, dry["energy_wh"], dry["topped_up"], args.geometry))
    print("clean run: %d programs + %d erases (%d bytes programmed), %d block operations in all"
          % (dry["programs"], dry["erases"], dry["bytes_programmed"], ops))

    if args.quick:
        plan = [("cut", 1, writes, max(1, writes // 60)), ("once", 1, ops, max(1, ops // 12)),
                ("sticky", 1, ops, max(1, ops // 12)), ("full", 1, 150, 50)]
    else:
        plan = [("cut", 1, writes, 1), ("once", 1, ops, max(1, ops // 150)),
                ("sticky", 1, ops, max(1, ops // 150)), ("full", 1, 150, 10)]
    out = {k: 0 for k in SUM_KEYS}
    out["energy_lost_max_wh"] = 0
    for mode, first, last, stride in plan:
        r = sweep(mode, first, last, stride, args.jobs, args.geometry)
        what = {"cut": "power cut at program/erase N", "once": "I/O error at operation N, once",
                "sticky": "I/O error from operation N on", "full": "file system full from tick N"}[mode]
        print("%-7s %-34s N=%d..%d step %d: %d runs, %d reboots, lost %d, twice %d, unreadable %d, "
              "relay mismatch %d, record mismatch %d, damaged log records %d, crashes %d%s" % (
                  mode, what, first, last, stride, r["runs"], r["reboots"], r["lost"], r["applied_twice"],
                  r["unreadable"], r["relay_mismatch"], r["record_mismatch"], r["log_damaged"], r["crashes"],
                  ", %d cut points (%d on erases), worst energy lost %d Wh" % (
                      r["cut_points"], r["erases_cut"], r["energy_lost_max_wh"]) if mode == "cut" else ""))
        for k in SUM_KEYS:
            out[k] += r[k]
        out["energy_lost_max_wh"] = max(out["energy_lost_max_wh"], r["energy_lost_max_wh"])
    problems = [k for k in FAIL_KEYS if out[k]]
    if out["erases_cut"] == 0:
        problems.append("no cut fell on an erase")
    if not args.quick and out["cut_points"] < MIN_CUT_POINTS:
        problems.append("only %d cut points (< %d)" % (out["cut_points"], MIN_CUT_POINTS))
    if out["io_error_runs"] == 0:
        problems.append("no I/O error was injected")
    out["scenario_writes"] = writes
    out["scenario_ops"] = ops
    out["geometry"] = args.geometry
    out["ok"] = not problems
    if problems:
        print("powercut: FAILED: " + ", ".join(problems))
    print(json.dumps(out))
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
