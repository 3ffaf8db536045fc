#!/usr/bin/env python3
"""Power-cut sweep of the firmware's storage (`make powercut`, docs/storage.md).

Runs tools/powercut_mp.py under MicroPython for each named scenario (tools/powercut_scenarios_mp.py):
one clean run to count the scenario's flash programs/erases and block operations, then
  cut     power lost at every program/erase N (torn write, dead flash afterwards), reboot
          on the surviving bytes, re-deliver unanswered commands, type unanswered tokens, check
  once    the N-th block operation fails once (I/O error)
  sticky  the N-th block operation fails, and every one after it
  full    the file system is filled up at tick N
and checks after every reboot and step: no acknowledged top-up lost, none applied twice, energy
monotonic and lost at a cut within the commit bound, relay state equal to the last committed
intent, a readable mount, every ring (event log, per-type events, load profile, snapshots, top-up
journal, outbox) readable and not gone back, uplink numbers each naming one message, no uncaught
exception, and each scenario's own invariant. The scenario "firmware_update" is tools/ota_sim.py's
sweep (an update that passes its trial and one that rolls back, cut at every flash write).
The work is split over --jobs MicroPython processes. One line per scenario and mode; the last
line is one JSON object with the totals and a "scenarios" member; exit status 1 on any failure.

    python tools/powercut.py                      # full sweep: every cut point of every scenario
    python tools/powercut.py --quick              # a strided sweep of every scenario (make test)
    python tools/powercut.py --scenario snapshots # one scenario (repeat the option for more)
    python tools/powercut.py --geometry root      # on a stock image's root file system (the
                                                  # ESP32 board's fallback, docs/storage.md)
"""

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mprun  # noqa: E402
import token_issue  # noqa: E402

SCRIPT = "tools/powercut_mp.py"
# The run's three 384 KiB RAM flashes are allocated once (tools/powercut_mp.py, Flashes); the
# rest is the whole app compiled from source, 8-byte slots, and littlefs' caches (smaller on the
# root geometry, so more of them).
HEAP = "16m"
HEAP_ROOT = "24m"
SCENARIOS = ("topup_mqtt", "token_local", "tariff_push", "key_rotation", "credit_rule_change",
             "calibration_write", "snapshots", "ring_rotation", "outbox_overflow", "first_boot",
             "first_boot_garbage", "record_migration")
OTA = "firmware_update"
ALL = SCENARIOS + (OTA,)
FAIL_KEYS = ("lost", "applied_twice", "unreadable", "relay_mismatch", "record_mismatch", "crashes",
             "log_damaged", "log_went_back", "log_short", "energy_back", "energy_lost", "unanswered",
             "uplink_reused", "uplink_lost", "key_mismatch", "invariant", "failed_runs")
SUM_KEYS = ("runs", "cut_points", "erases_cut", "reboots", "io_errors", "io_error_runs", "full_runs",
            "formats_redone", "log_records_checked", "refused_full", "uplink_restarts",
            "repl_errors", "backfill_by_repeat") + FAIL_KEYS
MIN_CUT_POINTS = 10000  # the whole sweep (every scenario)
SHOW_FAILS = 4  # first failed runs shown per MicroPython process (each prints its first failure)
# What each scenario's clean run must show it did (a scenario that stopped doing its job fails).
DRY_FACTS = {
    "token_local": lambda d: d["tokens_keyed"] >= 8,
    "calibration_write": lambda d: d["calibrations_saved"] == 2,
    "snapshots": lambda d: d["daily_snapshots"] == 4 and d["monthly_snapshots"] == 2,
    "ring_rotation": lambda d: {"events", "profile", "outbox", "topups", "daily"} <= set(d["rings_wrapped"]),
    "outbox_overflow": lambda d: d["outbox_dropped"] > 0 and d["backfill"] and d["backfill"][0] > 1,
    "first_boot_garbage": lambda d: d["resyncs"] >= 1,
    "record_migration": lambda d: d["from_version"] == 1 and d["to_version"] >= 4,
}
MODES = {"cut": "power cut at program/erase N", "once": "I/O error at operation N, once",
         "sticky": "I/O error from operation N on", "full": "file system full from tick N"}
# The meter and key of tools/powercut_mp.py, for the tokens of the plan.
METER = "pc-0001"
KEY = b"powercut-sweep-test-key-only-32b"
OTHER_KEY = b"another-meter-key-for-the-sweep!"


def make_plan(path):
    """What only CPython makes: tokens, by name (tools/token_issue.py, the reference OpenPAYGO
    library), each as [text, amount it adds]."""
    tokens = {}
    for i, amt in enumerate((150, 230, 310, 470, 520, 640), 1):
        tokens["pm%d" % i] = [token_issue.issue(KEY, METER, i, amt), amt]
    tokens["pm1_again"] = [tokens["pm1"][0], 0]
    tokens["wrong_meter"] = [token_issue.issue(OTHER_KEY, METER, 7, 100), 0]
    good = token_issue.issue(KEY, METER, 8, 100)
    tokens["typo"] = [good[:5] + str((int(good[5]) + 1) % 10) + good[6:], 0]  # one digit wrong
    count = 0
    for i, units in enumerate((2, 3, 4), 1):
        count, tok = token_issue.issue_openpaygo(KEY, count, units)
        tokens["opg%d" % i] = [tok, units * 100]  # unit_minor: 100 (firmware/paygo.py default)
    path.write_text(json.dumps({"tokens": tokens}))
    return path


def run_mp(args, geometry, scenario, plan, timeout=7200):
    args = tuple(args) + (geometry, scenario, str(plan))
    res = mprun.run_mpy(SCRIPT, args=args, heap=HEAP_ROOT if geometry == "root" else HEAP, timeout=timeout)
    fails = [line for line in res.stdout.splitlines() if line.startswith("FAIL")]
    for line in fails[:SHOW_FAILS]:
        print("  " + line, flush=True)
    if len(fails) > SHOW_FAILS:
        print("  ... and %d more failed runs of %s %s" % (len(fails) - SHOW_FAILS, scenario, args[0]), flush=True)
    if res.result is None:
        raise SystemExit("powercut: %s %s crashed\n%s" % (SCRIPT, " ".join(map(str, args)), res.describe()))
    return res.result


def parts(first, last, stride, runs_per_part):
    """(first, last, stride) pieces of N = first, first+stride, ... <= last, interleaved, each
    about runs_per_part runs (a process per piece; interleaving evens out the cost of late N)."""
    runs = (last - first) // stride + 1
    k = max(1, (runs + runs_per_part - 1) // runs_per_part)
    return [(first + i * stride, last, stride * k) for i in range(k) if first + i * stride <= last]


def plan_modes(dry, quick):
    writes, ops, ticks = dry["writes"], dry["ops"], dry["ticks"]
    if quick:
        return [("cut", 1, writes, max(1, writes // 40)), ("once", 1, ops, max(1, ops // 8)),
                ("sticky", 1, ops, max(1, ops // 8)), ("full", 1, ticks, max(1, ticks // 2))]
    return [("cut", 1, writes, 1), ("once", 1, ops, max(1, ops // 60)),
            ("sticky", 1, ops, max(1, ops // 60)), ("full", 1, ticks, max(1, ticks // 10))]


def total(results):
    out = {k: 0 for k in SUM_KEYS}
    out["energy_lost_max_wh"] = 0
    for r in results:
        for k in SUM_KEYS:
            out[k] += r.get(k, 0)
        out["energy_lost_max_wh"] = max(out["energy_lost_max_wh"], r.get("energy_lost_max_wh", 0))
    return out


def describe(name, mode, span, r):
    first, last, stride = span
    line = ("%-18s %-6s %-30s N=%d..%d step %d: %d runs, %d reboots, lost %d, twice %d, unreadable %d, "
            "relay mismatch %d, record mismatch %d, damaged log records %d, invariant %d, crashes %d" % (
                name, mode, MODES[mode], first, last, stride, r["runs"], r["reboots"], r["lost"],
                r["applied_twice"], r["unreadable"], r["relay_mismatch"], r["record_mismatch"],
                r["log_damaged"], r["invariant"], r["crashes"]))
    if mode == "cut":
        line += ", %d cut points (%d on erases), worst energy lost %d Wh" % (
            r["cut_points"], r["erases_cut"], r["energy_lost_max_wh"])
    other = [k for k in FAIL_KEYS if r[k] and k not in ("lost", "applied_twice", "unreadable", "relay_mismatch",
                                                        "record_mismatch", "log_damaged", "invariant", "crashes")]
    if other:
        line += " [" + ", ".join("%s %d" % (k, r[k]) for k in other) + "]"
    return line


def sweep_mp(names, args, plan, pool):
    """Every MicroPython scenario: dry runs, then every mode's pieces on one pool of workers."""
    drys = dict(zip(names, pool.map(lambda n: run_mp(("dry", 0, 0, 1), args.geometry, n, plan), names)))
    jobs, meta = [], []
    for n in names:
        for mode, first, last, stride in plan_modes(drys[n], args.quick):
            for p in parts(first, last, stride, 40 if args.quick else 150):
                jobs.append(((mode,) + p, n))
                meta.append((n, mode, (first, last, stride)))
    results = list(pool.map(lambda j: run_mp(j[0], args.geometry, j[1], plan), jobs))
    return drys, meta, results


def scenario_report(name, dry, meta, results):
    """Sum a scenario's runs per mode, print its lines, return its figures."""
    per = {}
    spans = {}
    for (n, mode, span), r in zip(meta, results):
        if n == name:
            per.setdefault(mode, []).append(r)
            spans[mode] = span
    figs = total([r for rs in per.values() for r in rs])
    for mode in MODES:
        if mode in per:
            print(describe(name, mode, spans[mode], total(per[mode])))
    figs["writes"], figs["ops"], figs["ticks"] = dry["writes"], dry["ops"], dry["ticks"]
    problems = [k for k in FAIL_KEYS if figs[k]]
    if dry["failed_runs"]:
        problems.append("the clean run fails its checks")
    facts = DRY_FACTS.get(name)
    if facts is not None and not facts(dry):
        problems.append("the clean run does not do what the scenario is for: %s" % json.dumps(
            {k: v for k, v in dry.items() if k not in SUM_KEYS and k not in ("mode", "scenario", "marks")}))
    if figs["erases_cut"] == 0:
        problems.append("no cut fell on an erase")
    if figs["io_error_runs"] == 0:
        problems.append("no I/O error was injected")
    figs["problems"] = problems
    return figs


def sweep_ota(args, pool):
    """firmware_update: tools/ota_sim.py's sweep (docs/ota.md), as make ota-sim runs it, cut at
    every flash program/erase of an update that passes its trial and of one that rolls back."""
    import ota_sim
    with tempfile.TemporaryDirectory(prefix="powercut-ota-") as tmp:
        plan = ota_sim.make_plan(Path(tmp))[0]
        kinds = ("good", "broken")
        drys = list(pool.map(lambda k: ota_sim.run_mp(plan, "dry", k, 0, 0, 1), kinds))
        jobs = []
        for k, dry in zip(kinds, drys):
            ops = dry["ops"]
            stride = max(1, ops // 20) if args.quick else 1
            for p in parts(1, ops, stride, 10 if args.quick else 40):
                jobs.append((k,) + p)
        results = list(pool.map(lambda j: ota_sim.run_mp(plan, "cut", *j), jobs))
    figs = {k: 0 for k in SUM_KEYS}
    figs["energy_lost_max_wh"] = 0
    for r in results:
        for k in ("runs", "cut_points", "reboots", "failed_runs"):
            figs[k] += r.get(k, 0)
        figs["lost"] += r.get("state_lost", 0)  # the record after a cut is not the one committed
        figs["unreadable"] += r.get("bricked", 0)  # no image boots, or the record is gone
        for k in ("updates_ok", "rolled_back", "bricked", "state_lost"):
            figs[k] = figs.get(k, 0) + r.get(k, 0)
    figs["writes"] = sum(d["ops"] for d in drys)
    figs["runtime"] = mprun.runtime()
    print("%-18s cut    power cut at every program/erase of an update (good %d, rolled back %d): %d runs, "
          "%d cut points, %d reboots, bricked %d, state lost %d, updates kept %d, rolled back %d, failed runs %d"
          % (OTA, drys[0]["ops"], drys[1]["ops"], figs["runs"], figs["cut_points"], figs["reboots"],
             figs["bricked"], figs["state_lost"], figs["updates_ok"], figs["rolled_back"], figs["failed_runs"]))
    figs["problems"] = [k for k in ("lost", "unreadable", "failed_runs") if figs[k]]
    if figs["cut_points"] == 0:
        figs["problems"].append("no cut point")
    return figs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="strided sweep of every scenario (for make test)")
    ap.add_argument("--jobs", type=int, default=max(1, min(4, os.cpu_count() or 1)))
    ap.add_argument("--geometry", choices=("meter", "root"), default="meter",
                    help="littlefs read/prog sizes: the meter image's partition (default) or a stock "
                         "image's root file system")
    ap.add_argument("--scenario", action="append", choices=ALL, metavar="NAME",
                    help="run only this scenario (may be repeated): " + ", ".join(ALL))
    args = ap.parse_args(argv)
    names = args.scenario or list(ALL)
    if args.geometry == "root" and not args.scenario:
        names.remove(OTA)  # its flash is the ESP32's OTA layout, whatever --geometry says
    mp_names = [n for n in SCENARIOS if n in names]
    t0 = time.time()
    print("power-cut sweep: %s, littlefs geometry %s, %d jobs" % (
        "strided (quick)" if args.quick else "every cut point", args.geometry, args.jobs), flush=True)
    figures = {}
    with tempfile.TemporaryDirectory(prefix="powercut-") as tmp, ThreadPoolExecutor(max_workers=args.jobs) as pool:
        plan = make_plan(Path(tmp) / "plan.json")
        if mp_names:
            drys, meta, results = sweep_mp(mp_names, args, plan, pool)
            for n in mp_names:
                figures[n] = scenario_report(n, drys[n], meta, results)
        if OTA in names:
            figures[OTA] = sweep_ota(args, pool)
    out = total(figures.values())
    out["energy_lost_max_wh"] = max([f["energy_lost_max_wh"] for f in figures.values()] + [0])
    problems = ["%s: %s" % (n, p) for n in figures for p in figures[n]["problems"]]
    if not args.quick and names == list(ALL) and out["cut_points"] < MIN_CUT_POINTS:
        problems.append("only %d cut points (< %d)" % (out["cut_points"], MIN_CUT_POINTS))
    out["geometry"] = args.geometry
    out["seconds"] = round(time.time() - t0)
    out["ok"] = not problems
    out["scenarios"] = figures
    print("total: %d scenarios, %d runs, %d cut points (%d on erases), %d I/O-error runs, %d full-disk runs: "
          "lost %d, applied twice %d, unreadable %d, relay mismatches %d, invariant failures %d, "
          "worst energy lost at a cut %d Wh; %d s" % (
              len(figures), out["runs"], out["cut_points"], out["erases_cut"], out["io_error_runs"],
              out["full_runs"], out["lost"], out["applied_twice"], out["unreadable"], out["relay_mismatch"],
              out["invariant"], out["energy_lost_max_wh"], out["seconds"]))
    if problems:
        print("powercut: FAILED: " + "; ".join(problems))
    keys = ("ok", "cut_points", "lost", "applied_twice", "unreadable", "relay_mismatch")
    print(json.dumps(dict([(k, out[k]) for k in keys] + [(k, v) for k, v in out.items() if k not in keys])))
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
