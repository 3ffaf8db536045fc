"""`make sim`: one simulated meter on the MicroPython unix port, a real Mosquitto, and a
backend stand-in that tops the meter up. Prints the meter's hourly lines, then one JSON
summary as the last line; exits non-zero when an invariant breaks.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import meterproto  # noqa: E402
import mprun  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TOPUP_MINOR = 500
TOKEN_MINOR = 300  # a token the customer buys when the supply goes off, typed on the keypad
OPENING_MINOR = 300
LIMIT_W = 3000  # contracted power: an oven at the evening peak goes over it now and then


class SimError(Exception):
    pass


def sim_boards():
    """The simulated boards a sim can run (not those that need a test harness's parts)."""
    return sorted(p.stem.replace("_", "-") for p in (ROOT / "boards").glob("sim_*.py")
                  if "\nSTANDALONE = False" not in p.read_text())


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--board", default="sim-atm90e26")
    p.add_argument("--hours", default="48")
    p.add_argument("--seed", default="1")
    p.add_argument("--broker", default="", help="host:port of a running broker (default: start one)")
    p.add_argument("--heap", default=mprun.APP_HEAP)
    p.add_argument("--faults", default="",
                   help="inject chip faults, e.g. resets=3,bus=20,absent=1,stuck=1,upset=2")
    p.add_argument("--screens", default="",
                   help="directory: a PNG of each distinct screen the customer saw and a contact sheet")
    a = p.parse_args(argv)
    if a.board not in sim_boards():
        raise SimError("unknown board %r (simulated boards: %s)" % (a.board, ", ".join(sim_boards())))
    for name in ("hours", "seed"):
        v = getattr(a, name)
        if not v.isdigit() or (name == "hours" and not 1 <= int(v) <= 24 * 366):
            raise SimError("%s must be a whole number%s, got %r" % (
                name, " from 1 to 8784" if name == "hours" else "", v))
        setattr(a, name, int(v))
    if a.screens:
        d = Path(a.screens)
        if d.exists() and not d.is_dir():
            raise SimError("SCREENS must name a directory, %s is a file" % d)
    if a.broker:
        host, _, port = a.broker.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise SimError("BROKER must be host:port (port 1..65535), got %r" % a.broker)
    return a


class Backend:
    """Utility back office stand-in: watches the meter and tops it up, keeping its own ledger.
    It waits for the first disconnection before topping up on low credit, so the whole
    cycle (exhausted -> relay open -> top-up -> local confirm -> closed) shows."""

    def __init__(self, host, port, meter_id, key, inbox=None):
        import paho.mqtt.client as mqtt

        self.meter_id = meter_id
        self.key = key
        self.lock = threading.Lock()
        self.sent = {}  # cmd id -> amount
        self.acked = {}  # cmd id -> result
        self.next_id = 1
        self.meter_time = 0
        self.seen_exhausted = False
        self.outstanding = False
        self.fill = meterproto.Backfiller()  # uplink numbers seen: duplicates and gaps
        self.events = []
        self.inbox = inbox  # the customer's text messages: tokens, one per line
        self.tokens = []  # token ids sent to the customer
        self.next_token = 1  # token ids have their own counter (docs/tokens.md)
        # A persistent session: what the meter publishes while this client is briefly away (a
        # broker restart, a reconnect) waits for it at the broker.
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="sim-backend-" + meter_id,
                             clean_session=False)
        self.c.on_message = self._on_message
        self.c.on_connect = lambda c, u, f, rc, p=None: c.subscribe(meterproto.topic(meter_id, "#"), qos=1)
        try:
            self.c.connect(host, port)
        except OSError as e:
            raise SimError("cannot reach the broker %s:%d: %s (is it running? leave BROKER out to start one)" % (
                host, port, e.strerror or e))
        self.c.loop_start()

    def _on_message(self, client, userdata, msg):
        kind = msg.topic.rsplit("/", 1)[-1]
        if kind == "cmd":
            return
        try:
            doc = json.loads(msg.payload)
        except ValueError:
            return
        with self.lock:
            if kind == "status":
                self.fill.status(doc)
            if "seq" in doc:
                self.fill.add(doc["seq"])
            self.meter_time = max(self.meter_time, doc.get("t", 0))
            if kind == "evt":
                self.events.append(doc["ev"])
                if doc["ev"] == "credit_exhausted":
                    self.seen_exhausted = True
                    if self.inbox is not None:
                        self._token()  # the customer buys a token and types it on the keypad
                    else:
                        self._topup()
                elif doc["ev"] in ("low_credit_1", "low_credit_2") and self.seen_exhausted:
                    self._topup()
            elif kind == "reply" and doc.get("id") in self.sent:
                self.acked[doc["id"]] = doc["res"]
                self.outstanding = False

    def _topup(self):
        if self.outstanding:
            return
        cid = self.next_id
        self.next_id += 1
        # The meter's clock runs fast in a simulation: expiry is a day of *its* time ahead.
        payload = meterproto.command(self.key, self.meter_id, cid, self.meter_time + 86400, "topup",
                                     amt=TOPUP_MINOR)
        self.sent[cid] = TOPUP_MINOR
        self.outstanding = True
        self.c.publish(meterproto.topic(self.meter_id, "cmd"), payload, qos=1)

    def _token(self):
        import token_issue

        tid = self.next_token
        self.next_token += 1
        tok = token_issue.issue(self.key, self.meter_id, tid, TOKEN_MINOR)
        self.tokens.append(tid)
        with open(self.inbox, "a") as f:
            f.write(tok + "\n")

    def received_all(self, last_seq, timeout=15.0):
        """Wait until every uplink number up to last_seq has arrived (the meter's last messages
        are still on their way when it exits); False if some never do."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if self.fill.seqs.high >= last_seq and not self.fill.missing():
                    return True
            time.sleep(0.05)
        return False

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def check(summary, backend):
    """The invariants a run must keep; returns a list of broken ones."""
    bad = []
    mc = summary["meter_constant"]
    den = summary.get("energy_den", mc)  # the remainder is in 1/den Wh
    # Metered energy is the truth floored to whole chip counts, then to whole Wh, less what a chip
    # reset destroyed before it could be read (the emulator reports exactly that amount); the
    # 2 mJ allow for the integer rounding of the two mJ conversions.
    lsb_mj = summary.get("lsb_mj", 3600000000 // (mc * 10))
    lost_mj = summary.get("lost_in_chip_mj", 0)
    metered_mj = summary["energy_wh"] * 3600000 + summary["energy_rem_counts"] * 3600000 // den
    if not 0 <= summary["truth_mj"] - metered_mj - lost_mj <= lsb_mj + 2:
        bad.append("energy %d mJ metered + %d mJ lost in chip vs %d mJ drawn: beyond register resolution" % (
            metered_mj, lost_mj, summary["truth_mj"]))
    if summary.get("pulse_counts") != summary.get("pulse_truth"):
        bad.append("pulse inputs counted %s, the water meter gave %s" % (
            summary.get("pulse_counts"), summary.get("pulse_truth")))
    expect_charged = summary["energy_wh"] * summary["tariff_price_per_kwh"] // summary["tariff_den"]
    if summary["charged_minor"] != expect_charged:
        bad.append("charged %d, tariff says %d" % (summary["charged_minor"], expect_charged))
    applied = [cid for cid, res in backend.acked.items() if res == "applied"]
    keyed = summary.get("tokens_accepted", 0)
    credited = summary["opening_balance"] + sum(backend.sent[c] for c in applied) + keyed * TOKEN_MINOR
    if summary["balance_minor"] != credited - summary["charged_minor"]:
        bad.append("balance %d != credited %d - charged %d" % (
            summary["balance_minor"], credited, summary["charged_minor"]))
    if summary["topups_applied"] != len(applied) + keyed:  # the meter counts typed tokens too
        bad.append("meter applied %d top-ups, backend has %d acknowledged and %d tokens typed" % (
            summary["topups_applied"], len(applied), keyed))
    if summary.get("tokens_keyed", 0) != keyed or keyed > len(backend.tokens):
        bad.append("%d tokens typed, %d accepted, %d sent to the customer" % (
            summary.get("tokens_keyed", 0), keyed, len(backend.tokens)))
    if summary.get("relay_faults"):
        bad.append("relay fault %d reported on healthy simulated contacts" % summary["relay_faults"])
    ended = summary.get("overload_retries", 0) + summary.get("overload_latches", 0)
    if not 0 <= summary.get("overload_trips", 0) - ended <= 1:
        bad.append("%d overload trips but %d retries/latches" % (summary["overload_trips"], ended))
    # Every number the meter sent (all but what is still in its outbox) reached the backend.
    sent = summary.get("uplink_seq", 0) - summary.get("outbox_left", 0)
    missing = sorted(set(range(1, sent + 1)) - backend.fill.seqs.seen)
    if missing:
        bad.append("uplink sequence gaps: %d message(s) never arrived (seq %s...)" % (len(missing), missing[:5]))
    return bad


def prepare_screens(path):
    """The screens directory, emptied of an earlier run's screens (and only of those)."""
    import shutil

    d = Path(path).resolve()
    d.mkdir(parents=True, exist_ok=True)
    for p in list(d.glob("screen-*.png")) + [d / "contact-sheet.png", d / "screens.jsonl"]:
        if p.exists():
            p.unlink()
    if (d / "frames").is_dir():
        shutil.rmtree(d / "frames")
    return d


def run(a):
    from mpbroker import Broker

    broker = None
    if a.broker:
        host, _, port = a.broker.rpartition(":")
        port = int(port)
    else:
        broker = Broker()
        host, port = broker.host, broker.port
    meter_id = "sim-%04d" % a.seed
    key = os.urandom(32)  # provisioned per run: there is no default key
    work = Path(tempfile.mkdtemp(prefix="pm-sim-"))
    screens = prepare_screens(a.screens) if a.screens else None
    inbox = work / "tokens.txt"
    backend = Backend(host, port, meter_id, key, str(inbox))
    cfg = json.dumps({"opening_balance": OPENING_MINOR,
                      "protection": {"limiter": {"power_w": LIMIT_W}},
                      "customer": {"currency": "KES", "quiet": [22, 7]}})
    cmd = [mprun.mpy_path(), "-X", "heapsize=" + a.heap, str(ROOT / "tools" / "sim_meter.py"),
           "--board", a.board, "--hours", str(a.hours), "--seed", str(a.seed), "--meter-id", meter_id,
           "--broker", "%s:%d" % (host, port), "--key", key.hex(), "--flash", str(work / "flash.img"),
           "--config", cfg, "--token-file", str(inbox)] + (["--faults", a.faults] if a.faults else []) + (
        ["--screens", str(screens)] if screens else [])
    env = dict(os.environ, MICROPYPATH=mprun.micropypath())
    last = None
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                cwd=ROOT, env=env)
        for line in proc.stdout:
            line = line.rstrip("\n")
            if line.startswith("{"):
                last = line
            else:
                print(line, flush=True)
        rc = proc.wait()
        try:
            done = json.loads(last)
            backend.received_all(done["uplink_seq"] - done["outbox_left"])
        except (TypeError, ValueError, KeyError):
            pass  # no summary: reported below
    finally:
        backend.close()
        if broker:
            broker.close()
    if rc != 0 or last is None:
        raise SimError("the simulated meter failed (exit %d)" % rc)
    summary = json.loads(last)
    if screens:
        import screens as screens_mod

        try:
            pngs = screens_mod.render(screens)
            screens_mod.contact_sheet(screens)
        except screens_mod.ScreensError as e:
            raise SimError("screens: %s" % e)
        print("screens: %d PNGs and contact-sheet.png in %s" % (len(pngs), screens))
    summary["tokens_sent"] = len(backend.tokens)
    summary["topups_sent"] = len(backend.sent)
    summary["topups_acked"] = len(backend.acked)
    summary["backend_events"] = len(backend.events)
    bad = check(summary, backend)
    summary["invariants_ok"] = not bad
    for b in bad:
        print("INVARIANT BROKEN: " + b)
    print(json.dumps(summary, sort_keys=True))
    return 0 if not bad else 1


def main(argv=None):
    try:
        return run(parse_args(argv if argv is not None else sys.argv[1:]))
    except SimError as e:
        print("sim: error: %s" % e, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
