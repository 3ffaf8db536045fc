"""firmware/sync.py: the numbered outbox and its replay, message formats, heap-quiet paths."""

OUTBOX = r'''
import mptest
from sync import Outbox, TELE, EVT
o = Outbox(4)
for i in range(3):
    o.put(TELE, b"m%d" % (i + 1))
mptest.eq((o.seq, o.count), (3, 3), "numbered from 1")
mptest.eq(o.peek(), (TELE, b"m1"), "fifo")
o.pop(); o.pop()
mptest.eq((o.count, o.peek()), (1, (TELE, b"m3")), "popped two")
mptest.eq(o.replay_from(1), 1, "replay from a held entry")
mptest.eq((o.count, o.peek()), (3, (TELE, b"m1")), "sent entries queued again in order")
o.pop(); o.pop(); o.pop()
o.put(EVT, b"m4"); o.put(EVT, b"m5")  # ring full: the oldest sent entry is forgotten
mptest.eq(o.dropped, 0, "nothing unsent lost")
mptest.eq(o.replay_from(1), 2, "m1 is gone: the replay starts at the oldest held")
mptest.eq([o.peek()[1] for _ in range(1) ], [b"m2"], "m2 first")
mptest.eq(o.count, 4, "m2..m5 pending")
o.put(TELE, b"m6")  # full and nothing sent: the oldest unsent is dropped and counted
mptest.eq((o.dropped, o.count, o.peek()[1]), (1, 4, b"m3"), "drop counted")
mptest.eq(o.replay_from(99), 0, "nothing at or after a future number")
mptest.eq(o.replay_from(4), 4, "pending already: nothing rewound")
mptest.eq(o.count, 4, "count unchanged")
mptest.done()
'''


def test_outbox_numbers_and_replays(mpy):
    r = mpy(OUTBOX).result
    assert r["ok"] and r["checks"] > 0


FORMATS = r'''
import json, mptest
from sync import Sync
class A: balance = 120; charged = 30; topped_up = 150
class Mt: imp_wh = 1000; exp_wh = 2; v_cv = 23000; i_ma = 1500; p_w = 345
class R: state = 0; reasons = 0
class M: account = A(); metering = Mt(); relay = R(); topups = 2
from billtest import EPOCH_S
T = 1767225600 - EPOCH_S  # 2026-01-01 in meter seconds, as the app passes it
from simhw.clock import SimClock
s = Sync("m-1", SimClock(1767225600), 16)
s.boot = T
s.telemetry(M(), T)
s.load_profile(M(), T, 12, 0)
import billing
s.billing(billing.to_json({"kind": billing.DAILY, "year": 2026, "month": 1, "day": 1, "utc": T,
                           "rate_wh": [700, 300], "block_wh": [1000], "charged_minor": 30, "standing_s": 86400,
                           "charged": 30, "balance": 120, "debt": 0, "topped_up": 150}))
s.reply(7, "applied", M(), extra=',"from":3')
topics = []
times = []
while s.outbox.count:
    k, p = s.outbox.peek()
    s.outbox.pop()
    topics.append(s.topics[k])
    d = json.loads(p)
    mptest.eq(d["seq"], len(topics), "seq in payload = outbox number")
    if "t" in d:
        times.append(d["t"])
    for v in d.values():
        ok = type(v) in (int, str) or (type(v) is list and all(type(x) is int for x in v))
        mptest.check(ok, "integers only: %r" % (v,))
mptest.eq(topics, [b"pm/v1/m-1/tele", b"pm/v1/m-1/lp", b"pm/v1/m-1/snap", b"pm/v1/m-1/reply"], "topics")
mptest.eq(d["from"], 3, "reply extra")
mptest.eq(times, [1767225600] * 3, "wall times leave the meter in Unix seconds")
t, b = s.birth()
mptest.eq(json.loads(b)["boot"], 1767225600, "boot time in Unix seconds")
mptest.eq((t, json.loads(b)["last"]), (b"pm/v1/m-1/status", 4), "birth names the last number")
mptest.eq(s.will(), (b"pm/v1/m-1/status", b'{"online":0}'), "will")
mptest.done()
'''


def test_uplink_formats(mpy):
    r = mpy(FORMATS, heap="256k").result  # billing and tariff compiled from source (frozen on a device)
    assert r["ok"] and r["checks"] > 0


IDLE = r'''
import mptest, micropython, events
from sync import Sync
class FakeLink:
    oversized = 0
    polls = 0
    def poll(self): self.polls += 1
    def publish(self, *a): return True
from simhw.clock import SimClock
s = Sync("m-1", SimClock(1767225600), 8)
ring = events.EventRing(8)
ring.raise_(events.BOOT, 0, 1)
s.forward_events(ring)  # formats one message (allocates): outside the lock
s.link = FakeLink()
s.poll()  # sends it
_ = ok = 0  # module globals exist before the lock: creating one would allocate
micropython.heap_lock()
try:
    for _ in range(100):
        s.forward_events(ring)
        s.poll()
    ok = True
except MemoryError:
    ok = False
micropython.heap_unlock()
mptest.check(ok, "an idle loop pass through sync allocates nothing")
mptest.eq((s.link.polls, s.outbox.count, s.published), (101, 0, 1), "polled, nothing left")
mptest.done()
'''


def test_idle_sync_allocates_nothing(mpy):
    r = mpy(IDLE, heap="96k").result  # compiling sync and what it imports from source needs the room
    assert r["ok"] and r["checks"] > 0


SIGNED = r'''
import json, mptest
from sync import Sync
from simhw.clock import SimClock
class A: balance = 120
class R: state = 0
class M: account = A(); relay = R()
ck = SimClock(1767225600)
s = Sync("m-1", ck, 16)
out = []
s.set_key(bytes(range(32)))
s.reply(7, "applied", M(), extra=',"from":3')
s.refused(0, "bad_mac", M(), ck.ticks_ms())
s.repeated(7, "applied", M(), ck.ticks_ms())
out.append(s.birth()[1])
s.set_key(bytes(range(1, 33)))  # after a rotation
s.reply(8, "applied", M())
while s.outbox.count:
    out.append(s.outbox.peek()[1])
    s.outbox.pop()
out += s.answers
s.set_key(None)
out.append(s.signed('{"id":9}'))
mptest.done(msgs=[m.decode() for m in out])
'''


def test_replies_answers_and_births_are_signed_with_the_meter_key(mpy):
    import json
    import meterproto
    r = mpy(SIGNED).result
    assert r["ok"]
    birth, r7, r8, ans, rep, unsigned = [m.encode() for m in r["msgs"]]
    k1, k2 = bytes(range(32)), bytes(range(1, 33))
    for m in (birth, r7, ans, rep):
        assert meterproto.verify_uplink(k1, m) and not meterproto.verify_uplink(k2, m), m
    assert meterproto.verify_uplink(k2, r8) and not meterproto.verify_uplink(k1, r8)
    assert json.loads(r7)["from"] == 3 and json.loads(ans)["res"] == "bad_mac" and json.loads(rep)["rep"] == 1
    assert json.loads(birth)["online"] == 1
    # Any change to a signed message breaks its mac; a message without one never verifies.
    assert not meterproto.verify_uplink(k1, r7.replace(b'"b":120', b'"b":999'))
    assert unsigned == b'{"id":9}' and not meterproto.verify_uplink(k1, unsigned)
