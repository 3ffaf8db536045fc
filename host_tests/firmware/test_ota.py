"""firmware/ota.py on the ESP32 stand-ins (boards/sim_ota.py): what the sweep of tools/ota_sim.py
does not single out. Chunks that are not for the block being filled are ignored and counted; an
unanswered request is repeated with back-off; the same manifest again is the same job; a job
resumes after a reset from its last committed block; ota_cancel drops a job; and the meter goes
on metering while it fetches."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import mprun  # noqa: E402
import ota_sim  # noqa: E402

USES_MICROPYTHON = True

SCRIPT = r'''
import json, struct, os, mptest
import esp32world as W, esp32flash, esp32ota
import app as app_mod, sim_ota, ota
from binascii import hexlify, unhexlify
from hmac256 import HmacSha256
P = json.loads(open(%r).read())
KEY = unhexlify(P["key"])
mac = HmacSha256(KEY)
W.flash = esp32flash.Flash(P["template"], P["flash_size"], P["table"])
W.running = esp32ota.bootload(W.flash)
link = sim_ota.Link()
CFG = {"opening_balance": 1000, "ota_trial_s": 120}
def board(before=None):
    if before is not None:
        os.umount("/data")
    return sim_ota.Board({"meter_id": P["meter"], "key": KEY, "config": CFG, "link": link,
                          "release_key": unhexlify(P["release_key"])}, before)
b = board()
m = app_mod.Meter(b)
m.boot()
u = m.ota
IMG = open(P["releases"]["good"]["image"], "rb").read()
ids = [100]
def cmd(body):
    ids[0] += 1
    t = ('{"m":"%%s","id":%%d,"exp":1769817600,%%s}' %% (P["meter"], ids[0], body)).encode()
    m.on_message(m.sync.cmd_topic, hexlify(mac.digest(t)) + b" " + t)
    return ids[0]
def ota_cmd(name):
    r = P["releases"][name]
    return cmd('"op":"ota","man":%%s,"sig":"%%s"' %% (json.dumps(r["man"]), r["sig"]))
def asks():
    out = [json.loads(p) for t, p in link.sent if t.endswith(b"/fwreq")]
    link.sent[:] = [x for x in link.sent if not x[0].endswith(b"/fwreq")]
    return out
def send(o, n=1024, data=None):
    m.on_message(u.topic, struct.pack(">I", o) + (IMG[o:o + n] if data is None else data))
def step(n=1):
    for _ in range(n):
        b.advance(1000)
        m.step()

ota_cmd("good")
mptest.eq((u.state, u.next, u.blocks), (ota.LOADING, 0, (len(IMG) + 4095) // 4096), "loading from block 0")
a = asks()
mptest.eq([(x["o"], x["n"], x["v"]) for x in a], [(0, 4096, "1.1.0")], "asks for block 0 at once")
# Ignored: another block, a misaligned offset, a short chunk, one past the block, a tiny message.
send(4096); send(512); send(0, 1000); send(8192); m.on_message(u.topic, b"\0\0")
mptest.eq((u.bad_chunks, u.next, u._have), (4, 0, 0), "four chunks counted as bad, nothing kept")
send(0); send(2048)
mptest.eq(u._have, 0b101, "chunks 0 and 2 kept")
step(5)
a = asks()
mptest.eq([(x["o"], x["n"]) for x in a], [(1024, 3072)], "after 4 s it asks again, from the first chunk missing")
step(7)
mptest.eq(len(asks()), 1, "then after 8 s (back-off)")
mptest.eq(ota_cmd("good") > 0 and u.state == ota.LOADING and u._have == 0b101, True, "the same manifest: the same job")
send(1024); send(3072)
mptest.eq((u.next, u._have), (1, 0), "block 0 written")
for blk in range(1, 20):
    for k in range(4):
        send(blk * 4096 + k * 1024)
mptest.eq(u.next, 20, "20 blocks written")
asks()
# A reset: the job resumes from its last committed block (every 16), the ask says where.
imp = m.metering.imp_wh
b = board(b)
m = app_mod.Meter(b)
m.boot()
u = m.ota
mptest.eq((u.state, u.next), (ota.LOADING, 16), "resumed at block 16 after the reset")
step(5)
a = asks()
mptest.eq([x["o"] for x in a], [16 * 4096], "asks for block 16")
mptest.check(m.metering.imp_wh >= imp, "energy kept")
step(240)  # past the relay's randomised reconnect delay after a reset
mptest.check(m.metering.imp_wh > imp, "metering goes on while the job waits")
mptest.check(3 <= len(asks()) <= 12, "asked again with back-off while nobody answered")
app_mod.current = m
import repl
repl.status()  # the technician sees the job (checked on the pytest side)
# Cancel: the job is dropped, the reply is applied, ota_failed says cancelled.
cid = cmd('"op":"ota_cancel"')
step()
replies = [json.loads(p) for t, p in link.sent if t.endswith(b"/reply")]
evts = [json.loads(p) for t, p in link.sent if t.endswith(b"/evt")]
mptest.eq(u.state, ota.IDLE, "cancelled")
mptest.check(any(r["id"] == cid and r["res"] == "applied" for r in replies), "cancel applied")
mptest.check(any(e["ev"] == "ota_failed" and e["a"] == 16 for e in evts), "ota_failed cancelled (16)")
step(10)
mptest.eq(len(asks()), 0, "nothing asked any more")
b2 = board(b)
m = app_mod.Meter(b2)
m.boot()
mptest.eq(m.ota.state, ota.IDLE, "and after a reset the job stays gone")
mptest.done()
'''


def test_chunks_retries_resume_and_cancel(mpy, tmp_path):
    plan, _ = ota_sim.make_plan(tmp_path, 160 * 1024)  # 40 blocks: progress is committed every 16
    r = mpy(SCRIPT % str(plan), heap="4m", timeout=300, env={"MICROPYPATH": mprun.micropypath(esp32=True)})
    assert r.result["ok"] and r.result["checks"] >= 15, r.result
    assert "firmware  1.0.0 in ota_0   update: loading 1.1.0, block 16 of 40" in r.stdout, r.stdout[-2000:]
