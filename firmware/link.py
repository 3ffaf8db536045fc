# A resilient MQTT link over umqtt.simple (the ESP32's frozen copy or PyPI's 1.3.4).
# umqtt.simple never pings, never reconnects, never wraps its packet id, and after the first
# byte of a packet it switches its socket to blocking-forever. This wrapper fixes all four
# without changing umqtt: it hands umqtt a socket proxy whose "block forever" means
# "block at most timeout_ms", and which records when bytes last arrived (so a missing
# PINGRESP is visible even though umqtt swallows it).
#
# Session policy: every connect is a clean session. The broker does not queue commands for us
# while we are away; the backend re-sends a command until it sees our reply (commands are
# idempotent, see auth.py), and we re-subscribe after every connect. This keeps no session
# state on the broker that a client-id takeover could steal, and no backlog flood at reconnect.
#
# TLS: umqtt would wrap our socket proxy, which MicroPython's ssl cannot do. So umqtt gets no
# ssl argument; the proxy connects the real socket, wraps *that* with the board's SSLContext
# (which must verify the broker certificate), and then carries the TLS socket.
from micropython import const
import socket as _socket
import select
import time

DOWN = const(0)
UP = const(1)

_MAX_PID = const(0xFFF0)
_MAX_MSGS_PER_POLL = const(4)
# Incoming messages wait in a small inbox and are handed to the app at the end of a poll, a few at
# a time: umqtt delivers whatever arrives while a QoS 1 publish waits for its PUBACK, and a flood
# must cost the loop reading it, never acting on it. What does not fit is dropped and counted
# (the backend re-sends its commands until answered).
_INBOX = const(8)
_DISPATCH = const(8)
_IPPROTO_TCP = const(6)  # the same on lwIP and Linux; MicroPython's socket module omits them
_TCP_NODELAY = const(1)
_MAX_READ = const(2048)  # no MQTT packet to a meter is bigger; umqtt would try to allocate any size
# A bigger topic or payload is read past in chunks and dropped, so a broker without a packet limit
# (a retained oversized command comes back at every subscribe) cannot make the meter reconnect in a
# loop; beyond _MAX_SKIP the link is dropped instead (the short-session back-off then applies).
_MAX_SKIP = const(1 << 20)
_SKIP_CHUNK = const(256)
_DNS_RETRY_FAILS = const(4)  # resolve the broker again on every 4th failed connect
# A session the broker ends sooner than this after the connect counts as a failed connect: the
# back-off keeps growing, so a client taking over our client id (or an access list refusing our
# subscription) cannot make the meter reconnect in a tight loop.
_STABLE_MS = const(60000)


class LinkError(OSError):
    pass


class _PastDeadline(LinkError):
    pass  # a publish waited its whole budget for its PUBACK


class _BoundedSocket:
    def __init__(self, sock, timeout_s, link):
        self._s = sock  # what we read and write: the TLS socket once wrapped
        self._raw = sock  # where timeouts go: MicroPython's TLS socket has no settimeout
        self._t = timeout_s
        self._link = link
        self._last1 = 0
        sock.settimeout(timeout_s)
        link._sock = self  # the link closes it before the next connect, whatever umqtt did

    def settimeout(self, t):
        # umqtt >= 1.5 passes its connect timeout, None by default: never let it mean "forever".
        self._raw.settimeout(self._t if t is None or t > self._t else t)

    def setblocking(self, flag):
        if flag:
            # umqtt's wait_msg() reads a packet's first byte, then calls setblocking(True):
            # that byte is the fixed header, whose bit 0 is the RETAIN flag of a PUBLISH.
            self._link.retained = self._last1 & 1
            if self._s is not self._raw:
                self._s.setblocking(True)
            self._raw.settimeout(self._t)
        else:
            self._s.setblocking(False)
            if self._s is not self._raw:
                self._raw.setblocking(False)

    def connect(self, addr):
        self._s.connect(addr)
        ctx = self._link.ssl_context
        if ctx is not None:
            # The handshake runs under the socket timeout set above; server_hostname makes
            # the context check the certificate's name as well as its chain.
            self._s = ctx.wrap_socket(self._s, server_hostname=self._link.host)

    def read(self, n):
        link = self._link
        if link._deadline is not None and link._clock.ticks_diff(link._clock.ticks_ms(), link._deadline) > 0:
            # A publish has waited its whole budget for its PUBACK behind inbound traffic: give up
            # the session rather than the loop's tick (the message stays queued for the next one).
            raise _PastDeadline(110)
        if n > _MAX_READ:
            link = self._link
            link.oversized += 1
            if n > _MAX_SKIP:
                raise LinkError(90)  # EMSGSIZE: drop the link rather than read it
            link.skip = True  # umqtt hands the packet on: the link drops it (_deliver)
            while n:
                d = self._s.read(n if n < _SKIP_CHUNK else _SKIP_CHUNK)
                if not d:
                    raise OSError(110)  # timed out inside the packet: the stream is unusable
                n -= len(d)
                link._rx()
            return b""
        d = self._s.read(n)
        if d:
            if n == 1:
                self._last1 = d[0]
            self._link._rx()
            if len(d) < n:
                raise OSError(110)  # timed out inside a packet: the stream is now unusable
        return d

    def write(self, buf, n=None):
        if n is None:
            r = self._s.write(buf)
        else:
            r = self._s.write(memoryview(buf)[:n])
        self._link._tx()
        return r

    def close(self):
        self._s.close()


class _SocketModule:
    # Stand-in for the `socket` module inside umqtt.simple, so every socket it makes is bounded.
    def __init__(self, link):
        self._link = link

    def socket(self, *a):
        s = _socket.socket(*a)
        try:
            # umqtt writes one packet in several small writes; without this, Nagle's algorithm holds
            # the tail of each packet for the peer's delayed ACK (~40 ms on Linux), and each QoS 1
            # publish waits for it before its PUBACK can come back.
            s.setsockopt(_IPPROTO_TCP, _TCP_NODELAY, 1)
        except (OSError, AttributeError):
            pass
        return _BoundedSocket(s, self._link.timeout_s, self._link)

    def getaddrinfo(self, host, port, *a):
        # DNS has no timeout of its own: resolve once and reuse the answer, so reconnecting
        # during an outage does not block on the resolver each time. Every few failed connects
        # the name is resolved again, in case the broker has moved.
        link = self._link
        if link._ai is None or (link._fails and link._fails % _DNS_RETRY_FAILS == 0):
            link._ai = _socket.getaddrinfo(host, port, *a)
        return link._ai


class Link:
    """poll() is called every loop; it never blocks longer than timeout_ms per network call.

    clock: ticks_ms()/ticks_diff() for network timing (real time, even in a simulation).
    rand: callable(n) -> int in [0, n) for backoff jitter."""

    def __init__(self, mqtt_module, clock, rand, client_id, host, port, on_message,
                 subscriptions=(), keepalive_s=60, timeout_ms=2000, will=None, birth=None,
                 user=None, password=None, backoff_min_ms=1000, backoff_max_ms=300000,
                 ssl_context=None):
        self._mq = mqtt_module
        self._clock = clock
        self._rand = rand
        self.client_id = client_id
        self.host = host
        self.port = port
        self._on_message = on_message
        self._subs = subscriptions
        self.keepalive_s = keepalive_s
        self.timeout_s = timeout_ms / 1000
        self._timeout_ms = timeout_ms  # the publish deadline: an int, no float per publish
        self._will = will  # (topic, msg), retained
        self._birth = birth  # callable returning (topic, msg), retained
        self._user = user
        self._password = password
        self._bmin = backoff_min_ms
        self._bmax = backoff_max_ms
        self.ssl_context = ssl_context
        self._fails = 0
        self._client = None
        self._sock = None  # the proxy of the current connection
        self._ai = None  # the broker's resolved address
        self.state = DOWN
        now = clock.ticks_ms()
        self._next_try = now
        self._last_rx = now
        self._last_tx = now
        self._pinged = False
        self.retained = 0  # RETAIN flag of the PUBLISH being delivered
        self.connects = 0
        self.drops = 0
        self.sent = 0
        self.received = 0
        self.oversized = 0  # packets refused for size (read past and dropped; the biggest cost a reconnect)
        self.skip = False  # the packet being delivered was too big: not handed to the app
        self._inbox = []  # (topic, message, retained) received, not yet handed to the app
        self.overflow = 0  # messages dropped because the inbox was full
        self._deadline = None  # ticks by which a publish must have its PUBACK
        self.stalled = 0  # publishes given up at their deadline
        self.short = 0  # sessions in a row that ended within _STABLE_MS of their connect
        self._up_at = now
        self._young = False  # the session is younger than _STABLE_MS (decided on the poll)
        # A bounded network task of the app's (the time source's SNTP query): net_task(True) before
        # each connect attempt, net_task(False) on each poll while up (it keeps its own schedule).
        # The link phase is where the meter already spends bounded network waits.
        self.net_task = None
        mqtt_module.socket = _SocketModule(self)

    def _net(self, connecting):
        if self.net_task is not None:
            try:
                self.net_task(connecting)
            except Exception:  # noqa: BLE001 - whatever it did, the link goes on
                pass

    def _rx(self):
        self._last_rx = self._clock.ticks_ms()
        self._pinged = False

    def _tx(self):
        self._last_tx = self._clock.ticks_ms()

    def _close_sock(self):
        s = self._sock
        self._sock = None
        if s is not None:
            try:
                s.close()
            except OSError:
                pass

    def _drop(self):
        self._client = None
        if self.state == UP:
            self.drops += 1
            if self._young:
                self.short += 1
        self.state = DOWN
        self._close_sock()
        self._schedule_retry()

    def _schedule_retry(self):
        # Capped exponential backoff with full jitter, so a fleet does not reconnect in step.
        cap = self._bmin << min(self._fails, 16)
        if cap > self._bmax:
            cap = self._bmax
        self._fails += 1
        self._next_try = self._clock.ticks_add(self._clock.ticks_ms(), self._rand(cap))

    def _connect(self):
        self._close_sock()  # never leak the previous socket, even if umqtt kept it
        c = self._mq.MQTTClient(self.client_id, self.host, self.port, self._user, self._password,
                                self.keepalive_s)
        c.set_callback(self._deliver)
        if self._will:
            c.set_last_will(self._will[0], self._will[1], True, 1)
        self._client = c
        c.connect(True)  # clean session: see the policy at the top of this file
        for t in self._subs:
            c.subscribe(t, 1)
        self.state = UP
        self._up_at = self._clock.ticks_ms()  # _fails is cleared once the session proves stable
        self._young = True
        self.connects += 1
        self._rx()
        if self._birth:
            topic, msg = self._birth()
            self.publish(topic, msg, 1, True)

    def _deliver(self, topic, msg):
        self.received += 1
        if self.skip:
            self.skip = False
            return
        if len(self._inbox) >= _INBOX:
            self.overflow += 1
            return
        self._inbox.append((topic, msg, self.retained))

    def _dispatch(self):
        """Hand the app at most _DISPATCH received messages (link.retained tells each one's flag)."""
        n = _DISPATCH
        box = self._inbox
        while box and n:
            topic, msg, self.retained = box.pop(0)
            n -= 1
            try:
                self._on_message(topic, msg)
            finally:
                self.retained = 0

    def poll(self):
        try:
            self._poll()
        finally:
            self._dispatch()  # what was received, even on a link that has just dropped

    def _poll(self):
        clock = self._clock
        now = clock.ticks_ms()
        if self.state == DOWN:
            if clock.ticks_diff(now, self._next_try) >= 0:
                self._net(True)
                try:
                    self._connect()
                except Exception:  # OSError, MQTTException, umqtt's asserts: all mean "not now"
                    self._drop()
            return
        try:
            for _ in range(_MAX_MSGS_PER_POLL):
                if self._client.check_msg() is None:
                    break
            self._net(False)
            now = clock.ticks_ms()
            if self._young and clock.ticks_diff(now, self._up_at) >= _STABLE_MS:
                # Polled every loop, so the stamp is judged long before ticks_diff could wrap.
                self._young = False
                self._fails = 0
                self.short = 0
            ka = self.keepalive_s * 1000
            if clock.ticks_diff(now, self._last_rx) > ka + ka // 2:
                self._drop()  # no PINGRESP or anything else for 1.5 x keepalive: half-open link
                return
            # Ping when we have been silent (the broker needs to hear from us), or once when the
            # broker has been silent (its PINGRESP proves the link is alive).
            half = ka // 2
            if clock.ticks_diff(now, self._last_tx) >= half or (
                    not self._pinged and clock.ticks_diff(now, self._last_rx) >= half):
                self._client.ping()
                self._pinged = True
        except Exception:
            self._drop()

    def publish(self, topic, msg, qos=1, retain=False):
        """True once the broker has the message (PUBACK for QoS1); False if the link is down or fails."""
        if self.state != UP:
            return False
        c = self._client
        if c.pid >= _MAX_PID:
            c.pid = 0  # umqtt never wraps its packet id; 0 is illegal, so the next one is 1
        clock = self._clock
        self._deadline = clock.ticks_add(clock.ticks_ms(), self._timeout_ms)
        try:
            c.publish(topic, msg, retain, qos)
        except Exception as e:
            if isinstance(e, _PastDeadline):
                self.stalled += 1
            self._drop()
            return False
        finally:
            self._deadline = None
        self.sent += 1
        return True

    def wait(self, ms):
        """Sleep up to `ms`, waking early when the broker sends something: an idle meter uses no
        CPU between ticks, yet answers a command as soon as it arrives."""
        if self.state == UP:
            try:
                p = select.poll()
                p.register(self._client.sock._s, select.POLLIN)
                p.poll(ms)
                return
            except (OSError, AttributeError):
                pass
        time.sleep_ms(ms)

    def close(self):
        if self._client is not None and self.state == UP:
            try:
                if self._will:
                    # A clean disconnect suppresses the will: say "offline" ourselves (QoS 0,
                    # so closing never waits for, or acts on, anything still arriving).
                    self._client.publish(self._will[0], self._will[1], True, 0)
                self._client.disconnect()
            except Exception:
                pass
        self._client = None
        self.state = DOWN
        self._close_sock()
