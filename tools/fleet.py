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


def _config_arg(config, flash):
    """The meter's --config: inline, or from a file beside its flash when too long for an argument
    (the unix port cannot take one of 250 bytes or more)."""
    text = json.dumps(config)
    if len(text) < 200:
        return text
    path = Path(str(flash) + ".config.json")
    path.write_text(text)
    return "@" + str(path)


# -- one meter --------------------------------------------------------------------------------------
def start_meter(meter_id, key_hex, broker, flash, config=None, pace_ms=2, hours=2000, seed=1, tick_s=5,
                stdout=subprocess.DEVNULL, customer=True, utc_start=0, ticks=0, stop_file=""):
    cmd = [mprun.mpy_path(), "-X", "heapsize=" + mprun.APP_HEAP, str(REPO / "tools" / "sim_meter.py"),
           "--meter-id", meter_id, "--key", key_hex, "--broker", broker, "--flash", str(flash),
           "--hours", str(hours), "--tick-s", str(tick_s), "--pace-ms", str(pace_ms), "--seed", str(seed),
           "--config", _config_arg(config or {"opening_balance": 1000}, flash), "--customer", "1" if customer else "0",
           "--utc-start", str(utc_start), "--ticks", str(ticks), "--stop-file", str(stop_file)]
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
    """A Mosquitto whose sessions and queued QoS1 messages survive restart(), as in production.
    crash() kills it without a chance to save: what arrived since its last autosave is lost."""
    from mpbroker import Broker

    class PersistentBroker(Broker):
        name = "mosquitto"
        nodes = 1

        def _write_config(self):
            super()._write_config()
            text = self.config_path.read_text().replace("persistence false", "persistence true")
            text += "persistence_location %s/\nmax_queued_messages 10000\nautosave_interval 5\n" % self._dir
            self.config_path.write_text(text)

        def crash(self, down_for=0.0):
            p = self._proc
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(5)
            self._proc = None
            if down_for:
                time.sleep(down_for)
            return self.start()

        def backend_addrs(self):
            return [(self.host, self.port)]

    return PersistentBroker()


def make_broker(a):
    """The broker of the run: one persistent Mosquitto, or a RabbitMQ cluster of a.nodes nodes
    behind a TCP front (tools/rabbitcluster.py: quorum queues for persistent sessions, meters'
    queues mirrored) whose node kills meters ride out by reconnecting to the survivors."""
    if a.broker == "mosquitto":
        return persistent_broker()
    from rabbitcluster import Cluster

    c = Cluster(n=a.nodes)
    c.start()
    # Before any meter publishes: what matches no queue is dropped by RabbitMQ.
    c.shared_queue(SHARED_QUEUE, [meterproto.PREFIX + "+/" + k for k in meterproto.UPLINK])
    return c


def peak_connects_per_s(log_text):
    per_s = Counter(m.group(1) for m in re.finditer(r"^(\d+): New client connected", log_text, re.M))
    return max(per_s.values()) if per_s else 0


def percentile(values, p):
    """The p-th percentile (nearest rank) of values, or 0 for none."""
    if not values:
        return 0
    v = sorted(values)
    return v[min(len(v) - 1, max(0, -(-len(v) * p // 100) - 1))]


# -- the backend stand-in ------------------------------------------------------------------------------
class MeterBook:
    """The backend's ledger and protocol state for one meter."""

    def __init__(self, meter_id, key):
        self.id = meter_id
        self.key = key
        self.next_id = 1
        self.pending = None  # (cid, op, amt, payload, sent_at)
        self.sent = {}  # cid -> (op, amt)
        self.first_sent = {}  # cid -> monotonic time of the first publish
        self.acked = {}  # cid -> result of the first answer
        self.repeats = 0  # answers marked as repeats (re-sent commands the meter did not re-apply)
        self.refused = []  # reasons of id-0 refusals
        self.fill = meterproto.Backfiller()  # uplink numbers seen, gaps, backfill requests
        self.meter_time = SIM_UTC_START
        self.balance = None
        self.remote_off = False
        self.low = False
        self.resend_after_ack = None  # (payload, cid): one deliberate duplicate
        self.cuts = 0  # power cuts this meter went through

    @property
    def seqs(self):
        return self.fill.seqs.seen

    def credited(self):
        return sum(self.sent[c][1] for c, r in self.acked.items() if r == "applied" and self.sent[c][0] == "topup")

    def applied_topups(self):
        return sum(1 for c, r in self.acked.items() if r == "applied" and self.sent[c][0] == "topup")


SHARED_QUEUE = "fleet-backend"


class _Msg:
    def __init__(self, topic, payload):
        self.topic = topic
        self.payload = payload


class Backend:
    """The utility's side: `workers` MQTT clients with persistent sessions share the uplink (a
    shared subscription when there are several: competing consumers) and one set of books."""

    def __init__(self, addrs, books, rng, stop_at_meter_time, workers=1, cluster=None):
        import paho.mqtt.client as mqtt

        self.books = books
        self.rng = rng
        self.lock = threading.Lock()
        self.stop_at = stop_at_meter_time
        self.retries = 0
        self.duplicates_sent = 0
        self.backfills = 0
        self.topup_ms = []
        self.handled = Counter()  # uplink messages per worker
        topic = meterproto.PREFIX + "+/+"
        if workers > 1:
            topic = "$share/fleet-backend/" + topic
        self.clients = []
        self.consumers = []
        if cluster is not None:
            # RabbitMQ has no $share subscriptions: the workers compete for one quorum queue over
            # AMQP (bound before any meter starts); commands go out through one MQTT client.
            for i in range(workers):
                self.consumers.append(cluster.worker(SHARED_QUEUE, lambda t, p, r, i=i: self._on_message(
                    None, i, _Msg(t, p)), name="fleet-worker-%d" % i))
            workers, topic = 1, None
        for i in range(workers):
            host, port = addrs[i % len(addrs)]
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fleet-backend-%d" % i, clean_session=False,
                            userdata=i)
            c.reconnect_delay_set(0.05, 0.5)
            c.max_queued_messages_set(0)
            if topic:
                c.on_connect = lambda cl, u, f, rc, p=None, t=topic: cl.subscribe(t, qos=1)
            c.on_message = self._on_message
            c.connect(host, port, keepalive=20)
            c.loop_start()
            self.clients.append(c)

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
            self.handled[userdata] += 1
            if kind == "status":
                b.fill.status(d)
                return
            if "seq" in d:
                b.fill.add(d["seq"])
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
            if b.sent[cid][0] == "topup" and d["res"] == "applied":
                self.topup_ms.append((time.monotonic() - b.first_sent[cid]) * 1000)
            if b.sent[cid][0] == "backfill" and d["res"] == "applied":
                b.fill.answered(d.get("from", 0), d.get("to", 0))
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

    def _publish(self, b, payload):
        self.clients[hash(b.id) % len(self.clients)].publish(meterproto.topic(b.id, "cmd"), payload, qos=1)

    def _send(self, b, op, amt=0, **args):
        cid = b.next_id
        b.next_id += 1
        if op == "topup":
            args["amt"] = amt
        # Expiry is in the meter's (fast) time: a month ahead, so retries stay valid.
        payload = meterproto.command(b.key, b.id, cid, b.meter_time + 30 * 86400, op, **args)
        b.sent[cid] = (op, amt)
        b.first_sent[cid] = time.monotonic()
        b.pending = (cid, op, amt, payload, time.monotonic())
        self._publish(b, payload)

    def tick(self, active):
        """Called a few times a second: retries, backfill of gaps, then (while active) new random work."""
        now = time.monotonic()
        rng = self.rng
        with self.lock:
            for b in self.books.values():
                if b.pending:
                    if now - b.pending[4] > RETRY_S:
                        cid, op, amt, payload, _ = b.pending
                        b.pending = (cid, op, amt, payload, now)
                        self.retries += 1
                        self._publish(b, payload)
                    continue
                if b.resend_after_ack:
                    payload, _ = b.resend_after_ack
                    b.resend_after_ack = None
                    self.duplicates_sent += 1
                    self._publish(b, payload)
                    continue
                frm = b.fill.due(now)
                if frm is not None:
                    self.backfills += 1
                    self._send(b, "backfill", **{"from": frm})
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
            return all(b.pending is None and b.resend_after_ack is None and not b.fill.missing()
                       for b in self.books.values())

    def close(self):
        for w in self.consumers:
            w.stop()
        for c in self.clients:
            c.loop_stop()
            c.disconnect()


# -- the run ---------------------------------------------------------------------------------------------
MAX_METERS = 1000
# CPU one meter costs per simulated tick of the fleet (the 32-bit frozen firmware, its MQTT client, its share
# of the broker and backend), measured on this project's 2-core machine; sets the default pace
# so the CPUs keep up whatever N is.
CPU_MS_PER_TICK = 0.6


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--meters", type=int, default=50)
    p.add_argument("--hours", type=int, default=24, help="simulated hours per meter")
    p.add_argument("--tick-s", type=int, default=60)
    p.add_argument("--pace-ms", type=int, default=None,
                   help="real ms per meter tick (default: 40, or slower when N meters would need more CPU)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--restart-at", type=float, default=0.3, help="fraction of the run at which the broker restarts")
    p.add_argument("--crash-at", type=float, default=0.55,
                   help="fraction of the run at which the broker is killed (0: never)")
    p.add_argument("--cuts", type=float, default=0.1, help="fraction of the meters that lose power once")
    p.add_argument("--workers", type=int, default=2, help="backend workers sharing the uplink")
    p.add_argument("--broker", choices=("mosquitto", "rabbitmq"), default="mosquitto",
                   help="one Mosquitto, or a RabbitMQ cluster (whose crash is a node kill)")
    p.add_argument("--nodes", type=int, default=3, help="RabbitMQ cluster nodes")
    a = p.parse_args(argv)
    if not 1 <= a.meters <= MAX_METERS:
        p.error("--meters must be 1..%d" % MAX_METERS)
    if not 1 <= a.hours <= 24 * 31 or not 1 <= a.tick_s <= 3600 or (a.pace_ms is not None and a.pace_ms < 0):
        p.error("--hours 1..744, --tick-s 1..3600, --pace-ms >= 0")
    if not 0 < a.restart_at < 1:  # NaN fails too
        p.error("--restart-at is a fraction of the run, between 0 and 1 (exclusive), got %s" % a.restart_at)
    if not 0 <= a.crash_at < 1 or not 0 <= a.cuts <= 1:
        p.error("--crash-at is a fraction of the run in [0, 1), --cuts a fraction of the meters in [0, 1]")
    if not 1 <= a.workers <= 16:
        p.error("--workers must be 1..16")
    if a.broker == "rabbitmq" and not 3 <= a.nodes <= 5:
        p.error("--nodes must be 3..5 (a quorum must survive a node kill)")
    if a.pace_ms is None:
        a.pace_ms = max(40, int(a.meters * CPU_MS_PER_TICK / max(1, os.cpu_count() or 1) * 1.5))
    return a


class Fleet:
    """The meter processes: started, cut off (SIGKILL, as a power cut), powered up again."""

    def __init__(self, a, books, addr, work):
        self.a = a
        self.books = books
        self.addr = addr
        self.work = work
        self.procs = {}
        self.outs = {}
        self.end_utc = SIM_UTC_START + a.hours * 3600
        self.stop_file = work / "stop"  # meters run on past their end until it exists
        self.index = {mid: i for i, mid in enumerate(books)}  # the seed of each meter's household
        for i, mid in enumerate(books):
            self.outs[mid] = open(work / (mid + ".out"), "w")
            self._start(mid, i, 0, 0)

    def _start(self, mid, i, utc_start, ticks):
        a = self.a
        self.procs[mid] = start_meter(mid, self.books[mid].key.hex(), self.addr, self.work / (mid + ".img"),
                                      {"opening_balance": OPENING}, a.pace_ms, a.hours,
                                      a.seed + i + 7919 * self.books[mid].cuts, a.tick_s, self.outs[mid],
                                      customer=False, utc_start=utc_start, ticks=ticks, stop_file=self.stop_file)

    def cut(self, mid):
        """Power lost: the process dies wherever it is (mid-write too); True if it was running."""
        p = self.procs[mid]
        if p.poll() is not None:
            return False
        p.kill()
        p.wait()
        self.books[mid].cuts += 1
        return True

    def done(self):
        """Every meter process has run all its ticks (it says so with a file, then runs on)."""
        return all((self.work / ("stop.done." + mid)).exists() for mid in self.books)

    def power_up(self, mid, meter_time):
        """The meter boots again on the flash that survived, at the time it had reached."""
        (self.work / ("stop.done." + mid)).unlink(missing_ok=True)
        ticks = (self.end_utc - meter_time) // self.a.tick_s
        if ticks <= 0:
            ticks = 1
        self._start(mid, self.index[mid], meter_time, ticks)

    def running(self):
        return any(p.poll() is None for p in self.procs.values())

    def stop(self):
        self.stop_file.touch()

    def close(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        for out in self.outs.values():
            out.close()


def run(a):
    import resource

    rng = random.Random(a.seed)
    broker = make_broker(a)
    addr = "%s:%d" % (broker.host, broker.port)
    work = Path(tempfile.mkdtemp(prefix="pm-fleet-"))
    books = {}
    for i in range(a.meters):
        mid = "fl-%04d" % (i + 1)
        books[mid] = MeterBook(mid, bytes(rng.getrandbits(8) for _ in range(32)))
    # New work stops at 70% of the simulated run, so every command is answered before meters exit.
    backend = Backend(broker.backend_addrs(), books, rng, SIM_UTC_START + a.hours * 3600 * 7 // 10, a.workers,
                      cluster=broker if a.broker == "rabbitmq" else None)
    t0 = time.monotonic()
    ticks = a.hours * 3600 // a.tick_s
    expect_s = ticks * a.pace_ms / 1000
    fleet = Fleet(a, books, addr, work)
    print("fleet: %d meters, %d h simulated each (%d ticks of %d s, %d ms real per tick), broker %s %s, %d worker(s)" % (
        a.meters, a.hours, ticks, a.tick_s, a.pace_ms, broker.name, addr, a.workers), flush=True)
    # The faults, at fractions of the expected run counted from when every meter is started: a
    # clean broker restart, a broker crash, and power cuts of random meters between 10 % and 65 %
    # (each back after 0.5 to 2 s).
    start = time.monotonic() + 3
    cuts = sorted((start + expect_s * rng.uniform(0.1, 0.65), mid)
                  for mid in rng.sample(sorted(books), int(round(a.cuts * a.meters))))
    down = {}  # meter -> when power comes back
    restart_at = start + expect_s * a.restart_at
    crash_at = start + expect_s * a.crash_at if a.crash_at else None
    restarts = crashes = cuts_done = 0
    node_back = None  # set once a restarted cluster node has rejoined
    last_fault = None  # when the last planned fault had happened
    deadline = start + 120 + expect_s * 4
    try:
        while fleet.running() or down:
            now = time.monotonic()
            if now > deadline:
                raise RuntimeError("meters still running after %.0f s" % (deadline - t0))
            if not restarts and now >= restart_at:
                print("fleet: restarting the broker%s at %.1f s" % (
                    "'s busiest node" if broker.nodes > 1 else "", now - t0), flush=True)
                restarts += 1
                if broker.nodes > 1:
                    # The others serve meanwhile; the node is back once it has rejoined the cluster.
                    node_back = threading.Event()
                    threading.Thread(target=lambda: (broker.restart(down_for=1.0), node_back.set()),
                                     daemon=True).start()
                else:
                    broker.restart(down_for=1.0)
            # One node down at a time: a cluster of three that loses two stops (pause_minority), so
            # the kill waits until the restarted node is back in the cluster.
            if crash_at and not crashes and now >= crash_at and (node_back is None or node_back.is_set()):
                print("fleet: killing the broker%s (no shutdown) at %.1f s" % (
                    "'s busiest node" if broker.nodes > 1 else "", now - t0), flush=True)
                if broker.nodes > 1:
                    broker.crash(down_for=1.0, wait=False)
                else:
                    broker.crash(down_for=1.0)
                crashes += 1
            while cuts and cuts[0][0] <= now:
                _, mid = cuts.pop(0)
                if fleet.cut(mid):
                    cuts_done += 1
                    down[mid] = now + rng.uniform(0.5, 2.0)
            for mid, when in list(down.items()):
                if when <= now:
                    del down[mid]
                    with backend.lock:
                        mt = books[mid].meter_time
                    fleet.power_up(mid, mt)
            backend.tick(active=True)
            # Every planned fault happens, however slow the machine (meters linger until then), and
            # the fleet is given a few seconds after the last one to notice it.
            faults_done = restarts and (not crash_at or crashes) and not down and not cuts
            if faults_done and last_fault is None:
                last_fault = now
            if faults_done and now >= last_fault + 5 and fleet.done() and backend.settled():
                fleet.stop()  # every meter is past its end, every command answered, no gap open
            time.sleep(0.1)
        # Meters flush their outbox before exiting; give the last messages a moment to land.
        settle = time.monotonic() + 3
        while time.monotonic() < settle:
            backend.tick(active=False)
            time.sleep(0.1)
    finally:
        fleet.close()
        backend.close()
        peak = broker.peak_connects_per_s() if broker.nodes > 1 else peak_connects_per_s(broker.log_text())
        broker.close()
    real_s = time.monotonic() - t0
    ru = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    cpu_s = sum(r.ru_utime + r.ru_stime for r in ru)
    faults = {"broker": broker.name, "nodes": broker.nodes, "node_kills": crashes if broker.nodes > 1 else 0,
              "broker_restarts": restarts, "broker_crashes": crashes, "meter_power_cuts": cuts_done,
              "workers": a.workers, "cpu_s": cpu_s, "peak_connects_per_s": peak}
    rc = report(a, books, fleet.procs, work, backend, faults, real_s)
    if rc == 0:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print("fleet: meter logs and flash images kept in %s" % work, file=sys.stderr)
    return rc


def report(a, books, procs, work, backend, faults, real_s):
    bad = []
    gaps = mismatches = sent = acked = 0
    exactly_once = True
    for mid, b in books.items():
        text = (work / (mid + ".out")).read_text()
        s = mprun.parse_result(text)
        rc = procs[mid].returncode
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
    if faults["broker_restarts"] != 1:
        bad.append("the broker was restarted %d times, expected once" % faults["broker_restarts"])
    meter_days = a.meters * a.hours / 24
    ops = Counter(op for b in books.values() for op, _ in b.sent.values())
    rep = dict(faults)
    del rep["cpu_s"]
    rep.update({
        "meters": a.meters, "topups_sent": sent, "topups_acked": acked,
        "applied_exactly_once": exactly_once and acked == sent, "telemetry_gaps": gaps,
        "ledger_mismatches": mismatches,
        "commands_retried": backend.retries, "duplicates_sent": backend.duplicates_sent,
        "repeats_answered": sum(b.repeats for b in books.values()),
        "disconnects_sent": ops["disconnect"], "reconnects_sent": ops["reconnect"],
        "gaps_detected": sum(len(b.fill.flagged) for b in books.values()), "backfills_sent": ops["backfill"],
        "backfill_lost": sum(len(b.fill.lost()) for b in books.values()),
        "uplink_messages": sum(len(b.seqs) for b in books.values()), "sim_hours": a.hours,
        "real_s": round(real_s, 1), "cpu_s_per_meter_day": round(faults["cpu_s"] / meter_days, 3),
        "topup_ms_p50": round(percentile(backend.topup_ms, 50)), "topup_ms_p99": round(percentile(backend.topup_ms, 99)),
        "invariants_ok": not bad,
    })
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
