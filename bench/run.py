"""`make bench`: run every benchmark, print a table, write the figures as JSON (BENCH_OUT).

Each benchmark is a script under bench/ that prints one JSON object as its last line; this
runner merges them. Figures are measurements of this machine's run, never assertions.
"""
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import mprun  # noqa: E402

# (figure, unit, target, what) for the table; the target is a comparison, not a test.
FIGURES = [
    ("tick_us_median", "us", "<= 100", "one metering+billing+relay+sync step, unix port"),
    ("tick_us_p99", "us", "<= 100", "same, 99th percentile (includes commits)"),
    ("spi_us_per_tick", "us", "", "SPI bus time per step on the device at the board's SPI clock"),
    ("alloc_bytes_per_tick", "B", "0", "heap allocated by a steady-state step (heap_lock proven)"),
    ("alloc_bytes_per_tick_32", "B", "0", "same on the 32-bit build, all three chips, ticks 1-5 s apart"),
    ("min_heap_kib", "KiB", "", "smallest -X heapsize running the 24 h online sim, 64-bit, from source"),
    ("heap_sim32_kib", "KiB", "<= 64", "same on the 32-bit build, firmware and emulators frozen"),
    ("heap_device_kib", "KiB", "", "real esp32-atm90e26 board, a day online, frozen image, 32-bit, stand-ins included"),
    ("heap_device_harness_kib", "KiB", "", "of which the stand-ins and virtual world hold before the board starts"),
    ("heap_device_net_kib", "KiB", "<= 48", "the difference: what the device itself needs"),
    ("heap_device_mpy_kib", "KiB", "", "same board from `make deploy`'s .mpy files (stock image), stand-ins included"),
    ("heap_device_mpy_net_kib", "KiB", "", "the same without the stand-ins"),
    ("wire_bytes_per_day", "B", "<= 20000", "MQTT packet bytes per meter per day"),
    ("payload_bytes_per_day", "B", "", "MQTT payload bytes per meter per day"),
    ("flash_bytes_per_day", "B", "", "bytes programmed to flash per day"),
    ("erase_cycles_20y", "cycles", "<= 20000", "erase cycles per block in 20 years, household, meter image's partition"),
    ("erase_cycles_20y_5kw", "cycles", "<< 100000", "same at a constant 5 kW"),
    ("erase_cycles_20y_stock_image", "cycles", "", "household, stock-image fallback: /data on the root fs"),
    ("erase_cycles_20y_5kw_stock_image", "cycles", "", "same at a constant 5 kW"),
    ("topup_ms_p50_1", "ms", "", "top-up publish -> ack, 1 meter"),
    ("topup_ms_p99_1", "ms", "", "same, p99"),
    ("topup_ms_p50_100", "ms", "", "same, 100 meters"),
    ("topup_ms_p99_100", "ms", "<= 100", "same, p99"),
    ("energy_at_risk_wh", "Wh", "<= 10", "energy a power cut can lose at default commit settings"),
    ("boot_ms", "ms", "", "start to first metering tick, empty storage, imports compiled from source"),
    ("boot_ms_full_year", "ms", "", "same with a year of data on flash (modules already loaded)"),
    ("poll_us_atm90e26", "us", "", "one Metering.poll (verified reads) on the emulator, unix port"),
    ("poll_us_atm90e32", "us", "", "same, three phases"),
    ("poll_us_ade7953", "us", "", "same, two channels"),
    ("spi_us_poll_atm90e26", "us", "", "bus time of one poll at 160 kHz (frames x 24 bits)"),
    ("spi_us_poll_atm90e32", "us", "", "bus time of one poll at 200 kHz (frames x 32 bits)"),
    ("spi_us_poll_ade7953", "us", "", "bus time of one poll at 1 MHz"),
    ("year_sim_s", "s", "", "a simulated household year, metering layer + emulator, 5 min ticks"),
    ("quiet_flash_bytes_per_hour", "B", "", "flash programmed in an hour with no refused commands (no load, 6 top-ups)"),
    ("flood_flash_bytes_per_hour", "B", "<= 2x quiet", "same hour with 100 refused commands/s, 32-bit build"),
    ("flood1000_flash_bytes_per_hour", "B", "<= 2x quiet", "same at 1000/s (15 min, scaled to an hour)"),
    ("flood_us_per_message", "us", "", "host time per refused command, 32-bit build"),
    ("customer_heap_bytes", "B", "", "live heap the display/keypad/buzzer interface adds to a meter, 32-bit, frozen"),
    ("customer_redraws_per_1000", "", "", "display frames sent in 1 000 one-second household steps"),
    ("customer_frame_bytes", "B", "", "I2C bytes per display frame (about 24 ms at 400 kHz)"),
    ("verify_ms", "ms", "", "one RSA-3072 release-signature verification (firmware update), 32-bit build"),
    ("verify_ms_2048", "ms", "", "same with a 2048-bit release key"),
    ("verify_ms_4096", "ms", "", "same with a 4096-bit release key"),
    ("verify_heap_bytes", "B", "", "heap one 3072-bit verification allocates (temporaries, collected after)"),
]

# Benchmarks: (name, command, runtime, renames). MicroPython ones ("mpy") run on the unix port
# with the project's path; the runtime (tools/mprun.py) is also passed to CPython drivers that
# start MicroPython themselves (minheap). Renames give a 32-bit run's figures their own names.
BENCHES = [
    ("tick", ["mpy", "bench/tick.py", "3000"], "micropython", {}),
    ("minheap", ["py", "bench/minheap.py", "24"], "micropython", {}),
    ("minheap32", ["py", "bench/minheap.py", "24"], "micropython32", {"min_heap_kib": "heap_sim32_kib",
                                                                      "probes": "heap_sim32_probes"}),
    ("alloc32", ["mpy", "bench/alloc.py", "1500"], "micropython32", "_32"),
    ("devheap", ["py", "bench/device_heap.py", "frozen", "24"], "micropython32", {}),
    ("devheap_mpy", ["py", "bench/device_heap.py", "mpy", "24"], "micropython32", {}),
    ("meter_chips", ["mpy", "bench/meter_chips.py"], "micropython", {}),
    ("customer_ui", ["mpy", "bench/customer_ui.py"], "micropython32", {}),
    ("ota_verify", ["py", "bench/ota_verify.py"], "micropython32", {}),
]
OPTIONAL = ["wire", "latency", "boot", "flood"]  # bench/<name>.py, run with CPython if present


def storage_figures(r):
    """bench/storage.py's days at the default commit bound -> the summary figures. The headline
    figures are the meter image's geometry (its "meter" partition, the store's read/prog sizes);
    the *_stock_image ones the fallback on a stock image (/data on the root file system)."""
    out = {}
    for d in r.get("days", []):
        if d["commit_wh"] != 5:
            continue
        stock = d.get("geometry") == "stock"
        suffix = "_stock_image" if stock else ""
        if d["profile"].startswith("household"):
            out["erase_cycles_20y" + suffix] = d["cycles_20y_per_block"]
            out["erase_cycles_20y_half_partition" + suffix] = d["cycles_20y_half_partition"]
            if not stock:
                out["flash_bytes_per_day"] = d["kib_programmed_per_day"] * 1024
                out["energy_at_risk_wh"] = d["energy_at_risk_wh_bound"]
                out["energy_at_risk_wh_measured"] = d["energy_at_risk_wh_measured"]
        elif d["profile"].startswith("constant 5 kW"):
            out["erase_cycles_20y_5kw" + suffix] = d["cycles_20y_per_block"]
    geoms = r.get("geometries", {})
    if "device" in geoms:
        out["storage_partition_blocks"] = geoms["device"]["blocks"]
    risks = [d["energy_at_risk_wh_measured"] for d in r.get("days", [])
             if d["commit_wh"] == 5 and d.get("geometry") != "stock"]
    if risks:
        out["energy_at_risk_wh_worst_measured"] = max(risks)
    if "footprint" in r:
        out["flash_blocks_used_full"] = r["footprint"]["blocks_used"]
    return out


def run(name, cmd, heap="512k", runtime="micropython", renames=None):
    env = dict(os.environ, PM_RUNTIME=runtime)
    if cmd[0] == "mpy":
        argv = [mprun.mpy_path(runtime), "-X", "heapsize=" + heap] + cmd[1:]
        env["MICROPYPATH"] = mprun.micropypath(runtime)
    else:
        argv = [sys.executable] + cmd[1:]
    t = time.time()
    p = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=env, timeout=1800)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        print("bench %s failed (exit %d):\n%s%s" % (name, p.returncode, p.stdout[-2000:], p.stderr[-2000:]))
        return {}
    print("bench %-8s %5.1f s" % (name, time.time() - t), flush=True)
    r = json.loads(lines[-1])
    if isinstance(renames, str):  # a suffix for every figure
        return {k + renames: v for k, v in r.items()}
    return {(renames or {}).get(k, k): v for k, v in r.items()}


def main():
    results = {}
    for name, cmd, runtime, renames in BENCHES:
        results.update(run(name, cmd, runtime=runtime, renames=renames))
    results.update(storage_figures(run("storage", ["mpy", "bench/storage.py", "24"], heap="8m")))
    for name in OPTIONAL:
        if (ROOT / "bench" / (name + ".py")).exists():
            results.update(run(name, ["py", "bench/%s.py" % name]))
    results["_machine"] = "%s, %s, %d cores" % (platform.platform(), platform.processor() or platform.machine(),
                                                os.cpu_count())
    results["_date"] = time.strftime("%Y-%m-%d")
    print()
    print("%-32s %8s %-7s %-10s %s" % ("figure", "value", "unit", "target", "what"))
    missing = []
    for key, unit, target, what in FIGURES:
        v = results.get(key)
        if v is None:
            missing.append(key)
            shown = "not measured"
        else:
            shown = ("%.2f" % v) if isinstance(v, float) else str(v)
        print("%-32s %8s %-7s %-10s %s" % (key, shown, unit, target, what))
    out = Path(os.environ.get("BENCH_OUT", ROOT / "bench" / "results.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    print("\nwrote %s (%s)" % (out, results["_machine"]))
    if missing:
        print("not measured yet: " + ", ".join(missing))
    return 0


if __name__ == "__main__":
    sys.exit(main())
