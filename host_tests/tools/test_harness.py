"""Tests of the test harness itself: mpy fixture, broker, fetched deps, build."""

import hashlib
import io
import json
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

import fetch_umqtt
import mprun

REPO = Path(__file__).resolve().parents[2]
BUILD_PY = REPO / "tools" / "build.py"


# -- mpy fixture ------------------------------------------------------------

def test_mpy_runs_script_and_returns_json(mpy):
    res = mpy(
        "import sys, mptest\n"
        "mptest.eq(1 + 1, 2, 'add')\n"
        "mptest.done(impl=sys.implementation.name)\n"
    )
    assert res.returncode == 0
    assert res.result == {"ok": True, "checks": 1, "failures": [], "impl": "micropython"}


def test_mpy_failing_script_is_reported(mpy):
    code = "import mptest\nmptest.eq(1, 2, 'one is two')\nmptest.done()\n"
    res = mpy(code, check=False)
    assert res.returncode == 1
    assert res.result["ok"] is False
    assert res.result["failures"] == ["one is two: 1 != 2"]
    # With check=True (the default) the same script fails the calling test.
    with pytest.raises(pytest.fail.Exception, match="one is two"):
        mpy(code)


def test_mpy_crash_shows_traceback(mpy):
    with pytest.raises(pytest.fail.Exception, match="ZeroDivisionError"):
        mpy("x = 1 // 0\n")


def test_mpy_passes_args_and_stdin(mpy):
    res = mpy("import sys, mptest\nmptest.done(argv=sys.argv[1:], data=sys.stdin.read())\n",
              "a", 2, stdin="hello")
    assert res.result["argv"] == ["a", "2"]
    assert res.result["data"] == "hello"


ALLOC_100K = (
    "import mptest\n"
    "try:\n"
    "    buf = bytearray(100 * 1024)\n"
    "    got = 'no error'\n"
    "except MemoryError:\n"
    "    got = 'MemoryError'\n"
    "mptest.done(got=got)\n"
)


def test_heap_limit_is_applied(mpy):
    assert mpy(ALLOC_100K).result["got"] == "MemoryError"  # default heap 64k
    assert mpy(ALLOC_100K, heap="1m").result["got"] == "no error"


def test_micropypath_order(mpy):
    res = mpy("import sys, mptest\nmptest.done(path=sys.path)\n")
    dirs = [str(REPO / d) for d in mprun.MICROPYPATH_DIRS]
    # 64-bit: sources first; 32-bit: the frozen firmware first, as on a frozen device image
    expected = [".frozen"] + dirs if mprun.runtime() == "micropython32" else dirs + [".frozen"]
    assert res.result["path"][-len(expected):] == expected


# -- broker -----------------------------------------------------------------

def _client(broker):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.connect(broker.host, broker.port, keepalive=10)
    c.loop_start()
    return c


def _subscriber(broker, topic):
    got, subscribed, received = [], threading.Event(), threading.Event()

    def on_message(client, userdata, msg):
        got.append((msg.topic, msg.payload))
        received.set()

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    sub.on_message = on_message
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.connect(broker.host, broker.port, keepalive=10)
    sub.loop_start()
    sub.subscribe(topic, qos=1)
    assert subscribed.wait(5), "subscribe not acknowledged\n" + broker.log_text()
    return sub, got, received


def test_broker_round_trip(broker):
    assert broker.host == "127.0.0.1" and broker.port != 1883
    sub, got, received = _subscriber(broker, "meter/test/#")
    pub = _client(broker)
    try:
        pub.publish("meter/test/ping", b"hello", qos=1).wait_for_publish(5)
        assert received.wait(5), "message not delivered\n" + broker.log_text()
        assert got == [("meter/test/ping", b"hello")]
    finally:
        for c in (sub, pub):
            c.loop_stop()
            c.disconnect()


def test_broker_restart_keeps_port(broker):
    port = broker.port
    broker.stop()
    assert not broker.running
    broker.restart()
    assert broker.running and broker.port == port
    sub, got, received = _subscriber(broker, "t")
    sub.loop_stop()
    sub.disconnect()


def test_umqtt_under_micropython_talks_to_broker(mpy, broker):
    sub, got, received = _subscriber(broker, "meter/umqtt")
    try:
        mpy(
            "import sys, mptest\n"
            "from umqtt.simple import MQTTClient\n"
            "c = MQTTClient('harness', sys.argv[1], port=int(sys.argv[2]))\n"
            "c.connect()\n"
            "c.publish(b'meter/umqtt', b'from-micropython')\n"
            "c.disconnect()\n"
            "mptest.done()\n",
            broker.host, broker.port,
        )
        assert received.wait(5), "message not delivered\n" + broker.log_text()
        assert got == [("meter/umqtt", b"from-micropython")]
    finally:
        sub.loop_stop()
        sub.disconnect()


# -- fetched umqtt ----------------------------------------------------------

def test_umqtt_fetched_and_verified():
    assert fetch_umqtt.DEST.is_file(), "run `make deps`"
    rec = json.loads(fetch_umqtt.PROVENANCE.read_text())
    assert rec["version"] == fetch_umqtt.VERSION
    assert rec["sdist_sha256"] == fetch_umqtt.SDIST_SHA256
    assert rec["simple_py_sha256"] == hashlib.sha256(fetch_umqtt.DEST.read_bytes()).hexdigest()


def test_verify_sha256_rejects_wrong_digest():
    data = b"not the sdist"
    with pytest.raises(fetch_umqtt.ChecksumError, match="mismatch"):
        fetch_umqtt.verify_sha256(data)
    with pytest.raises(fetch_umqtt.ChecksumError):
        fetch_umqtt.verify_sha256(data, "0" * 64)
    good = hashlib.sha256(data).hexdigest()
    assert fetch_umqtt.verify_sha256(data, good.upper()) == good


def _targz(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_extract_member_and_sdist_url_offline():
    blob = _targz({"pkg-1.0/umqtt/simple.py": b"X = 1\n", "pkg-1.0/PKG-INFO": b""})
    assert fetch_umqtt.extract_member(blob) == b"X = 1\n"
    with pytest.raises(fetch_umqtt.FetchError):
        fetch_umqtt.extract_member(_targz({"pkg-1.0/other.py": b""}))

    sdist = {"packagetype": "sdist", "filename": "p-1.3.4.tar.gz", "url": "https://x/p.tar.gz"}
    assert fetch_umqtt.sdist_url({"info": {"version": "1.3.4"}, "urls": [sdist]}) == sdist["url"]
    project_doc = {"info": {"version": "9.9"}, "urls": [], "releases": {"1.3.4": [sdist]}}
    assert fetch_umqtt.sdist_url(project_doc) == sdist["url"]
    with pytest.raises(fetch_umqtt.FetchError):
        fetch_umqtt.sdist_url({"info": {"version": "1.3.4"}, "urls": []})


# -- build ------------------------------------------------------------------

def _build(*args):
    return subprocess.run([sys.executable, str(BUILD_PY), *map(str, args)],
                          capture_output=True, text=True, cwd=REPO)


def test_build_good_and_bad_files(tmp_path):
    src = tmp_path / "firmware"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "good.py").write_text("def f(x):\n    return x + 1\n")
    (src / "bad.py").write_text("def broken(:\n")
    out = tmp_path / "out"

    res = _build("--root", tmp_path, "--out", out, "firmware")
    assert res.returncode != 0
    assert "firmware/bad.py" in res.stderr
    assert (out / "firmware" / "sub" / "good.mpy").read_bytes()[:2] == b"M\x06"
    assert not (out / "firmware" / "bad.mpy").exists()

    (src / "bad.py").unlink()
    res = _build("--root", tmp_path, "--out", out, "firmware")
    assert res.returncode == 0, res.stderr
    assert "compiled 1 file(s)" in res.stdout


def test_build_covers_every_firmware_file(tmp_path):
    res = _build("--out", tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    for d in ("firmware", "boards"):
        for py in sorted((REPO / d).rglob("*.py")) if (REPO / d).is_dir() else ():
            rel = py.relative_to(REPO)
            if "__pycache__" in rel.parts or any(p.startswith(".") for p in rel.parts):
                continue
            assert (tmp_path / rel.with_suffix(".mpy")).is_file(), "no .mpy for %s" % rel
