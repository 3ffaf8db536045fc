"""Test helpers: a micropython meter driven over stdin (Rig) and a backend on paho (Backend)."""
import json
import os
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

import meterproto
import mprun

HERE = Path(__file__).resolve().parent
RIG = HERE / "meterrig_mpy.py"
SIM_START = 1767225600  # the simulated boards' clock at first power-up (boards/simhw/simboard.py)


class Rig:
    def __init__(self, tmp_path, meter_id="rig-0001", key=None, broker=None, config=None, heap=mprun.APP_HEAP):
        self.meter_id = meter_id
        self.key = key
        cmd = [mprun.mpy_path(), "-X", "heapsize=" + heap, str(RIG), "--flash", str(tmp_path / "flash.img"),
               "--meter-id", meter_id]
        if key:
            cmd += ["--key", key.hex()]
        if broker:
            cmd += ["--broker", "%s:%d" % broker]
        if config:
            cmd += ["--config", json.dumps(config)]
        env = dict(os.environ, MICROPYPATH=mprun.micropypath())
        self.other = []  # stdout lines that are not answers (a traceback goes there)
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, cwd=mprun.REPO, env=env)

    def send(self, **req):
        """Start a request; read its answer with result()."""
        self.p.stdin.write(json.dumps(req) + "\n")
        self.p.stdin.flush()

    def result(self):
        while True:
            line = self.p.stdout.readline()
            if not line:
                raise RuntimeError("meter rig died:\n" + "".join(self.other[-20:]) + self.p.stderr.read())
            if line.startswith("{"):
                return json.loads(line)
            self.other.append(line)

    def __call__(self, do, **req):
        self.send(do=do, **req)
        return self.result()

    def close(self):
        if self.p.poll() is None:
            try:
                self("quit")
            except (RuntimeError, BrokenPipeError, OSError):
                pass
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        return self.p.returncode


class Backend:
    """Utility backend stand-in: records uplink, re-subscribes after every reconnect."""

    def __init__(self, host, port, meter_id, key):
        self.meter_id = meter_id
        self.key = key
        self.lock = threading.RLock()
        self.msgs = []  # (kind, doc, retain)
        self.replies = {}
        self.raw = []
        self.next_id = 1
        self.meter_t = SIM_START  # the meter's newest clock reading: commands expire in its time
        self.connected = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="backend-" + meter_id)
        self.c.on_message = self._on_message
        self.c.on_connect = self._on_connect
        # "connected" means subscribed: set on the broker's SUBACK, so nothing the meter publishes
        # after a wait on it can reach the broker before the subscription does (a busy machine).
        self.c.on_subscribe = lambda *a: self.connected.set()
        self.c.on_disconnect = lambda *a: self.connected.clear()
        self.c.reconnect_delay_set(0.1, 0.5)
        self.c.connect(host, port, keepalive=10)
        self.c.loop_start()
        assert self.connected.wait(5), "backend could not connect"

    def _on_connect(self, client, userdata, flags, rc, props=None):
        client.subscribe(meterproto.topic(self.meter_id, "+"), qos=1)

    def _on_message(self, client, userdata, msg):
        kind = msg.topic.rsplit("/", 1)[-1]
        if kind == "cmd":
            return
        doc = json.loads(msg.payload) if msg.payload else {}
        with self.lock:
            self.msgs.append((kind, doc, msg.retain))
            self.last_rx = time.monotonic()
            self.raw.append((kind, msg.payload))  # as sent: signatures are checked on these bytes
            if isinstance(doc.get("t"), int) and doc["t"] > self.meter_t:
                self.meter_t = doc["t"]
            if kind == "reply":
                self.replies.setdefault(doc["id"], []).append(doc)

    def of(self, kind):
        with self.lock:
            return [d for k, d, _ in self.msgs if k == kind]

    def seqs(self):
        with self.lock:
            return [d["seq"] for k, d, _ in self.msgs if "seq" in d]

    def command(self, op, exp=None, cid=None, **args):
        """A signed command; by default it expires 30 days (of meter time) after the meter's
        newest reading, inside the 31 days a meter with a trusted clock accepts (auth.py)."""
        if exp is None:
            with self.lock:
                exp = self.meter_t + 30 * 86400
        if cid is None:
            cid = self.next_id
        self.next_id = max(self.next_id, cid + 1)
        return cid, meterproto.command(self.key, self.meter_id, cid, exp, op, **args)

    def publish(self, payload, retain=False):
        self.c.publish(meterproto.topic(self.meter_id, "cmd"), payload, qos=1, retain=retain)

    def wait(self, pred, timeout=10.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                if pred():
                    return True
            time.sleep(0.02)
        return False

    def wait_progress(self, pred, stall, cap=10):
        """Wait for pred() as long as the meter keeps talking: False only after `stall` seconds
        with no message at all, or cap x stall in all. A meter on a busy machine runs slower,
        not wrongly; a stuck one goes quiet."""
        end = time.monotonic() + cap * stall
        last = time.monotonic()
        while time.monotonic() < end:
            with self.lock:
                if pred():
                    return True
                last = max(last, getattr(self, "last_rx", last))
            if time.monotonic() - last > stall:
                return False
            time.sleep(0.02)
        return False

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()
