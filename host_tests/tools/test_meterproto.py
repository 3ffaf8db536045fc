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


def test_backfiller_asks_after_the_gap_has_stood_and_not_again_too_soon():
    f = mp.Backfiller(settle_s=3, retry_s=20)
    assert all(f.add(s) for s in (1, 2, 5, 6))
    assert f.missing() == [3, 4]
    assert f.due(100.0) is None  # just seen: a QoS 1 re-send may still bring it
    assert f.due(102.9) is None
    assert f.due(103.0) == 3
    assert f.due(110.0) is None  # asked: the re-sent messages need time to arrive
    assert f.add(3) and f.missing() == [4]
    assert f.due(123.0) == 4  # still missing after retry_s: asked again, from the lowest
    assert f.add(4) and f.missing() == [] and f.due(200.0) is None
    assert f.flagged == {3, 4} and f.asked == 2 and f.lost() == []


def test_backfiller_sees_a_gap_at_the_end_from_the_birth_and_gives_up_what_is_gone():
    f = mp.Backfiller(settle_s=0, retry_s=0)
    for s in (1, 2, 3):
        f.add(s)
    assert f.due(1.0) is None
    f.status({"online": 1, "boot": 10, "last": 6})  # the meter used 4..6: they never arrived
    assert f.missing() == [4, 5, 6] and f.due(2.0) == 4
    f.answered(5, 6)  # the outbox no longer holds 4 (overflow): it re-sends 5 and 6
    assert f.lost() == [4] and f.missing() == [5, 6]
    f.add(5)
    f.add(6)
    assert f.missing() == [] and f.due(3.0) is None and f.lost() == [4]
    f.status({"online": 1, "boot": 10, "last": 9})
    f.answered(0, 9)  # nothing held at all: 7..9 are gone too
    assert f.lost() == [4, 7, 8, 9] and f.missing() == [] and f.due(4.0) is None


def test_backfiller_starts_over_when_the_meter_restarts_its_numbering():
    f = mp.Backfiller(settle_s=0, retry_s=0)
    f.status({"online": 1, "boot": 10, "last": 0})
    for s in (1, 2, 4):
        f.add(s)
    assert f.status({"online": 1, "boot": 20, "last": 1}) is True  # blank flash: numbering from 1
    assert f.missing() == [1] and f.add(1) and f.missing() == [] and f.due(1.0) is None
    assert f.add(3) and f.missing() == [2] and f.due(2.0) == 2


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
