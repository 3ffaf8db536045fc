"""Backend side of the meter protocol (docs/protocol.md), for CPython tools and tests.

Commands are signed per meter: payload = hex(HMAC-SHA256(key, body)) + b" " + body,
with body a compact JSON object carrying m (meter id), id (monotonic), exp (UTC expiry) and op.
"""
import hashlib
import hmac
import json
import struct

PREFIX = "pm/v1/"
VERSION = 1
UPLINK = ("status", "tele", "lp", "evt", "snap", "reply")
KEY_LEN = 32


def topic(meter_id, kind):
    return "%s%s/%s" % (PREFIX, meter_id, kind)


def body(meter_id, cmd_id, exp, op, **args):
    doc = {"m": meter_id, "id": cmd_id, "exp": exp, "op": op}
    doc.update(args)
    return json.dumps(doc, separators=(",", ":")).encode()


def sign(key, body_bytes):
    return hmac.new(key, body_bytes, hashlib.sha256).hexdigest().encode() + b" " + body_bytes


def command(key, meter_id, cmd_id, exp, op, **args):
    return sign(key, body(meter_id, cmd_id, exp, op, **args))


# -- key rotation -------------------------------------------------------------

def _mac(key, msg):
    return hmac.new(key, msg, hashlib.sha256).digest()


def key_pad(old_key, meter_id, cmd_id):
    return _mac(old_key, b"pm-kw" + meter_id.encode() + struct.pack(">I", cmd_id))


def wrap_key(old_key, meter_id, cmd_id, new_key):
    """Hex of new_key XOR the one-time pad derived from the old key and this command's id."""
    if len(new_key) != KEY_LEN:
        raise ValueError("a meter key is %d bytes" % KEY_LEN)
    pad = key_pad(old_key, meter_id, cmd_id)
    return bytes(a ^ b for a, b in zip(new_key, pad)).hex()


def kcv(key):
    return _mac(key, b"pm-kcv")[:4].hex()


def rotate_key(old_key, meter_id, cmd_id, exp, kid, new_key):
    """A signed rotkey command that installs new_key as key number kid."""
    return command(old_key, meter_id, cmd_id, exp, "rotkey", kid=kid,
                   wk=wrap_key(old_key, meter_id, cmd_id, new_key), kcv=kcv(new_key))


# -- uplink -------------------------------------------------------------------

UPLINK_LABEL = b"pm-uplink-v1"
REVISION = 5  # the newest revision of v1 (protocol.md 1)
SIGNED = ("reply", "status")  # kinds signed from revision 2; from revision 3 every kind is
_MAC_HEX = 16  # hex digits of the uplink mac (the first 8 bytes of the HMAC)
_MAC_HEAD = b',"mac":"'
_MAC_TAIL = len(_MAC_HEAD) + _MAC_HEX + len(b'"}')


def uplink_key(key):
    """The key a meter signs its replies, answers and births with (protocol.md 6.4)."""
    return hmac.new(key, UPLINK_LABEL, hashlib.sha256).digest()


def sign_uplink(key, text):
    """`text` (a JSON object, bytes) with the meter's "mac" member added: what a meter sends."""
    mac = hmac.new(uplink_key(key), text, hashlib.sha256).hexdigest()[:_MAC_HEX].encode()
    return text[:-1] + _MAC_HEAD + mac + b'"}'


def verify_uplink(key, payload):
    """True when `payload` (bytes) carries a "mac" made with this meter key: the meter's word.
    False when it has none or a wrong one (anyone who can publish on the meter's topics)."""
    if len(payload) <= _MAC_TAIL:
        return False
    # Signed again without its tail: equal only if the tail was this key's mac of the rest.
    return hmac.compare_digest(sign_uplink(key, payload[:-_MAC_TAIL] + b"}"), payload)


def forged(key, kind, doc, payload, rev=REVISION):
    """True when an uplink message of a kind a meter speaking revision `rev` signs has no valid mac
    under `key`: not the meter's word. The last will ({"online":0}, published by the broker)
    cannot carry one; a revision 2 meter signed only replies and births."""
    signs = rev >= 3 or kind in SIGNED
    return signs and doc.get("online") != 0 and not verify_uplink(key, payload)


def parse_uplink(topic_name, payload):
    """(meter id, kind, document) of an uplink message; ValueError if it is not one."""
    parts = topic_name.split("/")
    if len(parts) != 4 or parts[0] + "/" + parts[1] + "/" != PREFIX or parts[3] not in UPLINK:
        raise ValueError("not an uplink topic: %r" % topic_name)
    doc = json.loads(payload)
    if not isinstance(doc, dict):
        raise ValueError("uplink payload is not a JSON object")
    return parts[2], parts[3], doc


class SeqTracker:
    """Backend bookkeeping of one meter's uplink numbers: duplicates, gaps, restarts."""

    def __init__(self):
        self.boot = None
        self.seen = set()
        self.high = 0

    def status(self, doc):
        """Feed a status (birth) document; returns True when the meter restarted its numbering."""
        if doc.get("online") != 1:
            return False
        restarted = self.boot is not None and doc.get("boot") != self.boot and doc.get("last", 0) < self.high
        self.boot = doc.get("boot")
        if restarted:
            self.seen.clear()
            self.high = 0
        return restarted

    def add(self, seq):
        """False for a duplicate (already seen)."""
        if seq in self.seen:
            return False
        self.seen.add(seq)
        self.high = max(self.high, seq)
        return True

    def gaps(self):
        """Sorted missing numbers below the highest seen (what a backfill should ask for)."""
        if not self.seen:
            return []
        lo = min(self.seen)
        return [s for s in range(lo, self.high) if s not in self.seen]


class Backfiller:
    """When to ask one meter for uplink numbers that never arrived (§5.1, `backfill` in §6.3).

    Feed it every status (birth) document and every `seq`; call due(now) now and then: it
    returns the number to send `backfill` from, or None. A gap is asked for only once it has
    stood for `settle_s` (QoS 1 re-sends after a reconnect arrive late), and again at most every
    `retry_s` while it stands. answered() takes the reply's `from`/`to`: numbers below `from` are
    gone from the meter (outbox overflow) and are counted as lost instead of asked for again.
    Numbers start at `first` (1 for a meter followed since provisioning)."""

    def __init__(self, first=1, settle_s=3.0, retry_s=20.0):
        self.seqs = SeqTracker()
        self.first = first
        self.settle_s = settle_s
        self.retry_s = retry_s
        self.last = 0  # the newest number the meter says it has used (birth `last`, reply `to`)
        self.gone = set()
        self._low = first  # every number below this one is seen or gone
        self._since = None
        self._asked_at = None
        self.asked = 0  # backfill requests made
        self.flagged = set()  # every number that was missing when a request was made

    def status(self, doc):
        """Feed a status document; True when the meter restarted its numbering (§5.1)."""
        restarted = self.seqs.status(doc)
        if restarted:
            self.gone.clear()
            self.last = 0
            self._low = 1
            self._since = self._asked_at = None
        if doc.get("online") == 1:
            self.last = max(self.last, doc.get("last", 0))
        return restarted

    def add(self, seq):
        """False for a duplicate."""
        return self.seqs.add(seq)

    def _advance(self):
        seen, gone = self.seqs.seen, self.gone
        while self._low in seen or self._low in gone:
            self._low += 1
        return self._low

    def missing(self):
        """Numbers not (yet) received and not known gone, up to the newest the meter has used."""
        low = self._advance()
        top = max(self.seqs.high, self.last)
        return [s for s in range(low, top + 1) if s not in self.seqs.seen and s not in self.gone]

    def due(self, now):
        low = self._advance()
        if low > max(self.seqs.high, self.last):
            self._since = None
            return None
        if self._since is None:
            self._since = now
        if now - self._since < self.settle_s:
            return None
        if self._asked_at is not None and now - self._asked_at < self.retry_s:
            return None
        self._asked_at = now
        self.asked += 1
        self.flagged.update(self.missing())
        return low

    def answered(self, frm, to):
        """The meter's reply to `backfill`: it re-sends from `frm` (0: it holds nothing) up to `to`."""
        self.last = max(self.last, to)
        end = max(self.seqs.high, self.last) + 1 if frm == 0 else frm
        for s in range(self._advance(), end):
            if s not in self.seqs.seen:
                self.gone.add(s)

    def lost(self):
        """Numbers the meter no longer holds: gaps that no backfill can fill."""
        return sorted(self.gone - self.seqs.seen)
