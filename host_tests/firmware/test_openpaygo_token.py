"""firmware/openpaygo_token.py (and siphash24.py) under micropython against the reference OpenPAYGO
Token library (openpaygo, pinned): every kind, out of order, replays, the counter window's edges,
wrong keys, and a few thousand random tokens; the verdicts must be the reference decoder's."""
import json
import random

import pytest

import openpaygo
from openpaygo import TokenType, decode_token, generate_token

KEY = "a29ab82edc5fbbc41ec9530f6dac86b1"
OTHER = "bc41ec9530f6dac86b1a29ab82edc5fb"
START = 123456789

RUN = r'''
import sys, json, mptest, openpaygo_token as opg
from binascii import unhexlify
S = json.loads(sys.stdin.read())
d = opg.Decoder(unhexlify(S["key"]), S["start"])
out = []
for tok in S["tokens"]:
    typ, val, n = d.check(tok)
    if typ is not None:
        d.remember(typ, val, n)
        out.append([typ, val, n])
    else:
        out.append([None, val, None])
mptest.eq(opg.starting_code(unhexlify(S["key"])), S["derived_start"], "starting code from the key")
mptest.done(out=out, count=d.count)
'''

NAMES = {TokenType.ADD_TIME: 1, TokenType.SET_TIME: 2, TokenType.DISABLE_PAYG: 3, TokenType.COUNTER_SYNC: 4}


def _reference(tokens):
    """The reference decoder's verdicts, as a device that keeps its count and used counts would."""
    count, used, out = 0, [0], []
    for tok in tokens:
        if not tok.isdigit():
            out.append([None, "malformed", None])  # the reference raises on it
            continue
        value, typ, n, upd = decode_token(token=tok, secret_key=KEY, count=count, used_counts=used,
                                          starting_code=START)
        if typ in NAMES:
            out.append([NAMES[typ], int(value) if value is not None else value, n])
            count = max(count, n)
            used = upd if upd is not None else used
        else:
            out.append([None, "used" if typ == TokenType.ALREADY_USED else "bad_mac", None])
    return out, count


def _gen(count, typ, value=None, key=KEY):
    return generate_token(secret_key=key, count=count, value=value, token_type=typ, starting_code=START)


def _scenario(seed, n):
    rnd = random.Random(seed)
    issued, count = [], 0
    for _ in range(n):
        r = rnd.random()
        if r < 0.7:
            count, tok = _gen(count, TokenType.ADD_TIME, rnd.randint(0, 995))
        elif r < 0.8:
            count, tok = _gen(count, TokenType.SET_TIME, rnd.randint(0, 995))
        elif r < 0.85:
            count, tok = _gen(count, TokenType.DISABLE_PAYG)
        elif r < 0.9:
            count, tok = _gen(count, TokenType.COUNTER_SYNC)
        else:
            _, tok = _gen(count, TokenType.ADD_TIME, rnd.randint(0, 995), key=OTHER)  # another device's
        issued.append(tok)
    return _entered(rnd, issued, 9)


def _entered(rnd, issued, digits):
    """As customers enter them: mostly in order, some late, some twice, some lost, some mistyped."""
    entered = []
    for i, tok in enumerate(issued):
        r = rnd.random()
        if r < 0.1 and i + 1 < len(issued):
            entered += [issued[i + 1], tok]
        elif r < 0.15:
            entered += [tok, tok]
        elif r < 0.18:
            continue
        elif r < 0.2:
            entered.append("%0*d" % (digits, rnd.randrange(10 ** digits)))
        else:
            entered.append(tok)
    return entered


def _run(mpy, tokens):
    from binascii import unhexlify
    derived = openpaygo.token_shared.OpenPAYGOTokenShared.generate_starting_code(unhexlify(KEY))
    r = mpy(RUN, stdin=json.dumps({"key": KEY, "start": START, "tokens": tokens, "derived_start": derived}),
            heap="1m", timeout=900).result
    assert r["ok"], r
    return r["out"], r["count"]


def test_every_kind_in_order_out_of_order_replayed_and_foreign(mpy):
    c = 0
    c, add1 = _gen(c, TokenType.ADD_TIME, 7)
    c, add2 = _gen(c, TokenType.ADD_TIME, 995)
    c, set3 = _gen(c, TokenType.SET_TIME, 30)
    c, add4 = _gen(c, TokenType.ADD_TIME, 1)
    c, add5 = _gen(c, TokenType.ADD_TIME, 2)
    c, dis = _gen(c, TokenType.DISABLE_PAYG)
    c, sync = _gen(c, TokenType.COUNTER_SYNC)
    _, foreign = _gen(2, TokenType.ADD_TIME, 5, key=OTHER)
    tokens = [add1, add1, add2, add5, add4, add4, set3, foreign, dis, add1, sync, "12345", "x1"]
    ours, count = _run(mpy, tokens)
    ref, rcount = _reference(tokens)
    assert ours == ref and count == rcount, (ours, ref)
    assert [o[0] for o in ours[:3]] == [1, None, 1] and ours[1][1] == "used"
    assert ours[4][0] == 1, "Add-Time entered after a later one: taken once"
    assert ours[6] == [None, "used", None], "Set-Time after a later count: spent"
    assert ours[7][1] == "bad_mac" and ours[9][1] == "used"


def test_the_counter_window_edges(mpy):
    # Add-Time tokens 16 counts behind the newest are still taken, 17 are not; a token 64 counts
    # ahead is found, 65 is not.
    toks = {}
    c = 0
    for k in range(40):
        c, toks[k] = _gen(c, TokenType.ADD_TIME, k)
    far = _gen(c + 64 * 2, TokenType.ADD_TIME, 3)[1]
    tokens = [toks[39], toks[31], toks[30], toks[0], far]
    ours, count = _run(mpy, tokens)
    ref, rcount = _reference(tokens)
    assert ours == ref and count == rcount, (ours, ref)


@pytest.mark.parametrize("seed", [1, 2])
def test_random_tokens_agree_with_the_reference(mpy, seed):
    tokens = _scenario(seed, 600)
    ours, count = _run(mpy, tokens)
    ref, rcount = _reference(tokens)
    assert ours == ref and count == rcount
    took = sum(1 for o in ours if o[0] is not None)
    print("openpaygo seed %d: %d tokens tried, %d accepted, %d used, %d refused" % (
        seed, len(ours), took, sum(1 for o in ours if o[1] == "used"), sum(1 for o in ours if o[1] == "bad_mac")))
    assert took > 300


APP = r'''
import sys, json, mptest, simkit
S = json.loads(sys.stdin.read())
FLASH = simkit.fresh_flash(sys.argv[1])
CFG = {"opening_balance": 1000, "tokens": ["pm", "openpaygo"], "openpaygo": {"unit_minor": 100}}
b, m = simkit.meter(FLASH, config=CFG)
T = S["tokens"]
got = [m.enter_token(t) for t in (T["add12"], T["add12"], T["add5"], T["add3_late"], T["sync"])]
mptest.eq(got, ["applied", "used", "applied", "applied", "applied"], "kinds")
mptest.eq(m.account.balance, 1000 + 1200 + 500 + 300, "credited in money: 100 minor units per unit")
mptest.eq((m.enter_token(T["set"]), m.account.balance), ("applied", 5000), "Set-Time: the balance becomes 50 units")
log = m.topup_log.entries()
mptest.eq([(e["src"], e["result"], e["amount"]) for e in log[-6:]], [("token", "applied", 1200), ("token", "used", 0),
          ("token", "applied", 500), ("token", "applied", 300), ("token", "applied", 0), ("token", "applied", 5000)], "journal")
mptest.eq(m.enter_token(S["ours"]), "applied", "our 20-digit tokens still work beside them")
bal = m.account.balance
for k in range(3):
    mptest.eq(m.enter_token(T["foreign"]), "bad_mac", "another device's token")
mptest.eq(m.enter_token(T["add20"]), "locked", "the same lockout as ours")
m.tokens.lock_until = 0  # the lockout served
m.commit()
count = m.paygo_count
b, m = simkit.meter(FLASH, config=CFG)  # a power cut: the count and the used counts are in the record
mptest.eq((m.paygo_count, m.account.balance), (count, bal), "kept")
mptest.eq(m.enter_token(T["add12"]), "used", "a replay after the cut")
mptest.eq(m.enter_token(T["add20"]), "applied", "a new one")
b, m = simkit.meter(FLASH, config={"opening_balance": 1000})
mptest.eq(m.enter_token(T["add30"]), "malformed", "a meter not configured for OpenPAYGO takes none")
mptest.done()
'''


def test_the_meter_takes_openpaygo_tokens_beside_its_own(mpy, tmp_path):
    import hashlib
    import hmac
    from binascii import unhexlify  # noqa: F401
    import mprun
    import token_issue
    meter_key = bytes(range(32))  # simkit.TEST_KEY
    key = hmac.new(meter_key, b"pm-openpaygo-key-v1", hashlib.sha256).digest()[:16]
    start = openpaygo.token_shared.OpenPAYGOTokenShared.generate_starting_code(key)
    k = key.hex()
    toks = {}
    c = 0
    c, late3 = generate_token(secret_key=k, count=c, value=3, token_type=TokenType.ADD_TIME, starting_code=start)
    c, toks["add12"] = generate_token(secret_key=k, count=c, value=12, token_type=TokenType.ADD_TIME, starting_code=start)
    c, toks["add5"] = generate_token(secret_key=k, count=c, value=5, token_type=TokenType.ADD_TIME, starting_code=start)
    toks["add3_late"] = late3
    c, toks["sync"] = generate_token(secret_key=k, count=c, token_type=TokenType.COUNTER_SYNC, starting_code=start)
    c, toks["set"] = generate_token(secret_key=k, count=c, value=50, token_type=TokenType.SET_TIME, starting_code=start)
    c, toks["add20"] = generate_token(secret_key=k, count=c, value=20, token_type=TokenType.ADD_TIME, starting_code=start)
    c, toks["add30"] = generate_token(secret_key=k, count=c, value=30, token_type=TokenType.ADD_TIME, starting_code=start)
    toks["foreign"] = generate_token(secret_key=OTHER, count=1, value=7, starting_code=START)[1]
    ours = token_issue.issue(meter_key, "t-0001", 1, 250)
    r = mpy(APP, str(tmp_path / "flash.img"), stdin=json.dumps({"tokens": toks, "ours": ours}), heap=mprun.APP_HEAP,
            timeout=600).result
    assert r["ok"], r


EVERY = r'''
import sys, json, mptest, simkit
S = json.loads(sys.stdin.read())
FLASH = simkit.fresh_flash(sys.argv[1])
CFG = {"opening_balance": 1000, "tokens": ["pm", "openpaygo"], "openpaygo": {"unit_minor": 100},
       "credit": {"max_balance": 10 ** 8}}
b, m = simkit.meter(FLASH, config=CFG)
first = [m.enter_token(t) for t in S["tokens"]]
again = [m.enter_token(t) for t in S["tokens"]]
mptest.eq(first, ["applied"] * len(S["tokens"]), "each token the reference library made: applied")
mptest.eq(set(again), {"used"}, "and each only once")
mptest.eq(m.account.balance, S["balance"], "the credit the tokens say")
mptest.check(m.relay.keep_power, "Disable-PAYG: power kept whatever the credit")
mptest.done(tried=2 * len(S["tokens"]), accepted=first.count("applied"), used=again.count("used"))
'''


def test_every_kind_the_reference_library_issues_is_applied_once_on_the_meter(mpy, tmp_path):
    import hashlib
    import hmac
    import mprun
    rnd = random.Random(5)
    meter_key = bytes(range(32))
    key = hmac.new(meter_key, b"pm-openpaygo-key-v1", hashlib.sha256).digest()[:16]
    start = openpaygo.token_shared.OpenPAYGOTokenShared.generate_starting_code(key)
    c, balance, toks = 0, 1000, []
    for k in range(60):
        r = rnd.random()
        if r < 0.7:
            v = rnd.randint(1, 995)
            c, t = generate_token(secret_key=key.hex(), count=c, value=v, token_type=TokenType.ADD_TIME,
                                  starting_code=start)
            balance += v * 100
        elif r < 0.85:
            v = rnd.randint(0, 995)
            c, t = generate_token(secret_key=key.hex(), count=c, value=v, token_type=TokenType.SET_TIME,
                                  starting_code=start)
            balance = v * 100
        else:
            c, t = generate_token(secret_key=key.hex(), count=c, token_type=TokenType.COUNTER_SYNC,
                                  starting_code=start)
        toks.append(t)
    c, t = generate_token(secret_key=key.hex(), count=c, token_type=TokenType.DISABLE_PAYG, starting_code=start)
    toks.append(t)
    r = mpy(EVERY, str(tmp_path / "flash.img"), stdin=json.dumps({"tokens": toks, "balance": balance}),
            heap=mprun.APP_HEAP, timeout=900).result
    assert r["ok"], r
    print("openpaygo on the meter: %(tried)d tokens tried, %(accepted)d accepted, %(used)d refused as used" % r)


def _reference_ext(tokens):
    count, used, out = 0, [0], []
    for tok in tokens:
        try:
            value, typ, n, upd = decode_token(token=tok, secret_key=KEY, count=count, used_counts=used,
                                              starting_code=START)
        except UnboundLocalError:  # the reference's extended decoder, when no count matches
            value, typ, n, upd = None, TokenType.INVALID, None, None
        if typ in NAMES:
            out.append([NAMES[typ], int(value), n])
            count = max(count, n)
            used = upd if upd is not None else used
        else:
            out.append([None, "used" if typ == TokenType.ALREADY_USED else "bad_mac", None])
    return out, count


def test_extended_tokens_agree_with_the_reference(mpy):
    rnd = random.Random(9)
    c, issued = 0, []
    for _ in range(120):
        typ = TokenType.ADD_TIME if rnd.random() < 0.8 else TokenType.SET_TIME
        c, t = generate_token(secret_key=KEY, count=c, value=rnd.randint(0, 999999), token_type=typ,
                              starting_code=START, extended_token=True)
        issued.append(t)
    tokens = _entered(rnd, issued, 12)
    assert all(len(t) == 12 for t in tokens)
    ours, count = _run(mpy, tokens)
    ref, rcount = _reference_ext(tokens)
    assert ours == ref and count == rcount
    assert sum(1 for o in ours if o[0] is not None) > 80 and max(o[1] for o in ours if o[0]) > 995
