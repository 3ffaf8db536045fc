"""firmware/link.py: half-open detection through a fault proxy, packet id wrap, backoff, bounds."""
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from faultproxy import FaultProxy  # noqa: E402
from meterrig import Backend, Rig  # noqa: E402

KEY = bytes(range(1, 33))
KEEPALIVE_S = 2
TIMEOUT_MS = 1000  # the sim board's socket bound
# Quiet meter: nothing to publish, so only the keepalive logic can notice a dead link.
QUIET = {"keepalive_s": KEEPALIVE_S, "backoff_max_ms": 1000, "telemetry_s": 86400, "lp_s": 86400, "report_step_w": 10 ** 6,
         "opening_balance": 100000}


@pytest.mark.micropython
def test_half_open_link_detected_within_1_5_keepalive_and_metering_goes_on(tmp_path, broker):
    with FaultProxy((broker.host, broker.port)) as proxy:
        rig = Rig(tmp_path, key=KEY, broker=(proxy.host, proxy.port), config=QUIET)
        try:
            st = rig("run", ms=1500, adv=100)
            assert st["link"] == 1 and st["connects"] == 1
            rig.send(do="run", ms=4000, adv=5000, sleep=5)
            time.sleep(1.0)
            proxy.blackhole()  # both ends stay open; nothing flows (a half-open link)
            t_fault = 1000
            st = rig.result()
            assert st["drops_at"], "dead link never detected: %r" % st
            latency = st["drops_at"][0] - t_fault
            # 1.5 x keepalive from the last byte received, plus one loop pass of slack.
            assert latency <= 1.5 * KEEPALIVE_S * 1000 + 200, latency
            # The loop kept running: no call blocked longer than the socket bound.
            assert st["max_step_ms"] <= TIMEOUT_MS + 300 and st["steps"] > 100
            e0 = st["imp_wh"]
            proxy.heal()
            for _ in range(40):
                st = rig("run", ms=200, adv=5000)
                if st["link"] == 1:
                    break
            assert st["imp_wh"] > e0 and st["link"] == 1 and st["connects"] >= 2
        finally:
            rig.close()
    print("half-open detected after %d ms (keepalive %d s)" % (latency, KEEPALIVE_S))


@pytest.mark.micropython
def test_packet_id_wraps_without_losing_messages(tmp_path, broker):
    b = Backend(broker.host, broker.port, "rig-0001", KEY)
    rig = Rig(tmp_path, key=KEY, broker=(broker.host, broker.port),
              config={"keepalive_s": 5, "telemetry_s": 60, "lp_s": 60})
    try:
        st = rig("run", ms=1000, adv=100)
        assert st["link"] == 1
        rig("pid", v=0xFFE8)
        st = rig("run", ms=1500, adv=20000)  # ~2 messages a step
        assert st["drops"] == 0 and 0 < st["pid"] < 0xFFE8, st
        assert st["sent"] >= 16  # at least as many after the wrap as before it
        assert b.wait(lambda: len(b.seqs()) >= st["seq"] - st["outbox"])
        seqs = sorted(b.seqs())
        assert seqs == list(range(1, len(seqs) + 1))
    finally:
        rig.close()
        b.close()


FAKE_MQTT = r'''
import mptest
import link as link_mod

class FakeClient:
    made = []
    fail = True
    kick = False
    def __init__(self, cid, host, port, user, password, keepalive):
        self.pid = 0
        self.sock = None
        FakeClient.made.append(self)
    def set_callback(self, f): pass
    def set_last_will(self, *a): pass
    def connect(self, clean):
        self.clean = clean
        if FakeClient.fail:
            raise OSError(111)
    def subscribe(self, t, q): self.sub = t
    def publish(self, *a): self.pid += 1
    def check_msg(self):
        if FakeClient.kick:
            raise OSError(104)  # the broker closed the session (another client took our id)
    def ping(self): pass

class FakeMod:
    MQTTClient = FakeClient

class Clock:
    t = 0
    def ticks_ms(self): return self.t
    def ticks_diff(self, a, b): return a - b
    def ticks_add(self, a, d): return a + d

draws = []
def rand(n):
    draws.append(n)
    return n - 1  # worst case of the jitter
clk = Clock()
L = link_mod.Link(FakeMod, clk, rand, "pm-x", "h", 1, None, (b"t",), backoff_min_ms=100, backoff_max_ms=3000)
for i in range(10):
    L.poll()
    clk.t = L._next_try
mptest.eq(draws, [100, 200, 400, 800, 1600, 3000, 3000, 3000, 3000, 3000], "capped exponential range")
FakeClient.fail = False
L.poll()
mptest.eq(L.state, link_mod.UP, "connected")
mptest.eq(L._fails, 10, "the back-off is kept until the session proves stable")
clk.t += 59000
L.poll()
mptest.eq(L._fails, 10, "not yet stable at 59 s")
clk.t += 1000
L.poll()
mptest.eq((L.state, L._fails, L.short), (link_mod.UP, 0, 0), "backoff reset after a minute up")
# Client-id takeover: each session is closed by the broker right after the connect. The
# back-off grows as if the connects had failed, so the meter does not reconnect in a loop.
del draws[:]
FakeClient.kick = True
for i in range(8):
    L.poll()  # up: kicked off on its first poll
    clk.t = L._next_try
    L.poll()  # connects again
mptest.eq(draws, [100, 200, 400, 800, 1600, 3000, 3000, 3000], "kicked sessions back off")
mptest.eq((L.short, L.connects), (7, 9), "short sessions counted (the first kick ended a stable one)")
FakeClient.kick = False
clk.t += 60000
L.poll()
mptest.eq((L.state, L._fails, L.short), (link_mod.UP, 0, 0), "a stable session ends the run")
# Uptime past the tick wrap: an old session dropped after days is not a short one.
clk.t += 1 << 30
L.poll()
FakeClient.kick = True
L.poll()
mptest.eq((L.state, L.short), (link_mod.DOWN, 0), "a drop after days is not short")
FakeClient.kick = False
clk.t = L._next_try
L.poll()
mptest.eq(FakeClient.made[-1].clean, True, "clean session")
mptest.eq(FakeClient.made[-1].sub, b"t", "resubscribed")
sm = FakeMod.socket
a1 = sm.getaddrinfo("127.0.0.1", 1883)
mptest.check(sm.getaddrinfo("127.0.0.1", 1883) is a1, "resolved once, reused")
L._fails = 4
a2 = sm.getaddrinfo("127.0.0.1", 1883)
mptest.check(a2 is not a1, "resolved again after repeated failures")
L._fails = 5
mptest.check(sm.getaddrinfo("127.0.0.1", 1883) is a2, "but not on every attempt")
L._fails = 0
c = FakeClient.made[-1]
c.pid = 0xFFF0
mptest.check(L.publish(b"t", b"m"), "publish")
mptest.eq(c.pid, 1, "packet id wrapped to 1, never 0")
mptest.done()
'''


def test_backoff_is_capped_exponential_with_jitter_and_pid_wraps(mpy):
    r = mpy(FAKE_MQTT).result
    assert r["ok"] and r["checks"] > 0


BOUNDS = r'''
import mptest
import link as link_mod

class S:
    def __init__(self, data): self.data = data; self.t = None
    def settimeout(self, t): self.t = t
    def setblocking(self, f): self.t = "nb"
    def read(self, n):
        d, self.data = self.data[:n], self.data[n:]
        return d
    def close(self): pass

class L:
    timeout_s = 1
    retained = 0
    oversized = 0
    skip = False
    ssl_context = None
    _deadline = None  # no publish waiting
    def _rx(self): pass
    def _tx(self): pass

l = L()
s = S(b"\x31" + b"y" * 5000 + b"ab")
p = link_mod._BoundedSocket(s, 1, l)
mptest.eq(s.t, 1, "timeout applied at creation")
p.settimeout(None)
mptest.eq(s.t, 1, "None (forever) is bounded")
p.read(1)
p.setblocking(True)
mptest.eq(s.t, 1, "setblocking(True) means the bound, not forever")
mptest.eq(l.retained, 1, "RETAIN bit of the fixed header seen")
mptest.eq(p.read(5000), b"", "an oversized topic or payload is read past, never allocated")
mptest.eq((l.oversized, l.skip, s.data), (1, True, b"ab"), "counted, marked to be dropped, stream in step")
l.skip = False
mptest.raises(OSError, p.read, (1 << 20) + 1)  # past what the link reads through: dropped
mptest.eq(l.oversized, 2, "counted too")
mptest.raises(OSError, p.read, 10)  # short read inside a packet: the stream is unusable
mptest.done()
'''


def test_socket_proxy_bounds_every_read(mpy):
    r = mpy(BOUNDS).result
    assert r["ok"] and r["checks"] > 0


WAIT = r'''
import sys, time, mptest
import link as link_mod
from umqtt import simple
host, port = sys.argv[1], int(sys.argv[2])

# Every socket the link makes turns Nagle off: spy on the socket module it uses.
real = link_mod._socket
opts = []
class Spy:
    def __init__(self, s): self._s = s
    def setsockopt(self, *a):
        opts.append(a)
        self._s.setsockopt(*a)
    def __getattr__(self, n): return getattr(self._s, n)
class SpyMod:
    def socket(self, *a): return Spy(real.socket(*a))
    def getaddrinfo(self, *a): return real.getaddrinfo(*a)
link_mod._socket = SpyMod()
L0 = link_mod.Link(simple, time, lambda n: 0, "w-spy", host, port, lambda t, m: None)
L0.poll()
mptest.eq(L0.state, link_mod.UP, "connected through the spy")
mptest.check((6, 1, 1) in opts, "TCP_NODELAY set: %r" % opts)
L0.close()
link_mod._socket = real

got = []
L = link_mod.Link(simple, time, lambda n: 0, "w-1", host, port, lambda t, m: got.append(m),
                  subscriptions=(b"w/cmd",), keepalive_s=30)
L.poll()
mptest.eq(L.state, link_mod.UP, "connected")
t = time.ticks_ms()
L.wait(300)
idle = time.ticks_diff(time.ticks_ms(), t)
mptest.check(idle >= 250, "nothing arrives: wait idles for its time (%d ms)" % idle)
other = simple.MQTTClient("w-2", host, port)
other.connect()
other.publish(b"w/cmd", b"hello", False, 1)
other.disconnect()
t = time.ticks_ms()
L.wait(10000)
woke = time.ticks_diff(time.ticks_ms(), t)
mptest.check(woke < 5000, "a message wakes the wait early (%d ms of 10000)" % woke)
L.poll()
mptest.eq(got, [b"hello"], "and the next poll delivers it")
L.close()
L.wait(50)  # down: a plain sleep, no socket
mptest.done()
'''


def test_wait_idles_on_the_socket_and_nagle_is_off(mpy, broker):
    r = mpy(WAIT, broker.host, broker.port).result
    assert r["ok"] and r["checks"] >= 6, r


FLOODED_PUBLISH = r'''
import mptest
import link as link_mod
from umqtt import simple

class Clock:
    t = 0
    def ticks_ms(self): return self.t
    def ticks_diff(self, a, b): return a - b
    def ticks_add(self, a, d): return a + d
clk = Clock()

FLOOD = b"\x30\x0e\x00\x06pm/cmd" + b"garbage!"  # a QoS 0 PUBLISH of 8 bytes on the command topic

class Sock:
    """A broker that answers the connect and the subscription, then floods the meter with
    messages and never gets round to the PUBACK. Reading a packet costs 1 ms of the device's time."""
    def __init__(self, *a):
        self.buf = b"\x20\x02\x00\x00" + b"\x90\x03\x00\x01\x01"
        self.flooding = False
        self.sent = 0
    def settimeout(self, t): pass
    def setblocking(self, f): pass
    def setsockopt(self, *a): pass
    def connect(self, addr): pass
    def write(self, b, n=None):
        if b[0] == 0x32:  # a QoS 1 PUBLISH from the meter: from now on the flood
            self.flooding = True
        return len(b) if n is None else n
    def read(self, n):
        if not self.buf and self.flooding:
            self.buf = FLOOD
            self.sent += 1
            clk.t += 1
        d, self.buf = self.buf[:n], self.buf[n:]
        return d
    def close(self): pass

class FakeSocketModule:
    socket = Sock
    @staticmethod
    def getaddrinfo(h, p, *a): return [(0, 0, 0, "", (h, p))]

link_mod._socket = FakeSocketModule
got = []
L = link_mod.Link(simple, clk, lambda n: 0, "pm-x", "h", 1883, lambda t, m: got.append(m), (b"pm/cmd",),
                  timeout_ms=2000)
L.poll()
mptest.eq(L.state, link_mod.UP, "connected")
sock = L._sock._s
t0 = clk.t
ok = L.publish(b"pm/tele", b"{}", 1)
mptest.eq(ok, False, "a publish whose PUBACK is stuck behind a flood gives up")
mptest.check(clk.t - t0 <= 2001, "at its deadline: %d ms" % (clk.t - t0))
mptest.eq((L.stalled, L.state), (1, link_mod.DOWN), "counted; the session is dropped (the message stays queued)")
mptest.eq(got, [], "nothing acted on inside the publish")
mptest.eq((len(L._inbox), L.overflow), (8, L.received - 8), "eight kept for the app, the rest dropped and counted")
mptest.check(L.received >= sock.sent - 1 > 1000, "all read but the one cut off at the deadline")
L.poll()
mptest.eq(len(got), 8, "handed to the app on the next poll, at most eight")
mptest.eq(len(L._inbox), 0, "inbox empty")
mptest.done()
'''


def test_a_publish_stuck_behind_a_flood_gives_up_at_its_deadline_and_acts_on_nothing(mpy):
    r = mpy(FLOODED_PUBLISH, heap="256k").result
    assert r["ok"] and r["checks"] >= 7, r
