"""A live simulated meter for headend and fleet tests: micropython sim_meter.py, paced in real time."""
import json
import os
import subprocess
import time
from pathlib import Path

import mprun

REPO = Path(__file__).resolve().parent.parent


def start_meter(meter_id, key_hex, broker, flash, config=None, pace_ms=2, hours=2000, seed=1):
    cmd = [mprun.mpy_path(), "-X", "heapsize=192k", str(REPO / "tools" / "sim_meter.py"),
           "--meter-id", meter_id, "--key", key_hex, "--broker", broker, "--flash", str(flash),
           "--hours", str(hours), "--tick-s", "5", "--pace-ms", str(pace_ms), "--seed", str(seed),
           "--config", json.dumps(config or {"opening_balance": 1000})]
    env = dict(os.environ, MICROPYPATH=mprun.micropypath())
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_online(host, port, meter_id, timeout=10):
    import paho.mqtt.client as mqtt

    got = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.on_message = lambda cl, u, m: got.append(json.loads(m.payload))
    c.connect(host, port)
    c.subscribe("pm/v1/%s/tele" % meter_id)
    c.loop_start()
    deadline = time.monotonic() + timeout
    try:
        while not got and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        c.loop_stop()
        c.disconnect()
    return bool(got)
