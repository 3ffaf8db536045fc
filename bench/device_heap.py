"""Smallest heap (KiB) in which the real ESP32 board boots and runs a simulated day online.

    python bench/device_heap.py frozen [hours]   # the meter image: firmware frozen, 32-bit build
    python bench/device_heap.py mpy [hours]      # a stock image with `make deploy`'s .mpy files

The unmodified board file (boards/esp32_atm90e26.py) and firmware run on the ESP32 port
stand-ins (tools/esp32_host.py) on the 32-bit build (4-byte objects, 31-bit small ints, as on the
device), against a private Mosquitto, with a backend that tops the meter up at birth and half-way
through. A probe passes when the day ends with the board still running (no crash, no reset), the
top-ups acknowledged, telemetry all day, and no MemoryError anywhere in the board's output.

The stand-ins and the virtual world (chip emulator, households, flash image) share that heap:
their own allocation before the board starts is printed as `harness_kib`, so the figure is an
upper bound of what the device needs. Bisects in 4 KiB steps; prints one JSON line.
"""
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "host_tests" / "firmware"))
os.environ["PM_RUNTIME"] = "micropython32"
import esp32_host  # noqa: E402
import mpbroker  # noqa: E402
from meterrig import Backend  # noqa: E402

STEP = 4
WAIT = 300.0  # real seconds to wait for the board (a virtual day takes about a minute)


def probe(kib, frozen, hours, broker):
    """(passed, why, report)"""
    day = int(hours * 3600)
    with tempfile.TemporaryDirectory(prefix="devheap-") as work:
        h = esp32_host.Esp32Host(work, "esp32-atm90e26", broker=(broker.host, broker.port), frozen=frozen,
                                 heap="%dk" % kib, rtc_utc=esp32_host.UTC_START)
        h.setup()
        key = bytes.fromhex(json.loads((h.home / "deploy" / h.meter_id / "secrets.json").read_text())["key"])
        be = Backend(broker.host, broker.port, h.meter_id, key)
        boot = h.start(run_s=3 * day, control=True)
        why = None

        def dead():
            return boot.proc.poll() is not None

        try:
            for at, amt in ((0, 20000), (day // 2, 30000)):
                if not be.wait(lambda: any(d["t"] >= esp32_host.UTC_START + at for d in be.of("tele")) or
                               (at == 0 and be.of("status")) or dead(), WAIT) or dead():
                    why = "no uplink by %d s" % at
                    break
                cid, payload = be.command("topup", amt=amt)
                be.publish(payload)
                if not be.wait(lambda: cid in be.replies or dead(), WAIT) or cid not in be.replies or \
                        be.replies[cid][0].get("res") != "applied":
                    why = "top-up %d not acknowledged" % cid
                    break
            if why is None and not be.wait(
                    lambda: any(d["t"] >= esp32_host.UTC_START + day for d in be.of("tele")) or dead(), WAIT):
                why = "no telemetry at the end of the day"
            boot.end()
            try:
                r = boot.wait(WAIT)
            except esp32_host.HostError as e:
                lines = [x for x in str(e).splitlines() if "Error" in x] or str(e).splitlines()
                return False, "board failed: %s" % lines[-1].strip(), None
            tele = [d for d in be.of("tele") if d["t"] < esp32_host.UTC_START + day]
            if why is None and r["reason"] != "end":
                why = "stopped: %s" % r["reason"]
            if why is None and "MemoryError" in boot.output:
                why = "MemoryError in the output"
            if why is None and len(tele) < day // 900 * 9 // 10:
                why = "%d telemetry messages for %d s" % (len(tele), day)
            if why is None and (r.get("meter") or {}).get("step_errors"):
                why = "step errors: %r" % r["meter"]
            return why is None, why, r
        finally:
            boot.kill()
            be.close()


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "frozen"
    hours = float(sys.argv[2]) if len(sys.argv) > 2 else 24
    if mode not in ("frozen", "mpy"):
        print("usage: device_heap.py frozen|mpy [hours]", file=sys.stderr)
        return 2
    frozen = mode == "frozen"
    name = "heap_device_kib" if frozen else "heap_device_mpy_kib"
    import build_mp32
    build_mp32.build()  # the stand-ins and the firmware are frozen into it: never measure a stale one
    broker = mpbroker.Broker()
    try:
        lo, hi = 16 // STEP, 256 // STEP  # lo fails (assumed), hi must pass
        ok, why, r = probe(hi * STEP, frozen, hours, broker)
        if not ok:
            print(json.dumps({name: None, "error": "fails even at %d KiB: %s" % (hi * STEP, why)}))
            return 1
        harness = r["harness_alloc"]
        probes = []
        while hi - lo > 1:
            mid = (lo + hi) // 2
            ok, why, r = probe(mid * STEP, frozen, hours, broker)
            probes.append([mid * STEP, ok] + ([] if ok else [why]))
            print("device_heap %s: %d KiB %s" % (mode, mid * STEP, "ok" if ok else "fails (%s)" % why),
                  file=sys.stderr, flush=True)
            if ok:
                hi = mid
                harness = r["harness_alloc"]
            else:
                lo = mid
        print(json.dumps({name: hi * STEP, name.replace("_kib", "_harness_kib"): round(harness / 1024, 1),
                          name.replace("_kib", "_net_kib"): round(hi * STEP - harness / 1024),
                          name.replace("_kib", "_hours"): hours, name.replace("_kib", "_probes"): probes}))
        return 0
    finally:
        broker.close()


if __name__ == "__main__":
    sys.exit(main())
