"""Integration: the firmware (under micropython) against a real Mosquitto."""
import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import meterproto  # noqa: E402
from meterrig import Backend, Rig

KEY = bytes(range(1, 33))
FAST = {"keepalive_s": 2, "opening_balance": 1000, "backoff_max_ms": 1000}


@pytest.fixture
def rig_env(tmp_path, broker):
    made = []

    def make(config=None, key=KEY, flash_dir=None, port=None):
        cfg = dict(FAST)
        cfg.update(config or {})
        r = Rig(flash_dir or tmp_path, key=key, broker=(broker.host, port or broker.port), config=cfg)
        made.append(r)
        return r

    b = Backend(broker.host, broker.port, "rig-0001", KEY)
    yield make, b
    for r in made:
        r.close()
    b.close()


pytestmark = pytest.mark.micropython  # the meter side runs under micropython (meterrig_mpy.py)


def run_until(rig, pred, ms=3000, adv=100, chunk=150):
    """Let the meter run in short stretches until pred(state) holds (or ms have passed)."""
    st = None
    for _ in range(max(1, ms // chunk)):
        st = rig("run", ms=chunk, adv=adv)
        if pred(st):
            break
    return st


def connected(rig, b):
    st = run_until(rig, lambda st: st["link"] == 1 and b.of("status"))
    assert st["link"] == 1, st
    assert b.wait(lambda: b.of("status"), 2), "no birth message"
    return st


def delivered(rig, b):
    """Run until the meter has sent everything it queued and the backend has received it: a broker
    stopped before that takes with it what the meter already had acknowledged (a clean-session
    subscriber loses what the broker had not yet passed on), and what follows would depend on how
    fast a busy machine moved the messages, not on the meter."""
    st = run_until(rig, lambda st: st["outbox"] == 0 and st["seq"] >= 1, 8000)
    assert st["outbox"] == 0, st
    assert b.wait(lambda: set(range(1, st["seq"] + 1)) <= set(b.seqs())), (st["seq"], b.seqs())
    return st


def call(rig, b, payload, cid=None, ms=3000, adv=100):
    """Publish while the meter runs; return the meter state once it has answered."""
    if cid is None:
        cid = int(payload.split(b'"id":')[1].split(b",")[0])
    n = len(b.replies.get(cid, ()))
    rig.send(do="run", ms=100, adv=adv)
    b.publish(payload)
    st = rig.result()
    return run_until(rig, lambda st: len(b.replies.get(cid, ())) > n and st["outbox"] == 0, ms, adv)


def untouched(a, b):
    """Nothing a command can change has changed (metering goes on, so the record does)."""
    keys = ("topups", "last_id", "relay", "reasons", "kid", "low1", "maxb", "price")
    return ([a[k] for k in keys] == [b[k] for k in keys]
            and a["balance"] + a["charged"] == b["balance"] + b["charged"])


def contiguous(seqs):
    s = sorted(set(seqs))
    return s == list(range(s[0], s[0] + len(s)))


def test_normal_flow_commands_replies_and_replays(rig_env):
    make, b = rig_env
    rig = make()
    st0 = connected(rig, b)
    birth = b.of("status")[-1]
    assert birth["online"] == 1 and birth["v"] == 1 and birth["kid"] == 0
    captured = []

    def do(op, **args):
        cid, p = b.command(op, **args)
        captured.append(p)
        st = call(rig, b, p)
        assert b.wait(lambda: cid in b.replies), "no reply to %s" % op
        return st, b.replies[cid][0]

    st, r = do("topup", amt=500)
    assert r["res"] == "applied" and r["rep"] == 0 and st["balance"] == st0["balance"] + 500 == r["b"]
    st, r = do("status")
    assert b.wait(lambda: b.of("tele")) and r["res"] == "applied"
    st, r = do("disconnect")
    assert st["relay"] == 1 and r["r"] == 1
    st, r = do("reconnect", direct=True)
    assert st["relay"] == 0
    st, r = do("limits", low1=300, low2=100, maxb=500000)
    assert r["res"] == "applied" and st["low1"] == 300 and st["maxb"] == 500000
    st, r = do("limits", low1=10, low2=100)
    assert r["res"] == "bad_args" and st["low1"] == 300
    price0 = st["price"]
    st, r = do("tariff", tariff={"v": 1, "kind": "flat", "price_per_kwh": 31000, "scale": 1000})
    assert r["res"] == "bad_args" and st["price"] == price0, "a tariff from the backend is scheduled: activate_at"
    at = st["utc"] + 30
    st, r = do("tariff", tariff={"v": 1, "kind": "flat", "price_per_kwh": 31000, "scale": 1000, "activate_at": at})
    assert r["res"] == "applied" and st["price"] == price0 and st["utc"] < at, "passive until activate_at"
    st = run_until(rig, lambda st: st["utc"] > at, adv=1000)
    assert st["price"] == 31000 and st["events"].get("tariff_activated") == 1, st
    st, r = do("tariff", tariff={"v": 9})
    assert r["res"] == "bad_args" and st["price"] == 31000
    st, r = do("time", utc=1800000000)
    assert r["res"] == "applied" and 1800000000 <= r["t"] <= st["utc"]
    st, r = do("topup", amt=1)
    assert "t" not in r, "reply members of one op leaked into the next"
    st = rig("run", ms=300, adv=100)
    # Replays of every captured valid command: none is applied again. Answers to repeats come from
    # a budget (a burst of 8, then one a second of the meter's time), so they go in batches of 8.
    before = st
    answered = lambda: sum(len(v) for v in b.replies.values())  # noqa: E731
    for k in range(0, len(captured), 8):
        batch = captured[k:k + 8]
        n = answered()
        for p in batch:
            b.publish(p)
        st = run_until(rig, lambda st: answered() >= n + len(batch), 4000)
        t = st["utc"]
        st = run_until(rig, lambda st: st["utc"] >= t + 9, 4000, adv=1000)  # the budget refills
    assert (st["balance"], st["topups"], st["relay"], st["low1"], st["price"]) == (
        before["balance"], before["topups"], before["relay"], before["low1"], before["price"])
    assert b.wait(lambda: sum(len(v) for v in b.replies.values()) >= 2 * len(captured)), ([k for k, v in b.replies.items() if len(v) != 2], len(captured))
    again = [v[-1] for v in b.replies.values() if len(v) > 1]
    assert len(again) == len(captured)
    # The replay window holds 8 results: older ids are refused as stale, newer ones answered again.
    old = len(captured) - 8
    assert [d["res"] for d in again[:old]] == ["stale_id"] * old and all(d["rep"] == 1 for d in again[old:])
    assert contiguous(b.seqs())


def test_replays_after_reboot_are_not_accepted(rig_env, tmp_path):
    make, b = rig_env
    rig = make()
    connected(rig, b)
    payloads = []
    for amt in (100, 200, 300):
        cid, p = b.command("topup", amt=amt)
        payloads.append(p)
        call(rig, b, p)
    assert b.wait(lambda: len(b.replies) == 3)
    st = rig("state")
    n_status = len(b.of("status"))
    # A retained command (valid, fresh, never seen) waits on the broker for the next subscribe.
    rcid, rp = b.command("topup", amt=700)
    b.publish(rp, retain=True)
    rig.close()
    assert b.wait(lambda: len(b.of("status")) > n_status) and b.of("status")[n_status] == {"online": 0}
    rig = make()  # same flash: a reboot
    st1 = connected(rig, b)
    assert st1["events"].get("retained_cmd") == 1 and rcid not in b.replies
    assert st1["topups"] == 3 and st1["last_id"] == st["last_id"]
    b.publish(b"", retain=True)  # clear it from the broker
    for p in payloads * 2 + payloads[:2]:  # eight replays: within the burst of answers
        b.publish(p)
    b.publish(payloads[2])
    st2 = run_until(rig, lambda st: sum(len(v) for c, v in b.replies.items() if c) >= 3 + 8, 4000)
    assert st2["topups"] == st["topups"] == 3 and st2["balance"] <= st["balance"]
    ids = [c for c in b.replies if c]
    assert rcid not in b.replies and len(ids) == 3
    # The ninth replay is over the budget: counted, not answered; the next answer carries the count.
    assert b.wait(lambda: sum(len(b.replies[c]) for c in ids) == 3 + 8)
    assert all(d["rep"] == 1 and d["res"] == "applied" and "seq" not in d for c in ids for d in b.replies[c][1:])
    assert [d["res"] for d in b.replies.get(0, [])] == ["malformed"]  # the empty retained clear
    t = st2["utc"]
    run_until(rig, lambda st: st["utc"] >= t + 2, 4000, adv=1000)
    b.publish(payloads[0])
    run_until(rig, lambda st: len(b.replies[ids[0]]) == 5, 4000)
    assert b.wait(lambda: len(b.replies[ids[0]]) == 5)
    assert b.replies[ids[0]][-1]["sup"] == 1 and b.replies[ids[0]][-1]["rep"] == 1


def test_broker_restart_in_the_middle_of_a_topup(rig_env, broker):
    make, b = rig_env
    rig = make()
    st0 = connected(rig, b)
    cid, p = b.command("topup", amt=1234)
    rig.send(do="run", ms=150, adv=100)
    b.publish(p)
    broker.restart()
    st = rig.result()
    # The backend re-sends the same command until it sees the meter's answer.
    end = time.monotonic() + 10
    while cid not in b.replies and time.monotonic() < end:
        if b.connected.is_set():
            b.publish(p)
        st = rig("run", ms=400, adv=100)
    st = run_until(rig, lambda st: st["outbox"] == 0, 1000)
    assert cid in b.replies, "top-up never acknowledged"
    # Applied exactly once: one top-up, credited once, every other answer marked as a repeat.
    assert st["topups"] == 1
    assert st["balance"] + st["charged"] == st0["balance"] + st0["charged"] + 1234
    assert [d["rep"] for d in b.replies[cid]].count(0) <= 1
    assert st["connects"] >= 2


def test_broker_down_for_hours_backlog_without_gaps(rig_env, broker):
    make, b = rig_env
    rig = make({"storage": {"outbox": 400}})
    connected(rig, b)
    st0 = delivered(rig, b)
    broker.stop()
    st = rig("steps", n=12 * 120, adv=30000)  # 12 simulated hours, broker down
    assert st["link"] == 0 and st["outbox"] >= 12 * 4 and st["dropped"] == 0  # a report per quarter hour at least
    queued = st["seq"]
    broker.start()
    assert b.connected.wait(10)
    st = run_until(rig, lambda st: st["outbox"] == 0 and st["link"] == 1, 8000)
    assert st["outbox"] == 0, st
    assert b.wait(lambda: max(b.seqs()) >= queued)
    seqs = b.seqs()
    assert contiguous(seqs) and min(seqs) == 1 and set(range(st0["seq"], queued + 1)) <= set(seqs)
    lp = [x for x in b.of("tele") if x.get("lp")]  # revision 5: the reports that close intervals
    assert len(lp) >= 12 * 4 and all(x["t"] % 900 == 0 and x["lp"] == 900 for x in lp)


def test_backfill_resends_held_messages(rig_env):
    make, b = rig_env
    rig = make()
    connected(rig, b)
    st = rig("run", ms=1500, adv=30000)  # some telemetry and load profile
    assert b.wait(lambda: len(b.seqs()) >= 5)
    n0 = len(b.seqs())
    cid, p = b.command("backfill", **{"from": 2})
    call(rig, b, p)
    assert b.wait(lambda: cid in b.replies)
    r = b.replies[cid][0]
    assert r["res"] == "applied" and r["from"] == 2 and r["to"] >= st["seq"]
    seqs = b.seqs()
    assert len(seqs) >= n0 + (st["seq"] - 1) and seqs.count(2) == 2


def test_key_rotation_is_committed_with_its_ack(rig_env, tmp_path):
    make, b = rig_env
    rig = make()
    connected(rig, b)
    new = os.urandom(32)
    cid = b.next_id
    b.next_id += 1
    p = meterproto.rotate_key(KEY, "rig-0001", cid, b.meter_t + 86400, 1, new)
    st = call(rig, b, p)
    assert b.wait(lambda: cid in b.replies)
    assert b.replies[cid][0]["res"] == "applied" and b.replies[cid][0]["kid"] == 1 and st["kid"] == 1
    # The backend's retry (still under the old key) gets the same answer; nothing else does.
    b.publish(p)
    c2, old_cmd = b.command("topup", amt=50)
    st1 = call(rig, b, old_cmd)
    assert b.wait(lambda: len(b.replies[cid]) == 2)
    assert b.replies[cid][1]["rep"] == 1
    assert st1["topups"] == 0 and st1["refused"] >= 1
    b.key = new
    c3, ok_cmd = b.command("topup", amt=50)
    st2 = call(rig, b, ok_cmd)
    assert b.wait(lambda: c3 in b.replies) and st2["topups"] == 1
    rig.close()
    rig = make()  # reboot: the new key survives
    st3 = connected(rig, b)
    assert st3["kid"] == 1 and b.of("status")[-1]["kid"] == 1
    c4, cmd4 = b.command("topup", amt=50)
    st4 = call(rig, b, cmd4)
    assert b.wait(lambda: c4 in b.replies) and st4["topups"] == 2


def test_garbage_through_the_broker_is_answered_and_changes_nothing(rig_env):
    import random
    make, b = rig_env
    rig = make()
    st0 = connected(rig, b)
    rnd = random.Random(5)
    good = b.command("topup", amt=10)[1]
    cases = []
    for i in range(300):
        k = i % 4
        if k == 0:
            cases.append(bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(1, 300))))
        elif k == 1:
            cases.append(good[:rnd.randrange(len(good))] or b"x")
        elif k == 2:
            cases.append(b"0" * 64 + good[64:])  # forged MAC
        else:
            cases.append(good[:65] + b"x" * 1100)  # oversized for a command, fine for MQTT
    rig.send(do="run", ms=100, adv=100)
    for p in cases:
        b.publish(p)
    rig.result()
    # Each one is refused, or dropped unread when it arrived with the inbox full (link.py): all
    # are counted, none acted on.
    seen = lambda st: st["refused"] - st0["refused"] + st["overflow"] - st0["overflow"]  # noqa: E731
    st = run_until(rig, lambda st: seen(st) >= len(cases) and st["outbox"] == 0, 8000)
    assert seen(st) == len(cases), st
    refused = st["refused"] - st0["refused"]
    # Anyone can send garbage, so it is answered from a small budget; the rest is counted and the
    # count rides on the next answer. Let the budget refill and send one more to collect it.
    rig("steps", n=2, adv=10000)
    rig.send(do="run", ms=100, adv=100)
    b.publish(b"z")
    rig.result()
    run_until(rig, lambda st: st["outbox"] == 0, 2000)
    assert b.wait(lambda: sum(1 + d.get("sup", 0) for d in b.replies.get(0, ())) == refused + 1)
    assert len(b.replies[0]) < len(cases) // 4, "the refusal budget did not hold"
    reasons = {d["res"] for d in b.replies[0]}
    assert reasons <= {"malformed", "bad_mac", "oversized"}
    assert untouched(st0, st)
    # A packet too big for a command, on a broker without a packet limit, retained so that it comes
    # back at every subscribe: read past and dropped, the session stays up (no reconnect loop), and
    # a top-up right after it is applied.
    connects = st["connects"]
    rig.send(do="run", ms=100, adv=100)
    b.publish(b"y" * 5000, retain=True)
    rig.result()
    st = run_until(rig, lambda st: st["oversized"] == 1, 4000)
    assert st["oversized"] == 1 and st["connects"] == connects and st["link"] == 1 and untouched(st0, st)
    cid, p = b.command("topup", amt=77)
    st = call(rig, b, p)
    assert b.wait(lambda: cid in b.replies) and b.replies[cid][0]["res"] == "applied"
    st = rig("run", ms=500, adv=100)
    assert st["connects"] == connects and st["oversized"] == 1, st
    b.publish(b"", retain=True)


def test_overflowing_outage_shows_gaps_and_backfill_says_what_is_left(rig_env, broker):
    make, b = rig_env
    rig = make({"storage": {"outbox": 40}})
    connected(rig, b)
    st0 = delivered(rig, b)
    broker.stop()
    st = rig("steps", n=12 * 120, adv=30000)  # ~100 messages into 40 slots
    assert st["dropped"] > 0 and st["dropped"] + st["outbox"] == st["seq"] - st0["seq"]
    broker.start()
    assert b.connected.wait(10)
    st = run_until(rig, lambda st: st["outbox"] == 0 and st["link"] == 1, 8000)
    assert b.wait(lambda: max(b.seqs()) >= st["seq"] - 1)
    t = meterproto.SeqTracker()
    for s in b.seqs():
        t.add(s)
    gaps = t.gaps()
    assert len(gaps) == st["dropped"] and gaps[0] == st0["seq"] + 1  # exactly the dropped ones
    cid, p = b.command("backfill", **{"from": gaps[0]})
    call(rig, b, p)
    r = b.replies[cid][0]
    assert r["from"] == gaps[-1] + 1, "the reply names the oldest number still held"


def test_numbering_survives_a_reboot_and_backfill_reaches_before_it(rig_env):
    make, b = rig_env
    rig = make()
    connected(rig, b)
    st = run_until(rig, lambda st: st["seq"] >= 4 and st["outbox"] == 0, 4000, adv=30000)
    assert b.wait(lambda: b.seqs() and max(b.seqs()) >= st["seq"])
    t = meterproto.SeqTracker()
    t.status(b.of("status")[-1])
    for s in b.seqs():
        t.add(s)
    rig.close()
    n_status = len(b.of("status"))
    rig = make()  # same flash: a reboot
    st1 = connected(rig, b)
    birth = b.wait(lambda: any(d.get("online") == 1 for d in b.of("status")[n_status:])) and \
        [d for d in b.of("status")[n_status:] if d.get("online") == 1][0]
    assert birth and birth["last"] >= st["seq"], (birth, st)
    assert not t.status(birth), "the backend must not see a restart of the numbering"
    st1 = run_until(rig, lambda s: s["seq"] > st["seq"] + 2 and s["outbox"] == 0, 4000, adv=30000)
    assert b.wait(lambda: max(b.seqs()) >= st1["seq"])
    seqs = b.seqs()
    assert contiguous(seqs) and min(seqs) == 1, "one gap-free numbering across the reboot"
    for s in seqs:
        t.add(s)
    assert t.gaps() == []
    # The outbox on flash still holds what went out before the reboot.
    cid, p = b.command("backfill", **{"from": 1})
    call(rig, b, p)
    assert b.wait(lambda: cid in b.replies)
    r = b.replies[cid][0]
    assert r["res"] == "applied" and r["from"] == 1 and r["to"] >= st1["seq"]
    assert b.wait(lambda: b.seqs().count(1) == 2), "message 1, sent before the reboot, went out again"
