"""headend serve (tools/service.py): a simulated meter, a real Mosquitto and the service with its
database; restarts of the service and of the broker lose nothing and store nothing twice."""
import json
import os
import subprocess
import threading
import time

import pytest

import fleet
import meterproto
import mpbroker
import service
import service_db

METER = "SVC-1"


def wait(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))


class Observer:
    """A second subscriber on the meter's topics: what the meter has published, independent of the service."""

    def __init__(self, broker, meter_id):
        import paho.mqtt.client as mqtt

        self.seqs = set()
        self.ready = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="obs-" + meter_id, clean_session=False)
        self.c.on_connect = lambda c, u, f, rc, p=None: c.subscribe(meterproto.topic(meter_id, "+"), qos=1)
        self.c.on_subscribe = lambda c, u, mid, rc, p=None: self.ready.set()
        self.c.on_message = self._msg
        self.c.reconnect_delay_set(0.2, 2)
        self.c.connect(broker.host, broker.port)
        self.c.loop_start()
        assert self.ready.wait(10)

    def _msg(self, c, u, m):
        try:
            d = json.loads(m.payload)
        except ValueError:
            return
        if isinstance(d, dict) and isinstance(d.get("seq"), int):
            self.seqs.add(d["seq"])

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """Each database test runs on both engines."""
    if request.param == "sqlite":
        return str(tmp_path / "headend.db")
    return request.getfixturevalue("pg_url")


def stored_seqs(db, meter_id, era=0):
    return db.seen_seqs(meter_id, era)[0]


def provision(db, meter_id=METER, email="ann@example.net", phone="+254700000001"):
    key = os.urandom(32)
    db.put_meter({"meter_id": meter_id, "key": key.hex()}, name="Ann", email=email, phone=phone, web_token="tok")
    return key


@pytest.mark.micropython
def test_every_uplink_once_across_service_and_broker_restarts(tmp_path):
    broker = mpbroker.Broker()
    path = str(tmp_path / "headend.db")
    db = service_db.Db(path)
    key = provision(db)
    obs = Observer(broker, METER)
    svc = service.Service(db, broker.host, broker.port, client_id="svc-test", settle_s=2, retry_s=5).start()
    assert svc.subscribed.wait(10)
    stop = tmp_path / "stop"
    meter = fleet.start_meter(METER, key.hex(), "%s:%d" % (broker.host, broker.port), tmp_path / "flash.img",
                              config={"opening_balance": 300}, pace_ms=4, hours=36, tick_s=60, stop_file=stop,
                              stdout=open(tmp_path / "meter.log", "w"))
    try:
        wait(lambda: len(stored_seqs(db, METER)) >= 10, 120, "the service to store 10 messages")
        # The service goes away; the meter goes on publishing; the broker keeps them for the session.
        svc.stop()
        db.close()
        down_at = max(obs.seqs)
        wait(lambda: len(obs.seqs) and max(obs.seqs) >= down_at + 15, 120, "15 messages while the service is down")
        db2 = service_db.Db(path)
        svc2 = service.Service(db2, broker.host, broker.port, client_id="svc-test", settle_s=2, retry_s=5).start()
        upto = max(obs.seqs)
        wait(lambda: set(range(1, upto + 1)) <= stored_seqs(db2, METER), 60,
             "what was published while the service was down")
        assert svc2.stats["backfills"] == 0  # they came from the persistent session, not from a backfill
        # The broker restarts (no persistence): what it held is gone; the gaps are backfilled.
        broker.restart()
        wait(lambda: (stop.parent / ("stop.done." + METER)).exists(), 300, "the meter to finish its hours")
        wait(lambda: obs.seqs and not svc2.missing(METER) and max(obs.seqs) <= max(stored_seqs(db2, METER)),
             120, "the service to hold every number the meter used")
        stop.write_text("")
        meter.wait(120)
        out = (tmp_path / "meter.log").read_text()
        summary = json.loads([ln for ln in out.splitlines() if ln.startswith("{")][-1])
        last = summary["uplink_seq"] - summary["outbox_left"]
        wait(lambda: set(range(1, last + 1)) <= stored_seqs(db2, METER), 60, "the meter's last messages")
        assert stored_seqs(db2, METER) == set(range(1, last + 1))
        with db2.tx() as c:  # each number stored once, whatever the broker delivered twice
            c.execute("SELECT COUNT(*), COUNT(DISTINCT seq) FROM uplinks WHERE meter_id = ? AND seq IS NOT NULL",
                      (METER,))
            n, distinct = c.fetchone()
        assert n == distinct == last
        # One notice per credit/relay event, each with an e-mail and a text message waiting.
        evs = [d for d in db2.uplinks(METER, kind="evt") if d["ev"] in service_db.NOTICE_OF_EVENT]
        assert evs, "the meter raised no low-credit or relay event in %d h" % summary["sim_hours"]
        sent = db2.deliveries(METER)
        assert len(sent) == 2 * len(evs)
        assert {d["channel"] for d in sent} == {"email", "sms"}
        # The state the service keeps is the meter's newest telemetry; every message was the meter's.
        teles = db2.uplinks(METER, kind="tele")
        assert db2.state(METER)["tele"] == max(teles, key=lambda d: d["seq"])
        assert svc2.stats["forged"] == 0 and svc2.stats["unknown"] == 0
        svc2.stop()
    finally:
        if meter.poll() is None:
            stop.write_text("")
            try:
                meter.wait(30)
            except subprocess.TimeoutExpired:
                meter.kill()
        obs.close()
        broker.close()


@pytest.fixture
def served(db_url, broker):
    """A provisioned meter in a database on `db_url`, a broker, and start(client_id, **kw) for services."""
    import types

    db = service_db.Db(db_url)
    key = provision(db)
    made = []

    def start(client_id, **kw):
        svc = service.Service(service_db.Db(db_url), broker.host, broker.port, client_id=client_id, **kw).start()
        made.append(svc)
        assert svc.subscribed.wait(10)
        return svc

    yield types.SimpleNamespace(db=db, key=key, broker=broker, start=start)
    for svc in made:
        svc.stop()


def client(broker, topic=None):
    """A plain MQTT client (the scripted meter); with `topic`, subscribed to it and a list of what arrives."""
    import paho.mqtt.client as mqtt

    got, subscribed = [], threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.on_subscribe = lambda cl, u, mid, rc, p=None: subscribed.set()
    c.on_message = lambda cl, u, msg: got.append(msg.payload)
    c.connect(broker.host, broker.port)
    if topic:
        c.subscribe(topic, qos=1)
    c.loop_start()
    assert not topic or subscribed.wait(10)
    return c, got


def test_forged_and_unknown_messages_are_not_stored(served):
    db, key = served.db, served.key
    svc = served.start("svc-forge")
    c, _ = client(served.broker)
    try:
        good = meterproto.sign_uplink(key, b'{"seq":1,"t":1767225700,"ev":"low_credit_1","a":90}')
        forged = meterproto.sign_uplink(os.urandom(32), b'{"seq":2,"t":1767225800,"ev":"relay_open","a":1}')
        c.publish(meterproto.topic(METER, "evt"), forged, qos=1).wait_for_publish(5)
        c.publish(meterproto.topic("NOBODY", "evt"), good, qos=1).wait_for_publish(5)
        c.publish(meterproto.topic(METER, "evt"), good, qos=1).wait_for_publish(5)
        c.publish(meterproto.topic(METER, "evt"), good, qos=1).wait_for_publish(5)  # a duplicate
        wait(lambda: svc.stats["duplicates"] == 1, 20, "the duplicate")
        assert svc.stats["forged"] == 1 and svc.stats["unknown"] == 1 and svc.stats["stored"] == 1
        assert [d["ev"] for d in db.uplinks(METER)] == ["low_credit_1"]
        assert [(d["kind"], d["channel"]) for d in db.deliveries(METER)] == [("low_credit", "email"),
                                                                               ("low_credit", "sms")]
    finally:
        c.loop_stop()
        c.disconnect()


def test_a_gap_is_backfilled_and_what_the_meter_no_longer_holds_is_marked_gone(served):
    """A scripted meter: numbers 1, 2, 5 arrive; the service asks for 3 on; the meter holds 4 on only."""
    db, key = served.db, served.key
    svc = served.start("svc-gap", settle_s=0.5, retry_s=30)
    m, cmds = client(served.broker, meterproto.topic(METER, "cmd"))

    def up(kind, text):
        m.publish(meterproto.topic(METER, kind), meterproto.sign_uplink(key, text.encode()), qos=1).wait_for_publish(5)

    try:
        up("status", '{"online":1,"v":1,"rev":5,"boot":1767225600,"last":0,"kid":0,"lid":0,"tq":3}')
        for s in (1, 2, 5):
            up("tele", '{"seq":%d,"t":%d,"e":%d,"b":100}' % (s, 1767225600 + 60 * s, s))
        wait(lambda: cmds, 30, "a backfill command")
        sig, body = cmds[0].split(b" ", 1)
        doc = json.loads(body)
        assert meterproto.sign(key, body) == cmds[0]  # signed with the meter's key
        assert doc["op"] == "backfill" and doc["from"] == 3 and doc["m"] == METER
        assert db.command(METER, doc["id"])["origin"] == "gap"
        # The meter lost 3 (its outbox overflowed) and re-sends 4 and 5, then replies.
        up("tele", '{"seq":4,"t":1767225840,"e":4,"b":100}')
        up("tele", '{"seq":5,"t":1767225900,"e":5,"b":100}')
        up("reply", '{"seq":6,"id":%d,"res":"applied","rep":0,"from":4,"to":6,"b":100,"r":0}' % doc["id"])
        wait(lambda: db.command(METER, doc["id"])["state"] == "answered", 20, "the reply")
        assert db.command(METER, doc["id"])["res"] == "applied"
        wait(lambda: svc.missing(METER) == [], 20, "no gap left")
        assert db.seen_seqs(METER, 0) == ({1, 2, 4, 5, 6}, {3})
        # A restarted service knows 3 is gone and asks for nothing.
        svc.stop()
        svc2 = served.start("svc-gap", settle_s=0.5, retry_s=30)
        up("tele", '{"seq":7,"t":1767226020,"e":7,"b":100}')
        wait(lambda: 7 in db.seen_seqs(METER, 0)[0], 20, "seq 7")
        svc2.tick(time.monotonic() + 60)
        assert svc2.missing(METER) == [] and svc2.stats["backfills"] == 0
    finally:
        m.loop_stop()
        m.disconnect()


def test_numbering_restart_starts_a_new_era(db_url):
    db = service_db.Db(db_url)
    provision(db)
    db.store_uplink(METER, "status", {"online": 1, "boot": 100, "last": 0})
    for s in (1, 2, 3):
        assert db.store_uplink(METER, "tele", {"seq": s, "t": 100 + s})[0]
    # Reformatted flash: a new boot whose last is below what was seen; seq 1 is a new message.
    db.store_uplink(METER, "status", {"online": 1, "boot": 200, "last": 0})
    stored, era, _ = db.store_uplink(METER, "tele", {"seq": 1, "t": 300})
    assert stored and era == 1
    # An ordinary reboot (last at or above what was seen) keeps the era: seq 3 again is a duplicate.
    db.store_uplink(METER, "status", {"online": 1, "boot": 300, "last": 1})
    assert db.store_uplink(METER, "tele", {"seq": 1, "t": 300}) == (False, 1, [])


@pytest.mark.parametrize("bad", ["", "{}", "[1]", "not json"])
def test_bad_config_is_refused(tmp_path, bad):
    p = tmp_path / "c.json"
    p.write_text(bad)
    if bad == "{}":
        assert service.load_config(p) == {}
        return
    with pytest.raises(service.ServiceError):
        service.load_config(p)


def test_headend_serve_runs_from_a_config_and_stops_on_interrupt(tmp_path, broker):
    import base64
    import signal
    import sys
    import urllib.error
    import urllib.request
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    db = service_db.Db(str(tmp_path / "h.db"))
    provision(db)
    db.close()
    port = mpbroker.free_port()
    (tmp_path / "op.pw").write_text("s3cret\n")
    cfg = {"db": str(tmp_path / "h.db"), "broker": "%s:%d" % (broker.host, broker.port), "client_id": "svc-cfg",
           "web": {"listen": "127.0.0.1:%d" % port, "operator_password_file": str(tmp_path / "op.pw")},
           "webhook": {"url": "http://127.0.0.1:1/sms"}, "reminders": {"quiet": [22, 7], "tz": "Africa/Nairobi"}}
    (tmp_path / "service.json").write_text(json.dumps(cfg))
    p = subprocess.Popen([sys.executable, str(repo / "tools" / "headend.py"), "serve", "--config",
                          str(tmp_path / "service.json")], cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        auth = "Basic " + base64.b64encode(b"op:s3cret").decode()

        def page():
            try:
                req = urllib.request.Request("http://127.0.0.1:%d/op/" % port, headers={"Authorization": auth})
                with urllib.request.urlopen(req, timeout=5) as r:
                    return r.read().decode()
            except (urllib.error.URLError, ConnectionError):
                return None

        wait(lambda: page() is not None, 60, "the operator page")
        assert METER in page()
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=60)
        assert p.returncode == 0, out.decode()[-2000:]
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)


@pytest.mark.parametrize("cfg, why", [
    ({"broker": "nohost"}, "HOST:PORT"),
    ({"reminders": {"quiet": [25, 7]}, "webhook": {"url": "http://127.0.0.1:1/"}}, "reminders"),
    ({"web": {"listen": "127.0.0.1:0"}}, "password"),
])
def test_headend_serve_refuses_a_bad_config_with_one_line(tmp_path, cfg, why):
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    cfg = dict({"db": str(tmp_path / "h.db"), "broker": "127.0.0.1:1"}, **cfg)
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    p = subprocess.run([sys.executable, str(repo / "tools" / "headend.py"), "serve", "--config",
                        str(tmp_path / "c.json")], cwd=repo, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, p.stdout + p.stderr
    assert why in p.stderr and p.stderr.strip().count("\n") == 0, p.stderr


def test_a_command_to_an_offline_meter_is_sent_again_until_answered_and_expires_unanswered(served):
    """The meter is away when a top-up is sent (nobody holds its commands); the service sends the
    same signed bytes again until the meter answers; one it never answers is marked expired."""
    db, key = served.db, served.key
    db.store_uplink(METER, "tele", {"seq": 1, "t": 1767225600, "b": 100})  # the meter's clock, as last heard
    svc = served.start("svc-resend", resend_s=0.3)
    cid = svc.send(METER, "topup", origin="web", amt=500)
    m, cmds = client(served.broker, meterproto.topic(METER, "cmd"))  # the meter comes back
    try:
        # (The first publish may still have been on its way when the meter subscribed: wait for a
        # copy sent after it.)
        wait(lambda: db.command(METER, cid)["tries"] >= 2 and len(cmds) >= 2 or
             db.command(METER, cid)["tries"] >= 3 and cmds, 30, "the command sent again")
        assert len(set(cmds)) == 1  # the same signed bytes each time: one id, applied at most once
        body = cmds[0].split(b" ", 1)[1]
        assert json.loads(body)["id"] == cid and meterproto.sign(key, body) == cmds[0]
        assert db.command(METER, cid)["state"] == "sent"
        reply = '{"seq":2,"id":%d,"res":"applied","rep":0,"b":600,"r":0}' % cid
        m.publish(meterproto.topic(METER, "reply"), meterproto.sign_uplink(key, reply.encode()), qos=1)
        wait(lambda: db.command(METER, cid)["state"] == "answered", 20, "the answer")
        n = len(cmds)
        tries = db.command(METER, cid)["tries"]
        svc.tick()
        svc.tick()
        assert db.command(METER, cid)["tries"] == tries and len(cmds) == n  # answered: not sent again
        # A command whose expiry has passed in the meter's time is not sent again, and says so.
        old = svc.send(METER, "disconnect", origin="operator")
        with db.tx() as c:
            c.execute("UPDATE commands SET exp = ? WHERE meter_id = ? AND cmd_id = ?", (1767225000, METER, old))
        wait(lambda: db.command(METER, old)["state"] == "expired", 20, "the command to expire")
        assert [c["cmd_id"] for c in db.commands(METER, failed_only=True)] == [old]
    finally:
        m.loop_stop()
        m.disconnect()
