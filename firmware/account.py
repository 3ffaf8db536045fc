# Prepaid credit account: balance in minor currency units and the credit rules
# (docs/credit.md): low-credit levels with hysteresis, zero, emergency credit, overdraft,
# maximum balance, debt recovery per top-up and per day, friendly periods, reconnect threshold.
from micropython import const
from array import array
import events

OK = const(0)
LOW_1 = const(1)
LOW_2 = const(2)
ZERO = const(3)  # balance at or below zero, still supplied from overdraft or emergency credit
EXHAUSTED = const(4)  # nothing left: the relay opens unless a friendly period holds it

# Top-up results (also the codes sent back to the backend).
APPLIED = const(0)
REFUSED_MAX_BALANCE = const(1)
REFUSED_AMOUNT = const(2)

# Emergency credit results.
EC_GRANTED = const(0)
EC_NOT_OFFERED = const(1)  # disabled, or the balance is still above the offer threshold
EC_ALREADY = const(2)

_LIMIT = const(1000000000)  # keep every money value a small int on the ESP32
_LEVEL_EVENTS = (0, events.LOW_CREDIT_1, events.LOW_CREDIT_2, events.CREDIT_ZERO, events.CREDIT_EXHAUSTED)

DEFAULTS = {
    "low1": 200, "low2": 50, "hysteresis": 20, "max_balance": 10000000, "overdraft": 0,
    "ec_limit": 0, "ec_threshold": 0, "reconnect_threshold": 0,
    "debt_pct": 0, "debt_max_per_topup": 0, "debt_per_day": 0,
}


class CreditError(ValueError):
    pass


def _cfg_int(cfg, key, lo, hi):
    v = cfg.get(key, DEFAULTS[key])
    if type(v) is not int or v < lo or v > hi:
        raise CreditError("%s must be an integer in %d..%d" % (key, lo, hi))
    return v


class Friendly:
    """Periods in which running out of credit does not disconnect: daily local-time windows
    (which may cross midnight), whole weekdays, and holidays ([m, d] yearly or [y, m, d])."""

    def __init__(self, doc=None):
        doc = doc or {}
        if not isinstance(doc, dict):
            raise CreditError("friendly must be an object")
        hours = doc.get("hours", [])
        if not isinstance(hours, list) or len(hours) > 8:
            raise CreditError("friendly.hours must be a list of at most 8 [start_min, end_min]")
        w = []
        for h in hours:
            if (not isinstance(h, list) or len(h) != 2 or type(h[0]) is not int or type(h[1]) is not int
                    or not 0 <= h[0] < 1440 or not 0 <= h[1] < 1440 or h[0] == h[1]):
                raise CreditError("friendly.hours entries must be [start_min, end_min], distinct, in 0..1439")
            w.extend(h)
        self.win = array("H", w)
        mask = 0
        days = doc.get("weekdays", [])
        if not isinstance(days, list):
            raise CreditError("friendly.weekdays must be a list of 0 (Mon)..6 (Sun)")
        for d in days:
            if type(d) is not int or not 0 <= d <= 6:
                raise CreditError("friendly.weekdays must be a list of 0 (Mon)..6 (Sun)")
            mask |= 1 << d
        self.mask = mask
        hol = doc.get("holidays", [])
        if not isinstance(hol, list) or len(hol) > 64:
            raise CreditError("friendly.holidays must be a list of at most 64 dates")
        codes = []
        for h in hol:
            if (not isinstance(h, list) or len(h) not in (2, 3) or any(type(x) is not int for x in h)
                    or not 1 <= h[-2] <= 12 or not 1 <= h[-1] <= 31):
                raise CreditError("friendly.holidays entries must be [m, d] or [y, m, d]")
            codes.append(((h[0] if len(h) == 3 else 0) * 13 + h[-2]) * 32 + h[-1])
        self.hol = array("i", codes)

    def active(self, lc, utc):
        """True when meter second `utc` falls in a friendly period; `lc` is a localtime.LocalClock."""
        lc.update(utc)
        if self.mask & (1 << lc.wday):
            return True
        c0 = lc.month * 32 + lc.mday
        c1 = (lc.year * 13 + lc.month) * 32 + lc.mday
        h = self.hol
        for i in range(len(h)):
            if h[i] == c0 or h[i] == c1:
                return True
        m = lc.minute(utc)
        w = self.win
        for i in range(0, len(w), 2):
            s = w[i]
            e = w[i + 1]
            if (s <= m < e) if s < e else (m >= s or m < e):
                return True
        return False


class Account:
    def __init__(self, emit, low1=200, low2=50, hysteresis=20, max_balance=10000000):
        self._emit = emit
        self.low1 = low1
        self.low2 = low2
        self.hyst = hysteresis
        self.max_balance = max_balance
        self.overdraft = 0
        self.ec_limit = 0
        self.ec_threshold = 0
        self.reconnect_threshold = 0
        self.debt_pct = 0
        self.debt_max_per_topup = 0
        self.debt_per_day = 0
        self.friendly = Friendly()
        self.balance = 0
        self.charged = 0  # money charged since manufacture
        self.topped_up = 0  # money credited since manufacture (before debt recovery)
        self.level = OK
        self.ec_active = 0
        self.debt = 0  # outstanding debt to recover
        self.recovered = 0  # debt recovered since manufacture
        self.last_day = 0  # local day number of the last daily debt recovery

    def configure(self, cfg):
        """Apply a credit configuration (docs/credit.md); a bad one raises CreditError and changes nothing."""
        if not isinstance(cfg, dict):
            raise CreditError("credit config must be an object")
        v = {}
        for k in ("low1", "low2", "hysteresis", "max_balance", "overdraft", "ec_limit", "ec_threshold",
                  "debt_max_per_topup", "debt_per_day"):
            v[k] = _cfg_int(cfg, k, 0, _LIMIT)
        v["reconnect_threshold"] = _cfg_int(cfg, "reconnect_threshold", -_LIMIT, _LIMIT)
        v["debt_pct"] = _cfg_int(cfg, "debt_pct", 0, 100)
        if v["low2"] > v["low1"]:
            raise CreditError("low2 must not be above low1")
        friendly = Friendly(cfg.get("friendly"))
        self.low1 = v["low1"]
        self.low2 = v["low2"]
        self.hyst = v["hysteresis"]
        self.max_balance = v["max_balance"]
        self.overdraft = v["overdraft"]
        self.ec_limit = v["ec_limit"]
        self.ec_threshold = v["ec_threshold"]
        self.reconnect_threshold = v["reconnect_threshold"]
        self.debt_pct = v["debt_pct"]
        self.debt_max_per_topup = v["debt_max_per_topup"]
        self.debt_per_day = v["debt_per_day"]
        self.friendly = friendly

    def available(self):
        """Credit left before disconnection: balance + overdraft + emergency credit if invoked."""
        return self.balance + self.overdraft + (self.ec_limit if self.ec_active else 0)

    def debit(self, minor):
        if minor:
            self.balance -= minor
            self.charged += minor
            self._update_level()

    def topup(self, amount):
        """Credit `amount` less debt recovery; refused whole (never truncated) when the
        balance would pass the maximum."""
        if type(amount) is not int or amount <= 0 or amount > _LIMIT:
            return REFUSED_AMOUNT
        rec = 0
        if self.debt and self.debt_pct:
            rec = amount * self.debt_pct // 100
            if self.debt_max_per_topup and rec > self.debt_max_per_topup:
                rec = self.debt_max_per_topup
            if rec > self.debt:
                rec = self.debt
        if self.balance + amount - rec > self.max_balance:
            return REFUSED_MAX_BALANCE
        self.topped_up += amount
        self.balance += amount - rec
        if rec:
            self._recover(rec)
        if self.ec_active and self.balance > 0:
            self.ec_active = 0  # emergency credit used is repaid out of this top-up
            self._emit(events.EC_REPAID, self.balance)
        self._update_level()
        return APPLIED

    def set_credit(self, target):
        """An authority sets the balance (an OpenPAYGO Set-Time token): the change counts as
        credit granted, negative when it lowers the balance, so balance = credit - charges holds."""
        if type(target) is not int or not 0 <= target <= self.max_balance:
            return REFUSED_AMOUNT if type(target) is not int or target < 0 else REFUSED_MAX_BALANCE
        self.topped_up += target - self.balance
        self.balance = target
        if self.ec_active and self.balance > 0:
            self.ec_active = 0
            self._emit(events.EC_REPAID, self.balance)
        self._update_level()
        return APPLIED

    def add_debt(self, amount):
        if type(amount) is not int or amount <= 0 or self.debt + amount > _LIMIT:
            return REFUSED_AMOUNT
        self.debt += amount
        return APPLIED

    def _recover(self, rec):
        self.debt -= rec
        self.recovered += rec
        self._emit(events.DEBT_RECOVERED, rec)
        if not self.debt:
            self._emit(events.DEBT_CLEARED, 0)

    def new_day(self, day):
        """Daily debt recovery, once per local day number `day` (days only move forward, so a clock
        set back never recovers twice). Never takes the balance below zero."""
        if day <= self.last_day:
            return 0
        first = self.last_day == 0
        self.last_day = day
        if first or not self.debt or not self.debt_per_day:
            return 0
        rec = self.debt_per_day
        if rec > self.debt:
            rec = self.debt
        if rec > self.balance:
            rec = self.balance if self.balance > 0 else 0
        if rec:
            self.balance -= rec
            self._recover(rec)
            self._update_level()
        return rec

    def invoke_ec(self):
        """The customer asks for emergency credit (button or REPL)."""
        if self.ec_active:
            return EC_ALREADY
        if not self.ec_limit or self.balance > self.ec_threshold:
            return EC_NOT_OFFERED
        self.ec_active = 1
        self._emit(events.EC_INVOKED, self.ec_limit)
        self._update_level()
        return EC_GRANTED

    def exhausted(self):
        return self.level == EXHAUSTED

    def may_reconnect(self):
        return self.available() > self.reconnect_threshold

    def _update_level(self):
        b = self.balance
        if self.available() <= 0:
            new = EXHAUSTED
        elif b <= 0:
            new = ZERO
        elif b <= self.low2:
            new = LOW_2
        elif b <= self.low1:
            new = LOW_1
        else:
            new = OK
        old = self.level
        if new > old:
            self.level = new
            self._emit(_LEVEL_EVENTS[new], b)
        elif new < old:
            # Hysteresis: only step back when the balance is clearly above the level's bound,
            # so a balance hovering at a threshold does not flood the backend with events.
            # Leaving exhaustion is driven by top-ups and emergency credit: immediate.
            bound = self.low1 if old == LOW_1 else self.low2 if old == LOW_2 else 0
            if old == EXHAUSTED or b > bound + self.hyst:
                self.level = new
                if old == EXHAUSTED:
                    self._emit(events.CREDIT_RESTORED, b)
