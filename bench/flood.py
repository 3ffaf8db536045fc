"""A flood of refused commands against the whole firmware: flash written per hour with and
without it, on the 32-bit build with the firmware frozen (tools/flood_mp.py does the work).

    python bench/flood.py            (make bench runs it)

Prints the figures as one JSON object on the last line; asserts nothing."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import mprun  # noqa: E402

RUNTIME = os.environ.get("PM_RUNTIME", "micropython32")


def flood(mode, rate, seconds):
    env = dict(os.environ, MICROPYPATH=mprun.micropypath(RUNTIME))
    p = subprocess.run([mprun.mpy_path(RUNTIME), "-X", "heapsize=8m", "tools/flood_mp.py", mode, str(rate),
                        str(seconds)], capture_output=True, text=True, cwd=ROOT, env=env, timeout=1800)
    if p.returncode != 0:
        raise SystemExit("flood_mp %s %d failed:\n%s%s" % (mode, rate, p.stdout[-2000:], p.stderr[-2000:]))
    r = json.loads(p.stdout.strip().splitlines()[-1])
    print("%-5s %5d/s %5d s: %8d bytes %4d erases programmed, %7d messages, %5d answers, %d events, "
          "top-ups %d/%d in time, longest second %d ms, heap growth %d B" % (
              mode, rate, seconds, r["flash_bytes"], r["flash_erases"], r["flood_messages"], r["answers_published"],
              r["events"], r["topups_sent"] - r["topups_late"], r["topups_sent"], r["max_second_us"] // 1000,
              r["heap_growth"]), flush=True)
    return r


def main():
    print("runtime: %s" % RUNTIME)
    quiet = flood("quiet", 0, 3600)
    f100 = flood("flood", 100, 3600)
    f1000 = flood("flood", 1000, 900)
    out = {
        "quiet_flash_bytes_per_hour": quiet["flash_bytes_per_hour"],
        "quiet_flash_erases_per_hour": quiet["flash_erases_per_hour"],
        "flood_flash_bytes_per_hour": f100["flash_bytes_per_hour"],
        "flood_flash_erases_per_hour": f100["flash_erases_per_hour"],
        "flood1000_flash_bytes_per_hour": f1000["flash_bytes_per_hour"],
        "flood1000_flash_erases_per_hour": f1000["flash_erases_per_hour"],
        # host time the meter spends per refused message (flood minus quiet, same simulated time)
        "flood_us_per_message": (f100["wall_ms"] - quiet["wall_ms"]) * 1000 // max(1, f100["flood_messages"]),
        "flood_topups_late": f100["topups_late"] + f1000["topups_late"],
        "flood_telemetry_lost": quiet["published"].get("tele", 0) - f100["published"].get("tele", 0),
        "flood_heap_growth_b": max(f100["heap_growth"], f1000["heap_growth"]),
        "flood_answers_per_hour": f100["answers_published"],
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
