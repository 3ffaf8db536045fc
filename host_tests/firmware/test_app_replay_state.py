"""What protects the command path when the meter loses state (issue 14, docs/protocol.md):

- both record slots unreadable: the replay window is gone, so every money or relay command is
  refused ("replay_lost") until the backend answers the meter's nonce with a signed "resync";
- a power cut (RTC back at 2000) or an RTC set back: a command once refused as expired stays
  expired, since expiry is judged against the time floor committed with the record.

Each case replays captured, signed commands, as an attacker on the broker or the wire would."""
import json

import mprun
import token_issue

PRELUDE = r"""
import mptest, simkit, events
from simkit import sign, TEST_KEY as KEY
FLASH = simkit.fresh_flash("/tmp/pm-replay.img")
Y2000 = 946684800
CFG = {"opening_balance": 1000, "credit": {"max_balance": 10 ** 7}}


def boot(utc=None):
    return simkit.meter(FLASH, config=CFG, utc_start=utc)  # utc: the RTC at power-up


run = simkit.run


def send(m, payload):
    out = simkit.Replies(m)
    m.on_message(b"cmd", payload)
    rep = out.replies()
    return rep[-1]["res"] if rep else None


def cmd(cid, exp, op="topup", **kw):
    doc = {"m": "t-0001", "id": cid, "exp": exp, "op": op}
    doc.update(kw)
    return sign(KEY, doc)


def evs(m, code):
    return [m.events.get(s)[1] for s in range(m.events.oldest_seq(), m.events.seq) if m.events.get(s)[0] == code]
"""


def test_replays_refused_after_the_record_is_lost_until_a_resync(mpy):
    res = mpy(PRELUDE + r"""
b, m = boot()
now = simkit.unix_now(b)
exp = now + 30 * 86400
import sys, json
T = json.loads(sys.stdin.read())
captured = [cmd(5, exp, amt=2000), cmd(6, exp, amt=3000)]
for p in captured:
    mptest.eq(send(m, p), "applied", "top-up applied")
mptest.eq(m.enter_token(T["t6"]), "applied", "token 6 typed")
run(b, m, 6)
m.commit()
for p in ("/flash/state.a", "/flash/state.b"):  # both slots lost (flash damage, a bad write)
    with open(p, "wb") as f:
        f.write(b"\xff" * 64)

b, m = boot()
nonce = evs(m, events.REPLAY_LOST)
mptest.eq(len(nonce), 1, "replay_lost raised with a nonce")
nonce = nonce[0]
bal = m.account.balance
for p in captured:
    mptest.eq(send(m, p), "replay_lost", "a captured top-up is refused")
mptest.eq(send(m, cmd(7, exp, amt=100)), "replay_lost", "a new one too, until the resync")
mptest.eq(send(m, cmd(8, exp, op="relay", what="connect")), "replay_lost", "and relay commands")
mptest.eq(send(m, cmd(9, exp, op="resync", last=8, nonce=nonce + 1)), "replay_lost", "a resync with another nonce")
mptest.eq(m.enter_token(T["t6"]), "replay_lost", "a typed token too")
mptest.eq(m.account.balance, bal, "no money moved")

# Power cut before any resync: still lost, with a new nonce; the old one is no use.
b, m = boot()
n2 = evs(m, events.REPLAY_LOST)
mptest.eq(len(n2), 1, "still lost after a reboot")
n2 = n2[0]
mptest.check(n2 != nonce, "a new nonce per boot")
mptest.check(b'"rl":%d' % n2 in m.sync.birth()[1], "the retained birth carries the nonce")
mptest.eq(send(m, cmd(10, exp, op="resync", last=8, nonce=nonce)), "replay_lost", "the old nonce is refused")
mptest.eq(send(m, cmd(11, exp, op="resync", last=True, nonce=n2)), "bad_args", "a resync without a valid last")
mptest.eq(send(m, cmd(11, exp, op="resync", last=11, tlast="7", nonce=n2)), "bad_args", "or a valid tlast")
mptest.check(m.commands.lost, "a bad resync changes nothing")
mptest.eq(send(m, cmd(12, exp, op="resync", last=11, tlast=7, nonce=n2)), "applied", "the backend's resync")
mptest.eq(m.enter_token(T["t6"]), "stale_id", "token ids up to tlast are spent")
mptest.eq(m.enter_token(T["t8"]), "applied", "a token issued after it is taken")
bal += 800
mptest.check(not m.commands.lost, "replay state re-established")
mptest.check(b'"rl"' not in m.sync.birth()[1], "and the next birth says nothing of it")
for p in captured:
    mptest.eq(send(m, p), "stale_id", "captured top-ups stay refused")
mptest.eq(m.account.balance, bal, "nothing applied twice")
mptest.eq(send(m, cmd(13, exp, amt=700)), "applied", "a new top-up is taken")
mptest.eq(m.account.balance, bal + 700, "credited once")

# The resync was committed with the top-up: a reboot keeps the window.
b, m = boot()
mptest.eq(evs(m, events.REPLAY_LOST), [], "not lost any more")
mptest.eq((send(m, cmd(13, exp, amt=700)), m.account.balance), ("applied", bal + 700), "a repeat: answered, not applied")
mptest.done()
""", stdin=json.dumps({k: token_issue.issue(bytes(range(32)), "t-0001", i, a) for k, i, a in
                       (("t6", 6, 600), ("t8", 8, 800))}), heap=mprun.APP_HEAP, timeout=300)
    assert res.result["checks"] >= 22


def test_an_expired_command_stays_expired_after_a_power_cut_or_a_clock_set_back(mpy):
    res = mpy(PRELUDE + r"""
b, m = boot()
run(b, m, 30)
now = simkit.unix_now(b)
late = [cmd(20 + i, now - 60 * (i + 1), amt=5000) for i in range(3)]  # expired a minute ago and earlier
for p in late:
    mptest.eq(send(m, p), "expired", "refused as expired")
bal = m.account.balance
# The power goes at once (no other commit): the RTC comes back at 2000-01-01.
b, m = boot(Y2000)
for p in late:
    mptest.eq(send(m, p), "expired", "replayed after the power cut: still expired")
mptest.eq(m.account.balance, bal, "nothing applied with the clock at 2000")
# An RTC set back a month (not by the backend): the same.
b, m = boot(now - 30 * 86400)
for p in late:
    mptest.eq(send(m, p), "expired", "replayed with the RTC a month back: still expired")
mptest.eq(m.account.balance, bal, "nothing applied")
# A fresh command from the backend is not refused: expiry is judged from the floor onward.
fresh = simkit.unix_now(b) + 600
mptest.check(fresh > now, "the clock runs from the floor")
mptest.eq(send(m, cmd(30, fresh, amt=100)), "applied", "a current command goes through")
mptest.done()
""", heap=mprun.APP_HEAP, timeout=300)
    assert res.result["checks"] >= 10
