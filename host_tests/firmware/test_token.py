"""firmware/token.py under micropython, fed with tokens from the independent host issuer
(tools/token_issue.py): accept, reject, replay, lockout, and token ids of their own
(firmware/tokenids.py): out of order within the window, untouched by commands."""
import json

import token_issue

KEY = bytes(range(1, 33))
OTHER = bytes(range(2, 34))
MID = "m-0042"

SCRIPT = r'''
import sys, json, token, auth, mptest
T = json.loads(sys.stdin.read())
key = bytes(range(1, 33))
cmds = auth.Commands("m-0042", key)
tk = token.Tokens("m-0042", key, cmds)
now = 1800000000

def chk(name, t=None):
    return tk.check(T[name], now if t is None else t)

v = chk("credit5")
mptest.eq(v, (token.OK, token.CREDIT, 5, 1234, None), "accepted")
tk.ids.remember(5)
mptest.eq(chk("credit5")[0], token.USED, "replay of the same token")
mptest.eq(chk("credit5_spaced")[:3], (token.USED, token.CREDIT, 5), "spaces and dashes allowed")
mptest.eq(chk("big")[:4], (token.OK, token.CREDIT, 6, 16383000), "largest amount")
mptest.eq(chk("debt")[:4], (token.OK, token.DEBT, 7, 2500), "debt token")
# Commands have their own counter: command ids 9..40 applied say nothing about token 9.
for i in range(9, 41):
    cmds.remember(i, 0)
mptest.eq(chk("credit9")[0], token.OK, "token 9 after command ids past it")
# Out of order: token 30, then 9 and 12, each once.
tk.ids.remember(30)
for name in ("credit9", "credit12"):
    mptest.eq(chk(name)[0], token.OK, "%s after token 30" % name)
    tk.ids.remember(int(name[6:]))
    mptest.eq(chk(name)[0], token.USED, "%s used" % name)
mptest.eq(chk("credit30")[0], token.USED, "token 30 used")
# Older than the window (64 ids below the newest) and never typed: stale.
tk.ids.remember(6 + 64)
mptest.eq(chk("big")[4], "stale_id", "token 6, 64 below the newest")
tk.ids.remember(31)
mptest.eq(chk("debt")[:4], (token.OK, token.DEBT, 7, 2500), "token 7, 63 below: still good")
# Malformed input and typos: refused, not counted.
for bad in ("", "123", "1" * 21, "abcdefghijabcdefghij", None):
    mptest.eq(tk.check(bad, now)[4], "malformed", "malformed %r" % (bad,))
good = T["credit33"]
for pos in range(20):
    for d in "0123456789":
        if d != good[pos]:
            bad = good[:pos] + d + good[pos + 1:]
            mptest.eq(tk.check(bad, now)[4], "check_digit", "typo at %d" % pos)
for pos in range(19):
    if good[pos] != good[pos + 1]:
        bad = good[:pos] + good[pos + 1] + good[pos] + good[pos + 2:]
        mptest.eq(tk.check(bad, now)[4], "check_digit", "transposition at %d" % pos)
mptest.eq(tk.bad, 0, "typos do not count towards the lockout")
# Forged tokens (valid check digit, wrong MAC) lock entry out, longer each time.
mptest.eq(chk("forged1")[4], "bad_mac", "other meter's key")
mptest.eq(chk("forged2")[4], "bad_mac", "altered amount")
mptest.check(not tk.locked(now), "two bad: not yet locked")
mptest.eq(chk("forged3")[4], "bad_mac", "third bad")
mptest.eq(tk.lock_until, now + 10, "locked 10 s")
mptest.eq(chk("credit33")[4], "locked", "even a good token waits")
mptest.eq(chk("forged1", now + 10)[4], "bad_mac", "fourth bad after the lock")
mptest.eq(tk.lock_until, now + 10 + 20, "lock doubles")
for i in range(20):
    last = tk.lock_until
    tk.check(T["forged1"], last)
mptest.eq(tk.bad, 24, "24 bad in a row")
# Growth is capped at an hour; a clock set back never extends it past the cap.
mptest.eq(tk.lock_until - last, 3600, "lock capped at one hour")
mptest.check(tk.locked(last + 3599) and not tk.locked(last + 3600), "locked for exactly the cap")
mptest.check(tk.locked(last - 86400), "clock set back: still locked")
mptest.eq(tk.lock_until, last - 86400 + 3600, "but never longer than the cap")
mptest.eq(tk.check(T["credit33"], tk.lock_until)[0], token.OK, "a good token after the lock")
mptest.eq(tk.bad, 0, "and resets the count")
# Ids beyond 24 bits are reconstructed around the newest token id applied.
tk.ids.top = (1 << 24) + 100
mptest.eq(chk("wide")[:3], (token.OK, token.CREDIT, (1 << 24) + 101), "24-bit id wraps")
mptest.eq(token.decode_amount(token.encode_amount(16383000)), 16383000, "amount round trip")
mptest.check(token.encode_amount(16383001) is None, "inexact amount not encodable")
none = token.Tokens("m-0042", None, cmds)
mptest.eq(none.check(T["credit33"], now)[4], "no_key", "no key, no tokens")
cmds.lose(5)
mptest.eq(chk("wide")[4], "replay_lost", "the record was lost: no token until the resync")
mptest.done()
'''


def _tokens():
    iss = token_issue.issue
    good = iss(KEY, MID, 33, 500)
    forged_amount = good[:8] + ("9" if good[8] != "9" else "8") + good[9:19]
    forged_amount += str(token_issue.damm(forged_amount))
    return {
        "credit5": iss(KEY, MID, 5, 1234),
        "credit5_spaced": token_issue.grouped(iss(KEY, MID, 5, 1234)).replace(" ", "- "),
        "big": iss(KEY, MID, 6, 16383000),
        "debt": iss(KEY, MID, 7, 2500, "debt"),
        "credit9": iss(KEY, MID, 9, 100),
        "credit12": iss(KEY, MID, 12, 100),
        "credit30": iss(KEY, MID, 30, 500),
        "credit33": good,
        "forged1": iss(OTHER, MID, 31, 500),
        "forged2": forged_amount,
        "forged3": iss(KEY, "m-0043", 32, 500),
        "wide": iss(KEY, MID, (1 << 24) + 101, 700),
    }


def test_tokens_under_micropython(mpy):
    res = mpy(SCRIPT, stdin=json.dumps(_tokens()), heap="256k")
    assert res.result["ok"] and res.result["checks"] > 200


ROTATION = r'''
import sys, json, token, auth, mptest
T = json.loads(sys.stdin.read())
k1, k2 = bytes(range(1, 33)), bytes(range(2, 34))
cmds = auth.Commands("m-0042", k1)
tk = token.Tokens("m-0042", k1, cmds)
now = 1000
mptest.eq(tk.check(T["old1"], now)[0], token.OK, "before the rotation: the provisioned key")
tk.ids.remember(1)
tk.set_key(k2, k1, now + 86400)  # rotated, a day of grace for the old key's tokens
mptest.eq(tk.check(T["new2"], now)[0], token.OK, "a token made with the new key")
tk.ids.remember(2)
mptest.eq(tk.check(T["old3"], now + 3600)[0], token.OK, "one made with the old key, within the grace")
tk.ids.remember(3)
mptest.eq(tk.check(T["old1"], now + 3600)[0], token.USED, "the same replay window for both keys")
v = tk.check(T["old4"], now + 86400)
mptest.eq((v[0], v[4]), (token.REFUSED, "old_key"), "after the grace: refused old_key")
mptest.eq(tk.bad, 0, "a genuine old token does not count towards the lockout")
mptest.eq(tk.check(T["other5"], now)[4], "bad_mac", "a third key is still a bad MAC")
tk.set_key(bytes(range(3, 35)))  # a second rotation without a previous key (unknown): no grace
mptest.eq(tk.check(T["new6"], now)[4], "bad_mac", "tokens of a replaced key, grace over")
mptest.done()
'''


def test_key_rotation_takes_new_tokens_and_old_ones_for_a_grace_period(mpy):
    k1, k2, k3 = KEY, OTHER, bytes(range(5, 37))
    t = {"old1": token_issue.issue(k1, MID, 1, 100), "new2": token_issue.issue(k2, MID, 2, 100),
         "old3": token_issue.issue(k1, MID, 3, 100), "old4": token_issue.issue(k1, MID, 4, 100),
         "other5": token_issue.issue(k3, MID, 5, 100), "new6": token_issue.issue(k2, MID, 6, 100)}
    r = mpy(ROTATION, stdin=json.dumps(t), heap="256k").result
    assert r["ok"] and r["checks"] >= 8, r
