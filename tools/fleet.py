"""`make fleet N=50`: N simulated meters (separate micropython processes) against one Mosquitto,
with a backend stand-in that tops them up, disconnects and reconnects them at random,
re-sends some commands on purpose, restarts the broker once and keeps its own ledger.
The last output line is a JSON report; the exit status is 1 when an invariant breaks.

Also a small library for tests: start_meter() and wait_online() run one paced sim meter.
"""
import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import meterproto  # noqa: E402
import mprun  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SIM_UTC_START = 1767225600  # boards/sim_atm90e26.py starts its clock here
OPENING = 300
RETRY_S = 4.0  # resend an unanswered command (same id: the meter's replay window makes it safe)


# -- one meter --------------------------------------------------------------------------------------
def start_meter(meter_id, key_hex, broker, flash, config=None, pace_ms=2, hours=2000, seed=1, tick_s=5,
                stdout=subprocess.DEVNULL):
    cmd = [mprun.mpy_path(), "-X", "heapsize=" + mprun.APP_HEAP, str(REPO / "tools" / "sim_meter.py"),
           "--meter-id", meter_id, "--key", key_hex, "--broker", broker, "--flash", str(flash),
           "--hours", str(hours), "--tick-s", str(tick_s), "--pace-ms", str(pace_ms), "--seed", str(seed),
           "--config", json.dumps(config or {"opening_balance": 1000})]
    env = dict(os.environ, MICROPYPATH=mprun.micropypath())
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=stdout, stderr=subprocess.STDOUT)


def wait_online(host, port, meter_id, timeout=10):
    """True once the meter's first telemetry arrives."""
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


# -- the broker ---------------------------------------------------------------------------------------
def persistent_broker():
    """A Broker whose sessions and queued QoS1 messages survive restart(), as in production."""
    from mpbroker import Broker

    class PersistentBroker(Broker):
        def _write_config(self):
            super()._write_config()
            text = self.config_path.read_text().replace("persistence false", "persistence true")
            text += "persistence_location %s/\nmax_queued_messages 10000\n" % self._dir
            self.config_path.write_text(text)

    return PersistentBroker()


def peak_connects_per_s(log_text):
    per_s = Counter(m.group(1) for m in re.finditer(r"^(\d+): New client connected", log_text, re.M))
    return max(per_s.values()) if per_s else 0


# -- the backend stand-in ------------------------------------------------------------------------------
class MeterBook:
    """The backend's ledger and protocol state for one meter."""

    def __init__(self, meter_id, key):
        self.id = meter_id
        self.key = key
        self.next_id = 1
        self.pending = None  # (cid, op, amt, payload, sent_at)
        self.sent = {}  # cid -> (op, amt)
        self.acked = {}  # cid -> result of the first answer
        self.repeats = 0  # answers marked as repeats (re-sent commands the meter did not re-apply)
        self.refused = []  # reasons of id-0 refusals
        self.seqs = set()
        self.meter_time = SIM_UTC_START
        self.balance = None
        self.remote_off = False
        self.low = False
        self.resend_after_ack = None  # (payload, cid): one deliberate duplicate

    def credited(self):
        return sum(self.sent[c][1] for c, r in self.acked.items() if r == "applied" and self.sent[c][0] == "topup")

    def applied_topups(self):
        return sum(1 for c, r in self.acked.items() if r == "applied" and self.sent[c][0] == "topup")


class Backend:
    def __init__(self, host, port, books, rng, stop_at_meter_time):
        import paho.mqtt.client as mqtt

        self.books = books
        self.rng = rng
        self.lock = threading.Lock()
        self.stop_at = stop_at_meter_time
        self.retries = 0
        self.duplicates_sent = 0
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fleet-backend", clean_session=False)
        self.c.reconnect_delay_set(0.05, 0.5)
        self.c.max_queued_messages_set(0)
        self.c.on_connect = lambda c, u, f, rc, p=None: c.subscribe(meterproto.PREFIX + "+/+", qos=1)
        self.c.on_message = self._on_message
        self.c.connect(host, port, keepalive=20)
        self.c.loop_start()

    def _on_message(self, client, userdata, msg):
        _, _, mid, kind = msg.topic.split("/")
        b = self.books.get(mid)
        if b is None or kind == "cmd":
            return
        try:
            d = json.loads(msg.payload)
        except ValueError:
            return
        with self.lock:
            if "seq" in d:
                b.seqs.add(d["seq"])
            if d.get("t", 0) > b.meter_time:
                b.meter_time = d["t"]
            if kind == "tele":
                b.balance = d["b"]
                b.low = d["b"] < 150
            elif kind == "evt" and d["ev"] in ("low_credit_1", "low_credit_2", "credit_exhausted"):
                b.low = True
            elif kind == "reply":
                self._reply(b, d)

    def _reply(self, b, d):
        cid = d["id"]
        if cid == 0:
            b.refused.append(d["res"])
            return
        if cid not in b.sent:
            return
        if d.get("rep"):
            b.repeats += 1
        if cid not in b.acked:
            b.acked[cid] = d["res"]
        if b.pending and b.pending[0] == cid:
            op = b.pending[1]
            # A relay command the meter refused (e.g. rate_limited) changed nothing there.
            if op == "disconnect" and d["res"] == "applied":
                b.remote_off = True
            elif op == "reconnect" and d["res"] == "applied":
                b.remote_off = False
            if op == "topup" and d["res"] == "applied" and self.rng.random() < 0.2:
                b.resend_after_ack = (b.pending[3], cid)
            b.pending = None

    def _send(self, b, op, amt=0, **args):
        cid = b.next_id
        b.next_id += 1
        if op == "topup":
            args["amt"] = amt
        # Expiry is in the meter's (fast) time: a month ahead, so retries stay valid.
        payload = meterproto.command(b.key, b.id, cid, b.meter_time + 30 * 86400, op, **args)
        b.sent[cid] = (op, amt)
        b.pending = (cid, op, amt, payload, time.monotonic())
        self.c.publish(meterproto.topic(b.id, "cmd"), payload, qos=1)

    def tick(self, active):
        """Called a few times a second: retries, then (while active) new random work."""
        now = time.monotonic()
        rng = self.rng
        with self.lock:
            for b in self.books.values():
                if b.pending:
                    if now - b.pending[4] > RETRY_S:
                        cid, op, amt, payload, _ = b.pending
                        b.pending = (cid, op, amt, payload, now)
                        self.retries += 1
                        self.c.publish(meterproto.topic(b.id, "cmd"), payload, qos=1)
                    continue
                if b.resend_after_ack:
                    payload, _ = b.resend_after_ack
                    b.resend_after_ack = None
                    self.duplicates_sent += 1
                    self.c.publish(meterproto.topic(b.id, "cmd"), payload, qos=1)
                    continue
                if not active or b.meter_time >= self.stop_at:
                    continue
                if b.low:
                    b.low = False
                    self._send(b, "topup", 500)
                    continue
                r = rng.random()
                if r < 0.02:
                    self._send(b, "topup", rng.randrange(50, 1000))
                elif r < 0.03:
                    if b.remote_off:
                        self._send(b, "reconnect", direct=True)
                    else:
                        self._send(b, "disconnect")
                elif r < 0.035 and b.remote_off:
                    self._send(b, "reconnect", direct=True)

    def settled(self):
        with self.lock:
            return all(b.pending is None and b.resend_after_ack is None for b in self.books.values())

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


# -- the run ---------------------------------------------------------------------------------------------
def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--meters", type=int, default=50)
    p.add_argument("--hours", type=int, default=24, help="simulated hours per meter")
    p.add_argument("--tick-s", type=int, default=60)
    p.add_argument("--pace-ms", type=int, default=40, help="real ms per meter tick")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--restart-at", type=float, default=0.4, help="fraction of the run at which the broker restarts")
    a = p.parse_args(argv)
    if not 1 <= a.meters <= 500:
        p.error("--meters must be 1..500")
    if not 1 <= a.hours <= 24 * 31 or not 1 <= a.tick_s <= 3600 or a.pace_ms < 0:
        p.error("--hours 1..744, --tick-s 1..3600, --pace-ms >= 0")
    if not 0 < a.restart_at < 1:  # NaN fails too
        p.error("--restart-at is a fraction of the run, between 0 and 1 (exclusive), got %s" % a.restart_at)
    return a


def run(a):
    rng = random.Random(a.seed)
    broker = persistent_broker()
    addr = "%s:%d" % (broker.host, broker.port)
    work = Path(tempfile.mkdtemp(prefix="pm-fleet-"))
    books = {}
    for i in range(a.meters):
        mid = "fl-%04d" % (i + 1)
        books[mid] = MeterBook(mid, bytes(rng.getrandbits(8) for _ in range(32)))
    # New work stops at 70% of the simulated run, so every command is answered before meters exit.
    backend = Backend(broker.host, broker.port, books, rng, SIM_UTC_START + a.hours * 3600 * 7 // 10)
    procs = {}
    t0 = time.monotonic()
    ticks = a.hours * 3600 // a.tick_s
    expect_s = ticks * a.pace_ms / 1000
    for i, (mid, b) in enumerate(books.items()):
        out = open(work / (mid + ".out"), "w")
        procs[mid] = (start_meter(mid, b.key.hex(), addr, work / (mid + ".img"),
                                  {"opening_balance": OPENING}, a.pace_ms, a.hours, a.seed + i, a.tick_s, out), out)
    print("fleet: %d meters, %d h simulated each (%d ticks of %d s, %d ms real per tick), broker %s" % (
        a.meters, a.hours, ticks, a.tick_s, a.pace_ms, addr), flush=True)
    restarts = 0
    restart_at = t0 + 3 + expect_s * a.restart_at
    deadline = t0 + 60 + expect_s * 4
    try:
        while any(p.poll() is None for p, _ in procs.values()):
            if time.monotonic() > deadline:
                raise RuntimeError("meters still running after %.0f s" % (deadline - t0))
            if not restarts and time.monotonic() >= restart_at:
                print("fleet: restarting the broker at %.1f s" % (time.monotonic() - t0), flush=True)
                broker.restart(down_for=1.0)
                restarts += 1
            backend.tick(active=True)
            time.sleep(0.1)
        # Meters flush their outbox before exiting; give the last messages a moment to land.
        settle = time.monotonic() + 3
        while time.monotonic() < settle:
            backend.tick(active=False)
            time.sleep(0.1)
    finally:
        for p, out in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
            out.close()
        backend.close()
        log = broker.log_text()
        broker.close()
    rc = report(a, books, procs, work, backend, restarts, log, time.monotonic() - t0)
    if rc == 0:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print("fleet: meter logs and flash images kept in %s" % work, file=sys.stderr)
    return rc


def report(a, books, procs, work, backend, restarts, log, real_s):
    bad = []
    gaps = mismatches = sent = acked = 0
    exactly_once = True
    for mid, b in books.items():
        text = (work / (mid + ".out")).read_text()
        s = mprun.parse_result(text)
        rc = procs[mid][0].returncode
        if rc != 0 or s is None:
            bad.append("%s: meter process failed (exit %s): %s" % (mid, rc, text.strip().splitlines()[-1:]))
            exactly_once = False
            continue
        topups = [c for c, (op, _) in b.sent.items() if op == "topup"]
        sent += len(topups)
        acked += sum(1 for c in topups if c in b.acked)
        missing = set(range(1, s["uplink_seq"] + 1)) - b.seqs
        gaps += len(missing)
        if missing:
            bad.append("%s: %d uplink message(s) never arrived (seq %s...)" % (mid, len(missing), sorted(missing)[:5]))
        if b.pending:
            bad.append("%s: command %d never answered" % (mid, b.pending[0]))
        if s["topups_applied"] != b.applied_topups():
            exactly_once = False
            bad.append("%s: meter applied %d top-ups, backend saw %d acknowledged" % (
                mid, s["topups_applied"], b.applied_topups()))
        if s["topped_up_minor"] != OPENING + b.credited() or \
                s["balance_minor"] != s["topped_up_minor"] - s["charged_minor"]:
            mismatches += 1
            bad.append("%s: ledger %d credited vs meter %d (balance %d, charged %d)" % (
                mid, OPENING + b.credited(), s["topped_up_minor"], s["balance_minor"], s["charged_minor"]))
        if b.refused:
            bad.append("%s: meter refused commands: %s" % (mid, ", ".join(b.refused)))
    if acked != sent:
        bad.append("%d top-up(s) sent but never acknowledged" % (sent - acked))
    if restarts != 1:
        bad.append("the broker was restarted %d times, expected once" % restarts)
    rep = {
        "meters": a.meters, "topups_sent": sent, "topups_acked": acked,
        "applied_exactly_once": exactly_once and acked == sent, "telemetry_gaps": gaps,
        "ledger_mismatches": mismatches, "broker_restarts": restarts, "peak_connects_per_s": peak_connects_per_s(log),
        "commands_retried": backend.retries, "duplicates_sent": backend.duplicates_sent,
        "repeats_answered": sum(b.repeats for b in books.values()),
        "disconnects_sent": sum(1 for b in books.values() for op, _ in b.sent.values() if op == "disconnect"),
        "reconnects_sent": sum(1 for b in books.values() for op, _ in b.sent.values() if op == "reconnect"),
        "uplink_messages": sum(len(b.seqs) for b in books.values()), "sim_hours": a.hours,
        "real_s": round(real_s, 1), "invariants_ok": not bad,
    }
    for line in bad[:40]:
        print("INVARIANT BROKEN: " + line)
    print(json.dumps(rep, sort_keys=True))
    return 0 if not bad else 1


def main(argv=None):
    a = parse_args(argv if argv is not None else sys.argv[1:])
    try:
        return run(a)
    except RuntimeError as e:
        print("fleet: error: %s" % e, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
