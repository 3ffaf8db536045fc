#!/usr/bin/env python3
"""headend serve: the utility's long-running headend service (docs/service.md).

    python tools/service.py serve --config service.json
    python tools/service.py add-meter --db DB --home HEADEND_HOME METER --name N --email E --phone P
    python tools/service.py bill --db DB METER YYYY-MM [--out DIR]

One process keeps a persistent MQTT session (a fixed client id, clean_session off, QoS 1), so what
meters publish while it is down waits at the broker. Every message is checked against the meter's
key (protocol.md 6.4), stored in the database with what follows from it (meter state, snapshots,
notices) in one transaction, and only then acknowledged to the broker: a crash at any point makes
the broker deliver it again, and the database drops the copy (unique per meter, era and seq).
Gaps in a meter's numbering are asked for with `backfill` (meterproto.Backfiller); commands are
signed, recorded and matched to their answers; reminders go out through reminders.Dispatcher;
a month's bill is made when the meter's monthly snapshot arrives.
"""
import argparse
import json
import logging
import os
import secrets
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import meterproto  # noqa: E402
import service_db  # noqa: E402

log = logging.getLogger("pm.service")
CMD_TTL_S = 3600  # as the headend CLI: a command not applied within an hour of meter time expires
TICK_S = 1.0


class ServiceError(Exception):
    pass


class _Meter:
    """What the service keeps in memory per meter: its key and its numbering bookkeeping."""

    def __init__(self, key, era, fill):
        self.key = key
        self.era = era
        self.fill = fill


class Service:
    def __init__(self, db, host="127.0.0.1", port=1883, client_id="pm-headend", user=None, password=None,
                 cafile=None, settle_s=3.0, retry_s=20.0, bills=None, clock=time.time, resend_s=30.0):
        self.db = db
        self.host, self.port = host, port
        self.client_id = client_id
        self.settle_s, self.retry_s = settle_s, retry_s
        self.resend_s = resend_s
        self.bills = bills  # callable(meter_id, month) that makes and stores a bill, or None
        self.clock = clock
        self._meters = {}
        self._bills_due = set()  # (meter, month) whose monthly snapshot arrived
        self._lock = threading.RLock()
        self.stats = {"stored": 0, "duplicates": 0, "forged": 0, "unknown": 0, "backfills": 0, "bad": 0, "resent": 0}
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self._stop = threading.Event()
        self._thread = None
        import paho.mqtt.client as mqtt

        self._mqtt = mqtt
        # manual_ack: a message is acknowledged only after its transaction committed.
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
                             manual_ack=True)
        if user:
            self.c.username_pw_set(user, password)
        if cafile:
            self.c.tls_set(ca_certs=cafile)
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        self.c.on_subscribe = lambda c, u, mid, rc, p=None: self.subscribed.set()
        self.c.on_message = self._on_message
        self.c.reconnect_delay_set(0.2, 5)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self):
        try:
            self.c.connect_async(self.host, self.port, keepalive=30)
        except OSError as e:
            raise ServiceError("cannot reach the broker %s:%d: %s" % (self.host, self.port, e))
        self.c.loop_start()
        self._thread = threading.Thread(target=self._ticker, name="service-tick", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join(10)
        self.c.disconnect()
        self.c.loop_stop()

    def _on_connect(self, client, userdata, flags, rc, props=None):
        if rc != 0:
            log.warning("broker refused the connection: %s", rc)
            return
        self.connected.set()
        # The session keeps the subscription; subscribing again is harmless and covers a broker
        # that lost its state (a restart without persistence).
        client.subscribe(meterproto.PREFIX + "+/+", qos=1)

    def _on_disconnect(self, client, userdata, flags, rc, props=None):
        self.connected.clear()
        self.subscribed.clear()

    # -- uplink ------------------------------------------------------------------------------
    def _meter(self, meter_id):
        m = self._meters.get(meter_id)
        if m is None:
            row = self.db.meter(meter_id)
            if row is None:
                return None
            st = self.db.state(meter_id)
            m = self._meters[meter_id] = _Meter(bytes.fromhex(row["rec"]["key"]), -1, None)
            self._load_fill(meter_id, m, st)
        return m

    def _load_fill(self, meter_id, m, st):
        """Numbering bookkeeping of the meter's current era, from what the database holds."""
        seen, gone = self.db.seen_seqs(meter_id, st["era"])
        f = meterproto.Backfiller(settle_s=self.settle_s, retry_s=self.retry_s)
        for s in seen:
            f.add(s)
        f.gone.update(gone)
        f.last = st["last"]
        f.seqs.boot = st["boot"]
        m.era, m.fill = st["era"], f

    def _on_message(self, client, userdata, msg):
        try:
            self._handle(msg.topic, msg.payload)
        except service_db.DbError as e:
            log.error("database: %s; the message stays unacknowledged", e)
            client.disconnect()  # the broker delivers it again after the reconnect
            return
        except Exception:  # noqa: BLE001 - a bug must not ack a message it did not store
            log.exception("handling %s failed; the message stays unacknowledged", msg.topic)
            client.disconnect()
            return
        if msg.qos:
            client.ack(msg.mid, msg.qos)

    def _handle(self, topic, payload):
        if topic.endswith("/cmd"):
            return
        try:
            meter_id, kind, doc = meterproto.parse_uplink(topic, payload)
        except ValueError:
            self.stats["bad"] += 1
            return
        with self._lock:
            m = self._meter(meter_id)
            if m is None:
                self.stats["unknown"] += 1
                return
            if kind == "status":
                rev = doc.get("rev", 1)
            else:  # until a signed birth says otherwise, the meter signs everything
                st = self.db.state(meter_id)
                rev = st["rev"] if st["boot"] is not None else meterproto.REVISION
            if meterproto.forged(m.key, kind, doc, payload, rev):
                self.stats["forged"] += 1
                log.warning("%s: %s without a valid mac, ignored", meter_id, kind)
                return
            doc.pop("mac", None)
            stored, era, notices = self.db.store_uplink(meter_id, kind, doc, now=self.clock())
            if era != m.era:
                self._load_fill(meter_id, m, self.db.state(meter_id))
            if not stored:
                self.stats["duplicates"] += 1
                return
            self.stats["stored"] += 1
            f = m.fill
            if kind == "status" and doc.get("online") == 1 and isinstance(doc.get("last"), int):
                f.last = max(f.last, doc["last"])
                f.seqs.boot = doc.get("boot")
            if isinstance(doc.get("seq"), int):
                f.add(doc["seq"])
            if kind == "reply" and isinstance(doc.get("from"), int) and isinstance(doc.get("to"), int):
                cmd = self.db.command(meter_id, doc.get("id"))
                if cmd and cmd["op"] == "backfill":
                    before = set(f.gone)
                    f.answered(doc["from"], doc["to"])
                    self.db.mark_gone(meter_id, m.era, sorted(f.gone - before))
        if kind == "snap" and doc.get("snap") == "m" and self.bills:
            self._bills_due.add((meter_id, doc.get("date")))

    # -- commands ----------------------------------------------------------------------------
    def meter_now(self, meter_id):
        """The meter's clock now, as far as we know: its newest reading plus the time since."""
        st = self.db.state(meter_id)
        now = int(self.clock())
        if not st or not st["t"]:
            return now
        return st["t"] + max(0, now - st["seen_at"])

    def send(self, meter_id, op, origin="service", resend=True, **args):
        """Sign, record and publish a command; returns its id. The answer lands in `commands`.
        `resend`: send it again until answered or expired (resend()); a backfill is not, the
        gap bookkeeping asks again itself."""
        row = self.db.meter(meter_id)
        if row is None:
            raise ServiceError("unknown meter %r" % meter_id)
        cmd_id = self.db.next_cmd_id(meter_id)
        exp = self.meter_now(meter_id) + CMD_TTL_S
        payload = meterproto.command(bytes.fromhex(row["rec"]["key"]), meter_id, cmd_id, exp, op, **args)
        self.db.add_command(meter_id, cmd_id, op, args, exp, origin, now=self.clock(),
                            payload=payload.decode() if resend else None)
        self.c.publish(meterproto.topic(meter_id, "cmd"), payload, qos=1)
        return cmd_id

    def resend(self):
        """Send again, unchanged, every command still unanswered `resend_s` after it was last sent
        (a meter that was offline, a reply lost): the meter applies an id once and answers a
        repeat with the first result. Past its expiry in the meter's time a command is marked
        expired instead (the operator page lists it; the meter would refuse it)."""
        now = self.clock()
        for meter_id, cmd_id, exp, payload in self.db.resend_due(now - self.resend_s):
            if self.meter_now(meter_id) > exp:
                self.db.command_expired(meter_id, cmd_id)
                continue
            self.db.command_resent(meter_id, cmd_id, now)
            self.c.publish(meterproto.topic(meter_id, "cmd"), payload.encode(), qos=1)
            self.stats["resent"] += 1

    def wait_answer(self, meter_id, cmd_id, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            c = self.db.command(meter_id, cmd_id)
            if c and c["state"] == "answered":
                return c
            time.sleep(0.05)
        return None

    # -- housekeeping ------------------------------------------------------------------------
    def _ticker(self):
        while not self._stop.wait(TICK_S):
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - keep serving; the next tick tries again
                log.exception("service tick failed")

    def tick(self, now=None):
        now = time.monotonic() if now is None else now
        if self.connected.is_set():
            with self._lock:
                due = [(mid, m.fill.due(now)) for mid, m in self._meters.items()]
            for meter_id, low in due:
                if low is not None:
                    self.stats["backfills"] += 1
                    self.send(meter_id, "backfill", origin="gap", resend=False, **{"from": low})
            self.resend()
        while self._bills_due:
            meter_id, month = self._bills_due.pop()
            try:
                self.bills(meter_id, month)
            except Exception as e:  # noqa: BLE001 - a bill that cannot be made is logged, metering goes on
                log.error("bill %s %s: %s", meter_id, month, e)

    def missing(self, meter_id):
        with self._lock:
            m = self._meter(meter_id)
            return m.fill.missing() if m else []


# -- the command line ---------------------------------------------------------------------------
def load_config(path):
    try:
        cfg = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ServiceError("config %s: %s" % (path, e))
    if not isinstance(cfg, dict):
        raise ServiceError("config %s: not a JSON object" % path)
    return cfg


def add_meter(db, home, meter_id, name="", email="", phone="", address=""):
    """Import a meter provisioned with `headend provision` (its key) into the service database."""
    import headend

    rec = headend.Registry(home).get(meter_id)
    old = db.meter(meter_id)
    token = old["web_token"] if old else secrets.token_urlsafe(18)
    db.put_meter(rec, name=name, email=email, phone=phone, address=address, web_token=token)
    return token


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--config", required=True)
    am = sub.add_parser("add-meter")
    am.add_argument("--db", required=True)
    am.add_argument("--home", default=os.environ.get("PM_HEADEND_HOME", str(Path.home() / ".pm-headend")))
    am.add_argument("meter")
    for k in ("name", "email", "phone", "address"):
        am.add_argument("--" + k, default="")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        if a.cmd == "add-meter":
            import headend

            try:
                token = add_meter(service_db.Db(a.db), a.home, a.meter, a.name, a.email, a.phone, a.address)
            except headend.CliError as e:
                raise ServiceError(str(e))
            print("%s added; customer page token %s" % (a.meter, token))
            return 0
        return serve(load_config(a.config))
    except (ServiceError, service_db.DbError) as e:
        print("service: error: %s" % e, file=sys.stderr)
        return 2


def serve(cfg, stop=None, ready=None):
    """Run the service from a configuration (docs/service.md) until `stop` is set or Ctrl-C."""
    import reminders

    db = service_db.Db(cfg.get("db") or os.environ.get("PM_HEADEND_DB") or "headend.db")
    host, _, port = cfg.get("broker", "127.0.0.1:1883").rpartition(":")
    if not host or not port.isdigit():
        raise ServiceError("broker must be HOST:PORT, got %r" % cfg.get("broker"))
    bills_dir = Path(cfg.get("bills_dir", "bills"))
    svc = Service(db, host, int(port), client_id=cfg.get("client_id", "pm-headend"),
                  user=cfg.get("user"), password=cfg.get("password"), cafile=cfg.get("cafile"),
                  bills=lambda m, month: make_bill(db, m, month, bills_dir, cfg.get("bill_pdf", True)))
    channels = {}
    try:
        if cfg.get("smtp"):
            sm = cfg["smtp"]
            channels["email"] = reminders.SmtpChannel(sm["host"], int(sm.get("port", 25)), sm["sender"],
                                                      user=sm.get("user"), password=sm.get("password"),
                                                      starttls=bool(sm.get("starttls")))
        if cfg.get("webhook"):
            channels["sms"] = reminders.WebhookChannel(cfg["webhook"]["url"], token=cfg["webhook"].get("token"))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ServiceError("smtp/webhook: missing or bad setting %s (docs/service.md, Configuration)" % e)
    stop = stop or threading.Event()
    threads = []
    disp = None
    if channels:
        try:
            disp = reminders.Dispatcher(db, channels, cfg.get("reminders", {}))
        except ValueError as e:
            raise ServiceError("reminders: %s" % e)
        threads.append(threading.Thread(target=disp.run, args=(stop, 1.0), daemon=True))
    web = None
    if cfg.get("web"):
        import webapp

        w = cfg["web"]
        whost, _, wport = w.get("listen", "127.0.0.1:8080").rpartition(":")
        pw = w.get("operator_password")
        try:
            if w.get("operator_password_file"):
                pw = Path(w["operator_password_file"]).read_text().strip()
            web = webapp.make_server(db, svc, (whost, int(wport)), operator_password=pw)
        except (ValueError, OSError) as e:
            raise ServiceError("web: %s" % e)
        threads.append(threading.Thread(target=web.serve_forever, daemon=True))
        log.info("web page on http://%s:%d/", *web.server_address[:2])
    svc.start()  # after the configuration has been checked: a bad one starts nothing
    for t in threads:
        t.start()
    if ready is not None:
        ready(svc, web)
    try:
        while not stop.wait(1):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        if disp:
            disp.wake()
        if web:
            web.shutdown()
        svc.stop()
    return 0


def make_bill(db, meter_id, month, out_dir=None, pdf=True):
    """Make and store a meter's bill for a month from its snapshots and telemetry (tools/ebill.py)."""
    import ebill

    row = db.meter(meter_id)
    rec = row["rec"]
    meter = {"meter_id": meter_id, "name": row["name"], "address": row["address"],
             "currency": rec.get("currency", ""), "decimals": rec.get("decimals", 2),
             "opening_balance": rec.get("opening_balance", 0)}
    # Telemetry for the load profile and water/gas; events for register rollovers.
    readings = db.uplinks(meter_id, kind="tele") + db.uplinks(meter_id, kind="evt")
    bill = ebill.compute(meter, month, db.snapshots(meter_id), readings, rec.get("tariff"))
    html = ebill.render_html(bill, meter)
    data = None
    out = Path(out_dir or ".")
    out.mkdir(parents=True, exist_ok=True)
    (out / ("bill-%s-%s.html" % (meter_id, month))).write_text(html)
    if pdf:
        path = out / ("bill-%s-%s.pdf" % (meter_id, month))
        try:
            ebill.render_pdf(html, path)
            data = path.read_bytes()
        except ebill.BillError as e:
            log.warning("bill %s %s: no PDF: %s", meter_id, month, e)
    db.put_bill(meter_id, month, bill, html, data)
    return bill


if __name__ == "__main__":
    sys.exit(main())
