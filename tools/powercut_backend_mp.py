# The backend of the power-cut sweep (tools/powercut_mp.py), under MicroPython: it signs commands,
# sends them in id order, re-delivers the oldest unanswered one after a timeout and after every
# reboot, and reads what the meter sends up, as docs/protocol.md asks of a backend:
#   replay_lost   a resync with the nonce of the meter's birth, then every unanswered command
#                 again under a new id (6.2)
#   expired       the command again under a new id, its expiry counted from the meter's clock "t"
#   rotkey        the new key from the reply on (a retry under the old key gets the original
#                 answer); store_fault with "kid": the new key is in force
#   store_fault   the same bytes again; as a repeat ("rep":1) the id is used up: a new id
# It also keeps what the checks need: what was acknowledged, every uplink number with the
# message it named (a number must never name two messages), and the replies' MACs when asked to.
import json
import struct
from binascii import hexlify, crc32
from hmac256 import HmacSha256
import timebase

REDELIVER_TICKS = 6
_EXP_S = 5 * 86400  # how long a command stays good, from the meter's clock when it is made


def rot_key(key, kid):
    """The kid-th key of the sweep's rotations (a test key, derived from the provisioned one)."""
    return HmacSha256(key).digest(b"pc-rotation-%d" % kid)


def uplink_mac(key, text):
    """The "mac" member a meter holding `key` puts on uplink message `text` (protocol.md 6.4)."""
    up = HmacSha256(HmacSha256(key).digest(b"pm-uplink-v1"))
    return text[:-1] + b',"mac":"' + hexlify(up.digest(text))[:16] + b'"}'


class Backend:
    def __init__(self, meter, key, opening, clock):
        self.meter = meter
        self.clock = clock  # the meter's (the backend signs expiries in the meter's time)
        self.keys = {0: key}  # kid -> key
        self.kid = 0  # the key the backend signs with: the one it believes the meter holds
        self.opening = opening  # the credit the meter holds before any command
        self.cmds = {}  # id -> (wire bytes, top-up amount)
        self.acked = {}  # id -> result, for every command answered finally
        self.pending = []  # ids not answered yet, in order: the next goes only once this is
        self.next_id = 1000
        self.last_try = {}
        self.entries = {}  # id -> (op, members) it was made from (to make it again)
        self.nonce = 0  # of the meter's last replay_lost
        self.replies = {}  # id -> the reply document (with the ids it was remade under)
        self.seen = {}  # uplink number -> crc32 of the message it named
        self.reused = 0  # uplink numbers seen naming two different messages
        self.restarts = 0  # births that said the numbering started again (protocol.md 5.1)
        self.bad_key = 0  # commands refused bad_mac / old_key: the backend lost the meter's key
        self.bad_mac = 0  # uplink messages not signed under the key the backend expects
        self.verify = False  # check the MAC of every uplink message (the key-rotation scenario)
        self.rotating = {}  # kids of rotations sent but not answered yet
        self.remade = {}  # new id -> the id it replaces
        self.remade_after_fault = 0  # commands sent again under a new id after a store_fault repeat
        self.birth_kid = 0
        self.key_note = ""

    # -- commands ------------------------------------------------------------------------
    def make(self, entry):
        """Sign entry = (op, {member: value}) under a new id and queue it; returns the id."""
        cid = self.next_id
        self.next_id += 1
        op, members = entry
        key = self.keys[self.kid]
        extra = ""
        if op == "rotkey":
            extra = self._wrap(key, cid, members["kid"])
            self.rotating[members["kid"]] = 1
        elif op == "resync":
            extra = ',"last":%d,"nonce":%d' % (cid - 1, self.nonce)
        for k in sorted(members):
            if op != "rotkey":
                extra += ',"%s":%s' % (k, json.dumps(members[k]))
        exp = timebase.to_unix(self.clock.time()) + _EXP_S
        body = ('{"m":"%s","id":%d,"exp":%d,"op":"%s"%s}' % (self.meter, cid, exp, op, extra)).encode()
        amt = members.get("amt", 0) if op == "topup" else 0
        self.cmds[cid] = (hexlify(HmacSha256(key).digest(body)) + b" " + body, amt)
        self.entries[cid] = entry
        self.pending.append(cid)
        return cid

    def _wrap(self, old, cid, kid):
        """rotkey's members: the kid-th key XORed with the one-time pad (protocol.md 6.3)."""
        new = self.keys.get(kid) or rot_key(self.keys[0], kid)
        self.keys[kid] = new
        pad = HmacSha256(old).digest(b"pm-kw" + self.meter.encode() + struct.pack(">I", cid))
        wk = hexlify(bytes(new[i] ^ pad[i] for i in range(32))).decode()
        kcv = hexlify(HmacSha256(new).digest(b"pm-kcv")[:4]).decode()
        return ',"kid":%d,"wk":"%s","kcv":"%s"' % (kid, wk, kcv)

    def remake(self, cids):
        """Issue these commands again under new ids (the old ones are no use any more)."""
        for c in cids:
            entry = self.entries[c]
            del self.cmds[c]
            if c in self.pending:
                self.pending.remove(c)
            self.remade[self.make(entry)] = c

    def lost_window(self, cid):
        """The meter refused `cid` with replay_lost: nothing it was sent before is applied any
        more. Send a resync first, then every unanswered command again under a new id (the
        resync makes the old ids stale), as docs/protocol.md 6.2 asks of a backend."""
        again = sorted(c for c in set(self.pending) | {cid} if self.entries[c][0] != "resync")
        for c in list(self.pending):
            if self.entries[c][0] == "resync":
                self.pending.remove(c)
                del self.cmds[c]
        self.make(("resync", {}))
        self.remake(again)

    def acked_topup_sum(self):
        return self.opening + sum(self.cmds[c][1] for c in self.acked if self.acked[c] == "applied")

    def total_topups(self):
        return self.opening + sum(a for _, a in self.cmds.values())

    def ops_acked(self, op):
        """How many `op` commands were applied and answered, and how many were made."""
        acked = made = 0
        for c in self.cmds:
            if self.entries[c][0] == op:
                made += 1
                if self.acked.get(c) == "applied":
                    acked += 1
        return acked, made

    # -- what comes up -------------------------------------------------------------------
    def uplink(self, payload):
        """A numbered message: its number must always name the same message."""
        if payload[:7] != b'{"seq":':
            return
        seq = int(payload[7:payload.find(b",")])
        crc = crc32(payload)
        was = self.seen.get(seq)
        if was is not None and was != crc:
            self.reused += 1
        self.seen[seq] = crc

    def check_mac(self, signed):
        """An uplink message as the meter signs it: under the key the backend believes, or while
        rotations are unanswered, under one of theirs."""
        text = signed[:signed.rfind(b',"mac"')] + b"}"
        for kid in [self.kid] + list(self.rotating):
            if signed == uplink_mac(self.keys[kid], text):
                return
        self.bad_mac += 1

    def birth(self, doc):
        """After every (re)boot: the meter's retained birth. Its "kid" would tell the backend which
        key the meter holds after an unanswered rotation; this backend re-sends the rotation
        instead (under the old key it must get its original answer, protocol.md 6.3), so a meter
        that does not complete a cut rotation at boot is caught."""
        if "rl" in doc:
            self.nonce = doc["rl"]
        self.birth_kid = doc.get("kid", 0)
        # protocol.md 5.1: a birth whose "last" is below a number already seen says the meter
        # restarted its numbering (its flash outbox was gone or refused): a new sequence.
        last = doc.get("last")
        if type(last) is int and self.seen and last < max(self.seen):
            self.seen = {}
            self.restarts += 1

    def _retry_refused(self):
        """The rotation being retried under the old key was refused as not authentic: the meter
        no longer takes the old key for its repeat (protocol.md 6.3 says it must). Counted, and the
        backend then goes by the birth's "kid", as a backend that lost the answer would."""
        if not self.pending or self.entries[self.pending[0]][0] != "rotkey":
            return
        kid = self.entries[self.pending[0]][1]["kid"]
        if self.birth_kid >= kid:
            self.bad_key += 1
            self.key_note = "the retry of the rotation to kid %d under the old key was refused bad_mac" % kid
            self._rotated(self.birth_kid)

    def _rotated(self, kid):
        # The rotation to `kid` took effect: sign with the new key, and the rotation needs no retry.
        self.kid = kid
        for k in list(self.rotating):
            if k <= kid:
                del self.rotating[k]
        for c in list(self.pending):
            e = self.entries[c]
            if e[0] == "rotkey" and e[1]["kid"] <= kid:
                self.pending.remove(c)
                self.acked[c] = "applied"
        # Anything signed under the old key and not answered yet is signed again under the new one.
        self.remake([c for c in self.pending])

    def reply(self, d, nonce_of_birth):
        """A reply or answer; returns the final result, or None while the command is still open."""
        cid = d["id"]
        res = d["res"]
        if cid == 0 and res == "bad_mac":
            self._retry_refused()
        if cid not in self.cmds:
            return None
        if res == "replay_lost":
            if nonce_of_birth:
                self.nonce = nonce_of_birth
            self.lost_window(cid)
            return None
        if res == "expired":
            self.remake([cid])
            return None
        if res in ("bad_mac", "old_key"):
            self.bad_key += 1  # the backend no longer knows the meter's key
            self.key_note = "command %d (%s) refused %s" % (cid, self.entries[cid][0], res)
        op = self.entries[cid][0]
        if op == "rotkey" and (res == "applied" or (res == "store_fault" and "kid" in d)):
            self.replies[cid] = d
            self.acked[cid] = "applied"
            if cid in self.pending:
                self.pending.remove(cid)
            self._rotated(self.entries[cid][1]["kid"])
            return "applied"
        if res == "store_fault":
            # Nothing was applied: the same bytes go again. A repeat (rep 1) would say the id was
            # used up with that result, so the same bytes got the same answer for ever: counted
            # (a failure of the meter), and the command goes again under a new id.
            if d.get("rep") == 1:
                self.remade_after_fault += 1
                self.remake([cid])
            return None
        # Every other answer is final (a refusal such as rate_limited is remembered with its id:
        # the backend would send a new command, not retry this one).
        if d.get("rep") == 0 or cid not in self.replies:
            self.replies[cid] = d
        self.acked[cid] = res
        if cid in self.pending:
            self.pending.remove(cid)
        return res
