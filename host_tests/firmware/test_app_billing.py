"""firmware/app.py with the billing parts wired in, on the simulated board under micropython:
tokens typed and relayed over MQTT (one counter space), the top-up journal, persistence of the
billing state across a reboot, daily/monthly snapshots, friendly periods and emergency credit.
The storage journal is stood in by host_tests/mpy_lib/ramring.py."""
import json

import pytest

import meterproto
import token_issue

KEY = bytes(range(7, 39))
MID = "app-1"

PRELUDE = r'''
import sys, os, json, mptest, ramring

import sim_atm90e26, app, relay, events, account
from binascii import unhexlify
from billtest import utc, mt
ARGS = json.loads(sys.stdin.read())
KEY = unhexlify(ARGS["key"])
FLASH = ARGS["flash"]

SENT = []

class FakeLink:
    retained = False
    oversized = 0
    state = 1
    def poll(self):
        pass
    def publish(self, topic, payload, qos):
        if b'"snap"' in payload:
            SENT.append(json.loads(payload))
        return True
    def close(self):
        pass

def make(cfg, utc_start, fresh=False):
    if fresh:
        try:
            os.remove(FLASH)
        except OSError:
            pass
    b = sim_atm90e26.build({"meter_id": "app-1", "key": KEY, "seed": 3, "flash": FLASH, "broker": None,
                            "config": cfg, "utc_start": utc_start})
    m = app.Meter(b)
    m.boot()
    m.sync.link = FakeLink()
    return b, m

def reboot(cfg, utc_start):
    os.umount("/flash")
    return make(cfg, utc_start)

def run(b, m, seconds, tick_s=10):
    for i in range(seconds // tick_s):
        b.advance(tick_s * 1000)
        m.step()

def cleanup():
    try:
        os.umount("/flash")
        os.remove(FLASH)
    except OSError:
        pass
'''

TOKENS = PRELUDE + r'''
cfg = {"opening_balance": 1000, "credit": {"max_balance": 5000}}
T = ARGS["tokens"]
b, m = make(cfg, utc(2026, 2, 1, 12), fresh=True)
mptest.eq(m.enter_token(T["t1"]), "applied", "typed token applied")
mptest.eq(m.account.balance, 1000 + 700, "credited")
mptest.eq(m.enter_token(T["t1"]), "used", "same token again")
mptest.eq(m.enter_token(T["big"]), "refused_max_balance", "over the maximum balance: refused whole")
mptest.eq(m.account.balance, 1700, "nothing credited")
mptest.eq(m.enter_token(T["bad"]), "bad_mac", "forged")
# MQTT top-up with command id 3, then token id 3 typed: ids of their own, both applied.
m.on_message(b"cmd", ARGS["mqtt3"].encode())
mptest.eq(m.account.balance, 1700 + 300, "MQTT top-up")
mptest.eq(m.enter_token(T["t3"]), "applied", "token 3 after command 3: another counter")
# A token relayed over MQTT goes through the same verifier and token ids.
m.on_message(b"cmd", ARGS["mqtt_tok"].encode())
mptest.eq(m.account.balance, 2300 + 400, "relayed token applied")
mptest.eq(m.tokens.ids.seen(5)[0], 1, "relayed token id remembered")
mptest.eq(m.enter_token(T["t5"]), "used", "and the same token typed is used")
log = m.topup_log.entries()
mptest.eq([(e["src"], e["id"], e["result"], e["amount"]) for e in log], [
    ("token", 2, "applied", 700), ("token", 2, "used", 700), ("token", 4, "refused_max_balance", 9000),
    ("token", 0, "bad_mac", 0), ("mqtt", 3, "applied", 300), ("token", 3, "applied", 300),
    ("mqtt", 5, "applied", 400), ("token", 5, "used", 400)], "journal")
# The big token was refused, not consumed: newer ids applied since do not make it stale.
m.account.balance = 100
mptest.eq(m.enter_token(T["big"]), "refused_max_balance", "still refused for the maximum, not stale")
# Storage fails while a token is applied: nothing changes and the token stays usable.
real_commit = m.store.commit
def broken():
    raise OSError(5)
m.store.commit = broken
bal = m.account.balance
mptest.eq(m.enter_token(T["t7"]), "store_fault", "commit failed")
mptest.eq((m.account.balance, m.tokens.ids.seen(7)[0]), (bal, 0), "undone: no credit, id not used")
m.store.commit = real_commit
mptest.eq(m.enter_token(T["t7"]), "applied", "the same token works once storage is back")
mptest.eq(m.topup_log.entries()[-2]["result"], "store_fault", "the failure is journalled")
# Reboot: balance, lockout count and replay window come back from the record.
m.enter_token(T["bad"])
bal = m.account.balance
b, m = reboot(cfg, utc(2026, 2, 1, 13))
mptest.eq(m.account.balance, bal, "balance restored")
mptest.eq(m.tokens.bad, 1, "bad-token count survives the power cut")
mptest.eq(m.enter_token(T["t1"]), "used", "replay window survives the power cut")
cleanup()
mptest.done()
'''

SNAPSHOTS = PRELUDE + r'''
import billing
tariff = {"v": 1, "kind": "tou_block", "scale": 1000, "rates": [30000, 10000], "tz": {"offset_min": 60},
          "days": [[[0, 1], [420, 0], [1320, 1]]], "weeks": [[0, 0, 0, 0, 0, 0, 0]],
          "blocks": {"reset": "month", "thresholds_kwh": [20], "adders": [0, 5000]},
          "standing_per_day": 50000}
cfg = {"opening_balance": 100000, "tariff": tariff, "credit": {"max_balance": 1000000},
       "commit_wh": 2000, "commit_s": 3600}
b, m = make(cfg, utc(2026, 1, 30, 12, 0, 0, 60), fresh=True)
run(b, m, 86400 * 3, 30)  # to 2 Feb 12:00 local
bl = m.billing
mptest.eq(bl.daily.next_seq, 3, "three daily freezes (30, 31 Jan, 1 Feb)")
mptest.eq(bl.monthly.next_seq, 1, "one monthly freeze (January)")
def snap(ring, seq):
    buf = bytearray(billing.SNAP_SIZE)
    mptest.check(ring.read(seq, buf), "snapshot %d readable" % seq)
    return billing.decode(bytes(buf))
d = [snap(bl.daily, i) for i in range(3)]
mptest.eq([(x["year"], x["month"], x["day"]) for x in d], [(2026, 1, 30), (2026, 1, 31), (2026, 2, 1)], "dates")
mo = bl.last(bl.monthly)
mptest.eq((mo["year"], mo["month"], mo["kind"]), (2026, 1, billing.MONTHLY), "monthly label")
mptest.eq(mo["charged"], d[1]["charged"], "month-end freeze equals the 31 Jan daily freeze")
mptest.eq(mo["utc"], mt(2026, 2, 1, 0, 0, 0, 60), "frozen at local midnight (meter seconds)")
for x in d:
    mptest.eq(sum(x["rate_wh"]), sum(x["block_wh"]), "per rate and per block agree")
    mptest.eq(x["balance"], 100000 - x["charged"], "balance = opening - charged")
mptest.check(d[0]["charged"] < d[1]["charged"] < d[2]["charged"], "registers grow")
mptest.eq(d[1]["standing_s"] - d[0]["standing_s"], 86400, "a day of standing charge per day")
mptest.check(d[2]["block_wh"][1] >= 0 and d[1]["block_wh"][0] <= 20000, "blocks")
msg = json.loads('{"seq":1,' + billing.to_json(d[2]))
mptest.eq((msg["snap"], msg["date"], msg["c"]), ("d", "2026-02-01", d[2]["charged"]), "uplink form")
mptest.eq(msg["t"], utc(2026, 2, 2, 0, 0, 0, 60), "uplink time in Unix seconds (1 Feb frozen at its end)")
mptest.eq([x["t"] for x in SENT if x["snap"] == "d"], [utc(2026, 1, 31, 0, 0, 0, 60), utc(2026, 2, 1, 0, 0, 0, 60),
                                                         utc(2026, 2, 2, 0, 0, 0, 60)],
          "reported freeze times in Unix seconds")
mptest.eq(m.account.charged, m.tariff.charged_minor, "account and engine agree")
mptest.eq([(x["snap"], x["date"]) for x in SENT], [("d", "2026-01-30"), ("d", "2026-01-31"), ("m", "2026-01"),
          ("d", "2026-02-01")], "snapshots reported to the backend")
mptest.eq(SENT[-1]["c"], d[2]["charged"], "reported figures are the frozen ones")
mptest.eq(sum(m.tariff.rate_wh), m.metering.imp_wh, "every metered Wh charged")
# Reboot the next day: the billing day comes back, no duplicate freeze.
b, m = reboot(cfg, utc(2026, 2, 2, 12, 0, 10, 60))
m.billing.daily = bl.daily
m.billing.monthly = bl.monthly
mptest.eq(sum(m.tariff.rate_wh), m.metering.imp_wh, "energy registers restored with the energy")
mptest.eq(m.tariff.charged_minor, m.account.charged, "engine total restored")
mptest.check(m.tariff.bkey == 2026 * 12 + 1 and 0 < m.tariff.bwh <= m.metering.imp_wh, "block counter restored")
run(b, m, 600, 30)
mptest.eq(bl.daily.next_seq, 3, "no second freeze of the same day after a reboot")
run(b, m, 86400, 30)
mptest.eq(bl.daily.next_seq, 4, "next midnight freezes")
cleanup()
mptest.done()
'''

FRIENDLY_EC = PRELUDE + r'''
# Friendly 16:00 -> 11:00 (UTC here); emergency credit 500 offered at or below 100.
cfg = {"opening_balance": 60, "credit": {"friendly": {"hours": [[960, 660]]}, "ec_limit": 500,
       "ec_threshold": 100, "low1": 50, "low2": 20}, "commit_wh": 200,
       "tariff": {"v": 1, "kind": "flat", "scale": 1, "price_per_kwh": 100}}
b, m = make(cfg, utc(2026, 3, 3, 17), fresh=True)
run(b, m, 6 * 3600, 30)
mptest.check(m.account.exhausted(), "credit ran out in the evening")
mptest.eq(m.relay.state, relay.CONNECTED, "the relay stays closed: friendly period")
evs = [m.events.get(i)[0] for i in range(m.events.oldest_seq(), m.events.seq)]
mptest.check(events.FRIENDLY in evs, "friendly period event")
run(b, m, 12 * 3600, 30)  # to 11:00 next day
mptest.check(m.relay.reasons & relay.CREDIT, "after the friendly period the credit reason is set")
mptest.check(m.relay.state != relay.CONNECTED, "disconnected after 11:00")
bal = m.account.balance
mptest.check(bal < 0, "the friendly period ran the balance below zero")
# Emergency credit covers up to 500: granted (balance <= 100) and the supply may return
# only if it lifts the available credit above zero.
mptest.eq(m.emergency_credit(), "granted", "EC granted")
mptest.eq(m.emergency_credit(), "already", "EC once")
mptest.eq(m.account.exhausted(), bal + 500 <= 0, "EC lifts exhaustion when it covers the debt")
cleanup()
mptest.done(balance=bal)
'''


# The day each scenario's meter starts: a command may expire at most 31 days past a trusted clock.
STARTS = {"TOKENS": 1769904000, "SNAPSHOTS": 1769731200, "FRIENDLY_EC": 1772496000, "PASSIVE": 1775001600,
          "STEP_HEAP": 1774742400}


def _args(flash, start):
    iss = token_issue.issue
    exp = start + 20 * 86400
    return json.dumps({
        "key": KEY.hex(),
        "flash": str(flash),
        "tokens": {"t1": iss(KEY, MID, 2, 700), "big": iss(KEY, MID, 4, 9000), "t3": iss(KEY, MID, 3, 300),
                   "t5": iss(KEY, MID, 5, 400),
                   "t7": iss(KEY, MID, 7, 50),
                   "bad": iss(bytes(32), MID, 9, 100)},
        "mqtt3": meterproto.command(KEY, MID, 3, exp, "topup", amt=300).decode(),
        "mqtt_tok": meterproto.command(KEY, MID, 40, exp, "token", tok=iss(KEY, MID, 5, 400)).decode(),
    })


@pytest.mark.parametrize("name", ["TOKENS", "SNAPSHOTS", "FRIENDLY_EC"])
def test_app_billing(mpy, name, tmp_path):
    res = mpy(globals()[name], stdin=_args(tmp_path / "flash.img", STARTS[name]), heap="512k", timeout=120)
    assert res.result["ok"] and res.result["checks"] > 5


PASSIVE = PRELUDE + r'''
cfg = {"opening_balance": 100000, "credit": {"max_balance": 1000000},
       "tariff": {"v": 1, "kind": "flat", "scale": 1, "price_per_kwh": 100}}
b, m = make(cfg, utc(2026, 4, 1, 10), fresh=True)
at = utc(2026, 4, 1, 12)
m.on_message(b"cmd", ARGS["bad_tariff"].encode())
mptest.check("price_per_kwh" in m.tariff_error, "refused with the reason: %s" % m.tariff_error)
mptest.check(m.tariff.passive is None, "nothing scheduled")
m.on_message(b"cmd", ARGS["tariff"].encode())
mptest.check(m.tariff.passive is not None and m.tariff_error is None, "scheduled")
run(b, m, 600, 30)
mptest.eq(m.tariff.price, 100, "old price before activation")
# A reboot before the activation time: the passive tariff comes back from flash.
b, m = reboot(cfg, utc(2026, 4, 1, 11))
mptest.check(m.tariff.passive is not None, "passive tariff survives a reboot")
run(b, m, 7200, 30)
mptest.eq(m.tariff.price, 300, "new price after activation")
evs = [m.events.get(i)[0] for i in range(m.events.oldest_seq(), m.events.seq)]
mptest.check(events.TARIFF_ACTIVATED in evs, "activation event")
cleanup()
mptest.done()
'''


def test_passive_tariff_over_mqtt(mpy, tmp_path):
    args = json.loads(_args(tmp_path / "flash.img", STARTS["PASSIVE"]))
    at = 1775044800  # 2026-04-01 12:00 UTC
    exp = STARTS["PASSIVE"] + 20 * 86400
    new = {"v": 1, "kind": "flat", "scale": 1, "price_per_kwh": 300, "activate_at": at}
    bad = {"v": 1, "kind": "flat", "scale": 1, "activate_at": at}
    args["tariff"] = meterproto.command(KEY, MID, 10, exp, "tariff", tariff=new).decode()
    args["bad_tariff"] = meterproto.command(KEY, MID, 9, exp, "tariff", tariff=bad).decode()
    res = mpy(PASSIVE, stdin=json.dumps(args), heap="512k", timeout=120)
    assert res.result["ok"] and res.result["checks"] > 5


STEP_HEAP = PRELUDE + r'''
import micropython, gc
# The whole step (metering, tariff with TOU, blocks and standing charge, account, credit rules
# with friendly periods, relay) under heap_lock between commits, telemetry and midnight.
tariff = {"v": 1, "kind": "tou_block", "scale": 100, "rates": [3000, 1000], "tz": {"offset_min": 60, "dst": "eu"},
          "days": [[[0, 1], [420, 0], [1320, 1]]], "weeks": [[0, 0, 0, 0, 0, 0, 0]],
          "blocks": {"reset": "month", "thresholds_wh": [100], "adders": [0, 500]}, "standing_per_day": 2000}
cfg = {"opening_balance": 100000, "tariff": tariff, "commit_wh": 10 ** 6, "commit_s": 10 ** 6,
       "telemetry_s": 10 ** 6, "credit": {"max_balance": 10 ** 7, "friendly": {"hours": [[1200, 360]]}}}
b, m = make(cfg, utc(2026, 3, 29, 0, 30), fresh=True)  # the DST change at 01:00 UTC is inside
m.sync.link = None
run(b, m, 60, 10)
gc.collect()
n = 0
wh0 = m.metering.imp_wh
quarters = 0
try:
    for i in range(2000):
        b.advance(10000)
        if m.clock.time() // 900 != (m.clock.time() - 10) // 900:
            m.step()  # a quarter-hour boundary: the load-profile record goes to flash (allocates)
            quarters += 1
            continue
        micropython.heap_lock()
        m.step()
        micropython.heap_unlock()
        n += 1
except MemoryError:
    micropython.heap_unlock()
mptest.eq(n + quarters, 2000, "steps without allocation, apart from quarter-hour flash writes")
mptest.check(quarters <= 2000 * 10 // 900 + 1, "only the quarter-hour steps were unlocked")
mptest.check(m.metering.imp_wh - wh0 > 100, "energy flowed: %d Wh" % (m.metering.imp_wh - wh0))
mptest.check(m.tariff.block_wh[1] > 0, "second block reached")
mptest.check(m.tariff.t.tz.dst, "the DST change was crossed under heap_lock")
cleanup()
mptest.done()
'''


def test_step_allocates_nothing(mpy, tmp_path):
    res = mpy(STEP_HEAP, stdin=_args(tmp_path / "flash.img", STARTS["STEP_HEAP"]), heap="512k", timeout=120)
    assert res.result["ok"]


SWITCH = PRELUDE + r'''
# The energy of a step was drawn before the step's time: the step that ends on a TOU switch point
# is priced at the rate that was in force during it, not at the one that starts there.
tariff = {"v": 1, "kind": "tou", "scale": 1, "rates": [3, 1], "days": [[[0, 1], [420, 0], [1320, 1]]],
          "weeks": [[0, 0, 0, 0, 0, 0, 0]]}
cfg = {"opening_balance": 10 ** 6, "tariff": tariff, "credit": {"max_balance": 10 ** 7}}
b, m = make(cfg, utc(2026, 4, 1, 5), fresh=True)
m.sync.link = None

class Steady:
    pf_milli = 1000
    def power_w(self, utc, s):
        return 2400
    def power_cut(self):
        pass

b.loads = [Steady()]
expect = [0, 0]
at_switch = 0
for i in range(36):  # 05:00 .. 08:00 in five-minute steps
    minute = (b.clock.time() % 86400) // 60  # the step's start, local = UTC here
    before = m.metering.imp_wh
    b.advance(300000)
    m.step()
    wh = m.metering.imp_wh - before
    expect[1 if minute < 420 or minute >= 1320 else 0] += wh
    if minute == 415:
        at_switch = wh
mptest.check(at_switch > 0, "energy flowed in the step that ends at 07:00: %d Wh" % at_switch)
mptest.eq([m.tariff.rate_wh[0], m.tariff.rate_wh[1]], expect, "each step's energy under the rate of its own time")
mptest.eq(m.account.charged, (3 * expect[0] + 1 * expect[1]) // 1000, "charged at those rates")
cleanup()
mptest.done()
'''


def test_the_step_ending_on_a_switch_point_is_priced_at_the_old_rate(mpy, tmp_path):
    res = mpy(SWITCH, stdin=_args(tmp_path / "flash.img", 1775019600), heap="512k", timeout=120)
    assert res.result["ok"] and res.result["checks"] >= 3
