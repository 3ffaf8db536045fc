#!/usr/bin/env python3
"""headend: the utility back office's command line for prepaid meters over MQTT.

    headend provision MTR-0001 --board esp32-atm90e26 --wifi-ssid S --wifi-password P
    headend list
    headend status MTR-0001
    headend watch [MTR-0001 ...] [--count N] [--seconds S]
    headend topup MTR-0001 12.50
    headend token MTR-0001 12.50
    headend disconnect MTR-0001 | reconnect MTR-0001 [--direct]
    headend retry MTR-0001 [--drop]
    headend tariff MTR-0001 tariff.json
    headend backfill MTR-0001 [--from-seq N]
    headend export-csv MTR-0001 --kind load|billing --out FILE.csv
    headend plot MTR-0001 --out FILE.png
    headend serve --config service.json      (the long-running service: docs/service.md)

Meters, their keys and the telemetry `watch` records live in the headend home
(--home, $PM_HEADEND_HOME, default ~/.pm-headend). The broker is --broker HOST:PORT
or $PM_BROKER (default 127.0.0.1:1883). Exit status: 0 done, 1 the meter refused or did
not answer, 2 bad arguments / unknown meter / broker unreachable.
"""
import argparse
import csv
import datetime
import importlib.util
import json
import math
import os
import re
import secrets
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import meterproto  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
METER_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
CMD_TTL_S = 3600  # a command not applied within an hour of meter time is refused as expired
MAX_TTL_S = 31 * 86400  # firmware/auth.py MAX_AHEAD_S: an expiry further ahead is refused (exp_far)
MAX_CMD_BYTES = 1536  # firmware/auth.py MAX_PAYLOAD


class CliError(Exception):
    """Bad arguments, unknown meter, unreachable broker: exit status 2."""


class Refused(Exception):
    """The meter refused or did not answer: exit status 1. `answer`: the meter's signed answer."""

    def __init__(self, text, answer=None):
        super().__init__(text)
        self.answer = answer


# -- money ----------------------------------------------------------------------------------
def parse_money(text, decimals=2):
    """'12.50' -> 1250 minor units. Exact: no float anywhere."""
    m = re.fullmatch(r"(\d{1,9})(?:\.(\d+))?", text.strip())
    if not m or (m.group(2) is not None and len(m.group(2)) > decimals):
        raise CliError("amount must be a positive number with at most %d decimals, got %r" % (decimals, text))
    frac = (m.group(2) or "").ljust(decimals, "0")
    v = int(m.group(1)) * 10 ** decimals + (int(frac) if frac else 0)
    if v <= 0:
        raise CliError("amount must be more than zero, got %r" % text)
    return v


def fmt_money(minor, decimals=2):
    sign = "-" if minor < 0 else ""
    minor = abs(minor)
    if not decimals:
        return sign + str(minor)
    return "%s%d.%0*d" % (sign, minor // 10 ** decimals, decimals, minor % 10 ** decimals)


def utc(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


# -- the registry of provisioned meters ---------------------------------------------------------
class Registry:
    def __init__(self, home):
        self.home = Path(home)
        self.meters = self.home / "meters"
        self.data = self.home / "data"
        self.deploy = self.home / "deploy"

    def path(self, meter_id):
        return self.meters / (meter_id + ".json")

    def ids(self):
        return sorted(p.stem for p in self.meters.glob("*.json")) if self.meters.is_dir() else []

    def exists(self, meter_id):
        return self.path(meter_id).exists()

    def get(self, meter_id):
        check_id(meter_id)
        try:
            rec = json.loads(self.path(meter_id).read_text())
        except FileNotFoundError:
            raise CliError("unknown meter %r: not provisioned in %s (see `headend list`)" % (meter_id, self.home))
        except (OSError, ValueError) as e:
            raise CliError("the record of %s (%s) is damaged: %s; restore it from a backup, or provision the "
                           "meter again with --force (a new key)" % (meter_id, self.path(meter_id), e))
        if not isinstance(rec, dict) or not isinstance(rec.get("key"), str) or rec.get("meter_id") != meter_id:
            raise CliError("the record of %s (%s) is damaged: not a meter record; restore it from a backup, or "
                           "provision the meter again with --force (a new key)" % (meter_id, self.path(meter_id)))
        return rec

    def put(self, rec):
        self.meters.mkdir(parents=True, exist_ok=True)
        p = self.path(rec["meter_id"])
        tmp = p.with_suffix(".tmp")
        write_private(tmp, json.dumps(rec, indent=1, sort_keys=True))  # its key and MQTT password
        os.replace(tmp, p)  # atomic: a crash never leaves a half-written key file

    def update(self, meter_id, change):
        """Read-modify-write one meter's record under a lock, so two headends working on the
        same home never lose each other's changes; returns what change(rec) returned."""
        import fcntl

        self.meters.mkdir(parents=True, exist_ok=True)
        with open(self.meters / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            rec = self.get(meter_id)
            out = change(rec)
            self.put(rec)
        return out

    def next_id(self, meter_id, field="next_cmd_id"):
        """Reserve the next command (or token: "next_token_id") id before sending: ids are never
        reused (the meter would take a reused id for a repeat of the first command). A meter
        provisioned when tokens were numbered with commands starts its token counter there."""
        def take(rec):
            cid = rec.get(field, rec.get("next_cmd_id", 1))
            rec[field] = cid + 1
            return cid, dict(rec)

        return self.update(meter_id, take)

    def note_time(self, meter_id, t, force=False):
        """Keep the meter's newest clock reading and when we saw it: commands expire in the
        meter's time (meter_now). `force`: the meter's own signed word that its clock reads t
        now (an answer), taken even when it is below what we had."""
        self.update(meter_id, lambda rec: _note_time(rec, t, force))

    def meter_now(self, rec):
        """The meter's clock now, as far as we know: its last reading plus the time since."""
        now = int(time.time())
        if "meter_time_at" not in rec:
            return max(now, rec.get("meter_time", 0))  # a record from before meter_time_at
        return rec["meter_time"] + max(0, now - rec["meter_time_at"])

    def seq_high(self, meter_id):
        """Newest uplink number this headend has seen from the meter (0: none yet)."""
        return self.get(meter_id).get("seq_high", 0)

    def record(self, meter_id, kind, doc):
        """Append an uplink message (or a birth, kind "status") to the meter's data file, and keep
        what it says of the meter in its record, in one update: its newest uplink number
        (docs/protocol.md 5.1: it only grows, across reboots too, unless a birth shows that the
        meter restarted its numbering), its clock, and (a birth) the revision it speaks, which
        decides what it signs."""
        self._append(meter_id, kind, doc)

        def change(rec):
            high = rec.get("seq_high", 0)
            if kind == "status":
                if doc.get("online") == 1 and isinstance(doc.get("last"), int):
                    if rec.get("boot") is not None and doc.get("boot") != rec["boot"] and doc["last"] < high:
                        high = 0  # blank or reformatted flash: a new sequence
                    rec["boot"] = doc.get("boot")
                    rec["seq_high"] = max(high, doc["last"])
                if doc.get("online") == 1:
                    rec["rev"] = doc.get("rev", 1)
            elif isinstance(doc.get("seq"), int) and doc["seq"] > high:
                rec["seq_high"] = doc["seq"]
            if isinstance(doc.get("t"), int):
                _note_time(rec, doc["t"])

        if self.exists(meter_id):
            self.update(meter_id, change)

    def sent(self, meter_id, cmd_id, op, args, exp):
        """A command is about to be sent (the file registry keeps it only as `pending`)."""

    def _append(self, meter_id, kind, doc):
        self.data.mkdir(parents=True, exist_ok=True)
        with open(self.data / (meter_id + ".jsonl"), "a") as f:
            f.write(json.dumps({"k": kind, "rx": int(time.time()), "d": doc}, sort_keys=True) + "\n")

    def _scan(self, meter_id):
        """(era, kind, doc) of every readable recorded line, in file order. The era counts the
        times the meter restarted its numbering (a birth with a new boot and `last` below the
        numbers seen before; docs/protocol.md 5.1): a seq identifies a message only within one era."""
        p = self.data / (meter_id + ".jsonl")
        if not p.exists():
            return []
        out = []
        era, boot, high = 0, None, 0
        for line in p.read_text().splitlines():
            try:
                r = json.loads(line)
            except ValueError:
                continue  # a line cut by a crash: skip it
            d = r.get("d") if isinstance(r, dict) else None
            if not isinstance(d, dict):
                continue
            if r.get("k") == "status":
                if d.get("online") == 1 and isinstance(d.get("last"), int):
                    if boot is not None and d.get("boot") != boot and d["last"] < high:
                        era, high = era + 1, 0
                    boot = d.get("boot")
                    high = max(high, d["last"])
            elif isinstance(d.get("seq"), int):
                high = max(high, d["seq"])
            out.append((era, r.get("k"), d))
        return out

    def recorded(self, meter_id, kind=None, current=False):
        """Recorded uplink messages of one kind (all kinds when None), once each, in time order;
        only those of the meter's current numbering when `current`."""
        lines = self._scan(meter_id)
        last = lines[-1][0] if lines else 0
        out = {}
        for era, k, d in lines:
            if k != "status" and (kind is None or k == kind) and "seq" in d and (not current or era == last):
                out[(era, d["seq"])] = d  # a duplicate delivery (QoS1, backfill) counts once
        return sorted(out.values(), key=lambda d: (d.get("t", 0), d["seq"]))

    def boots(self, meter_id):
        """The boot times (UTC) of the recorded births."""
        return sorted({d["boot"] for _, k, d in self._scan(meter_id)
                       if k == "status" and isinstance(d.get("boot"), int)})


class DbRegistry(Registry):
    """The same registry kept in the headend service's database (--db, $PM_HEADEND_DB;
    docs/service.md): the CLI and `headend serve` share meters, keys, command ids and every
    uplink. Deploy files and release keys stay in the home directory."""

    def __init__(self, home, url):
        import service_db

        super().__init__(home)
        try:
            self.db = service_db.Db(url)
        except service_db.DbError as e:
            raise CliError("database %s: %s" % (url, e))

    def ids(self):
        return [m["meter_id"] for m in self.db.meters()]

    def exists(self, meter_id):
        return self.db.meter(meter_id) is not None

    def get(self, meter_id):
        check_id(meter_id)
        row = self.db.meter(meter_id)
        if row is None:
            raise CliError("unknown meter %r: not provisioned in %s (see `headend list`)" % (meter_id, self.db.url))
        return row["rec"]

    def put(self, rec):
        self.db.put_rec(rec)

    def update(self, meter_id, change):
        import service_db

        self.get(meter_id)
        try:
            return self.db.update_rec(meter_id, change)
        except service_db.DbError as e:
            raise CliError(str(e))

    def _append(self, meter_id, kind, doc):
        if self.exists(meter_id):
            self.db.store_uplink(meter_id, kind, doc)  # a copy the service stored already changes nothing

    def _scan(self, meter_id):
        return self.db.scan(meter_id)

    def sent(self, meter_id, cmd_id, op, args, exp):
        self.db.add_command(meter_id, cmd_id, op, args, exp, "cli")


def check_id(meter_id):
    if not METER_ID.match(meter_id or ""):
        raise CliError("meter id must be 1-32 letters, digits, '-' or '_', got %r" % meter_id)


def _note_time(rec, t, force=False):
    """The meter's clock read t now (Registry.note_time)."""
    if force or t > rec.get("meter_time", 0):
        rec["meter_time"] = t
        rec["meter_time_at"] = int(time.time())


def write_private(path, text):
    """Write a file only this user can read, from its first byte on (an older file of that
    name may have other modes)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


# -- the broker ---------------------------------------------------------------------------------
def broker_addr(text):
    """(host, port) of a HOST:PORT; CliError when it is not one."""
    host, _, port = str(text).rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or any(c in host for c in " /:"):
        raise CliError("broker must be HOST:PORT (port 1..65535), got %r" % (text,))
    return host, int(port)


class Bus:
    """A paho client that collects messages per topic and turns connection trouble into CliError."""

    def __init__(self, broker, user=None, password=None, timeout=5.0, cafile=None):
        import paho.mqtt.client as mqtt

        host, port = broker_addr(broker)
        self.broker = broker
        self.cond = threading.Condition()
        self.msgs = []
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="headend-" + secrets.token_hex(4))
        if user:
            self.c.username_pw_set(user, password)
        if cafile:
            # TLS as the generated broker speaks it (broker.md): the chain and the name are checked.
            import ssl
            try:
                self.c.tls_set(ca_certs=cafile, cert_reqs=ssl.CERT_REQUIRED)
            except (OSError, ssl.SSLError, ValueError) as e:
                raise CliError("cannot use CA file %s: %s" % (cafile, getattr(e, "strerror", None) or e))
        self.c.on_message = self._on_message
        self._topics = []  # subscribed, again after every reconnect
        self._connected = threading.Event()
        self._rc = None
        self.c.on_connect = self._on_connect
        try:
            self.c.connect(host, int(port), keepalive=30)
        except (OSError, ValueError) as e:  # ssl.SSLError (a certificate refused) is an OSError
            raise CliError("cannot reach broker %s%s: %s" % (broker, " over TLS" if cafile else "",
                                                             getattr(e, "strerror", None) or e))
        self.c.loop_start()
        if not self._connected.wait(timeout) or self._rc != 0:
            self.close()
            raise CliError("broker %s did not accept the connection (%s)" % (
                broker, self._rc if self._rc is not None else "no answer"))

    def _on_connect(self, client, userdata, flags, rc, props=None):
        self._rc = rc.value if hasattr(rc, "value") else rc
        if self._connected.is_set() and self._rc == 0:
            # paho reconnected after the broker went away: a clean session has no subscriptions
            # left, so a long-running command (`update`) would hear nothing more.
            for t in self._topics:
                client.subscribe(t, qos=1)
        self._connected.set()

    def _on_message(self, client, userdata, msg):
        with self.cond:
            self.msgs.append((msg.topic, msg.payload, msg.retain))
            self.cond.notify_all()

    def subscribe(self, *topics):
        for t in topics:
            self.c.subscribe(t, qos=1)
            if t not in self._topics:
                self._topics.append(t)
        time.sleep(0.2)  # the SUBACK round trip: messages published after this are seen

    def publish(self, topic, payload):
        """Hand the message to the broker (PUBACK). CliError when the broker is gone: the command
        then stays pending (`headend retry`), whether or not it got through."""
        try:
            info = self.c.publish(topic, payload, qos=1)
            info.wait_for_publish(5)
            ok = info.is_published()
        except (RuntimeError, ValueError, OSError) as e:
            raise CliError("lost the broker %s while sending (%s): the command stays pending, "
                           "`headend retry` re-sends it" % (self.broker, e))
        if not ok:
            raise CliError("the broker %s did not take the command within 5 s: it stays pending, "
                           "`headend retry` re-sends it" % self.broker)

    def wait_for(self, pred, timeout, start=0, idle=False):
        """First message from index `start` on, as (topic, doc, retain), satisfying
        pred(topic, doc, retain, payload bytes); None after timeout. With `idle`, the timeout counts
        from the last message received (any topic)."""
        deadline = time.monotonic() + timeout
        seen = start
        with self.cond:
            while True:
                while seen < len(self.msgs):
                    topic, payload, retain = self.msgs[seen]
                    seen += 1
                    if idle:
                        deadline = time.monotonic() + timeout
                    try:
                        doc = json.loads(payload)
                    except ValueError:
                        continue
                    if pred(topic, doc, retain, payload):
                        return topic, doc, retain
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)

    def close(self):
        self.c.loop_stop()
        try:
            self.c.disconnect()
        except Exception:
            pass


# -- commands to a meter ----------------------------------------------------------------------------
class Headend:
    def __init__(self, args):
        self.a = args
        db = getattr(args, "db", None)
        self.reg = DbRegistry(args.home, db) if db else Registry(args.home)
        self._bus = None

    @property
    def bus(self):
        if self._bus is None:
            self._bus = Bus(self.a.broker, self.a.user, self.a.password, cafile=self.a.cafile)
        return self._bus

    def connect(self):
        """The broker connection, made now (CliError when the broker cannot be reached)."""
        return self.bus

    def close(self):
        if self._bus is not None:
            self._bus.close()

    def send(self, meter_id, op, **args):
        """Sign, send, wait for the meter's reply. Returns the reply; raises Refused with its reason.
        A command left unanswered stays pending: the next command to that meter is held back until
        `retry` has re-sent it (same id, so the meter applies it at most once) or dropped it."""
        rec = self.reg.get(meter_id)
        p = rec.get("pending")
        if p:
            raise CliError("command %d (%s) to %s is still unanswered: `headend retry %s` re-sends it "
                           "(applied at most once), `headend retry %s --drop` forgets it" % (
                               p["id"], p["op"], meter_id, meter_id, meter_id))
        try:
            return self._send(meter_id, op, args)
        except Refused as e:
            t = (e.answer or {}).get("t")
            if e.answer is None or e.answer.get("res") not in ("exp_far", "expired") or not isinstance(t, int):
                raise
            # Our idea of the meter's clock was wrong (a meter that was set by hand, a simulated
            # one): its signed answer says what it reads, so sign once more in its time.
            self.reg.note_time(meter_id, t, force=True)
            return self._send(meter_id, op, args)

    def _send(self, meter_id, op, args):
        self.connect()  # first: a broker that cannot be reached leaves nothing pending, no id spent
        cid, rec = self.reg.next_id(meter_id)
        # Expiry counts in the meter's time (the meter refuses one more than 31 days past a
        # trusted clock: exp_far), from its last reading.
        exp = self.reg.meter_now(rec) + self.a.ttl
        payload = meterproto.command(bytes.fromhex(rec["key"]), meter_id, cid, exp, op, **args)
        if len(payload) > MAX_CMD_BYTES:
            raise CliError("command is %d bytes, the meter takes at most %d" % (len(payload), MAX_CMD_BYTES))
        pending = {"id": cid, "op": op, "exp": exp, "payload": payload.decode()}
        self.reg.update(meter_id, lambda r: r.__setitem__("pending", pending))
        self.reg.sent(meter_id, cid, op, args, exp)
        return self.transmit(meter_id, pending)

    def transmit(self, meter_id, pending):
        bus = self.bus
        cid, op = pending["id"], pending["op"]
        reply_t = meterproto.topic(meter_id, "reply")
        first = len(bus.msgs)
        bus.subscribe(*[meterproto.topic(meter_id, k) for k in meterproto.UPLINK])
        self.keep(meter_id, first)  # the retained birth: the meter's newest number at its last connect
        start = len(bus.msgs)
        # A refusal of a command that was not authentic carries id 0. From revision 2 on it is an
        # unnumbered answer (no "seq", never re-sent), so one that arrives after our publish is
        # new; from older meters only its number can tell it from an id-0 reply that a backfill
        # sent again: it must be newer than anything seen so far.
        known = self.reg.seq_high(meter_id)
        key = bytes.fromhex(self.reg.get(meter_id)["key"])
        forged = []

        def answer(t, d, r, raw):
            if t != reply_t or not (d.get("id") == cid or (d.get("id") == 0 and (
                    "seq" not in d or isinstance(d["seq"], int) and d["seq"] > known))):
                return False
            if not meterproto.verify_uplink(key, raw):
                forged.append(d)  # not signed with this meter's key: anyone's word, never believed
                return False
            return True

        bus.publish(meterproto.topic(meter_id, "cmd"), pending["payload"].encode())
        got = bus.wait_for(answer, self.a.timeout, start, idle=(op == "backfill"))
        self.keep(meter_id, start)  # what arrived meanwhile (a backfill's re-sent messages) is recorded
        if got is None and forged:
            raise Refused("no reply from %s signed with the key on record within %gs. %d reply(ies) without a"
                          " valid mac were ignored (they said: %s): forged by someone who can publish on its"
                          " topics, or the meter holds another key (re-provisioned, rotated). The command stays"
                          " pending: `headend retry %s` re-sends it, `--drop` forgets it" % (
                              meter_id, self.a.timeout, len(forged),
                              ", ".join(sorted({str(d.get("res")) for d in forged})), meter_id))
        if got is None:
            raise Refused("no reply from %s within %gs (offline?). The command is valid until %s UTC: "
                          "`headend retry %s` re-sends it; it is applied at most once" % (
                              meter_id, self.a.timeout, utc(pending["exp"]), meter_id))
        doc = got[1]
        # Any answer settles the command: applied, or refused for good.
        self.reg.update(meter_id, lambda r: r.pop("pending", None))
        if doc["id"] == 0:
            raise Refused("%s refused command %d: %s%s" % (meter_id, cid, doc.get("res"), hint(doc.get("res"), op)), doc)
        if doc.get("res") != "applied":
            raise Refused("%s refused %s: %s%s" % (meter_id, op, doc.get("res"), hint(doc.get("res"), op)), doc)
        doc["cmd_id"] = cid
        return doc


    def keep(self, meter_id, start):
        """Record the meter's uplink messages received from bus index `start` on."""
        bus = self.bus
        with bus.cond:
            batch = bus.msgs[start:]
        rec = None
        for topic, payload, retain in batch:
            try:
                mid, kind, doc = meterproto.parse_uplink(topic, payload)
            except ValueError:
                continue
            if mid == meter_id and (kind == "status" or "seq" in doc):
                rec = rec or self.reg.get(meter_id)
                if meterproto.forged(bytes.fromhex(rec["key"]), kind, doc, payload, rev_of(rec)):
                    continue  # not the meter's word: not part of its record
                self.reg.record(meter_id, kind, doc)
                if kind == "status":
                    rec = None  # a birth may change the revision (what the meter signs)


def number_arg(kind, lo, hi=None, what=""):
    """An argparse type: a number of `kind` (int, float) in lo..hi, one line otherwise."""
    def conv(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError("not a %s: %r" % ("whole number" if kind is int else "number", text))
        if v != v or v < lo or (hi is not None and v > hi):  # v != v: NaN
            raise argparse.ArgumentTypeError("must be %s%s%s, got %s" % (
                lo, " to %s" % hi if hi is not None else " or more", what, text))
        return v
    return conv


def out_path(text):
    """An argparse type: "-" or a file whose directory exists (nothing is created on the way)."""
    if text == "-":
        return text
    p = Path(text)
    if p.is_dir():
        raise argparse.ArgumentTypeError("%s is a directory: give a file name" % text)
    if not p.parent.is_dir():
        raise argparse.ArgumentTypeError("directory %s does not exist" % (p.parent or "."))
    return text


def currency_arg(text):
    if not re.fullmatch(r"[A-Za-z]{1,8}", text):
        raise argparse.ArgumentTypeError("a currency code is 1 to 8 letters, e.g. KES, got %r" % text)
    return text.upper()


def broker_arg(text):
    try:
        broker_addr(text)
    except CliError as e:
        raise argparse.ArgumentTypeError(str(e))
    return text


def rev_of(rec):
    """The protocol revision the meter spoke in its last birth (it decides what it signs); the
    newest when none was seen yet."""
    return rec.get("rev", meterproto.REVISION)


def hint(res, op):
    if res == "unknown_op":
        return " (this meter's firmware does not support %r yet)" % op
    if res == "bad_mac":
        return " (not signed with the key the meter holds: was it re-provisioned, or its key rotated?)"
    if res == "refused_max_balance":
        return " (the balance would pass the meter's maximum)"
    if res == "rate_limited":
        return " (the meter limits relay commands: a few at once, then one per refill period; try later)"
    if res == "id_jump":
        return (" (its id is more than 65 536 past the last id the meter applied, the `lid` of its birth:"
                " issue it again under a nearer id)")
    if res == "exp_far":
        return (" (its expiry is more than 31 days past the meter's clock, which it trusts: is the meter's"
                " clock wrong? `headend time` sets it)")
    if res == "replay_lost":
        return " (the meter lost its replay protection with its record: `headend resync` first)"
    if res == "bad_args" and op == "tariff":
        return " (the active tariff stays; a new tariff must keep the meter's active scale)"
    return ""


# Relay reason bits, lowest first: firmware/relay.py REASON_NAMES (1 safety ... 16 remote, 32 credit, ...).
REASONS = ("safety", "voltage", "tamper", "relay_fault", "remote", "credit", "load", "manual")


def reasons_text(bits):
    return ",".join(n for i, n in enumerate(REASONS) if bits & (1 << i)) or "none"


def relay_name(r):
    return ("connected", "disconnected", "ready")[r] if r in (0, 1, 2) else "state %r" % r


# -- subcommands -----------------------------------------------------------------------------------
def cmd_provision(h, a):
    check_id(a.meter)
    board_mod = ROOT / "boards" / (a.board.replace("-", "_") + ".py")
    if not board_mod.is_file() or a.board.startswith("sim-"):
        raise CliError("unknown board %r (real boards: %s)" % (a.board, ", ".join(real_boards())))
    if h.reg.exists(a.meter) and not a.force:
        raise CliError("meter %r is already provisioned; --force makes a new key, and the meter must then "
                       "be redeployed" % a.meter)
    if bool(a.wifi_ssid) != bool(a.wifi_password):
        raise CliError("give both --wifi-ssid and --wifi-password, or neither")
    rec = {"meter_id": a.meter, "board": a.board, "key": secrets.token_hex(32),
           "mqtt_user": a.meter, "mqtt_password": secrets.token_urlsafe(18),
           "broker": a.meter_broker or a.broker, "decimals": a.decimals, "currency": a.currency or "", "openpaygo_unit_minor": a.openpaygo_unit, "next_cmd_id": 1, "next_token_id": 1,
           "provisioned": int(time.time())}
    h.reg.put(rec)
    out = h.reg.deploy / a.meter
    out.mkdir(parents=True, exist_ok=True)
    sec = {"meter_id": a.meter, "key": rec["key"], "broker": rec["broker"], "mqtt_user": rec["mqtt_user"],
           "mqtt_password": rec["mqtt_password"]}
    if a.wifi_ssid:
        sec.update(wifi_ssid=a.wifi_ssid, wifi_password=a.wifi_password)
    rel = release_public(h.reg.home)
    if rel:
        sec["release_key"] = rel  # the public key updates must be signed with (docs/ota.md)
    write_private(out / "secrets.json", json.dumps(sec, indent=1, sort_keys=True) + "\n")
    (out / "board.txt").write_text(a.board + "\n")
    (out / "mosquitto-acl.conf").write_text(
        "# this meter may publish only under its own topics and read only its commands\n"
        "user %s\n%stopic read %s\n" % (a.meter, "".join(
            "topic write %s\n" % meterproto.topic(a.meter, k) for k in meterproto.UPLINK + ("fwreq",)),
            meterproto.topic(a.meter, "cmd")) + "topic read %s\n" % meterproto.topic(a.meter, "fw"))
    print("provisioned %s (board %s)" % (a.meter, a.board))
    if not rel:
        print("  updates:  no release key in %s yet: this meter will refuse every firmware update until it "
              "is provisioned again after `headend release-key new`" % h.reg.home)
    print("  secrets:  %s  (keep private; make deploy installs it as /secrets.json)" % (out / "secrets.json"))
    print("  board:    %s" % (out / "board.txt"))
    print("  broker:   add user %s to the password file and %s to the ACL" % (
        a.meter, out / "mosquitto-acl.conf"))
    print("  deploy:   make deploy PORT=/dev/ttyUSB0 BOARD=%s METER=%s HEADEND_HOME=%s" % (a.board, a.meter, h.reg.home))
    return 0


def release_public(home):
    """The release key's public modulus (hex) when the headend home has a release key."""
    import ota_release
    import release_key
    path = Path(home) / ota_release.KEY_FILE
    if not path.is_file():
        return None
    return release_key.modulus(release_key.load(str(path))).hex()


def cmd_release_key(h, a):
    import ota_release
    import release_key
    path = Path(h.reg.home) / ota_release.KEY_FILE
    if a.action == "new":
        if path.exists():
            raise CliError("%s exists: a new release key would orphan every meter provisioned with it" % path)
        path.parent.mkdir(parents=True, exist_ok=True)
        release_key.generate(str(path), a.bits)
    elif not path.is_file():
        raise CliError("no release key at %s: `headend release-key new` makes one" % path)
    n = release_key.modulus(release_key.load(str(path)))
    print("release key %s (%d bits) at %s" % (release_key.key_id(n), len(n) * 8, path))
    print("meters provisioned from now on carry its public half in /secrets.json")
    return 0


def cmd_release(h, a):
    import ota_release
    try:
        out = ota_release.build(h.reg.home, a.image, a.board, a.min_record, a.downgrade_from)
    except (ota_release.ReleaseError, OSError) as e:
        raise CliError(str(getattr(e, "strerror", None) or e))
    r = ota_release.Release(out)
    print("release %s: %d bytes, sha256 %s, boards %s, signed with key %s -> %s" % (
        r.version, len(r.image), r.doc["sha256"][:16], ",".join(r.doc["board"]), r.doc["kid"], out))
    return 0


def cmd_update(h, a):
    import ota_release
    import ota_rollout
    for m in a.meters:
        h.reg.get(m)  # every meter is provisioned, before anything is sent
    try:
        rel = ota_rollout.find_release(h.reg.home, a.release)
    except ota_release.ReleaseError as e:
        raise CliError(str(e))
    ro = ota_rollout.Rollout(h, rel, a.meters, a.canary, a.halt_after, a.wait)
    s = ro.run()
    print(json.dumps(s, sort_keys=True))
    return 0 if all(v == "done" for v in s["outcome"].values()) else 1


def real_boards():
    return sorted(p.stem.replace("_", "-") for p in (ROOT / "boards").glob("*.py") if not p.stem.startswith("sim_"))


def cmd_customer(h, a):
    if not isinstance(h.reg, DbRegistry):
        raise CliError("customer details live in the service's database: give --db URL (or $PM_HEADEND_DB)")
    h.reg.get(a.meter)
    fields = {k: getattr(a, k) for k in ("name", "email", "phone", "address") if getattr(a, k) is not None}
    if a.email and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", a.email):
        raise CliError("--email must be an e-mail address, got %r" % a.email)
    if a.phone and not re.fullmatch(r"\+?[0-9]{6,15}", a.phone):
        raise CliError("--phone must be 6-15 digits with an optional leading +, got %r" % a.phone)
    row = h.reg.db.meter(a.meter)
    if a.new_web_token or not row["web_token"]:
        fields["web_token"] = secrets.token_urlsafe(18)
    h.reg.db.set_customer(a.meter, **fields)
    row = h.reg.db.meter(a.meter)
    print("%s: %s <%s> %s %s" % (a.meter, row["name"], row["email"], row["phone"], row["address"]))
    print("  web page: /c/%s?t=%s" % (a.meter, row["web_token"]))
    return 0


def cmd_list(h, a):
    ids = h.reg.ids()
    bus = h.bus
    bus.subscribe(meterproto.PREFIX + "+/status")
    time.sleep(a.wait)
    online = {}
    with bus.cond:
        for topic, payload, _ in bus.msgs:
            mid = topic.split("/")[2]
            try:
                online[mid] = json.loads(payload).get("online")
            except ValueError:
                pass
    print("%-20s %-16s %-8s %-17s %s" % ("METER", "BOARD", "LINK", "LAST REPORT UTC", "BALANCE"))
    damaged = []
    for mid in ids:
        try:
            rec = h.reg.get(mid)
        except CliError as e:  # one damaged record must not hide the other meters
            damaged.append(str(e))
            print("%-20s %-16s %-8s %-17s %s" % (mid, "?", "?", "-", "DAMAGED RECORD"))
            continue
        tele = h.reg.recorded(mid, "tele")
        last = tele[-1] if tele else None
        link = {1: "online", 0: "offline"}.get(online.get(mid), "unknown")
        print("%-20s %-16s %-8s %-17s %s" % (
            mid, rec.get("board", "?"), link, utc(last["t"])[:16] if last else "-",
            fmt_money(last["b"], rec.get("decimals", 2)) if last else "-"))
    strangers = sorted(set(online) - set(ids))
    if strangers:
        print("not provisioned here but on the broker: %s" % ", ".join(strangers))
    for e in damaged:
        print("headend: error: %s" % e, file=sys.stderr)
    return 2 if damaged else 0


def kwh(wh):
    return "%s%d.%03d" % ("-" if wh < 0 else "", abs(wh) // 1000, abs(wh) % 1000)


def snap_import(d):
    """Imported Wh of a billing snapshot: the sum of its per-rate registers (the meter leaves
    out trailing unused rates)."""
    e = d["e"]
    return sum(e) if isinstance(e, list) else e


def show_tele(rec, d):
    dec = rec.get("decimals", 2)
    return ("%s  energy %d.%03d kWh  power %d W  %d.%02d V  %d.%03d A  balance %s  charged %s  relay %s%s" % (
        utc(d["t"]), d["e"] // 1000, d["e"] % 1000, d["p"], d["v"] // 100, d["v"] % 100, d["i"] // 1000,
        d["i"] % 1000, fmt_money(d["b"], dec), fmt_money(d["c"], dec), relay_name(d["r"]),
        " (%s)" % reasons_text(d["rs"]) if d.get("rs") else ""))


def cmd_status(h, a):
    rec = h.reg.get(a.meter)
    tele_t = meterproto.topic(a.meter, "tele")
    bus = h.bus
    bus.subscribe(tele_t)
    start = len(bus.msgs)
    reply = h.send(a.meter, "status")
    got = bus.wait_for(lambda t, d, r, raw: t == tele_t and "e" in d, a.timeout, start)
    print("%s: balance %s, relay %s" % (a.meter, fmt_money(reply["b"], rec.get("decimals", 2)), relay_name(reply["r"])))
    if got:
        d = got[1]
        h.reg.record(a.meter, "tele", d)
        print("  " + show_tele(rec, d))
    return 0


def cmd_watch(h, a):
    ids = a.meters or ["+"]
    for m in a.meters:
        h.reg.get(m)  # unknown meter: a clear error before waiting
    bus = h.bus
    bus.subscribe(*[meterproto.PREFIX + m + "/" + k for m in ids for k in ("tele", "lp", "evt", "snap", "reply", "status")])
    deadline = time.monotonic() + a.seconds if a.seconds else None
    n = 0
    seen = 0
    recs = {}
    ends = {}  # meter -> (t, e) of the last report that closed an interval
    try:
        while a.count is None or n < a.count:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            with bus.cond:
                if seen >= len(bus.msgs):
                    bus.cond.wait(1.0 if left is None else min(left, 1.0))
                batch = bus.msgs[seen:]
                seen = len(bus.msgs)
            for topic, payload, retain in batch:
                _, _, mid, kind = topic.split("/")
                try:
                    d = json.loads(payload)
                except ValueError:
                    print("%s %s: unreadable payload %r" % (mid, kind, payload[:60]))
                    continue
                if mid not in recs:
                    try:
                        recs[mid] = h.reg.get(mid)
                    except CliError:
                        recs[mid] = {}
                rec = recs[mid]
                if rec and isinstance(d, dict) and meterproto.forged(bytes.fromhex(rec["key"]), kind, d, payload,
                                                                     rev_of(rec)):
                    # Anyone who can publish on the meter's topics could have sent it: shown, never believed.
                    print("%-14s NOT FROM THE METER (no valid mac), ignored: %s" % (mid, payload[:120].decode(
                        "utf-8", "replace")), flush=True)
                    continue
                if kind == "tele":
                    line = show_tele(rec, d)
                    if d.get("lp"):  # revision 5: this report closes a load-profile interval
                        prev = ends.get(mid)
                        if prev and d["t"] - prev[0] == d["lp"]:
                            line += "  load profile: interval +%d Wh" % (d["e"] - prev[1])
                        ends[mid] = (d["t"], d["e"])
                elif kind == "evt":
                    line = "%s  event %s (%d)" % (utc(d["t"]), d["ev"], d.get("a", 0))
                    if d["ev"] == "replay_lost":
                        line += ": it refuses all commands until `headend resync %s`" % mid
                elif kind == "lp":
                    line = "%s  load profile: interval +%d Wh  import total %s kWh" % (
                        utc(d["t"]), d.get("de", 0), kwh(d["e"]))
                elif kind == "snap":
                    dec = rec.get("decimals", 2)
                    line = "%s  %s snapshot %s: import total %s kWh  charged %s  balance %s  debt %s" % (
                        utc(d["t"]), "monthly" if d.get("snap") == "m" else "daily", d.get("date", "?"),
                        kwh(snap_import(d)), fmt_money(d["c"], dec), fmt_money(d["b"], dec),
                        fmt_money(d.get("debt", 0), dec))
                elif kind == "reply":
                    line = "reply to command %s: %s%s" % (d.get("id"), d.get("res"), " (repeat)" if d.get("rep") else "")
                else:
                    line = "link %s%s" % ("online" if d.get("online") else "offline", " (retained)" if retain else "")
                    if d.get("online") and d.get("tq", 3) < 3:
                        line += ": its clock is not trusted since a power cut, `headend time %s` sets it" % mid
                    if d.get("online") and "rl" in d:
                        line += ": replay protection lost, it refuses all commands until `headend resync %s`" % mid
                print("%-14s %s" % (mid, line), flush=True)
                if rec and kind in meterproto.UPLINK and (kind == "status" or "seq" in d) and not a.no_record:
                    h.reg.record(mid, kind, d)  # births too: they tell a restarted numbering (protocol 5.1)
                elif rec and isinstance(d.get("t"), int):
                    h.reg.note_time(mid, d["t"])  # (record() notes it with the rest)
                if rec and kind == "status" and d.get("online") == 1:
                    rec["rev"] = d.get("rev", 1)  # what the meter signs from now on
                n += 1
                if a.count is not None and n >= a.count:
                    break
    except KeyboardInterrupt:
        pass
    return 0


def cmd_topup(h, a):
    rec = h.reg.get(a.meter)
    amt = parse_money(a.amount, rec.get("decimals", 2))
    r = h.send(a.meter, "topup", amt=amt)
    dec = rec.get("decimals", 2)
    print("%s: top-up %s applied (command %d)%s; balance now %s" % (
        a.meter, fmt_money(amt, dec), r["cmd_id"], " [already applied before]" if r.get("rep") else "",
        fmt_money(r["b"], dec)))
    return 0


ISSUER = "token_issue.py"  # the host token issuer: issue(meter_key, meter_id, cmd_id, amount_minor)


def load_issuer():
    """The host side of the 20-digit token format, when this build has it (docs/tokens.md)."""
    p = Path(__file__).resolve().parent / ISSUER
    if not p.is_file():
        return None
    spec = importlib.util.spec_from_file_location("token_issue", p)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod if hasattr(mod, "issue") else None


def cmd_token(h, a):
    rec = h.reg.get(a.meter)
    amt = parse_money(a.amount, rec.get("decimals", 2))
    issuer = load_issuer()
    if issuer is None:
        raise CliError("offline tokens are not supported by this build: no host token issuer "
                       "(tools/%s with issue(meter_key, meter_id, cmd_id, amount_minor))" % ISSUER)
    if a.openpaygo:
        return _openpaygo_token(h, a, rec, amt)
    # Tokens have a counter of their own (docs/tokens.md, protocol revision 4): a paper token
    # stays good whatever commands reach the meter before it is typed. An older meter numbers
    # tokens with commands: one counter for both there.
    cid, rec = h.reg.next_id(a.meter, "next_token_id" if rev_of(rec) >= 4 else "next_cmd_id")
    try:
        tok = issuer.issue(bytes.fromhex(rec["key"]), a.meter, cid, amt)
    except ValueError as e:
        raise CliError("cannot make a token for %s: %s" % (fmt_money(amt, rec.get("decimals", 2)), e))
    digits = "".join(ch for ch in str(tok) if ch.isdigit())
    if len(digits) != 20:
        raise CliError("token issuer returned %r, not 20 digits" % (tok,))
    print(" ".join(digits[i:i + 4] for i in range(0, 20, 4)))
    print("(%s for %s, id %d: type it at the meter, or at the REPL with token(\"...\"))" % (
        fmt_money(amt, rec.get("decimals", 2)), a.meter, cid), file=sys.stderr)
    if a.send:
        r = h.send(a.meter, "token", tok=digits)  # the token's verdict is the reply's result
        print("%s: token %d relayed and applied (command %d); balance now %s" % (
            a.meter, cid, r["cmd_id"], fmt_money(r["b"], rec.get("decimals", 2))))
    return 0


def _openpaygo_token(h, a, rec, amt):
    """An OpenPAYGO Add-Time token for a meter configured for them (docs/tokens.md): its value in
    units of the meter's `unit_minor` (the provision's --openpaygo-unit), the next count kept here."""
    import token_issue
    unit = rec.get("openpaygo_unit_minor", 100)
    dec = rec.get("decimals", 2)
    if amt % unit:
        raise CliError("an OpenPAYGO token carries whole units of %s; %s is not one" % (
            fmt_money(unit, dec), fmt_money(amt, dec)))

    def take(r):
        last = r.get("openpaygo_count", 0)
        try:
            count, tok = token_issue.issue_openpaygo(bytes.fromhex(r["key"]), last, amt // unit)
        except token_issue.TokenError as e:
            raise CliError("cannot make an OpenPAYGO token for %s: %s" % (fmt_money(amt, dec), e))
        r["openpaygo_count"] = count
        return count, tok

    count, tok = h.reg.update(a.meter, take)
    print(tok)
    print("(%s for %s, OpenPAYGO count %d: type it at the meter, or at the REPL with token(\"...\"))" % (
        fmt_money(amt, dec), a.meter, count), file=sys.stderr)
    if a.send:
        r = h.send(a.meter, "token", tok=tok)
        print("%s: token relayed and applied (command %d); balance now %s" % (a.meter, r["cmd_id"], fmt_money(r["b"], dec)))
    return 0


def cmd_retry(h, a):
    rec = h.reg.get(a.meter)
    p = rec.get("pending")
    if not p:
        print("%s: no unanswered command" % a.meter)
        return 0
    if a.drop:
        h.reg.update(a.meter, lambda r: r.pop("pending", None))
        print("%s: forgot command %d (%s); if the meter got it, its reply still shows in `headend watch`" % (
            a.meter, p["id"], p["op"]))
        return 0
    r = h.transmit(a.meter, p)
    print("%s: command %d (%s) %s; balance %s, relay %s" % (
        a.meter, p["id"], p["op"], "had already been applied" if r.get("rep") else "applied now",
        fmt_money(r["b"], rec.get("decimals", 2)), relay_name(r["r"])))
    return 0


def cmd_resync(h, a):
    """Answer a meter that lost its replay window (event replay_lost, docs/protocol.md 6.4): every
    id this headend ever issued becomes stale at the meter, then commands flow again."""
    rec = h.reg.get(a.meter)
    nonce = a.nonce
    if nonce is None:
        # The meter's retained birth carries the nonce while it waits ("rl"); else its event.
        bus = h.bus
        t = meterproto.topic(a.meter, "status")
        first = len(bus.msgs)
        bus.subscribe(t)
        got = bus.wait_for(lambda tp, d, r, raw: tp == t and "online" in d, min(a.timeout, 3.0), first)
        if got is not None and got[1].get("online") == 1 and "rl" in got[1]:
            nonce = got[1]["rl"]
        else:
            lost = [d for d in h.reg.recorded(a.meter, "evt") if d.get("ev") == "replay_lost"]
            if not lost:
                raise CliError("%s does not say it lost its replay protection (no \"rl\" in its birth, no "
                               "replay_lost event recorded); give --nonce from the meter's event" % a.meter)
            nonce = lost[-1].get("a")
    if type(nonce) is not int or not 0 < nonce < 1 << 30:
        raise CliError("the nonce is a number from the meter's replay_lost event (1 .. 2^30-1), not %r" % (nonce,))
    last = rec.get("next_cmd_id", 1) - 1  # the highest command id issued
    tlast = rec.get("next_token_id", rec.get("next_cmd_id", 1)) - 1  # the highest token id issued
    r = h.send(a.meter, "resync", last=last, tlast=tlast, nonce=nonce)
    print("%s: resync applied (command ids up to %d and token ids up to %d are stale from now on; command %d)" % (
        a.meter, last, tlast, r["cmd_id"]))
    return 0


def cmd_time(h, a):
    """Set the meter's clock from ours (trusted: docs/time.md). Send it when a birth says tq < 3."""
    now = int(time.time())
    r = h.send(a.meter, "time", utc=now)
    h.reg.note_time(a.meter, r.get("t", now), force=True)  # the meter's clock now reads ours, even if lower
    print("%s: clock set to %s UTC (command %d)" % (a.meter, utc(r.get("t", now)), r["cmd_id"]))
    return 0


def cmd_disconnect(h, a):
    r = h.send(a.meter, "disconnect")
    print("%s: disconnect applied; relay %s" % (a.meter, relay_name(r["r"])))
    return 0


def cmd_reconnect(h, a):
    args = {"direct": True} if a.direct else {}
    r = h.send(a.meter, "reconnect", **args)
    state = relay_name(r["r"])
    extra = " (the customer confirms with the button)" if r["r"] == 2 else ""
    print("%s: reconnect applied; relay %s%s" % (a.meter, state, extra))
    return 0


# The meter's own check (firmware/tariff.py under micropython), done the way Meter.set_tariff
# does it: the document must build a tariff and schedule as a passive one (so it needs activate_at).
_TARIFF_CHECK = """
import sys, json, tariff
doc = json.loads(sys.stdin.read())
try:
    tariff.from_doc(doc).schedule(doc)
    print(json.dumps({"ok": True}))
except tariff.TariffError as e:
    print(json.dumps({"ok": False, "error": str(e)}))
"""


def check_tariff(doc):
    """None if the meter's firmware accepts the tariff document, else its reason."""
    import mprun
    try:
        res = mprun.run_mpy(_TARIFF_CHECK, heap="256k", stdin=json.dumps(doc))
    except mprun.MpyNotFound as e:
        raise CliError("cannot check the tariff with the firmware: %s" % e)
    got = mprun.parse_result(res.stdout)
    if res.returncode != 0 or got is None:
        raise CliError("the firmware's tariff check failed to run:\n%s" % res.describe())
    return None if got["ok"] else got["error"]


def cmd_tariff(h, a):
    h.reg.get(a.meter)
    try:
        doc = json.loads(Path(a.file).read_text())
    except FileNotFoundError:
        raise CliError("no such tariff file: %s" % a.file)
    except (ValueError, UnicodeDecodeError) as e:
        raise CliError("%s is not valid JSON: %s" % (a.file, e))
    except OSError as e:  # a directory, no permission
        raise CliError("cannot read tariff file %s: %s" % (a.file, e.strerror or e))
    why = check_tariff(doc)
    if why is not None:
        raise CliError("tariff %s rejected before sending: %s" % (a.file, why))
    h.send(a.meter, "tariff", tariff=doc)
    print("%s: tariff applied" % a.meter)
    return 0


def cmd_backfill(h, a):
    h.reg.get(a.meter)
    first = a.from_seq
    if first is None:
        # Every uplink message carries one number, kept across reboots: a hole in what we recorded
        # (since the meter last restarted its numbering) is a message we never got.
        seqs = {d["seq"] for d in h.reg.recorded(a.meter, current=True)}
        if not seqs:
            raise CliError("nothing recorded for %s to look for gaps in; give --from-seq N" % a.meter)
        missing = [q for q in range(min(seqs), max(seqs)) if q not in seqs]
        if not missing:
            print("%s: no gaps in the recorded uplink (seq %d..%d); nothing to request" % (a.meter, min(seqs), max(seqs)))
            return 0
        first = missing[0]
        print("%s: %d uplink message(s) missing, first seq %d" % (a.meter, len(missing), first))
    # The meter sends what it holds from `first` on, then its reply: what arrives meanwhile is recorded.
    r = h.send(a.meter, "backfill", **{"from": first})
    got, to = r.get("from"), r.get("to")
    if got == 0:
        print("%s: the meter holds nothing from seq %d on (newest %s): what is missing is lost" % (a.meter, first, to))
    else:
        gone = " (%d..%d are no longer held: lost)" % (first, got - 1) if got > first else ""
        print("%s: resend from seq %d requested; the meter sent %d..%d%s, recorded" % (a.meter, first, got, to, gone))
    return 0


def load_profile(reg, meter_id):
    """Load-profile rows (t_end, seconds, Wh, mean W, import total Wh, balance or None).
    From the meter's own interval records (`lp` messages, or from revision 5 the telemetry that
    closes each interval) when it sends them, else from the energy between consecutive
    telemetry reports."""
    lp = [d for d in reg.recorded(meter_id, "lp") if "de" in d]
    tele = [d for d in reg.recorded(meter_id, "tele") if "e" in d]
    rows = []
    ends = [d for d in tele if d.get("lp")]
    if ends and not lp:
        # Revision 5: the telemetry at each interval's end says so ("lp": its length) and carries
        # the closing registers; an interval is the difference of two consecutive ends. One whose
        # opening end never arrived (yet) is left out rather than guessed.
        for prev, cur in zip(ends, ends[1:]):
            if cur["t"] - prev["t"] == cur["lp"]:
                wh = cur["e"] - prev["e"]
                rows.append((cur["t"], cur["lp"], wh, wh * 3600 // cur["lp"], cur["e"], cur["b"]))
        return tele, rows
    if lp:
        # Records end on UTC multiples of the interval (lp_s), which no record states: it is the
        # largest step that divides every gap between records (900 s, the default, for a lone one).
        step = 0
        for x, y in zip(lp, lp[1:]):
            step = math.gcd(step, y["t"] - x["t"])
        step = step or 900
        boots = reg.boots(meter_id)
        for d in lp:
            # The first record after a boot counts from the boot, not from the interval start.
            start = max([b for b in boots if d["t"] - step < b < d["t"]] or [d["t"] - step])
            dt = d["t"] - start
            rows.append((d["t"], dt, d["de"], d["de"] * 3600 // dt, d["e"], None))
        return tele, rows
    for prev, cur in zip(tele, tele[1:]):
        dt = cur["t"] - prev["t"]
        if dt <= 0:
            continue
        wh = cur["e"] - prev["e"]
        rows.append((cur["t"], dt, wh, wh * 3600 // dt, cur["e"], cur["b"]))
    return tele, rows


def billing_rows(reg, meter_id, tele):
    """(date, period, snapshot time, import Wh, Wh per rate or None, charged, balance, debt or None,
    topped up or None, relay or None): the meter's billing snapshots (`snap`: daily and monthly,
    dated by the meter's local calendar, stamped at the freeze) when it sends them, else the last
    telemetry report of each UTC day."""
    snaps = [d for d in reg.recorded(meter_id, "snap") if "snap" in d and "b" in d]
    if snaps:
        return [(d.get("date", utc(d["t"] - 1)[:10]), "month" if d["snap"] == "m" else "day", d["t"],
                 snap_import(d), " ".join(str(v) for v in d["e"]) if isinstance(d["e"], list) else None,
                 d["c"], d["b"], d.get("debt"), d.get("tu"), None) for d in snaps]
    days = {}
    for d in tele:
        days[utc(d["t"])[:10]] = d
    return [(day, "day", d["t"], d["e"], None, d["c"], d["b"], None, None, d["r"]) for day, d in sorted(days.items())]


def cmd_export(h, a):
    rec = h.reg.get(a.meter)
    dec = rec.get("decimals", 2)
    tele, rows = load_profile(h.reg, a.meter)
    bills = billing_rows(h.reg, a.meter, tele)
    if not (rows if a.kind == "load" else bills):
        raise CliError("no %s data recorded for %s yet: run `headend watch %s` (or status) first" % (
            a.kind, a.meter, a.meter))

    def money(v):
        return "" if v is None else fmt_money(v, dec)

    out = open(a.out, "w", newline="") if a.out != "-" else sys.stdout
    try:
        w = csv.writer(out)
        if a.kind == "load":
            w.writerow(["interval_end_utc", "interval_s", "import_wh", "mean_w", "import_total_wh", "balance"])
            for t, dt, wh, mw, e, b in rows:
                w.writerow([utc(t), dt, wh, mw, e, money(b)])
            n = len(rows)
        else:
            w.writerow(["date", "period", "snapshot_utc", "import_total_wh", "import_by_rate_wh", "charged_total",
                        "balance", "debt", "topped_up_total", "relay"])
            for day, per, t, e, rates, c, b, debt, tu, r in bills:
                w.writerow([day, per, utc(t), e, rates or "", money(c), money(b), money(debt), money(tu),
                            "" if r is None else relay_name(r)])
            n = len(bills)
    finally:
        if out is not sys.stdout:
            out.close()
    print("%s: %d %s row(s) written to %s" % (a.meter, n, a.kind, a.out), file=sys.stderr)
    return 0


def cmd_plot(h, a):
    try:
        import meterplot
    except ImportError as e:
        raise CliError("plotting needs matplotlib (requirements.txt; `make venv` installs it): %s" % e)

    rec = h.reg.get(a.meter)
    dec = rec.get("decimals", 2)
    tele, rows = load_profile(h.reg, a.meter)
    bal = [(d["t"], d["b"]) for d in tele] or [(b[2], b[6]) for b in billing_rows(h.reg, a.meter, tele)]
    if not rows or not bal:
        raise CliError("not enough recorded for %s to plot: need two telemetry reports or a load-profile record "
                       "(have %d reports); run `headend watch %s` first" % (a.meter, len(tele), a.meter))
    events = [(d["t"], d.get("ev")) for d in h.reg.recorded(a.meter, "evt") if isinstance(d.get("t"), int)]
    t0, t1 = min(rows[0][0] - rows[0][1], bal[0][0]), max(rows[-1][0], bal[-1][0])
    drawn = meterplot.plot(a.out, "%s  %s - %s UTC" % (a.meter, utc(t0)[:16], utc(t1)[:16]), rows, bal, events,
                           decimals=dec, currency=rec.get("currency", ""), width=a.width, height=a.height)
    marks = ", ".join("%d %s" % (n, meterplot.MARKS[k][0]) for k, n in sorted(drawn["marks"].items()))
    print("%s: %d intervals plotted to %s%s" % (a.meter, len(rows), a.out, " (marks: %s)" % marks if marks else ""),
          file=sys.stderr)
    return 0


# -- argument parsing -------------------------------------------------------------------------------
def parser():
    p = argparse.ArgumentParser(prog="headend", description=__doc__.splitlines()[0])
    p.add_argument("--home", default=os.environ.get("PM_HEADEND_HOME", str(Path.home() / ".pm-headend")))
    p.add_argument("--db", default=os.environ.get("PM_HEADEND_DB"),
                   help="keep meters and uplinks in the headend service's database (docs/service.md) "
                        "instead of the home's JSON files")
    p.add_argument("--broker", default=os.environ.get("PM_BROKER", "127.0.0.1:1883"))
    p.add_argument("--user", default=os.environ.get("PM_MQTT_USER"))
    p.add_argument("--password", default=os.environ.get("PM_MQTT_PASSWORD"))
    p.add_argument("--cafile", default=os.environ.get("PM_MQTT_CAFILE"),
                   help="CA certificate of the broker: connect over TLS and verify it (broker.md)")
    p.add_argument("--credentials", help="the backend.json that tools/broker_config.py wrote: broker, "
                   "user, password and CA from it (TLS)")
    p.add_argument("--timeout", type=number_arg(float, 0, 3600), default=10.0,
                   help="seconds to wait for a meter's reply")
    p.add_argument("--ttl", type=number_arg(int, 60, MAX_TTL_S, " seconds (31 days: a meter refuses an expiry "
                                                             "further ahead of its clock)"), default=CMD_TTL_S,
                   help="seconds of meter time a command stays valid (default %(default)s; at most 31 days, "
                        "the meter refuses more). A simulated meter running days in seconds needs days")
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("provision", help="new meter: key, MQTT credentials, deploy files")
    s.add_argument("meter")
    s.add_argument("--board", required=True)
    s.add_argument("--wifi-ssid")
    s.add_argument("--wifi-password")
    s.add_argument("--meter-broker", type=broker_arg, help="HOST:PORT the meter uses (default: --broker)")
    s.add_argument("--decimals", type=int, default=2, choices=range(0, 4))
    s.add_argument("--currency", type=currency_arg, default=None, help="currency code for plots and bills, e.g. KES")
    s.add_argument("--openpaygo-unit", type=number_arg(int, 1, 1000000), default=100,
                   help="minor units an OpenPAYGO token unit is worth (the meter's openpaygo.unit_minor)")
    s.add_argument("--force", action="store_true")
    s.set_defaults(fn=cmd_provision)

    s = sub.add_parser("customer", help="with --db: the customer's name and contacts for reminders and the web page")
    s.add_argument("meter")
    for k in ("name", "email", "phone", "address"):
        s.add_argument("--" + k)
    s.add_argument("--new-web-token", action="store_true", help="a new link for the customer's web page")
    s.set_defaults(fn=cmd_customer)

    s = sub.add_parser("list", help="provisioned meters and their link state")
    s.add_argument("--wait", type=number_arg(float, 0, 60), default=0.5,
                   help="seconds to collect the meters' retained births")
    s.set_defaults(fn=cmd_list)

    s = sub.add_parser("status", help="ask a meter for fresh status")
    s.add_argument("meter")
    s.set_defaults(fn=cmd_status)

    s = sub.add_parser("watch", help="live telemetry and events (recorded for export/plot)")
    s.add_argument("meters", nargs="*")
    s.add_argument("--count", type=number_arg(int, 1))
    s.add_argument("--seconds", type=number_arg(float, 0))
    s.add_argument("--no-record", action="store_true")
    s.set_defaults(fn=cmd_watch)

    for name, fn, what in (("topup", cmd_topup, "credit a meter now"),
                           ("token", cmd_token, "issue an offline 20-digit token")):
        s = sub.add_parser(name, help=what)
        s.add_argument("meter")
        s.add_argument("amount", help="money, e.g. 12.50")
        s.set_defaults(fn=fn)
    s.add_argument("--send", action="store_true",
                   help="also relay it to the meter now (it is used there; typing it later answers `used`)")
    s.add_argument("--openpaygo", action="store_true",
                   help="an OpenPAYGO Token (9 digits) for a meter configured to take them (docs/tokens.md)")

    s = sub.add_parser("retry", help="re-send the unanswered command (same id: applied at most once)")
    s.add_argument("meter")
    s.add_argument("--drop", action="store_true", help="forget it instead")
    s.set_defaults(fn=cmd_retry)

    s = sub.add_parser("resync", help="re-establish a meter's replay protection after it lost its record")
    s.add_argument("meter")
    s.add_argument("--nonce", type=int, help="the replay_lost event's number (default: the last one recorded)")
    s.set_defaults(fn=cmd_resync)

    s = sub.add_parser("time", help="set the meter's clock from this host's (trusted)")
    s.add_argument("meter")
    s.set_defaults(fn=cmd_time)

    s = sub.add_parser("disconnect", help="open the relay remotely")
    s.add_argument("meter")
    s.set_defaults(fn=cmd_disconnect)
    s = sub.add_parser("reconnect", help="clear the remote disconnect")
    s.add_argument("meter")
    s.add_argument("--direct", action="store_true", help="close at once instead of waiting for the button")
    s.set_defaults(fn=cmd_reconnect)

    s = sub.add_parser("tariff", help="push a tariff JSON file (validated first)")
    s.add_argument("meter")
    s.add_argument("file")
    s.set_defaults(fn=cmd_tariff)

    s = sub.add_parser("backfill", help="ask a meter to resend uplink messages missing here")
    s.add_argument("meter")
    s.add_argument("--from-seq", type=number_arg(int, 1),
                   help="resend from this uplink seq (default: the first gap recorded)")
    s.set_defaults(fn=cmd_backfill)

    s = sub.add_parser("release-key", help="the utility's firmware release key (docs/ota.md)")
    s.add_argument("action", choices=("new", "show"))
    s.add_argument("--bits", type=int, choices=(2048, 3072, 4096), default=3072)
    s.set_defaults(fn=cmd_release_key)

    s = sub.add_parser("release", help="sign a firmware image as a release")
    s.add_argument("image", help="the build's app image (micropython.bin)")
    s.add_argument("--board", action="append", required=True, help="a board the image is for (repeat)")
    s.add_argument("--min-record", type=number_arg(int, 1, 255),
                   help="oldest record version the image reads (default: this tree's)")
    s.add_argument("--downgrade-from", help="allow this image onto meters running exactly this newer version")
    s.set_defaults(fn=cmd_release)

    s = sub.add_parser("update", help="update meters' firmware: canary wave first, halt on failures")
    s.add_argument("meters", nargs="+")
    s.add_argument("--release", required=True, help="the release's folder name (its version)")
    s.add_argument("--canary", type=number_arg(float, 0, 100, " %"), default=10,
                   help="share of the meters in the first wave, %% (default %(default)s)")
    s.add_argument("--halt-after", type=number_arg(int, 1), default=1,
                   help="failures in the canary wave that halt the rollout (default %(default)s)")
    s.add_argument("--wait", type=number_arg(float, 1), default=3600,
                   help="seconds a wave may take (default %(default)s)")
    s.set_defaults(fn=cmd_update)

    s = sub.add_parser("export-csv", help="load profile or daily billing snapshots to CSV")
    s.add_argument("meter")
    s.add_argument("--kind", choices=("load", "billing"), default="load")
    s.add_argument("--out", type=out_path, default="-")
    s.set_defaults(fn=cmd_export)

    s = sub.add_parser("plot", help="load profile and balance to a PNG")
    s.add_argument("meter")
    s.add_argument("--out", type=out_path, required=True)
    s.add_argument("--width", type=number_arg(int, 320, 4000, " pixels"), default=900)
    s.add_argument("--height", type=number_arg(int, 240, 4000, " pixels"), default=560)
    s.set_defaults(fn=cmd_plot)
    return p


def credentials(a):
    """Fill the broker options from --credentials (broker_config.py's backend.json)."""
    if not a.credentials:
        return
    try:
        with open(a.credentials) as f:
            c = json.load(f)
        a.broker = "%s:%d" % (c["host"], int(c["port"]))
        a.user, a.password, a.cafile = c["user"], c["password"], c["ca"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CliError("cannot read credentials %s: %s" % (a.credentials, getattr(e, "strerror", None) or e))


def main(argv=None):
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["serve"]:  # the long-running service (tools/service.py, docs/service.md)
        import service

        return service.main(args)
    try:
        a = parser().parse_args(argv)
    except SystemExit as e:  # argparse printed the usage and its one-line error (or --help)
        return e.code
    try:
        if Path(a.home).exists() and not Path(a.home).is_dir():
            raise CliError("--home %s is a file: the headend home is a directory" % a.home)
        credentials(a)
    except CliError as e:
        print("headend: error: %s" % e, file=sys.stderr)
        return 2
    h = Headend(a)
    try:
        return a.fn(h, a)
    except CliError as e:
        print("headend: error: %s" % e, file=sys.stderr)
        return 2
    except Refused as e:
        print("headend: %s" % e, file=sys.stderr)
        return 1
    finally:
        h.close()


if __name__ == "__main__":
    sys.exit(main())
