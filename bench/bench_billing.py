# Billing benchmarks under micropython: time per charge step (cached period, with a period
# change, with a block crossing), RAM held by a compiled tariff, and token verification time.
# Prints figures only; nothing here is asserted. Run: make bench-billing
import gc
import time
import json
import micropython
import tariff
import token
import auth

TOU = {"v": 1, "kind": "tou_block", "scale": 100, "rates": [1500, 1200, 900, 400],
       "tz": {"offset_min": 60, "dst": "eu"},
       "days": [[[0, 3], [420, 2], [600, 1], [660, 0], [780, 1], [1020, 2], [1140, 0], [1260, 1], [1380, 3]],
                [[360, 2], [1320, 3]]],
       "weeks": [[0, 0, 0, 0, 0, 1, 1]],
       "seasons": [{"start": [1, 1], "week": 0}, {"start": [6, 1], "week": 0}],
       "special": [{"date": [12, 25], "day": 1}, {"date": [1, 1], "day": 1}],
       "blocks": {"reset": "month", "thresholds_kwh": [50, 350, 600], "adders": [0, 50, 100, 150]},
       "standing_per_day": 3000}


def total_us(fn, n):
    t0 = time.ticks_us()
    for i in range(n):
        fn(i)
    return time.ticks_diff(time.ticks_us(), t0)


def per_call_us(fn, n):
    return total_us(fn, n) / n


gc.collect()
a0 = gc.mem_alloc()
e = tariff.from_doc(TOU)
gc.collect()
table_bytes = gc.mem_alloc() - a0
t0 = 1767225600 - 1735689600  # 2026-01-01 in meter seconds (firmware/timebase.py)
e.charge(1, t0)
n = 20000
step = lambda i: e.charge(3, t0 + 1, 1000)  # noqa: E731
micropython.heap_lock()  # the cached step must not allocate: a MemoryError here would show it
us = total_us(step, n)
micropython.heap_unlock()
cached = us / n
# Every call in a new period: forces the rate lookup (worst case).
refresh = per_call_us(lambda i: e.charge(3, t0 + 3600 * i, 1000), 2000)
crossing = per_call_us(lambda i: e.charge(400000, t0 + 2, 0), 2000)
cmds = auth.Commands("bench", bytes(32))
tk = token.Tokens("bench", bytes(32), cmds)
data = "1234567890123456789"
tok = data + str(token.damm(data))  # a well-formed token: the full HMAC check runs (and fails)


def check_once(i):
    tk.bad = 0
    tk.lock_until = 0
    return tk.check(tok, 0)


verify = per_call_us(check_once, 50)
print(json.dumps({"charge_cached_us": round(cached, 2), "charge_with_lookup_us": round(refresh, 2),
                  "charge_400kWh_block_crossings_us": round(crossing, 2), "tariff_tables_bytes": table_bytes,
                  "token_check_us": round(verify, 1)}))
