"""firmware/keys.py: the firmware unwraps what tools/meterproto.py wraps; the key store."""
import meterproto

OLD = bytes(range(32))
NEW = bytes(range(100, 132))

UNWRAP = r'''
import sys, mptest, keys
from binascii import unhexlify
old, wk, kcv = unhexlify(sys.argv[1]), unhexlify(sys.argv[2]), sys.argv[3]
new = keys.unwrap(old, "m-7", 41, wk)
mptest.eq(keys.kcv(new), kcv, "key check value")
mptest.check(keys.unwrap(old, "m-7", 42, wk) != new, "the pad depends on the command id")
mptest.check(keys.unwrap(old, "m-8", 41, wk) != new, "and on the meter")
ks = keys.KeyStore(sys.argv[4])
mptest.eq(ks.load(), False, "no rotated key yet")
ks.save(3, 41, new)
ks2 = keys.KeyStore(sys.argv[4])
mptest.check(ks2.load(), "stored")
mptest.eq((ks2.kid, ks2.rot_id, ks2.key), (3, 41, new), "round trip")
mptest.done(new=new.hex())
'''


def test_unwrap_matches_backend_wrap(mpy, tmp_path):
    wk = meterproto.wrap_key(OLD, "m-7", 41, NEW)
    assert bytes.fromhex(wk) != NEW
    res = mpy(UNWRAP, OLD.hex(), wk, meterproto.kcv(NEW), str(tmp_path))
    assert res.result["new"] == NEW.hex()
