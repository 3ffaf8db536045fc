"""Replay a bill: run the firmware's own tariff engine (under micropython) over an interval
load profile and print the energy per rate and per block and the total charge.

    tools/billreplay.py TARIFF.json PROFILE.csv [--json]

PROFILE.csv: one `timestamp,wh` row per interval (optional header line; `#` comments).
The timestamp is the interval start, as UTC seconds or ISO 8601 with Z or an offset; Wh is
a non-negative integer. The tariff JSON is the document the meter receives (docs/tariff.md).
"""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mprun  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MP_SCRIPT = ROOT / "tools" / "billreplay_mp.py"


class ReplayError(Exception):
    pass


def replay(tariff_path, csv_path, heap="256k"):
    """The engine's figures as a dict; raises ReplayError with the reason on bad input."""
    paths = []
    for what, p in (("tariff", tariff_path), ("profile", csv_path)):
        p = Path(p).resolve()  # the engine runs from the repository: the caller's relative paths
        if not p.is_file():
            raise ReplayError("%s %s: %s" % (what, p, "is a directory" if p.is_dir() else "no such file"))
        paths.append(str(p))
    cmd = [mprun.mpy_path(), "-X", "heapsize=" + heap, str(MP_SCRIPT)] + paths
    env = dict(os.environ, MICROPYPATH=mprun.micropypath())
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    res = mprun.parse_result(p.stdout)
    if res is None:
        raise ReplayError("the engine failed:\n" + p.stdout + p.stderr)
    if not res.get("ok"):
        raise ReplayError(res.get("error", "unknown error"))
    return res


def format_money(minor, decimals=2):
    sign = "-" if minor < 0 else ""
    minor = abs(minor)
    return "%s%d.%0*d" % (sign, minor // 10 ** decimals, decimals, minor % 10 ** decimals)


def report(res):
    lines = ["rows %d, %d s of profile" % (res["rows"], res["end"] - res["first"]),
             "energy %d Wh" % res["energy_wh"]]
    for i, wh in enumerate(res["rate_wh"]):
        lines.append("  rate %d   %12d Wh" % (i, wh))
    if len(res["block_wh"]) > 1:
        for i, wh in enumerate(res["block_wh"]):
            lines.append("  block %d  %12d Wh" % (i, wh))
    lines.append("standing charge for %d s" % res["standing_s"])
    lines.append("total charge %d minor units (%s)" % (res["charged_minor"], format_money(res["charged_minor"])))
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("tariff")
    p.add_argument("profile")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    a = p.parse_args(argv)
    try:
        res = replay(a.tariff, a.profile)
    except (ReplayError, mprun.MpyNotFound) as e:
        print("billreplay: error: %s" % e, file=sys.stderr)
        return 2
    print(json.dumps(res, sort_keys=True) if a.json else report(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
