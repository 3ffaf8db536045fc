# Under micropython: throw malformed, truncated, oversized, forged and replayed commands at the
# app's command entry point and check that none crashes it, none changes the durable state,
# and every one is answered (a reply, or counted in the next one's "sup") and, when refused,
# counted in the refusal tally (the first of an interval also as a security event).
#   micropython fuzz_commands_mpy.py FLASH_PATH N
import sys
import json
import random
from binascii import hexlify
import mptest
import record
import auth
from billtest import EPOCH_S
import sim_atm90e26
import app as app_mod
from hmac256 import HmacSha256

KEY = bytes(range(1, 33))
OTHER = bytes(range(2, 34))
MID = "fz-0001"
N = int(sys.argv[2])
random.seed(7)

board = sim_atm90e26.build({"meter_id": MID, "key": KEY, "seed": 1, "flash": sys.argv[1], "broker": None,
                            "config": {"opening_balance": 5000}})
m = app_mod.Meter(board)
m.boot()
NOW = m.clock.time() + EPOCH_S  # "exp" is Unix time


def signed(key, doc=None, body=None):
    if body is None:
        body = json.dumps(doc).encode()
    return hexlify(HmacSha256(key).digest(body)) + b" " + body


def cmd(cid, op="topup", key=KEY, mid=MID, exp=None, **args):
    d = {"m": mid, "id": cid, "exp": NOW + 3600 if exp is None else exp, "op": op}
    d.update(args)
    return signed(key, d)


# Some genuine traffic first: these are the commands an attacker could have captured.
captured = []
for cid in range(1, 21):
    p = cmd(cid, amt=10) if cid % 3 else cmd(cid, "status")
    captured.append(p)
    m.on_message(m.sync.cmd_topic, p)
mptest.eq(m.topups, 14, "genuine top-ups applied")
base = bytearray(record.SIZE)
record.pack(base, m)
now_rec = bytearray(record.SIZE)
price = m.tariff.price
limits = (m.account.low1, m.account.low2, m.account.max_balance, m.account.reconnect_threshold,
          m.account.overdraft)
utc0 = m.clock.time()


def rbytes(n):
    return bytes(random.getrandbits(8) for _ in range(n))


valid = cmd(99, amt=10)
AUTHENTIC_BAD = (  # bodies with a genuine MAC that must still be refused
    b"not json", b"[1,2]", b'{"m":"fz-0001"}', b'{"m":"fz-0001","id":"7","exp":1,"op":"topup"}',
    b'{"m":"fz-0001","id":-5,"exp":2000000000,"op":"topup"}', b'{"m":"fz-0001","id":0,"exp":2000000000}',
    b'{"m":"fz-0001","id":4294967297,"exp":2000000000,"op":"topup"}',
    b'{"m":"fz-0001","id":500,"exp":2000000000,"op":7}', b'{"m":"fz-0001","id":501,"exp":"x","op":"topup"}',
    b'{"m":"fz-0001","id":502,"exp":2000000000}', b"", b"{}", b"null", b'"str"', b"1e999",
)


def case(i):
    k = i % 10
    if k == 0:
        return rbytes(random.getrandbits(10))
    if k == 1:
        return valid[:random.getrandbits(7) % len(valid)]
    if k == 2:
        b = bytearray(valid)
        for _ in range(1 + random.getrandbits(2)):
            b[random.getrandbits(16) % len(b)] ^= 1 << random.getrandbits(3)
        return bytes(b)
    if k == 3:
        return cmd(1000 + i, amt=10, pad="x" * (auth.MAX_PAYLOAD + 1 + random.getrandbits(9)))
    if k == 4:
        return cmd(1000 + i, random.choice(("topup", "disconnect", "tariff", "rotkey")), key=OTHER, amt=10)
    if k == 5:
        return cmd(1000 + i, mid="fz-0002", amt=10)
    if k == 6:
        return cmd(1000 + i, exp=NOW - 1 - random.getrandbits(20), amt=10)
    if k == 7:
        return cmd(1 + random.getrandbits(3), amt=10)  # stale: older than the replay window
    if k == 8:
        return signed(KEY, body=random.choice(AUTHENTIC_BAD))
    return random.choice(captured)  # a replay of a genuine command


crashes = 0
answers = 0
sup0 = 0
changed = 0
unanswered = 0
unlogged = 0
for i in range(N):
    p = case(i)
    seq0 = m.sync.outbox.seq
    tally0 = m.sync.tally.ever
    ref0 = m.commands.refused
    del m.sync.answers[:]  # as the link would have sent them
    try:
        m.on_message(m.sync.cmd_topic, p)
    except Exception as e:
        crashes += 1
        if crashes < 5:
            print("crash on case", i, repr(p[:80]), repr(e))
        continue
    record.pack(now_rec, m)
    if (now_rec != base or m.tariff.price != price or m.tariff.passive is not None or m.clock.time() != utc0 or
            (m.account.low1, m.account.low2, m.account.max_balance, m.account.reconnect_threshold,
          m.account.overdraft) != limits):
        changed += 1
        if changed < 5:
            print("state changed by case", i, repr(p[:80]))
        record.unpack(base, m)
    # Answered: a numbered reply (applied), an unnumbered answer (refused, repeated), or counted
    # for the next answer's "sup" when over the answer budget.
    sup = m.sync.suppressed
    answers += len(m.sync.answers)
    if m.sync.outbox.seq != seq0 + 1 and len(m.sync.answers) != 1 and sup != sup0 + 1:
        unanswered += 1
    # Logged: counted by reason in the refusal tally (the first of an interval as an event at once).
    if m.commands.refused != ref0 and m.sync.tally.ever != tally0 + 1:
        unlogged += 1
    sup0 = sup
    # Let simulated time pass now and then, so the answers to non-authentic commands refill.
    if i % 50 == 0:
        board.advance(10000)
        utc0 += 10

# Authentic commands with arguments of every wrong shape: answered, never a crash.
WILD = (None, True, False, -1, 0, 1, 2 ** 31, 2 ** 64, -2 ** 40, 1.5, "", "x" * 40, [], [1], {}, {"v": 1},
        {"v": 1, "kind": "flat", "price_per_kwh": 2 ** 40, "scale": 0}, "00" * 32, {"overdraft": -1},
        {"low1": "5"}, {"no_such_rule": 1}, {"friendly": {"hours": 5}})
OPS = ("topup", "disconnect", "reconnect", "tariff", "limits", "time", "status", "backfill", "rotkey", "nope")
ARGS = ("amt", "direct", "tariff", "low1", "low2", "hyst", "maxb", "rth", "utc", "from", "kid", "wk", "kcv",
        "credit", "activate_at")
wild_crashes = 0
wild_unanswered = 0
cid = 20000  # within auth.MAX_ADVANCE of the last id applied
for i in range(1000):
    cid += 1
    d = {"m": MID, "id": cid, "exp": NOW + 3600 + 100000, "op": random.choice(OPS)}
    for _ in range(random.getrandbits(2)):
        d[random.choice(ARGS)] = random.choice(WILD)
    seq0 = m.sync.outbox.seq
    try:
        m.on_message(m.sync.cmd_topic, signed(KEY, d))
    except Exception as e:
        wild_crashes += 1
        if wild_crashes < 5:
            print("crash on", d, repr(e))
    if m.sync.outbox.seq == seq0:
        wild_unanswered += 1
mptest.eq(wild_crashes, 0, "crashes on authentic commands with wild arguments")
mptest.eq(wild_unanswered, 0, "authentic commands without a reply")
mptest.eq(crashes, 0, "crashes")
mptest.eq(changed, 0, "state changes")
mptest.eq(unanswered, 0, "commands without a reply")
mptest.eq(unlogged, 0, "refusals without a security event")
mptest.check(m.commands.refused >= N * 8 // 10, "most cases refused outright")
mptest.check(answers > 0, "refusals answered")
mptest.done(cases=N, refused=m.commands.refused, topups=m.topups, answered=m.sync.outbox.seq, answers=answers)
