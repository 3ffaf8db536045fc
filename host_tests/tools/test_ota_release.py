"""The headend's side of firmware updates without a meter (tools/ota_release.py, release_key.py and
`headend release-key | release | update`): keys, signed releases the firmware's own checks accept,
and clear errors that change nothing. The rollout against a meter: boards/test_esp32_ota_update.py."""
import hashlib
import json
import os
import stat
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))
sys.path.insert(0, str(REPO / "host_tests"))
import headend  # noqa: E402
import ota_release  # noqa: E402
import release_key  # noqa: E402
from cpython_shim import install  # noqa: E402

install()
sys.path.insert(0, str(REPO / "firmware"))
import ota_manifest  # noqa: E402  (the firmware's, under CPython)

sys.path.append(str(REPO / "boards" / "esp32port"))
import espimage  # noqa: E402


def run(home, *args):
    return headend.main(["--home", str(home)] + [str(a) for a in args])


def test_release_key_provision_release_and_the_meter_accepts_it(tmp_path, capsys):
    home = tmp_path / "home"
    assert run(home, "release-key", "show") == 2
    assert "release-key new" in capsys.readouterr().err
    assert run(home, "provision", "MTR-1", "--board", "esp32-atm90e26") == 0
    assert "refuse every firmware update" in capsys.readouterr().out
    assert "release_key" not in json.loads((home / "deploy" / "MTR-1" / "secrets.json").read_text())
    assert run(home, "release-key", "new") == 0
    pem = home / "release_key.pem"
    assert stat.S_IMODE(os.stat(pem).st_mode) == 0o600
    first = pem.read_bytes()
    assert run(home, "release-key", "new") == 2, "never replaced: meters carry its public half"
    assert pem.read_bytes() == first
    assert run(home, "provision", "MTR-2", "--board", "esp32-atm90e26") == 0
    sec = json.loads((home / "deploy" / "MTR-2" / "secrets.json").read_text())
    n = bytes.fromhex(sec["release_key"])
    assert len(n) == 384 and n == release_key.modulus(release_key.load(str(pem)))
    acl = (home / "deploy" / "MTR-2" / "mosquitto-acl.conf").read_text()
    assert "topic write pm/v1/MTR-2/fwreq" in acl and "topic read pm/v1/MTR-2/fw" in acl
    img = espimage.build("1.4.2", 20000, payload_seed=9)
    (tmp_path / "app.bin").write_bytes(img)
    capsys.readouterr()
    assert run(home, "release", tmp_path / "app.bin", "--board", "esp32-atm90e26", "--board", "esp32-ade7953") == 0
    rel = ota_release.Release(home / "releases" / "1.4.2")
    assert rel.image == img and rel.version == "1.4.2"
    assert rel.doc["sha256"] == hashlib.sha256(img).hexdigest() and rel.doc["size"] == len(img)
    assert rel.doc["board"] == ["esp32-atm90e26", "esp32-ade7953"]
    assert rel.doc["min_record"] == ota_release.record_version()
    m = ota_manifest.verify(rel.manifest, bytes.fromhex(rel.sig), n)
    assert not isinstance(m, int), ota_manifest.REASONS[m]
    assert ota_manifest.admissible(m, "esp32-atm90e26", ota_manifest.vcode("1.4.1"), ota_release.record_version(),
                                   0x1F0000) is None
    # chunks: the meter's request, bounded by the image
    msgs = rel.chunks(16384, 4096)
    assert [len(x) - 4 for x in msgs] == [1024, 1024, 1024, 20000 - 16384 - 3072]
    assert msgs[1][:4] == (16384 + 1024).to_bytes(4, "big") and msgs[1][4:] == img[17408:18432]


def test_bad_releases_are_refused_and_leave_nothing(tmp_path, capsys):
    home = tmp_path / "home"
    assert run(home, "release-key", "new") == 0
    (tmp_path / "firmware.bin").write_bytes(b"\xe9" + bytes(5000))  # the bootloader-first file
    assert run(home, "release", tmp_path / "firmware.bin", "--board", "esp32-atm90e26") == 2
    assert "micropython.bin" in capsys.readouterr().err
    (tmp_path / "v.bin").write_bytes(espimage.build("v1.28.0", 8192))  # a stock image's version
    assert run(home, "release", tmp_path / "v.bin", "--board", "esp32-atm90e26") == 2
    assert "MAJOR.MINOR.PATCH" in capsys.readouterr().err
    (tmp_path / "ok.bin").write_bytes(espimage.build("1.0.0", 8192))
    assert run(home, "release", tmp_path / "ok.bin", "--board", "esp32-atm90e26", "--downgrade-from", "0.9.0") == 2
    assert "must be newer" in capsys.readouterr().err
    assert run(home, "release", tmp_path / "missing.bin", "--board", "esp32-atm90e26") == 2
    assert not (home / "releases").exists() or not list((home / "releases").iterdir())
    assert run(home, "provision", "MTR-1", "--board", "esp32-atm90e26") == 0
    capsys.readouterr()
    assert run(home, "--broker", "127.0.0.1:9", "update", "MTR-1", "--release", "9.9.9") == 2
    assert "no release '9.9.9'" in capsys.readouterr().err
    assert run(home, "--broker", "127.0.0.1:9", "update", "NOPE", "--release", "1.0.0") == 2
    assert "unknown meter" in capsys.readouterr().err
    # A release folder whose image no longer matches its manifest is refused before anything is sent.
    assert run(home, "release", tmp_path / "ok.bin", "--board", "esp32-atm90e26") == 0
    (home / "releases" / "1.0.0" / "image.bin").write_bytes(espimage.build("1.0.0", 8192, payload_seed=3))
    capsys.readouterr()
    assert run(home, "--broker", "127.0.0.1:9", "update", "MTR-1", "--release", "1.0.0") == 2
    assert "does not match its manifest" in capsys.readouterr().err


def test_a_manifest_names_exactly_what_the_meter_checks():
    key_mod = bytes(i % 251 + 1 for i in range(256))
    text = ota_release.manifest_bytes(b"x" * 100, "2.0.1", ["b1"], 4, release_key.key_id(key_mod), "2.1.0")
    doc = json.loads(text)
    assert doc == {"v": 1, "version": "2.0.1", "board": ["b1"], "size": 100, "sha256": hashlib.sha256(b"x" * 100).hexdigest(),
                   "min_record": 4, "kid": release_key.key_id(key_mod), "downgrade_from": "2.1.0"}
    m = ota_manifest.parse(text)
    assert not isinstance(m, int) and (m.version, m.size, m.downgrade_from) == ("2.0.1", 100, ota_manifest.vcode("2.1.0"))
    assert release_key.key_id(key_mod) == hashlib.sha256(key_mod).hexdigest()[:16]


class FakeHeadend:
    """What Rollout uses of the headend: meters that answer `ota` as scripted and report events."""

    Refused = headend.Refused
    CliError = headend.CliError

    def __init__(self, answers, events):
        import threading
        self.answers = answers  # meter -> None (applied) or a refusal reason
        self.events = events  # meter -> event name sent once its ota command is applied
        self.sent = []
        self.records = {m: {"key": "11" * 32} for m in answers}
        self.reg = self
        self.bus = self
        self.msgs = []
        self.cond = threading.Condition()
        self.c = self

    # registry
    def get(self, meter):
        return self.records[meter]

    def update(self, meter, change):
        change(self.records[meter])

    # bus
    def connect(self):
        return self

    def subscribe(self, *topics):
        pass

    def publish(self, *a, **k):
        pass

    def send(self, meter, op, **args):
        import meterproto
        self.sent.append((meter, op))
        why = self.answers[meter]
        if op == "ota" and why:
            raise headend.Refused("refused", {"res": "ota_refused", "why": why})
        if op == "ota" and self.events.get(meter):
            ev, a = self.events[meter]
            msg = meterproto.sign_uplink(bytes.fromhex(self.records[meter]["key"]),
                                         json.dumps({"seq": 1, "t": 0, "ev": ev, "a": a}, separators=(",", ":")).encode())
            with self.cond:
                self.msgs.append(("pm/v1/%s/evt" % meter, msg, False))
        return {"res": "applied"}


def _rollout(tmp_path, answers, events, canary, halt_after=1):
    import ota_rollout
    home = tmp_path / "home"
    assert run(home, "release-key", "new") == 0
    (tmp_path / "a.bin").write_bytes(espimage.build("1.1.0", 8192))
    assert run(home, "release", tmp_path / "a.bin", "--board", "esp32-atm90e26") == 0
    h = FakeHeadend(answers, events)
    lines = []
    ro = ota_rollout.Rollout(h, ota_rollout.find_release(home, "1.1.0"), list(answers), canary, halt_after,
                             wait_s=3, out=lines.append)
    return ro.run(), h, lines


def test_a_canary_that_fails_halts_the_rollout(tmp_path):
    s, h, lines = _rollout(tmp_path, {"A": "no_release_key", "B": None, "C": None}, {}, canary=30)
    assert s["halted"] and s["canary"] == 1
    assert s["outcome"] == {"A": "refused", "B": "not_started", "C": "not_started"}
    assert h.sent == [("A", "ota")], "nothing was sent to the meters after the canary"
    assert "A: refused (no_release_key)" in lines and any("rollout halted" in x for x in lines)
    assert h.records["A"]["ota"]["state"] == "refused"


def test_a_canary_that_passes_lets_the_rest_follow(tmp_path):
    done = (("ota_done", 0x010100))
    s, h, lines = _rollout(tmp_path, {"A": None, "B": None, "C": None, "D": None},
                           {"A": done, "B": done, "C": ("ota_rolled_back", 0x010100), "D": done}, canary=25)
    assert not s["halted"] and s["canary"] == 1
    assert s["outcome"] == {"A": "done", "B": "done", "C": "rolled_back", "D": "done"}
    assert [m for m, op in h.sent if op == "ota"] == ["A", "B", "C", "D"]


def test_a_failed_trial_waits_for_the_rollback_and_an_unfinished_canary_halts(tmp_path):
    s, h, lines = _rollout(tmp_path, {"A": None, "B": None}, {"A": ("ota_failed", 14)}, canary=50)
    assert s["halted"] and s["outcome"] == {"A": "trial_failed", "B": "not_started"}
    assert ("A", "ota_cancel") not in h.sent, "one past its switch is left to finish its rollback"
    s, h, lines = _rollout(tmp_path / "2", {"A": None, "B": None}, {}, canary=50)
    assert s["halted"] and s["outcome"] == {"A": "failed", "B": "not_started"}
    assert ("A", "ota_cancel") in h.sent and h.records["A"]["ota"]["why"] == "cancelled", "a canary still loading is cancelled"
