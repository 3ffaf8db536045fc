# Remote commands beyond top-up, tariff and relay: set limits and credit rules, set time,
# backfill, rotate key. Each validates its arguments completely before changing anything, then
# hands over to the app through a small hook (the billing and relay modules own the meaning).
# apply() returns a result code of app.RESULTS; `extra` holds reply members for the last one.
from micropython import const
from binascii import unhexlify
import account
import auth
import keys
import timebase

APPLIED = const(0)
UNKNOWN_OP = const(3)
BAD_ARGS = const(4)
STORE_FAULT = const(5)

_MAX_MONEY = const(0x3FFFFFFF)  # small-int range on the ESP32
# After a rotation, offline tokens made with the key before are still taken this long (meter
# seconds): paper tokens a utility already handed out stay good (docs/tokens.md).
TOKEN_GRACE_S = const(30 * 86400)
_UTC_MIN = const(1577836800)  # 2020-01-01: a meter clock is never set before this
_UTC_MAX = const(0x7FFFFFFF)
# Short names of the common credit rules: (command field, key of the credit configuration,
# docs/credit.md).
_LIMITS = (("low1", "low1"), ("low2", "low2"), ("hyst", "hysteresis"), ("maxb", "max_balance"),
           ("rth", "reconnect_threshold"))


def _int(doc, k, lo, hi):
    v = doc.get(k)
    if type(v) is not int or v < lo or v > hi:
        return None
    return v


class Remote:
    def __init__(self, m):
        self._m = m
        self.keystore = keys.KeyStore(m.board.root)
        self._key = m.board.key
        self.extra = ""

    def boot(self):
        """Install a rotated key, if any. A power cut after the key was stored but before the
        hot record remembered the rotating command is repaired here: the key store is the
        rotation's commit point."""
        m = self._m
        ks = self.keystore
        if not ks.load():
            return
        self._key = ks.key
        # The key before the rotation answers retries of the rotation itself (protocol.md 6.3):
        # after a reboot that is the key store's previous key, not the provisioned one.
        m.commands.set_key(ks.key, ks.prev)
        m.sync.set_key(ks.key)
        m.tokens.set_key(ks.key, ks.prev, ks.at + TOKEN_GRACE_S if ks.prev else 0)
        m.sync.kid = ks.kid
        self._forget_provisioned(ks.key)
        c = m.commands
        if ks.rot_id > c.last_id:
            c.remember(ks.rot_id, APPLIED)
            m.commit()

    def _forget_provisioned(self, key):
        """The board's provisioned copy of the key (a real board's /secrets.json) follows the
        rotation, so the old key does not outlive it there. After the key store's commit: a power
        cut in between is repaired at the next boot."""
        hook = getattr(self._m.board, "store_key", None)
        if hook is not None and self._m.board.key != key:
            try:
                hook(key)
            except OSError:
                pass  # the key store is the authority; the next boot tries again

    def take_extra(self):
        """The reply members of the last op applied here, once (then "")."""
        e = self.extra
        self.extra = ""
        return e

    def apply(self, doc):
        self.extra = ""
        op = doc["op"]
        if op == "limits":
            return self._limits(doc)
        if op == "time":
            return self._time(doc)
        if op == "backfill":
            return self._backfill(doc)
        if op == "rotkey":
            return self._rotkey(doc)
        return UNKNOWN_OP

    def _limits(self, doc):
        """Credit rules: the short members of _LIMITS and/or "credit": {any docs/credit.md key}.
        The short members win over the same key in "credit". The app validates the whole new
        set (account.configure) and saves it; here only the cross-checks of the protocol."""
        m = self._m
        a = m.account
        new = {}
        credit = doc.get("credit")
        if credit is not None:
            if not isinstance(credit, dict):
                return BAD_ARGS
            for k in credit:
                if k not in account.DEFAULTS and k != "friendly":
                    return BAD_ARGS  # an unknown rule is a mistake, not something to store
                new[k] = credit[k]
        for k, attr in _LIMITS:
            if k in doc:
                v = _int(doc, k, 0, _MAX_MONEY)
                if v is None:
                    return BAD_ARGS
                new[attr] = v
        if not new:
            return BAD_ARGS
        low1 = new.get("low1", a.low1)
        low2 = new.get("low2", a.low2)
        maxb = new.get("max_balance", a.max_balance)
        rth = new.get("reconnect_threshold", a.reconnect_threshold)
        for v in (low1, low2, maxb, rth):
            if type(v) is not int:
                return BAD_ARGS
        if low2 > low1 or low1 >= maxb or rth >= maxb:
            return BAD_ARGS
        try:
            return APPLIED if m.set_limits(new) else BAD_ARGS
        except OSError:
            m.storage_error()
            return STORE_FAULT

    def _time(self, doc):
        utc = _int(doc, "utc", _UTC_MIN, _UTC_MAX)
        if utc is None:
            return BAD_ARGS
        m = self._m
        if not m.set_time(utc):  # the backend is the authority: trusted, floor and all (docs/time.md)
            return BAD_ARGS
        self.extra = ',"t":%d' % timebase.to_unix(m.clock.time())
        return APPLIED

    def _backfill(self, doc):
        seq = _int(doc, "from", 1, _MAX_MONEY)
        if seq is None:
            return BAD_ARGS
        first = self._m.sync.outbox.replay_from(seq)
        self.extra = ',"from":%d,"to":%d' % (first, self._m.sync.outbox.seq)
        return APPLIED

    def _rotkey(self, doc):
        m = self._m
        kid = _int(doc, "kid", m.sync.kid + 1, _MAX_MONEY)
        wk = doc.get("wk")
        kc = doc.get("kcv")
        if kid is None or type(wk) is not str or len(wk) != 2 * keys.KEY_LEN or type(kc) is not str:
            return BAD_ARGS
        try:
            wrapped = unhexlify(wk)
        except ValueError:
            return BAD_ARGS
        new = keys.unwrap(self._key, m.commands.meter_id, doc["id"], wrapped)
        if keys.kcv(new) != kc:
            return BAD_ARGS
        now = m.clock.time()
        try:
            self.keystore.save(kid, doc["id"], new, self._key, now)  # the commit point of the rotation
        except OSError:
            return STORE_FAULT
        m.tokens.set_key(new, self._key, now + TOKEN_GRACE_S)
        self._key = new
        m.commands.set_key(new)
        m.sync.set_key(new)
        m.sync.kid = kid
        self._forget_provisioned(new)
        self.extra = ',"kid":%d' % kid
        return APPLIED
