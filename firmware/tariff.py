# Tariff engine: turns metered Wh (and elapsed time, for the standing charge) into money.
# Integer only, with one exact remainder: the money charged is always
# floor((sum(Wh_i x price_i) + seconds x standing_per_day / 86.4) / den) over the meter's life,
# so the cumulative error stays below one minor unit.
# The tariff document (docs/tariff.md) is compiled once into flat tables; charge() then does
# no lookup while the cached period [lo, hi) holds, and allocates nothing.
from micropython import const
from array import array
import localtime
import timebase

MAX_RATES = const(8)
MAX_BLOCKS = const(7)  # six thresholds
# Energy registers (per rate, per block) roll over at 10^9 Wh like a register with six kWh digits:
# 2^31 would be passed by a 41.4 kW meter in six years, and past 2^30 every value is a big int on
# the ESP32. The rollover is counted (`rolled`), and the app raises register_rollover for it.
REG_MOD = const(1000000000)
_MAX_SWITCHES = const(16)  # per day profile
_MAX_PROFILES = const(16)
_MAX_SEASONS = const(12)
_MAX_SPECIAL = const(64)
_MAX_SCALE = const(10000)
_MAX_PRICE = const(1000000)  # x 1000 Wh chunk + den stays below 2^30 (ESP32 small int)
_MAX_THRESHOLD_WH = const(100000000)
_CHUNK_WH = const(1000)
_SDEN = const(432)  # 86400 s / 200: a second of standing charge is standing * 5 / 432 energy units
_RESET_MONTH = const(1)
_RESET_YEAR = const(2)


class TariffError(ValueError):
    pass


def _int(doc, key, lo, hi, default=None):
    v = doc.get(key, default)
    if type(v) is not int or v < lo or v > hi:
        raise TariffError("%s must be an integer in %d..%d" % (key, lo, hi))
    return v


def _ints(v, what, n_lo, n_hi, lo, hi):
    if not isinstance(v, list) or not n_lo <= len(v) <= n_hi:
        raise TariffError("%s must be a list of %d..%d integers" % (what, n_lo, n_hi))
    for x in v:
        if type(x) is not int or x < lo or x > hi:
            raise TariffError("%s values must be integers in %d..%d" % (what, lo, hi))
    return v


class Tables:
    """A validated, compiled tariff. Immutable once built; the engine keeps the state."""

    def __init__(self, doc):
        if not isinstance(doc, dict):
            raise TariffError("tariff must be a JSON object")
        if doc.get("v") != 1:
            raise TariffError("unsupported tariff version")
        kind = doc.get("kind")
        if kind not in ("flat", "tou", "block", "tou_block"):
            raise TariffError("unknown tariff kind")
        self.kind = kind
        self.scale = _int(doc, "scale", 1, _MAX_SCALE)
        self.den = self.scale * 1000  # per kWh -> per Wh, and the price's own scale
        at = doc.get("activate_at")  # Unix seconds in the document, meter seconds here
        if at is not None:
            if type(at) is not int:
                raise TariffError("activate_at must be an integer (UTC seconds)")
            # Outside the meter clock's range only the order matters (long past, or never).
            at = timebase.from_unix(min(max(at, timebase.MIN_UNIX), timebase.MAX_UNIX))
        self.activate_at = at
        self.standing = _int(doc, "standing_per_day", 0, _MAX_PRICE, 0)
        try:
            self.tz = localtime.from_doc(doc.get("tz"))
        except localtime.TimeError as e:
            raise TariffError("tz: %s" % e)
        tou = kind in ("tou", "tou_block")
        if tou:
            rates = _ints(doc.get("rates"), "rates", 1, MAX_RATES, 0, _MAX_PRICE)
        else:
            if "rates" in doc:
                rates = _ints(doc["rates"], "rates", 1, 1, 0, _MAX_PRICE)
            else:
                rates = [_int(doc, "price_per_kwh", 0, _MAX_PRICE)]
        self.nr = len(rates)
        self._tou(doc if tou else None)
        self._blocks(doc.get("blocks") if kind in ("block", "tou_block") else None, rates)
        if kind in ("flat", "tou") and "blocks" in doc:
            raise TariffError("blocks given for a tariff kind without blocks")

    def _tou(self, doc):
        if doc is None:
            self.season_md = array("H", [0])
            self.season_week = array("B", [0])
            self.week = array("B", [0] * 7)
            self.sw_min = array("H", [0])
            self.sw_rate = array("B", [0])
            self.prof = array("H", [0, 1])
            self.special = array("i")
            self.special_day = array("B")
            return
        days = doc.get("days")
        if not isinstance(days, list) or not 1 <= len(days) <= _MAX_PROFILES:
            raise TariffError("days must be a list of 1..%d day profiles" % _MAX_PROFILES)
        mins, rts, prof = [], [], [0]
        for p in days:
            if not isinstance(p, list) or not 1 <= len(p) <= _MAX_SWITCHES:
                raise TariffError("a day profile must have 1..%d switch points" % _MAX_SWITCHES)
            last = -1
            for sp in p:
                m, r = _ints(sp, "switch point", 2, 2, 0, 1439)
                if m <= last:
                    raise TariffError("switch points must be in increasing minute order")
                if r >= self.nr:
                    raise TariffError("switch point rate %d has no price" % r)
                last = m
                mins.append(m)
                rts.append(r)
            prof.append(len(mins))
        self.sw_min = array("H", mins)
        self.sw_rate = array("B", rts)
        self.prof = array("H", prof)
        npf = len(days)
        weeks = doc.get("weeks")
        if not isinstance(weeks, list) or not 1 <= len(weeks) <= _MAX_SEASONS:
            raise TariffError("weeks must be a list of 1..%d week profiles" % _MAX_SEASONS)
        wk = []
        for w in weeks:
            wk.extend(_ints(w, "week profile", 7, 7, 0, npf - 1))
        self.week = array("B", wk)
        seasons = doc.get("seasons", [{"start": [1, 1], "week": 0}])
        if not isinstance(seasons, list) or not 1 <= len(seasons) <= _MAX_SEASONS:
            raise TariffError("seasons must be a list of 1..%d seasons" % _MAX_SEASONS)
        md, sw, last = [], [], -1
        for s in seasons:
            if not isinstance(s, dict):
                raise TariffError("a season must be an object")
            mo, d = _ints(s.get("start"), "season start", 2, 2, 1, 31)
            if mo > 12:
                raise TariffError("season start month must be 1..12")
            if mo * 32 + d <= last:
                raise TariffError("seasons must be in date order")
            last = mo * 32 + d
            md.append(last)
            sw.append(_int(s, "week", 0, len(weeks) - 1))
        self.season_md = array("H", md)
        self.season_week = array("B", sw)
        spec = doc.get("special", [])
        if not isinstance(spec, list) or len(spec) > _MAX_SPECIAL:
            raise TariffError("special must be a list of at most %d days" % _MAX_SPECIAL)
        codes, pdays = [], []
        for s in spec:
            if not isinstance(s, dict):
                raise TariffError("a special day must be an object")
            dt = _ints(s.get("date"), "special date", 2, 3, 1, 9999)
            y = dt[0] if len(dt) == 3 else 0  # [m, d] recurs every year
            mo, d = dt[-2], dt[-1]
            if mo > 12 or d > 31:
                raise TariffError("special date out of range")
            codes.append(_date_code(y, mo, d))
            pdays.append(_int(s, "day", 0, npf - 1))
        self.special = array("i", codes)
        self.special_day = array("B", pdays)

    def _blocks(self, doc, rates):
        nr = self.nr
        if doc is None:
            self.nb = 1
            self.thr = array("i", [0])
            self.reset = 0
            self.reset_month = 1
            self.reset_day = 1
            self.price = array("i", rates)
            return
        if not isinstance(doc, dict):
            raise TariffError("blocks must be an object")
        if "thresholds_kwh" in doc:
            thr = [1000 * x for x in _ints(doc["thresholds_kwh"], "thresholds_kwh", 1, MAX_BLOCKS - 1, 1,
                                          _MAX_THRESHOLD_WH // 1000)]
        else:
            thr = _ints(doc.get("thresholds_wh"), "thresholds_wh", 1, MAX_BLOCKS - 1, 1, _MAX_THRESHOLD_WH)
        for i in range(1, len(thr)):
            if thr[i] <= thr[i - 1]:
                raise TariffError("thresholds must increase")
        nb = len(thr) + 1
        self.nb = nb
        self.thr = array("i", thr)
        period = doc.get("reset")
        if period == "month":
            self.reset = _RESET_MONTH
            self.reset_month = 1
        elif period == "year":
            self.reset = _RESET_YEAR
            self.reset_month = _int(doc, "reset_month", 1, 12, 1)
        else:
            raise TariffError('blocks.reset must be "month" or "year"')
        self.reset_day = _int(doc, "reset_day", 1, 28, 1)
        if "matrix" in doc:
            if "adders" in doc:
                raise TariffError("give blocks.adders or blocks.matrix, not both")
            mx = doc["matrix"]
            if not isinstance(mx, list) or len(mx) != nr:
                raise TariffError("blocks.matrix needs one row per rate")
            price = []
            for row in mx:
                price.extend(_ints(row, "matrix row", nb, nb, 0, _MAX_PRICE))
        else:
            add = _ints(doc.get("adders"), "adders", nb, nb, 0, _MAX_PRICE)
            price = []
            for r in rates:
                for a in add:
                    if r + a > _MAX_PRICE:
                        raise TariffError("rate + adder above %d" % _MAX_PRICE)
                    price.append(r + a)
        self.price = array("i", price)


def _date_code(y, m, d):
    return (y * 13 + m) * 32 + d


class Engine:
    """The tariff state machine: active tables, an optional passive one, remainders,
    the block counter and the energy registers per rate and per block."""

    def __init__(self, tables):
        self.t = tables
        self.passive = None
        self.rem = 0  # money not yet charged, in 1/den minor units
        self.srem = 0  # standing charge below one 1/den unit, in 1/(432 den) minor units
        self.sms = 0  # milliseconds not yet counted into whole seconds
        self.bwh = 0  # Wh in the current block period
        self.bkey = 0  # which block period bwh belongs to (monotonic)
        self.rate_wh = array("i", bytes(4 * MAX_RATES))
        self.block_wh = array("i", bytes(4 * MAX_BLOCKS))
        self.charged_minor = 0  # money charged by this engine, lifetime
        self.standing_s = 0  # seconds of standing charge accrued, lifetime (money = s x per_day / 86400)
        self.activations = 0
        self.rolled = 0  # register rollovers not yet reported (the app clears it)
        self._lo = 1
        self._hi = 0
        self._rate = 0

    # Values the sim and telemetry read: the price of rate 0, block 0, and the denominator.
    @property
    def price(self):
        return self.t.price[0]

    @property
    def den(self):
        return self.t.den

    @property
    def kind(self):
        return self.t.kind

    def schedule(self, doc):
        """Validate and hold a passive tariff that becomes active at doc["activate_at"].
        A bad document raises TariffError and changes nothing."""
        t = Tables(doc)
        if t.activate_at is None:
            raise TariffError("a passive tariff needs activate_at")
        if t.scale != self.t.scale:
            # The remainder is kept in 1/den units: a different scale could not carry it exactly.
            raise TariffError("a passive tariff must keep the active tariff's scale")
        self.passive = t
        self._hi = 0  # re-evaluate: the activation time bounds the cached period

    def restore(self, doc):
        """At boot: make the tariff in force before the reboot (a document the backend scheduled
        and that activated) active again. Same checks as schedule(); TariffError changes nothing."""
        t = Tables(doc)
        if t.scale != self.t.scale:
            raise TariffError("the stored tariff does not keep the configured tariff's scale")
        self.t = t
        self._hi = 0

    def _activate(self):
        t = self.passive
        self.passive = None
        self.t = t
        self.activations += 1

    def _refresh(self, utc):
        p = self.passive
        if p is not None and utc >= p.activate_at:
            self._activate()
            p = None
        t = self.t
        lc = t.tz
        lc.update(utc)
        # Day profile: a special day, else the season's week profile.
        prof = 255
        y = lc.year
        mo = lc.month
        d = lc.mday
        c1 = _date_code(y, mo, d)
        c0 = _date_code(0, mo, d)
        sp = t.special
        for i in range(len(sp)):
            if sp[i] == c1 or sp[i] == c0:
                prof = t.special_day[i]
                break
        if prof == 255:
            md = mo * 32 + d
            smd = t.season_md
            s = len(smd) - 1  # before the first start, the last season still runs (wraps)
            for i in range(len(smd)):
                if smd[i] <= md:
                    s = i
            prof = t.week[t.season_week[s] * 7 + lc.wday]
        # Rate: the last switch point at or before now; before the first, the day's last one.
        a = t.prof[prof]
        b = t.prof[prof + 1]
        minute = lc.minute(utc)
        sm = t.sw_min
        rate = t.sw_rate[b - 1]
        lo = lc.lo
        hi = lc.hi
        for i in range(a, b):
            if sm[i] <= minute:
                rate = t.sw_rate[i]
                sw = lc.day_start + sm[i] * 60
                if sw > lo:
                    lo = sw
            else:
                nxt = lc.day_start + sm[i] * 60
                if nxt < hi:
                    hi = nxt
                break
        if p is not None and p.activate_at < hi:
            hi = p.activate_at
        self._rate = rate
        self._lo = lo
        self._hi = hi
        # Block period: moves forward only, so a clock set back never resets the counter again.
        if t.reset == _RESET_MONTH:
            key = y * 12 + mo - 1
            if d < t.reset_day:
                key -= 1
        elif t.reset == _RESET_YEAR:
            key = y
            if mo < t.reset_month or (mo == t.reset_month and d < t.reset_day):
                key -= 1
        else:
            key = self.bkey
        if key > self.bkey:
            self.bkey = key
            self.bwh = 0

    def charge(self, wh, utc, dt_ms=0):
        """Money (minor units) for `wh` more Wh metered at meter second `utc`, plus the standing
        charge for `dt_ms` of monotonic time. Keeps exact remainders; allocates nothing."""
        if not (self._lo <= utc < self._hi):
            self._refresh(utc)
        t = self.t
        den = t.den
        rem = self.rem
        if dt_ms > 0 and t.standing:
            ms = self.sms + dt_ms
            s = ms // 1000
            self.sms = ms - s * 1000
            if s:
                self.standing_s += s
                acc = self.srem + s * t.standing * 5
                q = acc // _SDEN
                self.srem = acc - q * _SDEN
                rem += q
        minor = 0
        if wh > 0:
            r = self._rate
            v = self.rate_wh[r] + wh
            if v >= REG_MOD:
                v -= REG_MOD
                self.rolled += 1
            self.rate_wh[r] = v
            nb = t.nb
            thr = t.thr
            base = r * nb
            bwh = self.bwh
            b = 0
            while b < nb - 1 and bwh >= thr[b]:
                b += 1
            while wh > 0:
                take = wh if wh < _CHUNK_WH else _CHUNK_WH
                if b < nb - 1 and bwh + take > thr[b]:
                    take = thr[b] - bwh  # split exactly at the threshold
                acc = rem + take * t.price[base + b]
                m = acc // den
                rem = acc - m * den
                minor += m
                v = self.block_wh[b] + take
                if v >= REG_MOD:
                    v -= REG_MOD
                    self.rolled += 1
                self.block_wh[b] = v
                bwh += take
                wh -= take
                if b < nb - 1 and bwh >= thr[b]:
                    b += 1
            self.bwh = bwh
        if rem >= den:
            m = rem // den
            rem -= m * den
            minor += m
        self.rem = rem
        self.charged_minor += minor
        return minor

    def rate_now(self, utc):
        """The TOU rate index in force at `utc` (for displays and tests)."""
        if not (self._lo <= utc < self._hi):
            self._refresh(utc)
        return self._rate


    def price_now(self, utc):
        """The energy price in force at `utc` (the rate's price in the current block), in minor
        units per kWh times the tariff's scale (for displays)."""
        r = self.rate_now(utc)
        return self.t.price[r * self.t.nb + self.block_now()]

    def block_now(self):
        """The block (0-based) the next Wh is charged in."""
        t = self.t
        b = 0
        while b < t.nb - 1 and self.bwh >= t.thr[b]:
            b += 1
        return b


def from_doc(doc):
    """Build a tariff engine from its JSON document (already decoded); a bad one raises TariffError."""
    return Engine(Tables(doc))
