"""firmware/account.py under micropython: every credit rule, and property tests."""
import pytest

LEVELS = r'''
import account, events, mptest
from billtest import events as evs
emit, got = evs()
a = account.Account(emit)
a.configure({"low1": 200, "low2": 50, "hysteresis": 20})
a.topup(300)
a.debit(100)  # 200: level 1
mptest.eq(got[-1], (events.LOW_CREDIT_1, 200), "low 1 at the threshold")
a.debit(150)  # 50: level 2
mptest.eq(got[-1], (events.LOW_CREDIT_2, 50), "low 2")
n = len(got)
a.balance = 60  # hovering just above level 2: no event (hysteresis)
a.debit(0)
a.debit(5)
mptest.eq(len(got), n, "no flood while hovering")
a.debit(55)  # 0: zero
mptest.eq(got[-1], (events.CREDIT_EXHAUSTED, 0), "no overdraft: zero is exhaustion")
mptest.check(a.exhausted(), "exhausted")
a.topup(60)  # 60: out of exhaustion at once, to the level the balance is in
mptest.eq(got[-1], (events.CREDIT_RESTORED, 60), "restored")
mptest.eq(a.level, account.LOW_1, "restored straight to level 1")
a.debit(10)  # 50: level 2 again
mptest.eq(a.level, account.LOW_2, "level 2 again")
a.topup(20)  # 70: inside the hysteresis band
mptest.eq(a.level, account.LOW_2, "level 2 kept by hysteresis")
a.topup(1)  # 71 > 50 + 20
mptest.eq(a.level, account.LOW_1, "back to level 1 above the band")
a.topup(150)  # 221 > 200 + 20
mptest.eq(a.level, account.OK, "ok above level 1 + hysteresis")
mptest.done()
'''

OVERDRAFT_EC = r'''
import account, events, mptest
from billtest import events as evs
emit, got = evs()
a = account.Account(emit)
a.configure({"low1": 200, "low2": 50, "overdraft": 100, "ec_limit": 500, "ec_threshold": 50,
             "reconnect_threshold": 20})
a.topup(100)
mptest.eq(a.invoke_ec(), account.EC_NOT_OFFERED, "EC not offered above its threshold")
a.debit(100)  # 0: zero, still supplied from the overdraft
mptest.eq((a.level, got[-1][0]), (account.ZERO, events.CREDIT_ZERO), "zero level")
mptest.check(not a.exhausted(), "overdraft keeps supply")
a.debit(100)  # -100: the overdraft is used up
mptest.check(a.exhausted(), "exhausted at the overdraft limit")
mptest.check(not a.may_reconnect(), "no reconnect")
mptest.eq(a.invoke_ec(), account.EC_GRANTED, "EC granted when low")
mptest.eq(got[-1], (events.CREDIT_RESTORED, -100), "EC restores supply")
mptest.eq(a.available(), 500, "available = balance + overdraft + EC")
mptest.eq(a.invoke_ec(), account.EC_ALREADY, "EC once")
mptest.check(a.may_reconnect(), "reconnect allowed on EC")
a.debit(480)  # available 20: not above the reconnect threshold
mptest.check(not a.may_reconnect() and not a.exhausted(), "reconnect threshold")
a.debit(20)
mptest.check(a.exhausted(), "EC exhausted (capped)")
# A top-up repays the EC used first: -600 + 1000 = 400, EC off.
mptest.eq(a.topup(1000), account.APPLIED, "top-up")
mptest.eq((a.balance, a.ec_active), (400, 0), "EC repaid from the top-up")
mptest.check(events.EC_REPAID in [c for c, v in got], "EC repaid event")
# A top-up too small to repay leaves EC running.
a.debit(500)  # -100
a.invoke_ec()
a.debit(300)  # -400
a.topup(100)  # -300
mptest.eq((a.balance, a.ec_active), (-300, 1), "EC stays while the balance is negative")
mptest.done()
'''

MAX_DEBT = r'''
import account, events, mptest
from billtest import events as evs
emit, got = evs()
a = account.Account(emit)
a.configure({"max_balance": 1000, "debt_pct": 25, "debt_max_per_topup": 100, "debt_per_day": 30})
a.topup(900)
mptest.eq(a.topup(101), account.REFUSED_MAX_BALANCE, "refused, not truncated")
mptest.eq((a.balance, a.topped_up), (900, 900), "nothing changed")
mptest.eq(a.topup(100), account.APPLIED, "up to the maximum")
for bad in (0, -5, 1.5, "10", None, 1 << 40):
    mptest.eq(a.topup(bad), account.REFUSED_AMOUNT, "bad amount %r" % (bad,))
mptest.eq(a.balance, 1000, "unchanged by bad amounts")
a.balance = 0
a.add_debt(250)
mptest.eq(a.topup(200), account.APPLIED, "top-up with debt")
mptest.eq((a.balance, a.debt, a.recovered), (150, 200, 50), "25 % of the top-up recovered")
a.topup(800)  # 25 % is 200, capped at 100
mptest.eq((a.balance, a.debt), (850, 100), "capped per top-up")
# The maximum balance counts what is credited after recovery: 850 + 250 - 62 = 1038 > 1000.
mptest.eq(a.topup(250), account.REFUSED_MAX_BALANCE, "max balance after recovery")
# Daily recovery: once per local day, never below zero, days only forward.
mptest.eq(a.new_day(20000), 0, "the first day seen only sets the counter")
mptest.eq(a.new_day(20001), 30, "one day")
mptest.eq(a.new_day(20001), 0, "same day again")
mptest.eq(a.new_day(19990), 0, "clock set back")
mptest.eq((a.balance, a.debt), (820, 70), "after one day")
a.balance = 10
mptest.eq(a.new_day(20002), 10, "not below zero")
a.balance = 1000
a.new_day(20003)
a.new_day(20004)
mptest.eq(a.debt, 0, "debt cleared, capped at what is owed")
mptest.check(events.DEBT_CLEARED in [c for c, v in got], "debt cleared event")
mptest.eq(a.recovered, 250, "all recovered")
mptest.done()
'''

FRIENDLY = r'''
import account, localtime, mptest
from billtest import mt
# Friendly: 16:00 -> 11:00 next day (crosses midnight), Saturdays and Sundays, 25 Dec and a one-off.
f = account.Friendly({"hours": [[960, 660]], "weekdays": [5, 6], "holidays": [[12, 25], [2026, 3, 17]]})
lc = localtime.LocalClock(0, "eu")
cases = [
    (mt(2026, 1, 7, 10, 59), True, "Wed 10:59 (inside the night window)"),
    (mt(2026, 1, 7, 11, 0), False, "Wed 11:00"),
    (mt(2026, 1, 7, 15, 59), False, "Wed 15:59"),
    (mt(2026, 1, 7, 16, 0), True, "Wed 16:00"),
    (mt(2026, 1, 10, 13, 0), True, "Saturday"),
    (mt(2026, 12, 25, 13, 0), True, "Christmas"),
    (mt(2027, 12, 25, 13, 0), True, "Christmas recurs"),
    (mt(2026, 3, 17, 13, 0), True, "one-off holiday"),
    (mt(2027, 3, 17, 13, 0), False, "one-off does not recur"),
    (mt(2026, 7, 8, 9, 59), True, "summer Wed 10:59 BST"),
    (mt(2026, 7, 8, 10, 0), False, "summer Wed 11:00 BST"),
]
for t, want, what in cases:
    mptest.eq(f.active(lc, t), want, what)
for bad in ({"hours": [[0, 0]]}, {"hours": [[0, 1440]]}, {"weekdays": [7]}, {"holidays": [[13, 1]]}, "x"):
    mptest.raises(account.CreditError, account.Friendly, bad)
a = account.Account(lambda c, v: None)
a.configure({"low1": 300})
mptest.raises(account.CreditError, a.configure, {"low1": 10, "low2": 20})
mptest.raises(account.CreditError, a.configure, {"debt_pct": 101})
mptest.eq(a.low1, 300, "a bad config changes nothing")
mptest.done()
'''

PROPERTIES = r'''
import account, tariff, mptest
from billtest import Lcg, mt
# Random sequences of metering, top-ups, EC, debt and days. Properties:
#  - the balance never rises except by a top-up (or EC, which changes nothing but availability);
#  - money debited == money the tariff charged (CHARGE_MODEL checks the tariff against a model);
#  - energy registers are monotonic and sum to the metered energy.
rng = Lcg(77)
for case in range(40):
    a = account.Account(lambda c, v: None)
    a.configure({"max_balance": 5000, "debt_pct": rng.next(50), "debt_per_day": rng.next(40),
                 "ec_limit": 300, "ec_threshold": 100, "overdraft": rng.next(200)})
    price = 1 + rng.next(5000)
    add = rng.next(3000)
    e = tariff.from_doc({"v": 1, "kind": "block", "scale": 100, "price_per_kwh": price,
                         "blocks": {"reset": "month", "thresholds_wh": [5000], "adders": [0, add]}})
    t = mt(2026, 1, 28)
    metered = 0
    prev_regs = 0
    charged = 0
    for step in range(300):
        op = rng.next(10)
        before = a.balance
        if op == 0:
            a.topup(1 + rng.next(2000))
            mptest.check(a.balance >= before, "top-up never lowers")
            continue
        if op == 1:
            a.invoke_ec()
        elif op == 2:
            a.add_debt(1 + rng.next(500))
        elif op == 3:
            a.new_day((t // 86400) + rng.next(3))
        else:
            wh = rng.next(400)
            m = e.charge(wh, t)
            a.debit(m)
            charged += m
            metered += wh
        mptest.check(a.balance <= before, "no rise without a top-up (op %d)" % op)
        t += 3600 * rng.next(12)
        regs = sum(e.rate_wh)
        mptest.check(regs >= prev_regs, "energy monotonic")
        prev_regs = regs
    mptest.eq(sum(e.rate_wh), metered, "registers = metered")
    mptest.eq(sum(e.block_wh), metered, "block registers = metered")
    mptest.eq(e.charged_minor, charged, "engine total = debited")
    mptest.eq(a.charged, charged, "account total = debited")
mptest.done()
'''

CHARGE_MODEL = r'''
import tariff, mptest
from billtest import Lcg, utc, days, EPOCH_S
# Charges equal the tariff applied to the energy: an independent model of a monthly block
# tariff (calendar months in UTC) against the engine, over random steps.
rng = Lcg(101)
for case in range(10):
    price = 1 + rng.next(9000)
    add = rng.next(3000)
    thr = 1000 + rng.next(50000)
    e = tariff.from_doc({"v": 1, "kind": "block", "scale": 100, "price_per_kwh": price,
                         "blocks": {"reset": "month", "thresholds_wh": [thr], "adders": [0, add]}})
    t = utc(2026, 1, 1)
    num = 0
    bwh = 0
    y, m = 2026, 1
    money = 0
    for i in range(2000):
        t += 600 + rng.next(7200)
        # which calendar month is t in? count from the start of the current one
        while True:
            ny, nm = (y, m + 1) if m < 12 else (y + 1, 1)
            if t >= days(ny, nm, 1) * 86400:
                y, m = ny, nm
                bwh = 0
            else:
                break
        wh = rng.next(600)
        left = wh
        while left:
            if bwh < thr:
                take = min(left, thr - bwh)
                num += take * price
            else:
                take = left
                num += take * (price + add)
            bwh += take
            left -= take
        money += e.charge(wh, t - EPOCH_S)  # the model counts Unix seconds, the engine meter seconds
    mptest.eq(money, num // 100000, "case %d" % case)
mptest.done()
'''


@pytest.mark.parametrize("name", ["LEVELS", "OVERDRAFT_EC", "MAX_DEBT", "FRIENDLY", "PROPERTIES", "CHARGE_MODEL"])
def test_account(mpy, name):
    res = mpy(globals()[name], heap="256k")
    assert res.result["ok"] and res.result["checks"] > 0
