# Sync with the utility backend over MQTT: topics, uplink messages, the outbox, and the
# hand-off of incoming commands to the app. Metering never waits for anything here: messages
# are queued in the outbox and sent a few per loop while the link is up.
# Topic tree (docs/protocol.md):  pm/v1/<meter>/{status,tele,evt,reply,lp,snap}  and  .../cmd (downlink)
# Every message that goes through the outbox carries "seq", the outbox's own running number,
# so the backend can see gaps and ask for a backfill (replay_from). Answers to refused and
# repeated commands do not: anyone can provoke them at will, so they live in RAM only (a few,
# from token buckets, sent at QoS 0 on the next poll) and cost no flash; the backend re-sends
# a command until it sees an answer anyway (docs/protocol.md 6.2).
from micropython import const
import events
import time
from timebase import to_unix  # wall times are meter seconds inside, Unix seconds on the wire
from outbox import Outbox  # on flash when given a path (firmware/outbox.py)
from bucket import TokenBucket
from hmac256 import HmacSha256
from binascii import hexlify
import refusals

PROTOCOL = const(1)
# 2: answers to refused and repeated commands are unnumbered; 3: they carry the meter's clock "t",
# an expiry too far past a trusted clock is refused, every message is signed; 4: offline tokens
# have ids of their own (protocol.md 1); 5: the telemetry sent at a load-profile interval's end
# marks it ("lp"), no lp message unless the board asks for one (protocol.md 9)
REVISION = const(5)
TELE = const(0)
EVT = const(1)
REPLY = const(2)
LP = const(3)
SNAP = const(4)
_NAMES = (b"tele", b"evt", b"reply", b"lp", b"snap")
_SENDS_PER_POLL = const(2)
# Answers to commands that are not authentic (anyone can send them) come from a token bucket,
# so a flood of garbage cannot push telemetry out of the outbox. The rest are counted and the
# count rides on the next such answer ("sup").
_ANON_BURST = const(8)
_ANON_REFILL_MS = const(10000)
# Answers to authentic commands refused or repeated (a backend's retries, or replays of a captured
# command): a budget of their own, so garbage cannot starve them.
_AUTH_BURST = const(8)
_AUTH_REFILL_MS = const(1000)
_ANSWERS = const(8)  # unnumbered answers waiting in RAM for the link (a burst)
_UP = const(1)  # link.UP
_UNSTABLE = const(3)  # short sessions in a row that make a link_unstable event
# Every uplink message but the last will ends with "mac": the first 8 bytes of HMAC-SHA256 under
# a key derived from the meter key, over the message as it would read without that member, so a
# backend can tell the meter's word from anyone's who can publish on its topics (protocol.md 6.4).
# Queued messages are signed when sent, under the key in force then: the outbox record stays
# 256 bytes of message (a 3-phase telemetry message nearly fills it).
_UPLINK_LABEL = b"pm-uplink-v1"
_MAC_HEX = const(16)
_MAC_HEAD = b',"mac":"'
_MAC_TAIL = const(26)  # len(',"mac":"') + _MAC_HEX + len('"}')
# Events that make the telemetry policy report at once (report.py).
_EXCEPTIONAL = (events.LOW_CREDIT_1, events.LOW_CREDIT_2, events.CREDIT_EXHAUSTED, events.RELAY_OPEN,
                events.RELAY_CLOSED, events.RELAY_ARMED, events.REVERSE_ENERGY, getattr(events, "TAMPER", -1))


def _ints(arr, start=0, step=1):
    return ",".join("%d" % arr[k] for k in range(start, len(arr), step))


def _metering_extra(mt):
    # Multi-channel chips: per-channel import and export Wh as "ce":[...], "cx":[...], and the
    # per-channel readings "cv", "ci", "cp" when fresh. Water/gas pulse inputs as
    # "u":{"water":1230,...} in their integer units. Closes the telemetry object. Returned as
    # part of a format string, so any '%' is escaped.
    s = ""
    ch = getattr(mt, "ch_wh", ())
    if len(ch):
        s += ',"ce":[%s],"cx":[%s]' % (_ints(ch, 0, 2), _ints(ch, 1, 2))
    rd = getattr(mt, "channel_readings", None)
    rd = rd() if rd else None
    if rd:
        s += ',"cv":[%s],"ci":[%s],"cp":[%s]' % (_ints(rd[0]), _ints(rd[1]), _ints(rd[2]))
    pulses = getattr(mt, "pulses", ())
    if pulses:
        s += ',"u":{%s}' % ",".join('"%s":%d' % (p.name, p.value) for p in pulses)
    return s.replace("%", "%%") + "}"


class Sync:
    def __init__(self, meter_id, clock, outbox_capacity=64, outbox_path=None, outbox=None,
                 refusal_s=3600):
        base = b"pm/v1/" + meter_id.encode() + b"/"
        self.topics = tuple(base + n for n in _NAMES)
        self.status_topic = base + b"status"
        self.cmd_topic = base + b"cmd"
        self.outbox = outbox if outbox is not None else Outbox(outbox_capacity, outbox_path)
        self.link = None  # set by the app once the board has made it
        self.boot = 0  # boot epoch (meter second at boot), so a counter restart is visible to the backend
        self.kid = 0  # id of the command key in use
        self.time = None  # the app's timesource.TimeSource: its state goes into the birth ("tq")
        self.cmds = None  # the app's auth.Commands: a lost replay window goes into the birth ("rl")
        self._ev_sent = 0  # next event-ring seq to forward
        self.published = 0
        self.exception = False  # an event asked for an early telemetry report
        self.emit = None  # the app's event hook, for what only the link can see
        self._oversized = 0
        self._overflow = 0
        self._unstable = False
        self._clock = clock
        # budgets of the answers to unauthenticated and to authentic commands (ticked every step)
        self.anon = TokenBucket(clock, _ANON_BURST, _ANON_REFILL_MS)
        self.authed = TokenBucket(clock, _AUTH_BURST, _AUTH_REFILL_MS)
        self.answers = []  # unnumbered answers (bytes), RAM only
        self.suppressed = 0  # refusals and repeats not answered one by one
        self.tally = refusals.Tally(clock, refusal_s * 1000)
        self._up = None  # the uplink MAC (set_key)
        self._src = None  # the outbox message last signed for sending ...
        self._out = None  # ... and its signed form (a retry while the link is down signs nothing)

    def set_key(self, key):
        """The meter key in force (at boot, after a rotation): replies are signed under it."""
        self._up = HmacSha256(HmacSha256(key).digest(_UPLINK_LABEL)) if key else None
        self._src = None  # what is still queued goes out under this key

    def signed(self, text):
        """The JSON object `text` (str or bytes) with its "mac" member added, as bytes."""
        b = text.encode() if isinstance(text, str) else text
        if self._up is None or b[-_MAC_TAIL:-_MAC_HEX - 2] == _MAC_HEAD:
            return b  # no key; or queued signed by an older firmware (revision 2 replies)
        return b[:-1] + _MAC_HEAD + hexlify(self._up.digest(b))[:_MAC_HEX] + b'"}'

    @property
    def seq(self):
        return self.outbox.seq

    def birth(self):
        # "tq": how far the meter trusts its clock (timesource.py, docs/time.md); below 3 the
        # backend should send `time`.
        # "rl": the nonce a resync must echo, while the replay window is lost (auth.py); retained,
        # so a headend learns it whenever it looks. "lid": the last command id applied (a new id
        # may pass it by at most auth.MAX_ADVANCE).
        ts = self.time
        c = self.cmds
        return self.status_topic, self.signed('{"online":1,"v":%d,"rev":%d,"boot":%d,"last":%d,"kid":%d,"lid":%d,"tq":%d%s}' % (
            PROTOCOL, REVISION, to_unix(self.boot), self.outbox.seq, self.kid, 0 if c is None else c.last_id,
            3 if ts is None else ts.state,
            ',"rl":%d' % c.nonce if c is not None and c.lost else ""))

    def will(self):
        return self.status_topic, b'{"online":0}'

    def _put(self, kind, fmt, args):
        # The payload carries the number the outbox is about to give it.
        text = fmt % ((self.outbox.seq + 1,) + args)
        self.outbox.put(kind, text.encode())  # signed when sent (poll): the record keeps its size

    def telemetry(self, m, utc, lp=0):
        """Telemetry at meter time utc. lp > 0: utc ends a load-profile interval of lp seconds,
        and the registers "e"/"x" are its closing readings (the backend takes differences)."""
        mt = m.metering
        a = m.account
        self._put(TELE, '{"seq":%d,"t":%d,"e":%d,"x":%d,"b":%d,"c":%d,"v":%d,"i":%d,"p":%d,"r":%d,"rs":%d'
                  + (',"lp":%d' % lp if lp else "") + _metering_extra(mt), (
            to_unix(utc), mt.imp_wh, mt.exp_wh, a.balance, a.charged, mt.v_cv, mt.i_ma,
            mt.p_w, m.relay.state, m.relay.reasons))

    def load_profile(self, m, utc, d_imp, d_exp):
        mt = m.metering
        self._put(LP, '{"seq":%d,"t":%d,"e":%d,"x":%d,"de":%d,"dx":%d}', (
            to_unix(utc), mt.imp_wh, mt.exp_wh, d_imp, d_exp))

    def forward_events(self, ring):
        while self._ev_sent < ring.seq:
            e = ring.get(self._ev_sent)
            self._ev_sent += 1
            if e is not None:
                code, arg, utc = e
                if code in _EXCEPTIONAL:
                    self.exception = True
                more = ""
                if code == events.CMD_REFUSALS:  # raised in this step: the tally's last summary
                    t = self.tally
                    more = ',"since":%d,"by":{%s}' % (to_unix(t.last_since), t.by_reason(t.last))
                self._put(EVT, '{"seq":%d,"t":%d,"ev":"%s","a":%d%s}', (to_unix(utc), events.name(code), arg, more))
        if ring.oldest_seq() > self._ev_sent:
            self._ev_sent = ring.oldest_seq()

    def billing(self, text):
        """A frozen billing snapshot (firmware/billing.py to_json), sent on the snap topic."""
        self._put(SNAP, '{"seq":%d,' + text.replace("%", "%%"), ())

    def reply(self, cid, result, m, extra=""):
        """The numbered reply to a command acted on (applied, or refused by the op itself).
        extra: more compact JSON members, starting with a comma (e.g. ',"from":12')."""
        self._put(REPLY, '{"seq":%d,"id":%d,"res":"%s","rep":0,"b":%d,"r":%d%s}', (
            cid, result, m.account.balance, m.relay.state, extra))

    def tick(self, now):
        """Every step: refill the answer budgets; log the summary of an interval of refusals."""
        self.anon.tick(now)
        self.authed.tick(now)
        n = self.tally.due(now)
        if n and self.emit is not None:
            self.emit(events.CMD_REFUSALS, n)

    def refused(self, cid, reason, m, now):
        """Count a refused command (cid 0: not authentic) and answer it from the budget; the
        first refusal of an interval is logged at once, the rest in the interval's summary."""
        i = refusals.index(reason)
        self._count(i, cid)
        if i != refusals.RETAINED:  # a retained command is never answered: it is not new
            self._answer(cid, reason, 0, m, now)

    def repeated(self, cid, result, m, now):
        """Answer a repeat of an applied command again, with its stored result."""
        self._count(refusals.REPEAT, cid)  # counted, never logged on its own (refusals.py)
        self._answer(cid, result, 1, m, now)

    def _count(self, i, cid, n=1):
        if self.tally.note(i, self._clock.time(), n) and self.emit is not None:
            self.emit(events.RETAINED_CMD if i == refusals.RETAINED else events.CMD_REFUSED, cid)

    def _answer(self, cid, result, rep, m, now):
        bucket = self.authed if cid > 0 else self.anon
        if len(self.answers) >= _ANSWERS or not bucket.take(now):
            self.suppressed += 1
            return
        sup = self.suppressed
        self.suppressed = 0
        # "t": the meter's clock, so a backend whose command was refused as expired or too far
        # ahead (exp_far) can sign it again in the meter's time.
        self.answers.append(self.signed('{"id":%d,"res":"%s","rep":%d,"b":%d,"r":%d,"t":%d%s}' % (
            cid, result, rep, m.account.balance, m.relay.state, to_unix(self._clock.time()),
            ',"sup":%d' % sup if sup else "")))

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
        if self._oversized != link.oversized:
            # Packets too big to read, read past and dropped (link.py): refusals.
            self._count(refusals.OVERSIZED, -1, link.oversized - self._oversized)
            self._oversized = link.oversized
        n = getattr(link, "overflow", 0) - self._overflow
        if n:  # dropped unread: the link's inbox was full (a flood)
            self._count(refusals.OVERFLOW, 0, n)
            self._overflow += n
        self._watch(link)
        if self.answers and link.state == _UP:
            while self.answers:
                if not link.publish(self.topics[REPLY], self.answers.pop(0), 0):
                    break
        for _ in range(_SENDS_PER_POLL):
            if not self.outbox.count:
                break
            try:
                kind, payload = self.outbox.peek()
            except IndexError:  # the rest of the queue was unreadable (counted in dropped)
                break
            if payload is not self._src:  # peek() returns the same object until the head moves
                self._src = payload
                self._out = self.signed(payload)
            if not link.publish(self.topics[kind], self._out, 1):
                break
            self.outbox.pop()
            self.published += 1

    def _watch(self, link):
        """One link_unstable event per run of sessions the broker dropped soon after connect."""
        short = getattr(link, "short", 0)
        if short >= _UNSTABLE and not self._unstable:
            self._unstable = True
            if self.emit is not None:
                self.emit(events.LINK_UNSTABLE, short)
        elif short == 0:
            self._unstable = False
