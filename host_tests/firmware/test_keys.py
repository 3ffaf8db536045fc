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


LAYOUTS = r'''
import sys, struct, mptest, keys
from store import RecordStore
d = sys.argv[1]
old, new = bytes(range(32)), bytes(range(100, 132))
# A key record written by the firmware before the previous key was kept (40 bytes).
s = RecordStore(d + "/key.a", d + "/key.b", 40)
struct.pack_into("<II32s", s.payload, 0, 2, 17, new)
s.commit()
ks = keys.KeyStore(d)
mptest.check(ks.load(), "an older record loads")
mptest.eq((ks.kid, ks.rot_id, ks.key, ks.prev, ks.at), (2, 17, new, None, 0), "without a previous key")
ks.save(3, 18, old, new, 123456)
ks2 = keys.KeyStore(d)
mptest.check(ks2.load(), "the new layout loads")
mptest.eq((ks2.kid, ks2.rot_id, ks2.key, ks2.prev, ks2.at), (3, 18, old, new, 123456), "with the key it replaced")
mptest.done()
'''


def test_key_record_keeps_the_replaced_key_and_reads_the_older_layout(mpy, tmp_path):
    r = mpy(LAYOUTS, str(tmp_path)).result
    assert r["ok"] and r["checks"] >= 4, r
