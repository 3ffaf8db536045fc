"""firmware/tariff.py and firmware/localtime.py under micropython: every tariff kind against
totals worked out by hand here, block crossings, DST, clock jumps, ten years of exactness,
and the allocation-free charge step."""
import pytest

FLAT = r'''
import tariff, mptest
from billtest import Lcg, mt
e = tariff.from_doc({"v": 1, "kind": "flat", "price_per_kwh": 25347, "scale": 1000})
rng = Lcg(3)
total = 0
money = 0
t = mt(2026, 1, 1)
for i in range(5000):
    wh = rng.next(40)
    total += wh
    money += e.charge(wh, t + 5 * i)
# 25.347 minor units per kWh: floor(total_wh * 25347 / 1e6), worked out by plain integers
mptest.eq(money, total * 25347 // 1000000, "flat money")
mptest.eq(e.rem, total * 25347 % 1000000, "flat remainder")
mptest.eq(e.rate_wh[0], total, "energy register")
mptest.done(total=total, money=money)
'''

ANNUAL = r'''
import tariff, mptest
from billtest import mt, Lcg
# Residential tiered tariff: 0.5000 yuan/kWh base; annual blocks at 2880 and 4800 kWh with
# adders +0.05 and +0.30 yuan; prices in 1e-4 yuan, minor unit = fen (scale 100).
doc = {"v": 1, "kind": "block", "scale": 100, "price_per_kwh": 5000, "tz": {"offset_min": 480},
       "blocks": {"reset": "year", "reset_month": 1, "reset_day": 1, "thresholds_kwh": [2880, 4800],
                  "adders": [0, 500, 3000]}}
e = tariff.from_doc(doc)
rng = Lcg(11)
t = mt(2026, 1, 1, 0, 30, 0, 480)
left = 6000000  # 6000 kWh during 2026
money = 0
while left:
    wh = 1 + rng.next(3000)
    if wh > left:
        wh = left
    money += e.charge(wh, t)
    left -= wh
    t += 3000
mptest.check(t < mt(2027, 1, 1, 0, 0, 0, 480), "all in 2026")
# By hand: 2880 kWh x 0.50 + 1920 kWh x 0.55 + 1200 kWh x 0.80 = 1440 + 1056 + 960 = 3456 yuan
mptest.eq(money, 345600, "2026 bill in fen")
mptest.eq(list(e.block_wh)[:3], [2880000, 1920000, 1200000], "energy per block")
# 2027: the counter starts again at the first block.
m2 = e.charge(100000, mt(2027, 1, 2, 12, 0, 0, 480))
mptest.eq(m2, 5000, "100 kWh in January 2027 at the base price")
mptest.eq(e.bwh, 100000, "block counter reset on 1 Jan local time")
mptest.done()
'''

TOU4 = r'''
import tariff, mptest
from billtest import mt
# 4-rate TOU (0 sharp, 1 peak, 2 flat, 3 valley), prices per kWh in tenths of a minor unit.
# Winter weekday: 9 switch points; weekend: valley 22:00-06:00 crossing midnight, else flat;
# summer weekday: peak 08:00-20:00, else valley. 2026-10-01 is a holiday (weekend profile).
doc = {"v": 1, "kind": "tou", "scale": 10, "rates": [1500, 1200, 900, 400], "tz": {"offset_min": 480},
       "days": [
           [[0, 3], [420, 2], [600, 1], [660, 0], [780, 1], [1020, 2], [1140, 0], [1260, 1], [1380, 3]],
           [[360, 2], [1320, 3]],
           [[480, 1], [1200, 3]]],
       "weeks": [[0, 0, 0, 0, 0, 1, 1], [2, 2, 2, 2, 2, 1, 1]],
       "seasons": [{"start": [1, 1], "week": 0}, {"start": [6, 1], "week": 1}, {"start": [9, 1], "week": 0}],
       "special": [{"date": [10, 1], "day": 1}]}
e = tariff.from_doc(doc)

def day_bill(y, m, d):
    before = list(e.rate_wh)
    money = 0
    for h in range(24):
        money += e.charge(1000, mt(y, m, d, h, 30, 0, 480))
    return money, [e.rate_wh[i] - before[i] for i in range(4)]

# Winter weekday (Wed 2026-01-07): sharp 4 h, peak 7 h, flat 5 h, valley 8 h
# = 4x1500 + 7x1200 + 5x900 + 8x400 = 22100 tenths = 2210.
mptest.eq(day_bill(2026, 1, 7), (2210, [4000, 7000, 5000, 8000]), "winter weekday")
# Saturday 2026-01-10: valley 00-06 and 22-24 (8 h), flat 16 h = 3200 + 14400 = 17600 -> 1760.
mptest.eq(day_bill(2026, 1, 10), (1760, [0, 0, 16000, 8000]), "weekend, valley across midnight")
# Summer weekday (Mon 2026-07-06): peak 12 h, valley 12 h = 14400 + 4800 = 19200 -> 1920.
mptest.eq(day_bill(2026, 7, 6), (1920, [0, 12000, 0, 12000]), "summer weekday")
# Holiday Thu 2026-10-01 in the third season: weekend profile.
mptest.eq(day_bill(2026, 10, 1), (1760, [0, 0, 16000, 8000]), "special day")
# Switch points at 1-minute resolution: 06:59 valley, 07:00 flat (local).
mptest.eq(e.rate_now(mt(2026, 1, 7, 6, 59, 59, 480)), 3, "06:59:59")
mptest.eq(e.rate_now(mt(2026, 1, 7, 7, 0, 0, 480)), 2, "07:00:00")
mptest.done()
'''

MONTHLY4 = r'''
import tariff, mptest
from billtest import mt
# 4-block monthly inclining tariff (0-50 / 51-350 / 351-600 / >600 kWh), cents per kWh.
doc = {"v": 1, "kind": "block", "scale": 1, "price_per_kwh": 100,
       "blocks": {"reset": "month", "reset_day": 1, "thresholds_kwh": [50, 350, 600],
                  "adders": [0, 50, 100, 150]}}
e = tariff.from_doc(doc)
money = 0
t = mt(2026, 3, 1, 1)
for i in range(700):  # 700 kWh in March, 1 kWh per hour
    money += e.charge(1000, t + 3600 * i)
# 50x100 + 300x150 + 250x200 + 100x250 = 5000 + 45000 + 50000 + 25000
mptest.eq(money, 125000, "March bill")
mptest.eq(e.charge(60000, mt(2026, 4, 1, 0, 0, 1)), 50 * 100 + 10 * 150, "April restarts at block 1")
# One step crossing three thresholds: 0 -> 700 kWh in a single call.
e2 = tariff.from_doc(doc)
mptest.eq(e2.charge(700000, t), 125000, "crossing every block in one step")
mptest.eq(list(e2.block_wh)[:4], [50000, 300000, 250000, 100000], "split exactly")
# Crossing with a remainder: 1 Wh steps around a threshold at odd prices.
doc2 = {"v": 1, "kind": "block", "scale": 1000, "price_per_kwh": 123457,
        "blocks": {"reset": "month", "thresholds_wh": [1001], "adders": [0, 77777]}}
e3 = tariff.from_doc(doc2)
m3 = e3.charge(999, t) + e3.charge(5, t + 1) + e3.charge(996, t + 2)
mptest.eq(m3, (1001 * 123457 + 999 * (123457 + 77777)) // 1000000, "odd prices across a threshold")
mptest.done()
'''

MATRIX = r'''
import tariff, mptest
from billtest import mt
# Rate x block matrix: day (07-23) / night; monthly block at 100 kWh; prices in minor units.
doc = {"v": 1, "kind": "tou_block", "scale": 1, "rates": [0, 0],
       "days": [[[0, 1], [420, 0], [1380, 1]]], "weeks": [[0, 0, 0, 0, 0, 0, 0]],
       "blocks": {"reset": "month", "thresholds_kwh": [100], "matrix": [[20, 30], [10, 15]]},
       "standing_per_day": 48}
e = tariff.from_doc(doc)
m = 0
m += e.charge(80000, mt(2026, 5, 3, 12))  # day, block 0: 80 x 20 = 1600
m += e.charge(40000, mt(2026, 5, 3, 2))  # night, 20 in block 0 (x10) + 20 in block 1 (x15) = 500
m += e.charge(10000, mt(2026, 5, 3, 13))  # day, block 1: 10 x 30 = 300
mptest.eq(m, 2400, "matrix prices")
mptest.eq(list(e.rate_wh)[:2], [90000, 40000], "energy per rate")
mptest.eq(list(e.block_wh)[:2], [100000, 30000], "energy per block")
# Standing charge 48/day pro rata on monotonic time, ticks of 1.3 s: half a day is 24.
s = 0
for i in range(33231):
    s += e.charge(0, mt(2026, 5, 3, 12), 1300)
mptest.eq(s, 33231 * 13 // 10 * 48 // 86400, "standing pro rata")
mptest.eq(s, 24, "half a day")
mptest.done()
'''

DST = r'''
import tariff, localtime, mptest
from billtest import mt
doc = {"v": 1, "kind": "tou", "scale": 1, "rates": [30, 10], "tz": {"offset_min": 60, "dst": "eu"},
       "days": [[[0, 1], [420, 0], [1260, 1]]], "weeks": [[0, 0, 0, 0, 0, 0, 0]]}
e = tariff.from_doc(doc)
# Winter (CET, UTC+1): 07:00 local = 06:00 UTC.  Summer (CEST, UTC+2): 07:00 local = 05:00 UTC.
mptest.eq(e.rate_now(mt(2026, 3, 28, 5, 30)), 1, "05:30 UTC in winter is 06:30 local: night")
mptest.eq(e.rate_now(mt(2026, 3, 28, 6, 0)), 0, "06:00 UTC in winter is 07:00 local: day")
mptest.eq(e.rate_now(mt(2026, 3, 30, 5, 0)), 0, "05:00 UTC in summer is 07:00 local: day")
mptest.eq(e.rate_now(mt(2026, 3, 30, 4, 59, 59)), 1, "04:59:59 UTC in summer is night")
mptest.eq(e.rate_now(mt(2026, 10, 26, 5, 59)), 1, "after the autumn change, 06:59 CET: night")
mptest.eq(e.rate_now(mt(2026, 10, 26, 6, 0)), 0, "07:00 CET: day")
lc = localtime.LocalClock(60, "eu")
lc.update(mt(2026, 3, 29, 0, 59, 59))
mptest.eq((lc.dst, lc.off, lc.hi), (False, 3600, mt(2026, 3, 29, 1)), "just before the spring change")
lc.update(mt(2026, 3, 29, 1))
mptest.eq((lc.dst, lc.off, lc.minute(mt(2026, 3, 29, 1))), (True, 7200, 180), "03:00 CEST")
lc.update(mt(2026, 10, 25, 0, 59, 59))
mptest.eq((lc.dst, lc.minute(mt(2026, 10, 25, 0, 59, 59))), (True, 179), "02:59:59 CEST")
lc.update(mt(2026, 10, 25, 1))
mptest.eq((lc.dst, lc.minute(mt(2026, 10, 25, 1))), (False, 120), "02:00 CET again")
# US rule, Eastern time: 2026-03-08 02:00 EST -> 03:00 EDT (07:00 UTC); 2026-11-01 02:00 EDT -> 01:00 EST.
us = localtime.LocalClock(-300, "us")
us.update(mt(2026, 3, 8, 6, 59, 59))
mptest.eq(us.dst, False, "US before")
us.update(mt(2026, 3, 8, 7))
mptest.eq(us.dst, True, "US after")
us.update(mt(2026, 11, 1, 5, 59, 59))
mptest.eq(us.dst, True, "US autumn before")
us.update(mt(2026, 11, 1, 6))
mptest.eq(us.dst, False, "US autumn after")
# Southern hemisphere (custom rule, Sydney-like: first Sunday of October 02:00 standard to
# first Sunday of April 03:00 summer time).
au = localtime.LocalClock(600, {"start": [10, 1, 6, 120, 0], "end": [4, 1, 6, 180, 0], "save_min": 60})
au.update(mt(2026, 1, 15))
mptest.eq(au.dst, True, "January is summer")
au.update(mt(2026, 7, 15))
mptest.eq(au.dst, False, "July is winter")
# Civil dates across many years agree with plain counting.
for d in range(0, 30000, 97):
    au.civil_day(d)
    mptest.eq(localtime.days_from_civil(au.year, au.month, au.mday), d, "civil round trip")
mptest.done()
'''

JUMPS = r'''
import tariff, mptest
from billtest import mt
# Monthly blocks at 10 kWh, two TOU rates; the wall clock jumps back and forth.
doc = {"v": 1, "kind": "tou_block", "scale": 1, "rates": [10, 5],
       "days": [[[0, 1], [480, 0], [1200, 1]]], "weeks": [[0, 0, 0, 0, 0, 0, 0]],
       "blocks": {"reset": "month", "thresholds_kwh": [10], "adders": [0, 100]},
       "standing_per_day": 86400}
e = tariff.from_doc(doc)
steps = [  # (utc, wh)
    (mt(2026, 2, 28, 12), 3000),  # day rate, Feb
    (mt(2026, 3, 1, 12), 4000),  # March: block counter resets
    (mt(2026, 2, 27, 12), 4000),  # clock jumps back a few days (to February)
    (mt(2026, 3, 2, 12), 4000),  # and forward again: no second reset
    (mt(2026, 3, 2, 12) + 86400 * 400, 1000),  # a forward jump of 400 days (next year)
    (mt(2026, 3, 2, 12), 1000),  # and back
]
money = 0
for t, wh in steps:
    money += e.charge(wh, t, 1000)
# By hand: Feb 3 kWh block 0 at 10 = 30; March 1: 4 kWh -> counter 4; back in Feb: no reset,
# 4 kWh -> counter 8 (x10); 2 Mar: 2 kWh at 10 + 2 kWh at 110 (counter 12); +400 days is
# 2027-04-06, a new month: reset, 1 kWh at 10 (counter 1); back to 2026: no reset, 1 kWh at 10.
energy_money = 30 + 40 + 40 + (20 + 220) + 10 + 10
# Standing 86400 per day = 1 per second of monotonic time: 6 steps of 1 s.
mptest.eq(money, energy_money + 6, "no double charge, no skip")
mptest.eq(sum(e.rate_wh), 17000, "every Wh charged once")
mptest.eq(e.bwh, 2000, "counter after the jumps")
mptest.done()
'''

TEN_YEARS = r'''
import tariff, mptest
from billtest import Lcg, EPOCH_S
# Ten years of 15-minute steps on a day/night tariff (UTC, night before 07:00) with annual
# blocks and a standing charge, at awkward prices. The test keeps the exact rational total
# with its own rate and block logic and compares at the end.
doc = {"v": 1, "kind": "tou_block", "scale": 1000, "rates": [31337, 12345],
       "days": [[[0, 1], [420, 0]]], "weeks": [[0, 0, 0, 0, 0, 0, 0]],
       "blocks": {"reset": "year", "thresholds_kwh": [2880, 4800], "adders": [0, 777, 3001]},
       "standing_per_day": 29999}
e = tariff.from_doc(doc)
rng = Lcg(5)
t = 1767225600  # 2026-01-01 00:00 UTC
year_start = [1767225600]
y = 2026
num = 0  # exact money x 1e6
money = 0
bwh = 0
steps = 10 * 365 * 96 + 3 * 96  # ten years incl. leap days 2028, 2032, 2036 (to 2036-01-01... plus)
for i in range(steps):
    if t >= year_start[0] + (366 if y % 4 == 0 else 365) * 86400:
        year_start[0] += (366 if y % 4 == 0 else 365) * 86400
        y += 1
        bwh = 0
    wh = rng.next(400) if rng.next(5) else 0
    rate = 31337 if (t % 86400) >= 7 * 3600 else 12345
    left = wh
    while left:
        if bwh < 2880000:
            take, add = min(left, 2880000 - bwh), 0
        elif bwh < 4800000:
            take, add = min(left, 4800000 - bwh), 777
        else:
            take, add = left, 3001
        num += take * (rate + add)
        bwh += take
        left -= take
    money += e.charge(wh, t - EPOCH_S, 900000)  # the model counts Unix seconds, the engine meter seconds
    t += 900
# Exact total in 1/(86400 x 1e6) minor units: energy (num is in 1e-6) plus the standing charge.
exact = num * 86400 + steps * 900 * 29999 * 1000
mptest.eq(money, exact // (86400 * 1000000), "ten years: charged == floor(exact)")
# Error of the money charged against the exact total, in millionths of a minor unit.
err = (exact - money * 86400 * 1000000) // 86400
mptest.check(0 <= err < 1000000, "error below one minor unit: %d ppm of a unit" % err)
mptest.done(years=y - 2026, money=money, steps=steps, error_micro_units=err)
'''

HEAP = r'''
import micropython, gc, tariff, account, localtime, mptest
from billtest import mt, Lcg
doc = {"v": 1, "kind": "tou_block", "scale": 100, "rates": [1500, 1200, 900, 400],
       "tz": {"offset_min": 60, "dst": "eu"},
       "days": [[[0, 3], [420, 2], [600, 1], [660, 0], [780, 1], [1020, 2], [1140, 0], [1260, 1], [1380, 3]]],
       "weeks": [[0, 0, 0, 0, 0, 0, 0]],
       "special": [{"date": [3, 29], "day": 0}],
       "blocks": {"reset": "month", "thresholds_kwh": [1, 2, 3], "adders": [0, 10, 20, 30]},
       "standing_per_day": 3000}
e = tariff.from_doc(doc)
a = account.Account(lambda c, v: None)
a.configure({"friendly": {"hours": [[1320, 420]], "weekdays": [6], "holidays": [[12, 25]]}, "overdraft": 100})
a.balance = 10 ** 8
lc = e.t.tz
rng = Lcg(9)
t0 = mt(2026, 3, 27)
n = 6 * 8640  # six days of 10 s ticks: 27 Mar .. 2 Apr, over the DST change and a month reset
whs = bytearray(n)
for i in range(n):
    whs[i] = rng.next(8)
e.charge(1, t0)
gc.collect()
micropython.heap_lock()
try:
    total = 0
    fr = 0
    for i in range(n):
        t = t0 + 10 * i
        a.debit(e.charge(whs[i], t, 10000))
        lc.update(t)
        if a.friendly.active(lc, t):
            fr += 1
        total += whs[i]
finally:
    micropython.heap_unlock()
mptest.eq(sum(e.rate_wh), total + 1, "all energy charged")
mptest.check(fr > 0 and fr < n, "friendly periods seen")
mptest.check(e.bkey == 2026 * 12 + 3, "the April block period was entered under heap_lock")
mptest.check(e.block_wh[3] > 0, "all blocks crossed under heap_lock")
mptest.done(ticks=n)
'''

BAD = r'''
import tariff, mptest
good = {"v": 1, "kind": "flat", "price_per_kwh": 100, "scale": 1}
e = tariff.from_doc(good)
bad = [
    ([], "object"), ({"v": 2, "kind": "flat"}, "version"), ({"v": 1, "kind": "x"}, "kind"),
    ({"v": 1, "kind": "flat", "scale": 1}, "price_per_kwh"),
    ({"v": 1, "kind": "flat", "scale": 0, "price_per_kwh": 1}, "scale"),
    ({"v": 1, "kind": "flat", "scale": 1, "price_per_kwh": 1.5}, "price_per_kwh"),
    ({"v": 1, "kind": "tou", "scale": 1, "rates": [1, 2], "weeks": [[0] * 7], "days": [[[0, 2]]]}, "no price"),
    ({"v": 1, "kind": "tou", "scale": 1, "rates": [1], "weeks": [[0] * 7], "days": [[[60, 0], [60, 0]]]}, "increasing"),
    ({"v": 1, "kind": "tou", "scale": 1, "rates": [1], "weeks": [[0] * 6], "days": [[[0, 0]]]}, "week profile"),
    ({"v": 1, "kind": "tou", "scale": 1, "rates": [1], "weeks": [[1] * 7], "days": [[[0, 0]]]}, "week profile"),
    ({"v": 1, "kind": "block", "scale": 1, "price_per_kwh": 1,
      "blocks": {"reset": "month", "thresholds_kwh": [5, 5], "adders": [0, 1, 2]}}, "increase"),
    ({"v": 1, "kind": "block", "scale": 1, "price_per_kwh": 1,
      "blocks": {"reset": "week", "thresholds_kwh": [5], "adders": [0, 1]}}, "reset"),
    ({"v": 1, "kind": "block", "scale": 1, "price_per_kwh": 1,
      "blocks": {"reset": "month", "thresholds_kwh": [1, 2, 3, 4, 5, 6, 7], "adders": [0] * 8}}, "thresholds"),
    ({"v": 1, "kind": "flat", "scale": 1, "price_per_kwh": 1, "tz": {"offset_min": 60, "dst": "mars"}}, "dst"),
    ({"v": 1, "kind": "flat", "scale": 1, "price_per_kwh": 1, "blocks": {}}, "blocks"),
]
for doc, why in bad:
    ex = mptest.raises(tariff.TariffError, tariff.from_doc, doc)
    mptest.check(ex is not None and why in str(ex), "%s: %s" % (why, ex))
# A bad passive tariff is refused and the active one is kept.
mptest.raises(tariff.TariffError, e.schedule, {"v": 1, "kind": "flat", "scale": 1, "price_per_kwh": -1, "activate_at": 5})
mptest.raises(tariff.TariffError, e.schedule, {"v": 1, "kind": "flat", "scale": 1, "price_per_kwh": 1})
mptest.eq(e.charge(1000, 100), 100, "old tariff still active")
mptest.done()
'''

PASSIVE = r'''
import tariff, mptest
from billtest import utc, EPOCH_S
e = tariff.from_doc({"v": 1, "kind": "flat", "scale": 10, "price_per_kwh": 1000})
at = utc(2026, 7, 1)  # Unix in the document; the engine counts meter seconds (at - EPOCH_S)
mptest.raises(tariff.TariffError, e.schedule, {"v": 1, "kind": "flat", "scale": 1, "price_per_kwh": 1, "activate_at": at})
e.schedule({"v": 1, "kind": "flat", "scale": 10, "price_per_kwh": 1234, "activate_at": at})
m = e.charge(500, at - EPOCH_S - 10)  # 0.5 kWh at 100 = 50
mptest.eq(m, 50, "before activation")
m = e.charge(1000, at - EPOCH_S)  # 1 kWh at 123.4 = 123, remainder 4/10
mptest.eq(m, 123, "at the activation second")
mptest.eq(e.charge(1000, at - EPOCH_S + 5), 123, "246.8 after two kWh")
mptest.eq(e.charge(1000, at - EPOCH_S + 9), 124, "370.2: the remainder carried on in the new scale")
mptest.eq(e.activations, 1, "activated once")
mptest.check(e.passive is None, "passive consumed")
mptest.done()
'''

# activate_at is Unix time; beyond the meter clock's range (1990..2059) only its order matters.
PASSIVE_RANGE = r'''
import tariff, mptest
from billtest import mt
flat = {"v": 1, "kind": "flat", "scale": 1, "price_per_kwh": 100}
e = tariff.from_doc(flat)
e.schedule(dict(flat, price_per_kwh=200, activate_at=0))  # 1970: long past
mptest.eq(e.charge(1000, mt(2026, 1, 1)), 200, "a past activate_at activates at the first step")
e.schedule(dict(flat, price_per_kwh=300, activate_at=10 ** 12))  # the year 33658
mptest.eq(e.charge(1000, mt(2058, 12, 31)), 200, "a far-future activate_at waits")
mptest.check(e.passive is not None and -(1 << 30) < e.passive.activate_at < 1 << 30, "held as a small int")
mptest.raises(tariff.TariffError, e.schedule, dict(flat, activate_at=1.7e9))
mptest.raises(tariff.TariffError, e.schedule, dict(flat, activate_at="1767225600"))
mptest.done()
'''


@pytest.mark.parametrize("name", ["FLAT", "ANNUAL", "TOU4", "MONTHLY4", "MATRIX", "DST", "JUMPS",
                                  "BAD", "PASSIVE", "PASSIVE_RANGE"])
def test_tariff(mpy, name):
    res = mpy(globals()[name], heap="128k")  # validation, not a memory claim: room for the big literal tables
    assert res.result["ok"] and res.result["checks"] > 0


def test_ten_years_money_error_below_one_minor_unit(mpy):
    res = mpy(TEN_YEARS, heap="128k", timeout=180)  # the engine compiled from source on mp64
    assert res.result["ok"] and res.result["years"] == 10


def test_charge_step_allocates_nothing(mpy):
    res = mpy(HEAP, heap="256k")
    assert res.result["ok"] and res.result["ticks"] == 6 * 8640


TOU_MODEL = r'''
import tariff, mptest
from billtest import Lcg, days, utc, EPOCH_S
# The TOU rate at random instants 2026-2031 against a plain model: CET/CEST with the EU rule
# found by counting days, seasons, weekend and holiday profiles, a period across midnight.
doc = {"v": 1, "kind": "tou", "scale": 1, "rates": [40, 30, 20, 10], "tz": {"offset_min": 60, "dst": "eu"},
       "days": [[[0, 3], [390, 2], [481, 1], [1019, 0], [1201, 2], [1320, 3]],
                [[420, 2], [1380, 3]],
                [[0, 1], [720, 0]]],
       "weeks": [[0, 0, 0, 0, 0, 1, 1], [2, 2, 2, 2, 2, 1, 1]],
       "seasons": [{"start": [4, 1], "week": 0}, {"start": [10, 15], "week": 1}],
       "special": [{"date": [1, 1], "day": 1}, {"date": [2028, 5, 17], "day": 2}]}
e = tariff.from_doc(doc)

def last_sunday(y, m):
    d = days(y, m + 1, 1) - 1
    while (d + 3) % 7 != 6:
        d -= 1
    return d

def civil(d):
    y = 1970
    while days(y + 1, 1, 1) <= d:
        y += 1
    m = 1
    while m < 12 and days(y, m + 1, 1) <= d:
        m += 1
    return y, m, d - days(y, m, 1) + 1

def model(t):
    y = civil((t + 3600) // 86400)[0]
    summer = last_sunday(y, 3) * 86400 + 3600 <= t < last_sunday(y, 10) * 86400 + 3600
    lt = t + 3600 + (3600 if summer else 0)
    d = lt // 86400
    y, m, dd = civil(d)
    minute = (lt % 86400) // 60
    if (m, dd) == (1, 1):
        prof = 1
    elif (y, m, dd) == (2028, 5, 17):
        prof = 2
    else:
        winter = (m, dd) >= (10, 15) or (m, dd) < (4, 1)
        wd = (d + 3) % 7
        prof = doc["weeks"][1 if winter else 0][wd]
    sw = doc["days"][prof]
    rate = sw[-1][1]
    for mi, r in sw:
        if mi <= minute:
            rate = r
    return rate

rng = Lcg(2024)
lo = utc(2026, 1, 1)
span = utc(2031, 1, 1) - lo
pts = []
for i in range(1500):
    pts.append(lo + (rng.next(1 << 20) * 4096 + rng.next(4096)) % span)
# Instants near DST changes and switch points too.
for y in range(2026, 2031):
    for base in (last_sunday(y, 3) * 86400 + 3600, last_sunday(y, 10) * 86400 + 3600):
        for dlt in (-3601, -3600, -61, -1, 0, 1, 59, 3599, 3600, 3601):
            pts.append(base + dlt)
# And around every switch point on random days, at both offsets.
for i in range(40):
    d = lo // 86400 + rng.next(span // 86400)
    for prof in doc["days"]:
        for mi, r in prof:
            for off in (3600, 7200):
                for dlt in (-60, -1, 0):
                    pts.append(d * 86400 + mi * 60 - off + dlt)
bad = 0
for t in pts:
    # The model counts Unix seconds; the engine, meter seconds.
    if e.rate_now(t - EPOCH_S) != model(t):
        bad += 1
        mptest.eq(e.rate_now(t - EPOCH_S), model(t), "rate at %d" % t)
mptest.eq(bad, 0, "all instants agree")
mptest.done(points=len(pts))
'''


def test_tou_rate_against_a_plain_model(mpy):
    res = mpy(TOU_MODEL, heap="1m", timeout=120)  # thousands of Unix times: big ints on a 32-bit build
    assert res.result["ok"] and res.result["points"] > 1500
