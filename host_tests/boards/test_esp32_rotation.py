"""Key rotation on the real esp32-atm90e26 board file (frozen meter image, ESP32 stand-ins,
Mosquitto): the rotation reaches everything that uses the key. Commands and the meter's signed
replies switch to the new key; offline tokens made with the new key are taken, and those made
with the old one for a grace period (paper tokens already handed out); a command under the old
key is refused; and the provisioned copy of the key in /secrets.json is replaced, so the old key
does not stay on the board, and the meter still holds the new key after a power cut."""
import json
import os
import sys
from pathlib import Path

import pytest

import esp32_host
import meterproto
import token_issue

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "firmware"))
from meterrig import Backend  # noqa: E402

USES_MICROPYTHON = True
WAIT = 120.0


def signed_by(be, cid, key):
    raws = [json.loads(p) for k, p in be.raw if k == "reply" and json.loads(p).get("id") == cid]
    return raws and all(meterproto.verify_uplink(key, p) for k, p in be.raw
                        if k == "reply" and json.loads(p).get("id") == cid)


@pytest.mark.runtimes("micropython32")  # the meter image: firmware frozen, 32-bit
def test_a_key_rotation_covers_commands_replies_tokens_and_the_stored_key(tmp_path, broker):
    h = esp32_host.Esp32Host(tmp_path, "esp32-atm90e26", broker=(broker.host, broker.port), frozen=True,
                             rtc_utc=esp32_host.UTC_START)
    h.setup()
    k1 = bytes.fromhex(json.loads((h.home / "deploy" / h.meter_id / "secrets.json").read_text())["key"])
    k2 = os.urandom(32)
    be = Backend(broker.host, broker.port, h.meter_id, k1)
    mid = h.meter_id
    try:
        boot = h.start(run_s=86400, control=True)
        assert be.wait(lambda: be.of("status") and be.of("status")[-1].get("online"), WAIT), "no birth"
        # A paper token the utility made with the provisioned key, not typed yet.
        paper = token_issue.issue(k1, mid, 50, 500)
        cid, rot = 10, meterproto.rotate_key(k1, mid, 10, be.meter_t + 86400, 1, k2)
        be.publish(rot)
        assert be.wait(lambda: cid in be.replies, WAIT)
        assert be.replies[cid][0]["res"] == "applied" and be.replies[cid][0]["kid"] == 1
        assert signed_by(be, cid, k2), "the rotation's reply is signed under the new key"
        be.key = k2
        # Tokens relayed by the backend go through the meter's token verifier (token and command
        # ids share one counter: each token's id is above its relaying command's).
        for cid, tok in ((45, paper), (55, token_issue.issue(k2, mid, 60, 700))):
            _, p = be.command("token", cid=cid, tok=tok)
            be.publish(p)
            assert be.wait(lambda: cid in be.replies, WAIT)
            assert be.replies[cid][0]["res"] == "applied", (cid, be.replies[cid])
        be.key = k1
        _, p = be.command("topup", cid=65, amt=100)
        be.publish(p)
        assert be.wait(lambda: 65 in be.replies, WAIT)
        assert be.replies[65][0]["res"] == "old_key", "a new command under the old key is refused"
        boot.cut()
        r = boot.wait()
        assert r["reason"] == "power_cut" and r["meter"]["step_errors"] == 0, r.get("error") or r
        h.after(r)
        files = h.read_root("secrets.json", "secrets.json.tmp")
        sec = json.loads(files["secrets.json"])
        assert sec["key"] == k2.hex() and files["secrets.json.tmp"] is None, "the old key left the board"
        assert sec["meter_id"] == mid and "broker" in sec, "nothing else changed"
        # Power back: the new key is the meter's key.
        n = len(be.of("status"))
        be.key = k2
        boot = h.start(run_s=86400, control=True)
        assert be.wait(lambda: len(be.of("status")) > n and be.of("status")[-1].get("online"), WAIT)
        assert be.of("status")[-1]["kid"] == 1
        _, p = be.command("topup", cid=70, amt=100)
        be.publish(p)
        assert be.wait(lambda: 70 in be.replies, WAIT) and be.replies[70][0]["res"] == "applied"
        assert signed_by(be, 70, k2)
        boot.end()
        assert boot.wait()["reason"] == "end"
    finally:
        be.close()
        for b in h.boots:
            b.kill()
