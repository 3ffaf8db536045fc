"""firmware/remote.py: validation of each remote op, and the key store as rotation commit point."""
import meterproto
import mprun

KEY = bytes(range(1, 33))

REMOTE = r'''
import sys, json, mptest
from binascii import unhexlify
import sim_atm90e26, app as app_mod, record
from billtest import EPOCH_S
key = unhexlify(sys.argv[2])
b = sim_atm90e26.build({"meter_id": "r-1", "key": key, "seed": 1, "flash": sys.argv[1], "broker": None,
                        "config": {"opening_balance": 1000}})
m = app_mod.Meter(b)
m.boot()
rp = m.remote
def ap(**d):  # through the app's dispatcher: tariff is the app's own, the rest is remote.py's
    d.setdefault("id", 1)
    return m._apply(d)
snap = bytearray(record.SIZE)
record.pack(snap, m)
AT = m.clock.time() + EPOCH_S + 86400  # activate_at is Unix time
for bad in ({"op": "tariff"}, {"op": "tariff", "tariff": {"v": 1, "kind": "flat", "price_per_kwh": -1, "scale": 1000,
                                                         "activate_at": AT}},
            {"op": "tariff", "tariff": {"v": 1, "kind": "flat", "price_per_kwh": 30000, "scale": 1000}},
            {"op": "tariff", "tariff": {"v": 1, "kind": "flat", "price_per_kwh": 30, "scale": 1, "activate_at": AT}},
            {"op": "limits"}, {"op": "limits", "low1": "5"}, {"op": "limits", "low1": 10, "low2": 20},
            {"op": "limits", "maxb": 100, "low1": 200}, {"op": "limits", "rth": 10 ** 12},
            {"op": "limits", "credit": 5}, {"op": "limits", "credit": {"no_such_rule": 1}},
            {"op": "limits", "credit": {"overdraft": -1}}, {"op": "limits", "credit": {"max_balance": 100}},
            {"op": "limits", "credit": {"friendly": {"weekdays": [9]}}},
            {"op": "time"}, {"op": "time", "utc": 5}, {"op": "backfill"}, {"op": "backfill", "from": 0},
            {"op": "rotkey", "kid": 0, "wk": "00" * 32, "kcv": "00000000"},
            {"op": "rotkey", "kid": 1, "wk": "zz" * 32, "kcv": "00000000"},
            {"op": "rotkey", "kid": 1, "wk": "00" * 32, "kcv": "00000000"}, {"op": "nope"}):
    r = ap(**bad)
    mptest.check(r in (3, 4), "refused: %r -> %r" % (bad, r))
now = bytearray(record.SIZE)
record.pack(now, m)
mptest.eq(now, snap, "no refused op changed the record")
mptest.eq((m.tariff.price, m.tariff.passive, m.account.low1, m.account.overdraft, m.sync.kid), (25000, None, 200, 0, 0),
          "nor the settings")
mptest.eq(ap(op="limits", low1=500, low2=100, rth=50, credit={"overdraft": 30, "low1": 400}), 0, "limits")
mptest.eq((m.account.low1, m.account.low2, m.account.reconnect_threshold, m.account.overdraft), (500, 100, 50, 30),
          "applied; the short member wins")
import os
os.mkdir(m.board.root + "/credit.json.tmp")  # the rules cannot be written
mptest.eq(ap(op="limits", low1=600), 5, "unsaved limits: store_fault")
mptest.eq(m.account.low1, 500, "and nothing changed")
os.rmdir(m.board.root + "/credit.json.tmp")
mptest.eq(ap(op="tariff", tariff={"v": 1, "kind": "flat", "price_per_kwh": 30000, "scale": 1000, "activate_at": AT}),
          0, "tariff scheduled")
mptest.check(m.tariff.passive is not None and m.tariff.price == 25000, "passive until activate_at")
mptest.eq(ap(op="time", utc=1800000000), 0, "time")
mptest.eq(m.clock.time(), 1800000000 - EPOCH_S, "clock set (meter seconds)")
mptest.eq(rp.take_extra(), ',"t":1800000000', "the reply tells the new time in Unix seconds")
mptest.eq(ap(id=9, op="rotkey", kid=1, wk=sys.argv[3], kcv=sys.argv[4]), 0, "rotation")
mptest.eq((m.sync.kid, rp.keystore.kid, rp.keystore.rot_id), (1, 1, 9), "stored before the ack")
# Power cut right after the key store commit: the hot record never remembered command 9.
import os
os.umount("/flash")
m2 = app_mod.Meter(sim_atm90e26.build({"meter_id": "r-1", "key": key, "seed": 1, "flash": sys.argv[1],
                                       "broker": None, "config": {}}))
m2.boot()
mptest.eq((m2.sync.kid, m2.commands.last_id), (1, 9), "boot completes the rotation")
mptest.eq((m2.account.low1, m2.account.reconnect_threshold, m2.account.overdraft), (500, 50, 30), "limits survive")
mptest.check(m2.tariff.passive is not None, "so does the scheduled tariff")
mptest.check(9 in list(m2.commands.ids), "and its id is in the replay window")
# The hot record cannot be written after the key store took a new key: the reply says so.
import keys
from hmac256 import HmacSha256
from binascii import hexlify
k1 = m2.remote._key
k2 = bytes(range(90, 122))
wk = hexlify(bytes(a ^ b for a, b in zip(k2, keys.pad(k1, "r-1", 10)))).decode()
import timebase
body = json.dumps({"m": "r-1", "id": 10, "exp": timebase.to_unix(m2.clock.time()) + 600, "op": "rotkey", "kid": 2, "wk": wk,
                   "kcv": keys.kcv(k2)}).encode()
def broken():
    raise OSError(5)
m2.store.commit = broken
m2.on_message(m2.sync.cmd_topic, hexlify(HmacSha256(k1).digest(body)) + b" " + body)
k, p = m2.sync.outbox.peek()
while m2.sync.outbox.count > 1:
    m2.sync.outbox.pop()
    k, p = m2.sync.outbox.peek()
r = json.loads(p)
mptest.eq((r["id"], r["res"], r.get("kid")), (10, "store_fault", 2), "store fault names the key in force")
mptest.eq((m2.sync.kid, m2.commands.last_id), (2, 9), "key rotated, window unchanged")
mptest.done()
'''


def test_remote_ops_validate_then_apply(mpy, tmp_path):
    new = bytes(range(50, 82))
    res = mpy(REMOTE, tmp_path / "f.img", KEY.hex(), meterproto.wrap_key(KEY, "r-1", 9, new),
              meterproto.kcv(new), heap=mprun.APP_HEAP)
    assert res.result["ok"] and res.result["checks"] >= 25
