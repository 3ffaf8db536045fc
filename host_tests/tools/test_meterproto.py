"""tools/meterproto.py: signing, key wrapping, uplink parsing and sequence bookkeeping."""
import hashlib
import hmac
import json

import pytest

import meterproto as mp

KEY = b"k" * 32


def test_command_is_mac_space_exact_body():
    p = mp.command(KEY, "m-1", 5, 1800000000, "topup", amt=100)
    mac, body = p.split(b" ", 1)
    assert json.loads(body) == {"m": "m-1", "id": 5, "exp": 1800000000, "op": "topup", "amt": 100}
    assert b" " not in body and mac == hmac.new(KEY, body, hashlib.sha256).hexdigest().encode()
    assert mac == mac.lower() and len(mac) == 64


def test_wrap_key_is_a_one_time_pad_bound_to_meter_and_id():
    new = bytes(range(32))
    w1 = mp.wrap_key(KEY, "m-1", 7, new)
    assert w1 != mp.wrap_key(KEY, "m-1", 8, new) != mp.wrap_key(KEY, "m-2", 7, new)
    pad = mp.key_pad(KEY, "m-1", 7)
    assert bytes(a ^ b for a, b in zip(bytes.fromhex(w1), pad)) == new
    with pytest.raises(ValueError):
        mp.wrap_key(KEY, "m-1", 7, b"short")
    doc = json.loads(mp.rotate_key(KEY, "m-1", 7, 1800000000, 2, new).split(b" ", 1)[1])
    assert doc["op"] == "rotkey" and doc["kid"] == 2 and doc["kcv"] == mp.kcv(new) and doc["wk"] == w1


def test_parse_uplink():
    assert mp.parse_uplink("pm/v1/m-1/tele", b'{"seq":3}') == ("m-1", "tele", {"seq": 3})
    for t, p in (("pm/v1/m-1/cmd", b"{}"), ("x/v1/m-1/tele", b"{}"), ("pm/v1/m-1/tele", b"[1]"),
                 ("pm/v1/m-1/tele", b"nope")):
        with pytest.raises(ValueError):
            mp.parse_uplink(t, p)


def test_seq_tracker_gaps_duplicates_restart():
    t = mp.SeqTracker()
    assert t.status({"online": 1, "boot": 100, "last": 0}) is False
    assert all(t.add(s) for s in (1, 2, 4, 7))
    assert t.add(2) is False
    assert t.gaps() == [3, 5, 6]
    assert t.status({"online": 1, "boot": 100, "last": 7}) is False  # a reconnect, same boot
    assert t.status({"online": 1, "boot": 200, "last": 0}) is True  # RAM outbox restarted at 1
    assert t.gaps() == [] and t.add(1)


def test_worked_examples_in_protocol_doc_verify():
    import re
    from pathlib import Path
    doc = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
    lines = re.findall(r"^([0-9a-f]{64}) (\{.*\})$", doc, re.M)
    assert len(lines) == 2
    key = bytes(range(32))
    for mac, body in lines:
        assert mp.sign(key, body.encode()) == (mac + " " + body).encode()
    rot = json.loads(lines[1][1])
    new = bytes(range(32, 64))
    assert rot["wk"] == mp.wrap_key(key, rot["m"], rot["id"], new) and rot["kcv"] == mp.kcv(new)
