"""tools/broker_config.py: the generated broker enforces TLS, passwords and the username ACL;
the firmware's link verifies the broker certificate (under micropython)."""
import json
import os
import ssl
import subprocess
import threading
import time

import paho.mqtt.client as mqtt
import pytest

import broker_config
import mpbroker


def test_password_hash_format_and_acl():
    h = broker_config.password_hash("pw", salt=b"\0" * 12)
    assert h.startswith("$7$101$AAAAAAAAAAAAAAAA$") and h != broker_config.password_hash("pw")
    acl = broker_config.acl_text()
    assert "%c" not in acl and "pattern read pm/v1/%u/cmd" in acl and "pattern write pm/v1/%u/cmd" not in acl
    with pytest.raises(broker_config.ConfigError):
        broker_config.generate("/nonexistent-never", ["bad/id"], certs=False)
    with pytest.raises(broker_config.ConfigError):
        broker_config.generate("/nonexistent-never", ["backend"], certs=False)


def _mosquitto(out, port):
    """The generated broker, started; returns once it listens on `port` (or fails the test)."""
    import socket
    proc = subprocess.Popen([mpbroker.find_mosquitto(), "-c", str(out / "broker" / "mosquitto.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("the generated broker never listened on port %d" % port)
            time.sleep(0.05)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    out = tmp_path_factory.mktemp("fleet")
    port = mpbroker.free_port()
    users, keys = broker_config.generate(out, ["m-1", "m-2"], host="127.0.0.1", port=port, bind="127.0.0.1",
                                         run_as="root" if os.geteuid() == 0 else None,
                                         backend_port=mpbroker.free_port())
    other = tmp_path_factory.mktemp("other")
    broker_config.generate(other, ["m-1"], host="127.0.0.1", port=port, certs=True)  # a foreign CA
    proc = _mosquitto(out, port)
    yield out, port, users, other
    proc.terminate()
    proc.wait(5)


def _client(out, port, user, password):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=user + "-t")
    c.tls_set(ca_certs=str(out / "broker" / "ca.crt"), cert_reqs=ssl.CERT_REQUIRED)
    c.username_pw_set(user, password)
    return c


def _backend(out, port, users):
    got, ready = [], threading.Event()
    b = _client(out, port, "backend", users["backend"])
    b.on_message = lambda c, u, m: got.append((m.topic, m.payload))
    b.on_subscribe = lambda *a: ready.set()
    b.connect("127.0.0.1", port)
    b.loop_start()
    b.subscribe("pm/v1/#", qos=1)
    assert ready.wait(5)
    return b, got


def test_acl_keeps_each_meter_in_its_own_subtree(fleet):
    out, port, users, _ = fleet
    b, got = _backend(out, port, users)
    m1 = _client(out, port, "m-1", users["m-1"])
    m1.connect("127.0.0.1", port)
    m1.loop_start()
    try:
        m1.publish("pm/v1/m-2/tele", b"forged", qos=1).wait_for_publish(5)
        m1.publish("pm/v1/m-1/cmd", b"self-command", qos=1).wait_for_publish(5)
        m1.publish("pm/v1/m-1/tele", b"mine", qos=1).wait_for_publish(5)
        time.sleep(0.5)
        assert got == [("pm/v1/m-1/tele", b"mine")]
    finally:
        m1.loop_stop()
        m1.disconnect()
        b.loop_stop()
        b.disconnect()
    bad = _client(out, port, "m-1", "wrong")
    with pytest.raises(Exception):
        bad.connect("127.0.0.1", port)
        bad.loop_start()
        time.sleep(0.5)
        assert bad.is_connected()
    bad.loop_stop()


TLS_LINK = r'''
import sys, json, ssl, time, mptest
from umqtt import simple
from link import Link, UP
from simhw.clock import RealClock
sec = json.load(open(sys.argv[1] + "/secrets.json"))
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.verify_mode = ssl.CERT_REQUIRED
ctx.load_verify_locations(cadata=open(sys.argv[2], "rb").read())
host, _, port = sec["broker"].partition(":")
got = []
L = Link(simple, RealClock(), lambda n: 0, "pm-tls-test", host, int(port), lambda t, m: got.append(m),
         (b"pm/v1/m-1/cmd",), keepalive_s=5, timeout_ms=2000, user=sec["mqtt_user"],
         password=sec["mqtt_password"], ssl_context=ctx, backoff_min_ms=100, backoff_max_ms=200)
end = time.ticks_add(time.ticks_ms(), 1500)
while L.state != UP and time.ticks_diff(end, time.ticks_ms()) > 0:
    L.poll()
    time.sleep_ms(20)
ok = L.state == UP and L.publish(b"pm/v1/m-1/tele", b"over-tls", 1)
for _ in range(20):
    L.poll()
    time.sleep_ms(10)
L.close()
mptest.done(up=bool(ok), connects=L.connects)
'''


@pytest.mark.micropython
@pytest.mark.runtimes("micropython")  # the 32-bit build has no ssl: the v1.28 source subset holds no mbedtls
def test_firmware_link_speaks_tls_and_verifies_the_broker(fleet, mpy):
    out, port, users, other = fleet
    b, got = _backend(out, port, users)
    try:
        dev = out / "devices" / "m-1"
        res = mpy(TLS_LINK, dev, dev / "ca.der", heap="256k", timeout=30)
        assert res.result["up"] is True
        deadline = time.time() + 3
        while not got and time.time() < deadline:
            time.sleep(0.05)
        assert ("pm/v1/m-1/tele", b"over-tls") in got
        # The same meter trusting another CA never gets a session: the certificate is checked.
        res = mpy(TLS_LINK, dev, other / "devices" / "m-1" / "ca.der", heap="256k", timeout=30)
        assert res.result["up"] is False and res.result["connects"] == 0
    finally:
        b.loop_stop()
        b.disconnect()


def test_headend_speaks_tls_with_the_generated_credentials(fleet, tmp_path, capsys):
    import headend
    out, port, users, other = fleet
    creds = out / "backend" / "backend.json"
    home = tmp_path / "home"
    rc = headend.main(["--home", str(home), "--credentials", str(creds), "watch", "--seconds", "0.5"])
    err = capsys.readouterr().err
    assert rc == 0, err
    # The same credentials with another fleet's CA: the broker's certificate is refused, one line.
    bad = json.loads(creds.read_text())
    bad["ca"] = str(other / "broker" / "ca.crt")
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    rc = headend.main(["--home", str(home), "--credentials", str(tmp_path / "bad.json"), "watch", "--seconds", "0.5"])
    err = capsys.readouterr().err
    assert rc == 2 and "over TLS" in err and len(err.strip().splitlines()) == 1, err
    # Plain TCP to the TLS listener is not a connection either.
    rc = headend.main(["--home", str(home), "--broker", "127.0.0.1:%d" % port, "--user", "backend",
                       "--password", users["backend"], "watch", "--seconds", "0.5"])
    assert rc == 2 and "Traceback" not in capsys.readouterr().err
    rc = headend.main(["--home", str(home), "--credentials", str(tmp_path / "missing.json"), "watch"])
    assert rc == 2 and "cannot read credentials" in capsys.readouterr().err


def test_a_meter_login_cannot_take_over_another_meters_session(fleet):
    """Client-id takeover (broker.md): on the meters' listener the broker replaces every client id
    by the username, so a client logged in as m-2 that presents m-1's client id gets its own
    session ("m-2") and m-1 stays connected. The backend's processes, on their own listener,
    keep distinct client ids and do not displace each other."""
    out, port, users, _ = fleet
    drops = []
    up = threading.Event()
    m1 = _client(out, port, "m-1", users["m-1"])
    m1._client_id = b"pm-m-1"
    m1.on_connect = lambda *a: up.set()
    m1.on_disconnect = lambda *a: drops.append("m-1")
    m1.connect("127.0.0.1", port)
    m1.loop_start()
    assert up.wait(5)
    intruder = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="pm-m-1")  # m-1's id
    intruder.tls_set(ca_certs=str(out / "broker" / "ca.crt"), cert_reqs=ssl.CERT_REQUIRED)
    intruder.username_pw_set("m-2", users["m-2"])
    got = threading.Event()
    intruder.on_connect = lambda c, u, f, rc, p=None: got.set()
    intruder.connect("127.0.0.1", port)
    intruder.loop_start()
    try:
        assert got.wait(5), "the intruder's own login works"
        # The broker settles a takeover before it answers the newcomer's CONNECT; a round trip on
        # m-1's session after that proves it is still the one the broker holds.
        info = m1.publish("pm/v1/m-1/tele", b"still here", qos=1)
        info.wait_for_publish(5)
        assert info.is_published() and drops == [], "m-1 was knocked off by a client presenting its id"
        # Two backend processes on the backend listener, both logged in as "backend".
        creds = json.loads((out / "backend" / "backend.json").read_text())
        assert creds["host"] == "127.0.0.1" and creds["port"] != port
        bdrops = []
        clients = []
        for i in range(2):
            ev = threading.Event()
            c = _client(out, creds["port"], "backend", users["backend"])
            c._client_id = ("backend-%d" % i).encode()
            c.on_connect = lambda *a, ev=ev: ev.set()
            c.on_disconnect = lambda *a, i=i: bdrops.append(i)
            c.connect("127.0.0.1", creds["port"])
            c.loop_start()
            assert ev.wait(5)
            clients.append(c)
        info = clients[0].publish("pm/v1/m-1/cmd", b"", qos=1)  # the first one's session is alive
        info.wait_for_publish(5)
        assert info.is_published() and bdrops == [], "backend processes displaced each other"
        for c in clients:
            c.loop_stop()
            c.disconnect()
    finally:
        for c in (intruder, m1):
            c.loop_stop()
            c.disconnect()


def test_running_again_never_replaces_the_ca_or_secrets_silently(tmp_path, capsys):
    """Issue 20: a second run into the same directory regenerated the CA and every meter's key and
    password, and left dead device directories. Now: refused without --add or --force."""
    out = tmp_path / "fleet"
    assert broker_config.main([str(out), "--meters", "m-1", "m-2", "--host", "127.0.0.1"]) == 0
    files = sorted(p for p in out.rglob("*") if p.is_file())
    before = {p: p.read_bytes() for p in files}
    # Every secret is readable by its owner only.
    for p in files:
        if p.name in ("secrets.json", "meters.json", "backend.json", "passwd", "ca.key", "server.key"):
            assert p.stat().st_mode & 0o077 == 0, p
    capsys.readouterr()
    assert broker_config.main([str(out), "--meters", "m-1", "m-2", "m-3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("broker_config: error: ") and "--add" in err and "--force" in err and "\n" == err[-1]
    assert {p: p.read_bytes() for p in files} == before, "nothing written"
    for bad in (["--add", "m-2"], ["--add", "m-9", "--force"], ["--add", "m-9", "--port", "1"]):
        assert broker_config.main([str(out)] + bad) == 2, bad
        assert {p: p.read_bytes() for p in files} == before, bad
    assert broker_config.main([str(tmp_path / "empty"), "--add", "m-9"]) == 2
    # --add: the CA, the server key and the existing meters' secrets are kept.
    assert broker_config.main([str(out), "--add", "m-3"]) == 0
    for p, data in before.items():
        if p.name not in ("passwd", "meters.json"):
            assert p.read_bytes() == data, p
    keys = json.loads((out / "backend" / "meters.json").read_text())
    old = json.loads(before[out / "backend" / "meters.json"])
    assert sorted(keys) == ["m-1", "m-2", "m-3"] and keys["m-1"] == old["m-1"]
    sec3 = json.loads((out / "devices" / "m-3" / "secrets.json").read_text())
    assert sec3["broker"] == "127.0.0.1:8883" and (out / "devices" / "m-3" / "ca.der").read_bytes() == (
        out / "broker" / "ca.der").read_bytes()
    users = [ln.split(":")[0] for ln in (out / "broker" / "passwd").read_text().splitlines()]
    assert sorted(users) == ["backend", "m-1", "m-2", "m-3"]
    # --force: everything new, and a meter left out loses its directory.
    ca = (out / "broker" / "ca.crt").read_bytes()
    assert broker_config.main([str(out), "--meters", "m-1", "--force", "--host", "127.0.0.1"]) == 0
    assert (out / "broker" / "ca.crt").read_bytes() != ca
    assert sorted(p.name for p in (out / "devices").iterdir()) == ["m-1"]
    assert json.loads((out / "backend" / "meters.json").read_text())["m-1"] != old["m-1"]


def test_an_added_meter_and_the_kept_ones_log_in(tmp_path):
    out = tmp_path / "fleet"
    port = mpbroker.free_port()
    broker_config.generate(out, ["m-1"], host="127.0.0.1", port=port, bind="127.0.0.1",
                           run_as="root" if os.geteuid() == 0 else None, backend_port=mpbroker.free_port())
    broker_config.generate(out, ["m-2"], add=True)
    proc = _mosquitto(out, port)
    try:
        for m in ("m-1", "m-2"):
            sec = json.loads((out / "devices" / m / "secrets.json").read_text())
            ok = threading.Event()
            c = _client(out, port, m, sec["mqtt_password"])
            c.on_connect = lambda cl, u, f, rc, p=None, ev=ok: rc == 0 and ev.set()
            c.connect("127.0.0.1", port)
            c.loop_start()
            try:
                assert ok.wait(10), "%s could not log in" % m
            finally:
                c.loop_stop()
                c.disconnect()
    finally:
        proc.terminate()
        proc.wait(5)


@pytest.mark.parametrize("args,msg", [
    (["--meters", "bad/id"], "bad meter id"), (["--meters", "m-1", "m-1"], "duplicate meter ids"),
    (["--meters", "backend"], "bad meter id"), (["--meters", "m-1", "--port", "99999"], "--port must be 1..65535"),
    (["--meters", "m-1", "--backend-port", "0"], "--backend-port must be 1..65535"),
    (["--meters", "m-1", "--host", "a b"], "--host must be"), (["--add", "m-1"], "holds no set-up"),
])
def test_bad_inputs_give_one_line_and_write_nothing(tmp_path, capsys, args, msg):
    out = tmp_path / "fleet"
    assert broker_config.main([str(out)] + args) == 2
    err = capsys.readouterr().err
    assert err.startswith("broker_config: error: ") and msg in err and err.count("\n") == 1, err
    assert not out.exists() or not any(out.rglob("*")), "nothing written"
