# Authenticated, replay-protected commands.
# Wire form: 64 lowercase hex chars of HMAC-SHA256(meter key, body), one space, body.
# The body is compact JSON with at least {"m": meter id, "id": command id, "exp": UTC expiry, "op": ...}.
# Command ids are monotonic per meter (offline tokens have ids of their own: tokenids.py). The results of the last WINDOW applied commands are
# remembered (and persisted), so a retried command gets its original answer and is never re-applied.
from micropython import const
from array import array
from binascii import unhexlify
import json
from hmac256 import HmacSha256, equal
from timebase import EPOCH

# The longest command: an `ota` with its release manifest and a 4096-bit signature in hex (about
# 1.4 KB); the link reads nothing over 2 KB anyway.
MAX_PAYLOAD = const(1536)
WINDOW = const(8)
# A new id may pass the last applied one by at most this much: one bad message from a buggy or
# compromised backend (id 2^31-1) must not make every later command stale.
MAX_ADVANCE = const(1 << 16)
# An expiry may lie at most this far past a trusted clock: a signed command stays usable for a
# bounded time, whatever a buggy backend wrote. Not judged on a clock the meter does not trust
# (after a power cut it runs behind the truth, and every command would look far ahead).
MAX_AHEAD_S = const(31 * 86400)

# Verdicts, and the reason strings sent back in replies.
OK = const(0)
REPEAT = const(1)  # already applied: answer again with the stored result
REFUSED = const(2)


class Commands:
    def __init__(self, meter_id, key):
        self.meter_id = meter_id
        self._mac = HmacSha256(key) if key else None
        self._prev = None  # the key before the last rotation: only answers repeats
        self.last_id = 0
        self.ids = array("I", bytes(4 * WINDOW))
        self.results = array("B", bytes(WINDOW))
        self.refused = 0
        # The replay window was lost (both record slots unreadable): ids already applied cannot be
        # told from new ones, so only a "resync" carrying `nonce` is accepted (persisted flag).
        self.lost = False
        self.nonce = 0
        self.expired_at = 0  # meter second at which the last command refused as expired expired

    def check(self, payload, now_utc, trusted=False):
        """(verdict, body, stored result) or (REFUSED, command id or 0, reason). `now_utc` is
        in meter seconds; "exp" arrives in Unix seconds. `trusted`: the clock is the backend's
        (or the technician's), so an expiry too far ahead of it is refused.
        Nothing here changes state: the caller applies, then calls remember()."""
        if self._mac is None:
            return self._refuse("no_key")
        if len(payload) > MAX_PAYLOAD:
            return self._refuse("oversized")
        if len(payload) < 66 or payload[64] != 0x20:
            return self._refuse("malformed")
        for i in range(64):
            # Lowercase hex only: one spelling per MAC, so a captured command cannot be
            # re-sent in a form that looks new.
            c = payload[i]
            if not (0x30 <= c <= 0x39 or 0x61 <= c <= 0x66):
                return self._refuse("malformed")
        mac = unhexlify(payload[:64])
        body = memoryview(payload)[65:]
        old = False
        if not equal(self._mac.digest(body), mac):
            # A backend that retries the key rotation itself still signs with the old key.
            if self._prev is None or not equal(self._prev.digest(body), mac):
                return self._refuse("bad_mac")
            old = True
        try:
            doc = json.loads(bytes(body))
        except ValueError:
            return self._refuse("malformed")
        if not isinstance(doc, dict):
            return self._refuse("malformed")
        cid = doc.get("id")
        exp = doc.get("exp")
        if doc.get("m") != self.meter_id:
            return self._refuse("wrong_meter")
        if type(cid) is not int or cid <= 0 or cid >= 1 << 31 or type(exp) is not int:
            return self._refuse("malformed")
        # From here the body is authentic and names its id: refusals echo it to the backend.
        for i in range(WINDOW):
            if self.ids[i] == cid:
                return REPEAT, doc, self.results[i]
        if old:
            return self._refuse("old_key", cid)
        if cid <= self.last_id:
            return self._refuse("stale_id", cid)
        if cid - self.last_id > MAX_ADVANCE and not self.lost:  # a lost window takes its resync
            return self._refuse("id_jump", cid)
        if exp - EPOCH < now_utc:
            self.expired_at = exp - EPOCH if -(1 << 30) < exp - EPOCH < 1 << 30 else now_utc
            return self._refuse("expired", cid)
        if trusted and exp - EPOCH - now_utc > MAX_AHEAD_S:
            return self._refuse("exp_far", cid)
        if type(doc.get("op")) is not str:
            return self._refuse("malformed", cid)
        if self.lost and (doc["op"] != "resync" or doc.get("nonce") != self.nonce):
            return self._refuse("replay_lost", cid)
        return OK, doc, None

    def lose(self, nonce):
        """The replay window is gone: refuse everything but a resync echoing `nonce` (30 bits,
        new at every boot, so a resync captured on an earlier boot is no use)."""
        self.lost = True
        self.nonce = nonce

    def resync(self, doc):
        """Apply an authenticated resync: `last` is the backend's highest issued command id, so
        every id up to it is stale from now on. False (nothing changes) when it does not fit."""
        last = doc.get("last")
        if not self.lost or doc.get("nonce") != self.nonce or type(last) is not int or not 0 <= last < 1 << 31:
            return False
        if last > self.last_id:
            self.last_id = last
        self.lost = False
        return True

    def set_key(self, key, prev=None):
        """Use a new key from now on; the one before (`prev`, else the one in force until now)
        can still fetch the answers of repeats."""
        self._prev = HmacSha256(prev) if prev else self._mac
        self._mac = HmacSha256(key)

    def _refuse(self, reason, cid=0):
        """(REFUSED, id to answer with (0 when unknown or not authentic), reason)."""
        self.refused += 1
        return REFUSED, cid, reason

    def remember(self, cid, result):
        i = cid % WINDOW
        self.ids[i] = cid
        self.results[i] = result
        if cid > self.last_id:
            self.last_id = cid
