"""Top-up latency: backend publish -> meter's reply, on loopback, with 1 and with 100 meters.

Each meter is a separate micropython process (bench/rt_meter.py) running in real time with 1 s
ticks; between ticks the firmware's loop idles on the MQTT socket and wakes for a command. The backend (paho) sends
signed top-ups and times each reply. Prints one JSON line with topup_ms_p50_1, topup_ms_p99_1,
topup_ms_p50_100, topup_ms_p99_100.
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import meterproto  # noqa: E402
import mprun  # noqa: E402
from mpbroker import Broker  # noqa: E402


def measure(n_meters, topups_per_meter, broker):
    import paho.mqtt.client as mqtt

    work = Path(tempfile.mkdtemp(prefix="pm-lat-"))
    keys = {"lat-%03d" % i: os.urandom(32) for i in range(n_meters)}
    run_s = 20 + n_meters // 4 + topups_per_meter
    env = dict(os.environ, MICROPYPATH=mprun.micropypath())
    procs = [subprocess.Popen([mprun.mpy_path(), "-X", "heapsize=" + mprun.APP_HEAP, str(ROOT / "bench" / "rt_meter.py"), mid,
                               key.hex(), "%s:%d" % (broker.host, broker.port), str(work / (mid + ".img")),
                               str(run_s)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              cwd=ROOT, env=env) for mid, key in keys.items()]
    online = set()
    sent = {}
    lat = []
    cv = threading.Condition()

    def on_message(c, u, msg):
        parts = msg.topic.split("/")
        mid, kind = parts[2], parts[3]
        with cv:
            if kind == "status" and b'"online":1' in msg.payload:
                online.add(mid)
            elif kind == "reply":
                doc = json.loads(msg.payload)
                t = sent.pop((mid, doc.get("id")), None)
                if t is not None and doc.get("res") == "applied":
                    lat.append((time.perf_counter() - t) * 1000)
            cv.notify_all()

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="lat-backend")
    c.on_message = on_message
    c.connect(broker.host, broker.port)
    # paho leaves Nagle on: each small packet would wait for the broker's delayed ACK.
    c.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c.subscribe("pm/v1/+/status", 1)
    c.subscribe("pm/v1/+/reply", 1)
    c.loop_start()
    deadline = time.time() + 60
    with cv:
        while len(online) < n_meters and time.time() < deadline:
            cv.wait(0.5)
    try:
        for k in range(1, topups_per_meter + 1):
            for mid, key in keys.items():
                with cv:
                    sent[(mid, k)] = time.perf_counter()
                # The meters' simulated clocks started at the sim epoch; expiry far ahead of it.
                c.publish(meterproto.topic(mid, "cmd"),
                          meterproto.command(key, mid, k, 1767225600 + 10 ** 6, "topup", amt=10), qos=1)
                time.sleep(0.01)
            with cv:
                end = time.time() + 10
                while sent and time.time() < end:
                    cv.wait(0.2)
    finally:
        c.loop_stop()
        c.disconnect()
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()
    lat.sort()
    expected = n_meters * topups_per_meter
    if len(lat) < expected:
        raise SystemExit("only %d of %d top-ups were acknowledged" % (len(lat), expected))
    return lat[len(lat) // 2], lat[min(len(lat) - 1, len(lat) * 99 // 100)]


def main():
    n_big = int(os.environ.get("LATENCY_METERS", "100"))
    out = {}
    with Broker() as b:
        out["topup_ms_p50_1"], out["topup_ms_p99_1"] = [round(x, 1) for x in measure(1, 50, b)]
    with Broker() as b:
        out["topup_ms_p50_100"], out["topup_ms_p99_100"] = [round(x, 1) for x in measure(n_big, 3, b)]
    out["latency_meters"] = n_big
    print(json.dumps(out))


if __name__ == "__main__":
    main()
