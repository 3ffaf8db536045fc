# Every token result on the keypad, read back from the emulated display, with the sound each
# makes (host_tests/firmware/test_customer.py). argv: flash, then a JSON file of tokens issued by
# tools/token_issue.py (the CPython implementation of the format).
import sys
import json
import mptest
import uikit
from uikit import press, wait, shows, banner, money

flash = sys.argv[1]
with open(sys.argv[2]) as f:
    T = json.load(f)


def tones_since(b, n0):
    return b.beeper.tones()[n0 - b.beeper.count:] if b.beeper.count > n0 else []


def enter(b, m, tok, want, msg, tone):
    n0 = b.beeper.count
    bal = m.account.balance
    press(b, m, tok + "#")
    got = shows(b, want, msg)
    mptest.eq(banner(b), "TOKEN", msg + ": titled")
    t = tones_since(b, n0)
    keys = [x for x in t if x[2] == 2700 and x[1] <= 60]
    mptest.check(len(keys) >= len(tok), "%s: a beep per key (%d keys, %r)" % (msg, len(tok), t))
    mptest.check(any(x[2] == tone for x in t[-2:]), "%s: ends with the %d Hz tone: %r" % (msg, tone, t[-2:]))
    wait(b, m, 9000)
    mptest.check(banner(b) != "TOKEN", msg + ": the result goes after result_s")
    return bal, got


b, m = uikit.meter(flash, {"opening_balance": 300}, load_w=0)
bal, _ = enter(b, m, T["good"], ["ACCEPTED", "+12.50", "Credit", money(300 + 1250)], "accepted", 2700)
mptest.eq(m.account.balance, 300 + 1250, "credited once")
enter(b, m, T["good"], ["ALREADY USED"], "used", 1200)
enter(b, m, T["typo"], ["TYPING ERROR"], "check digit", 1200)
enter(b, m, T["short"], ["INVALID TOKEN"], "15 digits", 1200)
enter(b, m, T["max"], ["OVER MAX CREDIT", "Credit", money(1550)], "over the maximum balance", 1200)
enter(b, m, T["debt"], ["DEBT ADDED", "+5.00"], "debt token", 2700)
mptest.eq(m.account.debt, 500, "debt added")
enter(b, m, T["test"], ["TEST OK"], "test token", 2700)
enter(b, m, T["high"], ["ACCEPTED", "+1.00"], "id 100", 2700)
enter(b, m, T["stale"], ["TOO OLD"], "id 20 after id 100", 1200)
mptest.eq(m.account.balance, 1650, "refusals moved nothing")
# Another meter's tokens: wrong meter twice, then the third locks entry out for 10 s.
enter(b, m, T["forged1"], ["WRONG METER"], "another meter's token", 1200)
enter(b, m, T["forged2"], ["WRONG METER"], "another meter's token (2)", 1200)
n0 = b.beeper.count
press(b, m, T["forged3"] + "#")
got = shows(b, ["LOCKED", "Try again in", "0:"], "third bad token locks")
row = [r for r in got if r.strip().startswith("0:")][0].strip()
mptest.check(row in ("0:09", "0:10"), "10 s lockout: %r" % row)
wait(b, m, 3000)
got = shows(b, ["LOCKED"], "still locked")
row2 = [r for r in got if r.strip().startswith("0:")][0].strip()
mptest.check(row2 < row, "the countdown runs: %r then %r" % (row, row2))
press(b, m, T["good2"] + "#", 60, 60)  # typed in 2.4 s: still inside the 10 s
shows(b, ["LOCKED"], "a good token while locked")
mptest.eq(m.account.balance, 1650, "not applied while locked")
wait(b, m, 12000)
press(b, m, T["good2"] + "#")
shows(b, ["ACCEPTED", "+2.00"], "after the lockout")
mptest.eq(m.account.balance, 1850, "applied once the lockout ended")
wait(b, m, 9000)

# A token that cannot be committed is shown as a fault and changes nothing.
def failing():
    raise OSError(5)


m.store.commit = failing
enter(b, m, T["good3"], ["METER FAULT"], "flash failed", 1200)
mptest.eq(m.account.balance, 1850, "undone")

# A meter without its key cannot judge tokens.
b, m = uikit.meter(flash, {"opening_balance": 300}, load_w=0, key=None)
enter(b, m, T["good"], ["CALL UTILITY"], "no key", 1200)
mptest.done()
