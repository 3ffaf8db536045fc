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
s.telemetry(M(), T, 900)  # revision 5: the report that closes a load-profile interval
topics = []
times = []
docs = []
while s.outbox.count:
    k, p = s.outbox.peek()
    s.outbox.pop()
    topics.append(s.topics[k])
    d = json.loads(p)
    docs.append(d)
    mptest.eq(d["seq"], len(topics), "seq in payload = outbox number")
    if "t" in d:
        times.append(d["t"])
    for v in d.values():
        ok = type(v) in (int, str) or (type(v) is list and all(type(x) is int for x in v))
        mptest.check(ok, "integers only: %r" % (v,))
mptest.eq(topics, [b"pm/v1/m-1/tele", b"pm/v1/m-1/lp", b"pm/v1/m-1/snap", b"pm/v1/m-1/reply", b"pm/v1/m-1/tele"],
          "topics")
mptest.eq(docs[3]["from"], 3, "reply extra")
mptest.eq(times, [1767225600] * 4, "wall times leave the meter in Unix seconds")
mptest.check("lp" not in docs[0], "a plain report does not claim to close an interval")
mptest.eq((docs[4]["lp"], docs[4]["e"], docs[4]["x"]), (900, 1000, 2), "an interval report: its length, the closing registers")
t, b = s.birth()
mptest.eq(json.loads(b)["boot"], 1767225600, "boot time in Unix seconds")
mptest.eq((t, json.loads(b)["last"]), (b"pm/v1/m-1/status", 5), "birth names the last number")
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
def idle():
    s.forward_events(ring)
    s.poll()
mptest.allocates_nothing(idle, 100, "an idle loop pass through sync allocates nothing")
mptest.eq((s.link.polls, s.outbox.count, s.published), (101, 0, 1), "polled, nothing left")
mptest.done()
'''


def test_idle_sync_allocates_nothing(mpy):
    r = mpy(IDLE, heap="96k").result  # compiling sync and what it imports from source needs the room
    assert r["ok"] and r["checks"] > 0


SIGNED = r'''
import json, mptest, micropython, events
from sync import Sync
class Mt: imp_wh = 1000; exp_wh = 2; v_cv = 23000; i_ma = 1500; p_w = 345
class A: balance = 120; charged = 30; topped_up = 150
class R: state = 0; reasons = 0
class M: account = A(); metering = Mt(); relay = R(); topups = 2
class Link:
    state = 1; oversized = 0; up = True
    def __init__(self): self.sent = []
    def poll(self): pass
    def publish(self, topic, payload, qos):
        if self.up:
            self.sent.append((topic.decode().split("/")[-1], payload.decode()))
        return self.up
from simhw.clock import SimClock
ck = SimClock(1767225600)
s = Sync("m-1", ck, 16)
s.set_key(bytes(range(32)))
s.link = Link()
s.telemetry(M(), 100)
s.load_profile(M(), 100, 12, 0)
ring = events.EventRing(8)
ring.raise_(events.BOOT, 0, 1)
s.forward_events(ring)
s.billing('"kind":"day","t":1767225600}')
s.reply(7, "applied", M(), extra=',"from":3')
s.refused(0, "bad_mac", M(), ck.ticks_ms())
s.repeated(7, "applied", M(), ck.ticks_ms())
while s.outbox.count or s.answers:
    s.poll()
out = s.link.sent
out.append(("status", s.birth()[1].decode()))
s.reply(8, "applied", M())  # queued under the first key ...
s.link.up = False
s.poll()  # ... the link refuses it: signed once, kept for the retry
mptest.allocates_nothing(s.poll, 50, "retrying a signed message while the link refuses allocates nothing")
s.set_key(bytes(range(1, 33)))  # ... rotated before it went out
s.link.up = True
s.poll()
old = b'{"seq":99,"id":1,"res":"applied","mac":"0123456789abcdef"}'
mptest.eq(s.signed(old), old, "a message an older firmware queued signed is sent as it is")
s.set_key(None)
out.append(("none", s.signed('{"id":9}').decode()))
mptest.done(msgs=out)
'''


def test_every_uplink_message_is_signed_with_the_meter_key_when_sent(mpy):
    import json
    import meterproto
    r = mpy(SIGNED, heap="128k").result
    assert r["ok"]
    msgs = [(k, m.encode()) for k, m in r["msgs"]]
    kinds = [k for k, _ in msgs]
    # the two answers go first (RAM), then the outbox in order
    assert kinds == ["reply", "reply", "tele", "lp", "evt", "snap", "reply", "status", "reply", "none"], kinds
    k1, k2 = bytes(range(32)), bytes(range(1, 33))
    for kind, m in msgs[:8]:
        assert meterproto.verify_uplink(k1, m) and not meterproto.verify_uplink(k2, m), m
        assert not meterproto.forged(k1, kind, json.loads(m), m) and meterproto.forged(k2, kind, json.loads(m), m)
    r8 = msgs[8][1]  # signed under the key in force when it went out
    assert meterproto.verify_uplink(k2, r8) and not meterproto.verify_uplink(k1, r8)
    ans, rep, r7 = (json.loads(msgs[i][1]) for i in (0, 1, 6))
    assert r7["from"] == 3 and ans["res"] == "bad_mac" and rep["rep"] == 1
    assert ans["t"] == rep["t"] == 1767225600, "answers carry the meter's clock"
    assert json.loads(msgs[7][1])["online"] == 1 and json.loads(msgs[2][1])["e"] == 1000
    # Any change to a signed message breaks its mac; a message without one never verifies.
    tele = msgs[2][1]
    assert not meterproto.verify_uplink(k1, tele.replace(b'"e":1000', b'"e":9999'))
    unsigned = msgs[9][1]
    assert unsigned == b'{"id":9}' and not meterproto.verify_uplink(k1, unsigned)
    # A revision 2 meter signed replies and births only: its telemetry is not called forged.
    assert not meterproto.forged(k2, "tele", {}, b'{"seq":1}', rev=2) and meterproto.forged(k2, "reply", {}, b"{}", rev=2)
    assert meterproto.forged(k2, "tele", {}, b'{"seq":1}') and not meterproto.forged(k2, "status", {"online": 0}, b"")
