"""firmware/auth.py (with the app's command path): fuzzing, replays, key checks, under micropython."""
from pathlib import Path

import mprun

FUZZ = Path(__file__).resolve().parent / "fuzz_commands_mpy.py"


def test_ten_thousand_bad_commands_no_crash_no_state_change_all_answered(mpy, tmp_path):
    res = mpy(FUZZ, tmp_path / "flash.img", 10000, heap=mprun.APP_HEAP, timeout=300)  # the whole app
    r = res.result
    assert r["ok"] and r["cases"] == 10000 and r["topups"] == 14
    print("fuzz: %(cases)d cases, %(refused)d refused" % r)


ROTATE_REPEAT = r'''
import mptest
import auth
from hmac256 import HmacSha256
from binascii import hexlify
K1 = b"k" * 32
K2 = b"n" * 32
c = auth.Commands("m1", K1)
def s(k, body): return hexlify(HmacSha256(k).digest(body)) + b" " + body
rot = b'{"m":"m1","id":5,"exp":2000000000,"op":"rotkey"}'
v, doc, _ = c.check(s(K1, rot), 1000)
mptest.eq(v, auth.OK, "rotation accepted")
c.remember(5, 0)
c.set_key(K2)
v, doc, res = c.check(s(K1, rot), 1000)
mptest.eq((v, res), (auth.REPEAT, 0), "the rotation's retry under the old key gets its answer")
v, cid, why = c.check(s(K1, b'{"m":"m1","id":6,"exp":2000000000,"op":"topup"}'), 1000)
mptest.eq((v, cid, why), (auth.REFUSED, 6, "old_key"), "a new command under the old key is refused")
v, doc, _ = c.check(s(K2, b'{"m":"m1","id":6,"exp":2000000000,"op":"topup"}'), 1000)
mptest.eq(v, auth.OK, "the new key works")
v, cid, why = c.check(s(b"x" * 32, b'{"m":"m1","id":7,"exp":2000000000,"op":"topup"}'), 1000)
mptest.eq((v, cid, why), (auth.REFUSED, 0, "bad_mac"), "forged: no id echoed")
# After a reboot the key in force and the one before come from the key store: a second rotation's
# retry (signed with the first rotation's key) still gets its answer, not bad_mac.
rot2 = b'{"m":"m1","id":8,"exp":2000000000,"op":"rotkey"}'
K3 = b"t" * 32
c2 = auth.Commands("m1", K1)  # booted with the provisioned key
c2.remember(8, 0)  # the record's replay window
c2.set_key(K3, K2)
v, doc, res = c2.check(s(K2, rot2), 1000)
mptest.eq((v, res), (auth.REPEAT, 0), "the retry under the key before the last rotation")
v, cid, why = c2.check(s(K1, rot2), 1000)
mptest.eq((v, why), (auth.REFUSED, "bad_mac"), "not under the provisioned one any more")
mptest.done()
'''


def test_old_key_only_answers_repeats(mpy):
    r = mpy(ROTATE_REPEAT).result
    assert r["ok"] and r["checks"] > 0


BOUNDS = r'''
import mptest
import auth
from hmac256 import HmacSha256
from binascii import hexlify
from timebase import EPOCH
K = b"k" * 32
NOW = 100000000  # meter seconds
EXP = NOW + EPOCH + 3600  # an hour ahead, in Unix seconds
def s(body): return hexlify(HmacSha256(K).digest(body)) + b" " + body
def cmd(cid, exp=EXP, op="topup"):
    return s(b'{"m":"m1","id":%d,"exp":%d,"op":"%s","amt":1}' % (cid, exp, op))
c = auth.Commands("m1", K)
def run(p):
    v, doc, res = c.check(p, NOW)
    if v == auth.OK:
        c.remember(doc["id"], 0)
        return "ok"
    return res
mptest.eq(run(cmd(2 ** 31 - 1)), "id_jump", "a poison id is refused")
mptest.eq(run(cmd(5)), "ok", "and the meter goes on taking commands")
mptest.eq(run(cmd(5 + auth.MAX_ADVANCE)), "ok", "an advance of MAX_ADVANCE is fine")
mptest.eq(run(cmd(6 + 2 * auth.MAX_ADVANCE)), "id_jump", "one more is not")
mptest.eq(c.last_id, 5 + auth.MAX_ADVANCE, "nothing moved by the refusal")
# A lost window: the resync may carry any id (the backend's counter), and sets the base.
c2 = auth.Commands("m1", K)
c2.lose(77)
v, doc, res = c2.check(s(b'{"m":"m1","id":900000,"exp":%d,"op":"resync","nonce":77,"last":899999}' % EXP), NOW)
mptest.eq(v, auth.OK, "a resync far ahead is taken while the window is lost")
mptest.check(c2.resync(doc), "resync applied")
c2.remember(900000, 0)
v, _, res = c2.check(s(b'{"m":"m1","id":900001,"exp":%d,"op":"topup","amt":1}' % EXP), NOW)
mptest.eq(v, auth.OK, "and the next id after it")
# Expiry: at most MAX_AHEAD_S past a trusted clock; not judged on a clock the meter does not trust.
FAR = NOW + EPOCH + auth.MAX_AHEAD_S
c3 = auth.Commands("m1", K)
mptest.eq(c3.check(cmd(1, FAR + 1), NOW, True), (auth.REFUSED, 1, "exp_far"), "a day and a second too far")
mptest.eq(c3.check(cmd(1, 1 << 40), NOW, True), (auth.REFUSED, 1, "exp_far"), "an absurd expiry")
mptest.eq(c3.check(cmd(1, FAR), NOW, True)[0], auth.OK, "MAX_AHEAD_S ahead is fine")
mptest.eq(c3.check(cmd(1, FAR + 1), NOW)[0], auth.OK, "an untrusted clock may run behind the truth")
mptest.eq((c3.last_id, c3.refused), (0, 2), "refusals change nothing")
mptest.done()
'''


def test_ids_may_advance_only_a_bounded_step(mpy):
    r = mpy(BOUNDS).result
    assert r["ok"] and r["checks"] >= 13, r
