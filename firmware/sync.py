# Sync with the utility backend over MQTT: topics, uplink messages, the outbox, and the
# hand-off of incoming commands to the app. Metering never waits for anything here: messages
# are queued in the outbox and sent a few per loop while the link is up.
# Topic tree (see docs/protocol.md):  pm/v1/<meter>/{status,tele,evt,reply}  and  .../cmd (downlink)
from micropython import const
import events
import time
from outbox import Outbox  # on flash when given a path (firmware/outbox.py)

TELE = const(0)
EVT = const(1)
REPLY = const(2)
_NAMES = (b"tele", b"evt", b"reply")
_SENDS_PER_POLL = const(2)


def _metering_extra(mt):
    # Per-channel import Wh of multi-channel chips as "ce":[...], and water/gas pulse inputs as
    # "u":{"water":1230,...} in their integer units; closes the telemetry object.
    s = ""
    ch = getattr(mt, "ch_wh", ())
    if len(ch):
        s += ',"ce":[%s]' % ",".join("%d" % ch[k] for k in range(0, len(ch), 2))
    pulses = getattr(mt, "pulses", ())
    if pulses:
        s += ',"u":{%s}' % ",".join('"%s":%d' % (p.name, p.value) for p in pulses)
    return (s + "}").encode()


class Sync:
    def __init__(self, meter_id, outbox_capacity=64, outbox_path=None):
        base = b"pm/v1/" + meter_id.encode() + b"/"
        self.topics = tuple(base + n for n in _NAMES)
        self.status_topic = base + b"status"
        self.cmd_topic = base + b"cmd"
        self.outbox = Outbox(outbox_capacity, outbox_path)
        self.link = None  # set by the app once the board has made it
        self.seq = 0  # uplink sequence number, one counter over tele/evt/reply
        self._ev_sent = 0  # next event-ring seq to forward
        self.published = 0

    def birth(self):
        return self.status_topic, b'{"online":1}'

    def will(self):
        return self.status_topic, b'{"online":0}'

    def _next(self):
        self.seq += 1
        return self.seq

    def telemetry(self, m, utc):
        mt = m.metering
        a = m.account
        self.outbox.put(TELE, (
            '{"seq":%d,"t":%d,"e":%d,"x":%d,"b":%d,"c":%d,"v":%d,"i":%d,"p":%d,"r":%d,"rs":%d}' % (
                self._next(), utc, mt.imp_wh, mt.exp_wh, a.balance, a.charged, mt.v_cv, mt.i_ma,
                mt.p_w, m.relay.state, m.relay.reasons)).encode()[:-1] + _metering_extra(mt))

    def forward_events(self, ring):
        while self._ev_sent < ring.seq:
            e = ring.get(self._ev_sent)
            self._ev_sent += 1
            if e is not None:
                code, arg, utc = e
                self.outbox.put(EVT, ('{"seq":%d,"t":%d,"ev":"%s","a":%d}' % (
                    self._next(), utc, events.name(code), arg)).encode())
        if ring.oldest_seq() > self._ev_sent:
            self._ev_sent = ring.oldest_seq()

    def billing(self, text):
        """A frozen billing snapshot (firmware/billing.py to_json), sent on the tele topic."""
        self.outbox.put(TELE, ('{"seq":%d,%s' % (self._next(), text)).encode())

    def reply(self, cid, result, m, repeat=False):
        self.outbox.put(REPLY, ('{"seq":%d,"id":%d,"res":"%s","rep":%d,"b":%d,"r":%d}' % (
            self._next(), cid, result, 1 if repeat else 0, m.account.balance, m.relay.state)).encode())

    def wait(self, ms):
        """Idle until the next tick: on the link's socket when there is one."""
        if self.link is None:
            time.sleep_ms(ms)
        else:
            self.link.wait(ms)

    def poll(self):
        link = self.link
        if link is None:
            return
        link.poll()
        for _ in range(_SENDS_PER_POLL):
            if not self.outbox.count:
                break
            try:
                kind, payload = self.outbox.peek()
            except IndexError:  # the rest of the queue was unreadable (counted in dropped)
                break
            if not link.publish(self.topics[kind], payload, 1):
                break
            self.outbox.pop()
            self.published += 1
