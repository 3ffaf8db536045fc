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
mptest.done()
'''


def test_old_key_only_answers_repeats(mpy):
    r = mpy(ROTATE_REPEAT).result
    assert r["ok"] and r["checks"] > 0
