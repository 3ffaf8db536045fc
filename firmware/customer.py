# The customer interface on the meter (docs/customer.md): the display's screens, the keypad's
# keys and the buzzer's sounds, as one explicit state machine over the live meter:
#   HOME    the register sequence (credit first), scrolled every scroll_s or by key B
#   ENTRY   a token being typed (digits, * deletes, C cancels, # enters); times out
#   MESSAGE the outcome of a key (token result, emergency credit, reconnect) for result_s
# Rows 0 (banner), 1-5 (the screen) and 6-7 (supply state and why it is off) are recomposed
# into a character grid every tick and sent to the display only when they changed. poll() (keys,
# sounds) and step() (timers, warnings, redraw) allocate nothing; entering a token does, once.
from micropython import const
import account
import relay as relay_mod
import limiter as limiter_mod
import token as token_mod
import timesource
import textscreen
import buzzer as bz

HOME = const(0)
ENTRY = const(1)
MESSAGE = const(2)
_MAX_DIGITS = const(20)
_B_HOLD_MS = const(30000)  # after key B the sequence waits at least this long before scrolling on
# How often main.loop polls keys and sounds between ticks: every 20 ms while the customer types or
# a sound plays (a key is taken when two scans 20 ms apart agree), every 50 ms while the keypad is
# idle (a press of 70 ms or more is seen, then confirmed), as the link otherwise without a keypad.
_FAST_MS = const(20)
_IDLE_MS = const(50)
_NO_KEYPAD_MS = const(100)
# The display is set up and sent its frame again this often: a controller reset by a glitch
# (ESD at the keypad, a brownout of its own) acknowledges writes yet shows nothing until then.
_REINIT_MS = const(60000)
# Contrast by day and in the quiet hours: dimmed at night, when nobody reads the meter and the OLED's
# pixels age fastest (the banner and status rows are lit for years).
_BRIGHT = const(0xCF)
_DIM = const(0x10)

SCREENS = ("credit", "import", "export", "rate", "power", "id", "time", "meters")
_CREDIT = const(0)
_IMPORT = const(1)
_EXPORT = const(2)
_RATE = const(3)
_POWER = const(4)
_ID = const(5)
_TIME = const(6)
_METERS = const(7)  # the water and gas meters on the pulse inputs

DEFAULTS = {"currency": "", "decimals": 2, "sequence": ["credit", "import", "rate", "time", "id"],
            "scroll_s": 10, "entry_timeout_s": 60, "result_s": 8, "quiet": [22, 7],
            "warn_s": [3600, 900], "sounds": True}

# Messages: (title, first line, what the value is). Value kinds:
_NONE = const(0)
_PLUS = const(1)  # money credited: "+12.50"
_WAIT = const(2)  # a countdown in meter seconds to self._val: "4:59"
_BAL = const(3)  # the balance now
MSG_TEXT = (
    (b"TOKEN", b"ACCEPTED", _PLUS),  # 0
    (b"TOKEN", b"ALREADY USED", _NONE),  # 1
    (b"TOKEN", b"WRONG METER", _NONE),  # 2 a valid-looking token whose MAC is not this meter's
    (b"TOKEN", b"LOCKED", _WAIT),  # 3 too many wrong tokens
    (b"TOKEN", b"TYPING ERROR", _NONE),  # 4 check digit(s) wrong
    (b"TOKEN", b"INVALID TOKEN", _NONE),  # 5 malformed, wrong length, unknown type
    (b"TOKEN", b"OVER MAX CREDIT", _BAL),  # 6
    (b"TOKEN", b"TOO OLD", _NONE),  # 7 an id long spent, or issued under a retired key
    (b"TOKEN", b"CALL UTILITY", _NONE),  # 8 the meter cannot judge tokens now (no key, replay lost)
    (b"TOKEN", b"METER FAULT", _NONE),  # 9 could not be saved: nothing changed
    (b"TOKEN", b"DEBT ADDED", _PLUS),  # 10
    (b"TOKEN", b"TEST OK", _NONE),  # 11
    (b"EMERGENCY", b"CREDIT GRANTED", _BAL),  # 12
    (b"EMERGENCY", b"NOT OFFERED", _NONE),  # 13
    (b"EMERGENCY", b"ALREADY ON", _NONE),  # 14
    (b"RECONNECT", b"SUPPLY RESTORED", _NONE),  # 15
    (b"RECONNECT", b"SUPPLY IS ON", _NONE),  # 16
    (b"RECONNECT", b"NOT ALLOWED NOW", _NONE),  # 17 (rows 6-7 say why it is off)
    (b"TOKEN", b"REFUSED", _NONE),  # 18 any other refusal
)
_M_ACCEPTED = const(0)
_M_LOCKED = const(3)
_M_DEBT = const(10)
_M_TEST = const(11)
_M_REFUSED = const(18)
TOKEN_RESULTS = {"applied": 0, "used": 1, "bad_mac": 2, "locked": 3, "check_digit": 4,
                 "malformed": 5, "unknown_type": 5, "bad_amount": 5, "refused_max_balance": 6,
                 "stale_id": 7, "old_key": 7, "id_jump": 5, "no_key": 8, "replay_lost": 8,
                 "store_fault": 9}
_M_EC = const(12)
_M_RECONNECT = const(15)

# Why the supply is off, by relay reason bit (relay.REASON_NAMES order).
_OFF_TEXT = (b"Safety hold", b"Voltage fault", b"Tamper", b"Relay fault", b"Remote off",
             b"No credit", b"Overload", b"Switched off")
# Banners, in priority order.
_B_FRIENDLY = b"FRIENDLY PERIOD"
_B_EC = b"EMERGENCY CREDIT"
_B_LEVEL = (b"", b"LOW CREDIT", b"VERY LOW CREDIT", b"CREDIT USED UP", b"NO CREDIT")
_B_DEBT = b"DEBT RECOVERY"
_TITLES = (b"CREDIT", b"IMPORT kWh", b"EXPORT kWh", b"PRICE per kWh", b"POWER", b"METER ID",
           b"DATE AND TIME", b"WATER AND GAS")


def _int_in(doc, key, lo, hi):
    v = doc[key]
    if type(v) is not int or not lo <= v <= hi:
        raise ValueError("customer.%s must be a whole number from %d to %d" % (key, lo, hi))
    return v


class Customer:
    def __init__(self, meter, display=None, keypad=None, pwm=None, doc=None):
        self.m = meter
        self._idx = 0  # position in the register sequence
        self.display = display
        self.keypad = keypad
        self.config_error = None
        try:
            self.configure(doc or {})
        except ValueError as e:  # a bad set-up never costs the customer their display
            self.config_error = str(e)
            self.configure({})
        self.buzzer = bz.Buzzer(pwm, meter.clock) if pwm is not None else None
        self.screen = textscreen.TextScreen()
        self._id = meter.board.meter_id.encode()
        # Each pulse input's name and unit as the screen writes them ("water l", "gas m3/1000").
        self._pulses = meter.metering.pulses
        self._pnames = tuple((p.name + " " + p.unit).encode() for p in self._pulses)
        self.mode = HOME
        self._digits = bytearray(_MAX_DIGITS)
        self._n = 0
        self._last_key = 0  # ticks of the last key (entry timeout)
        self._msg = 0
        self._val = 0
        self._msg_at = 0
        self._init_at = meter.clock.ticks_ms()
        self._dim = None  # the contrast set: True dimmed, False bright, None not yet
        self._hold_ms = 0
        self._level = meter.account.level
        self._warned_at = 0
        self._warned = False
        self._day = -1  # local day being counted for the daily use
        self._day_charged = 0
        self._day_start = 0  # meter second the count started (a boot starts in the middle of a day)
        self.daily_use = 0  # recent daily spend in minor units (0: not known yet)
        self.keys = 0  # keys taken
        self.tokens_keyed = 0  # tokens entered on the keypad
        self.tokens_accepted = 0
        self.warnings = 0  # low-credit warnings sounded
        self.redraws = 0
        if display is not None:
            display.init()

    def configure(self, doc):
        d = dict(DEFAULTS)
        for k in doc:
            if k not in d:
                raise ValueError("customer: unknown setting %r" % k)
            d[k] = doc[k]
        cur = d["currency"]
        if not isinstance(cur, str) or len(cur) > 4 or not all(32 < ord(c) < 127 for c in cur):
            raise ValueError("customer.currency must be up to 4 printable ASCII characters")
        dec = _int_in(d, "decimals", 0, 4)
        seq = d["sequence"]
        if not isinstance(seq, list) or not 1 <= len(seq) <= 8 or any(s not in SCREENS for s in seq):
            raise ValueError("customer.sequence must list 1 to 8 of %s" % ", ".join(SCREENS))
        scroll = _int_in(d, "scroll_s", 0, 3600)
        if 0 < scroll < 2:
            raise ValueError("customer.scroll_s must be 0 (no scrolling) or 2 to 3600")
        entry = _int_in(d, "entry_timeout_s", 10, 600)
        result = _int_in(d, "result_s", 2, 60)
        q = d["quiet"]
        if not isinstance(q, list) or len(q) not in (0, 2) or any(type(h) is not int or not 0 <= h <= 23 for h in q):
            raise ValueError("customer.quiet must be [] or [start hour, end hour] (0-23, local time)")
        w = d["warn_s"]
        if not isinstance(w, list) or len(w) != 2 or any(type(s) is not int or not 60 <= s <= 86400 for s in w):
            raise ValueError("customer.warn_s must be [seconds, seconds] (60-86400) for the two levels")
        if not isinstance(d["sounds"], bool):
            raise ValueError("customer.sounds must be true or false")
        self.currency = cur.encode()
        self.decimals = dec
        self.sequence = bytes(SCREENS.index(s) for s in seq)
        if self._idx >= len(self.sequence):
            self._idx = 0
        self.scroll_ms = scroll * 1000
        self._scroll_at = self.m.clock.ticks_ms()  # a stamp kept while scrolling was off is stale
        self.entry_ms = entry * 1000
        self.result_ms = result * 1000
        self.quiet = bytes(q)
        self.warn_s = tuple(w)
        self.sounds = d["sounds"]

    # -- keys and sounds (every few ms on the device) ---------------------------------
    def poll(self, now):
        kp = self.keypad
        if kp is not None:
            kp.scan(now)
            k = kp.get()
            while k:
                self._key(k, now)
                k = kp.get()
        if self.buzzer is not None:
            self.buzzer.poll(now)

    def slice_ms(self, now):
        """How long main.loop may wait before the next poll()."""
        if self.buzzer is not None and self.buzzer.playing():
            return _FAST_MS
        kp = self.keypad
        if kp is None:
            return _NO_KEYPAD_MS
        return _FAST_MS if kp.busy(now) else _IDLE_MS

    def _beep(self, pattern, now):
        if self.buzzer is not None and self.sounds:
            self.buzzer.play(pattern, now)

    def _key(self, k, now):
        self.keys += 1
        self._last_key = now
        ok = True
        if 48 <= k <= 57:  # a digit: starts or continues a token
            if self.mode != ENTRY:
                self.mode = ENTRY
                self._n = 0
            if self._n < _MAX_DIGITS:
                self._digits[self._n] = k
                self._n += 1
            else:
                ok = False
        elif k == 42:  # "*": delete the last digit
            if self.mode == ENTRY and self._n:
                self._n -= 1
                if not self._n:
                    self.mode = HOME
            else:
                ok = False
        elif k == 67:  # "C": cancel
            ok = self.mode != HOME
            self.mode = HOME
        elif k == 35:  # "#": enter
            if self.mode == ENTRY:
                self._enter(now)
                return
            ok = False
        elif k == 65:  # "A": emergency credit
            r = self.m.emergency_credit()
            self._message(_M_EC + (0 if r == "granted" else 1 if r == "not_offered" else 2), 0, now)
            ok = r == "granted"
        elif k == 66:  # "B": the next register
            self.mode = HOME
            self._next(now, True)
        elif k == 68:  # "D": reconnect (the button's job, for a customer without one)
            self._reconnect(now)
            return
        self._beep(bz.KEY if ok else bz.ERROR, now)
        self.refresh(now)

    def _enter(self, now):
        n = self._n
        self._n = 0
        self.tokens_keyed += 1
        res = self.m.enter_token(bytes(self._digits[:n]).decode())  # allocates: once per token
        code = TOKEN_RESULTS.get(res, _M_REFUSED)
        val = 0
        if res == "applied":
            self.tokens_accepted += 1
            typ = self.m.last_token
            code = _M_DEBT if typ == token_mod.DEBT else _M_TEST if typ == token_mod.TEST else _M_ACCEPTED
            val = self.m.last_amount
        elif res == "locked" or (res == "bad_mac" and self.m.tokens.locked(self.m.timesrc.lower())):
            code = _M_LOCKED
            val = self.m.tokens.lock_until
        self._message(code, val, now)
        self._beep(bz.ACCEPT if res == "applied" else bz.ERROR, now)
        self.refresh(now)

    def _reconnect(self, now):
        r = self.m.relay
        if r.state == relay_mod.READY:
            r.confirm_local()
            code = _M_RECONNECT
        elif r.state == relay_mod.CONNECTED:
            code = _M_RECONNECT + 1
        else:
            code = _M_RECONNECT + 2
        self._message(code, 0, now)
        self._beep(bz.KEY if code == _M_RECONNECT else bz.ERROR, now)
        self.refresh(now)

    def _message(self, code, val, now):
        self.mode = MESSAGE
        self._msg = code
        self._val = val
        self._msg_at = now

    def _next(self, now, by_key=False):
        self._idx = (self._idx + 1) % len(self.sequence)
        if self.sequence[self._idx] == _METERS and not self._pulses:
            self._idx = (self._idx + 1) % len(self.sequence)
        self._scroll_at = now
        self._hold_ms = _B_HOLD_MS if by_key else 0

    # -- every meter tick -------------------------------------------------------------
    def step(self, now, utc):
        c = self.m.clock
        self.poll(now)
        if self.mode == ENTRY and c.ticks_diff(now, self._last_key) >= self.entry_ms:
            self.mode = HOME  # abandoned: the digits go
            self._n = 0
        elif self.mode == MESSAGE and c.ticks_diff(now, self._msg_at) >= self.result_ms:
            self.mode = HOME
        if self.mode == HOME and self.scroll_ms:
            wait = self._hold_ms if self._hold_ms > self.scroll_ms else self.scroll_ms
            if c.ticks_diff(now, self._scroll_at) >= wait:
                self._next(now)
        self._daily(utc)
        self._warn(now, utc)
        d = self.display
        if d is not None and c.ticks_diff(now, self._init_at) >= _REINIT_MS:
            self._init_at = now
            d.ready = False  # show() sets it up first (its contrast too)
            self.screen.forget()
            self._dim = None
        self.refresh(now, utc)
        if d is not None and d.ready:
            q = self._quiet(utc)
            if q != self._dim and d.contrast(_DIM if q else _BRIGHT):
                self._dim = q

    def _daily(self, utc):
        # The spend of recent days, for "days left": each completed local day weighs a quarter.
        day = self.m.tariff.t.tz.day
        charged = self.m.account.charged
        if day != self._day:
            if self._day >= 0 and utc - self._day_start >= 72000:  # most of a day was counted
                used = charged - self._day_charged
                self.daily_use = used if not self.daily_use else (3 * self.daily_use + used) >> 2
            self._day = day
            self._day_charged = charged
            self._day_start = utc

    def days_left(self, utc):
        """Whole days the balance lasts at recent use; -1 when not known yet."""
        use = self.daily_use
        if not use:
            mins = (utc - self._day_start) // 60
            spent = self.m.account.charged - self._day_charged
            if mins < 60 or spent <= 0:
                return -1
            use = spent * 1440 // mins if spent < 700000 else spent // mins * 1440
            if not use:
                return -1
        b = self.m.account.balance
        return b // use if b > 0 else 0

    def _quiet(self, utc):
        q = self.quiet
        if not q:
            return False
        lc = self.m.tariff.t.tz
        h = lc.minute(utc) // 60
        return q[0] <= h < q[1] if q[0] <= q[1] else h >= q[0] or h < q[1]

    def _warn(self, now, utc):
        lvl = self.m.account.level
        if lvl == account.OK:
            self._level = lvl
            self._warned = False
            return
        if self.buzzer is None or not self.sounds:
            return
        period = self.warn_s[0 if lvl == account.LOW_1 else 1]
        due = lvl > self._level or not self._warned or utc - self._warned_at >= period
        self._level = lvl
        if due and self.mode != ENTRY and not self._quiet(utc):
            self._warned = True
            self._warned_at = utc
            self.warnings += 1
            self._beep(bz.LOW_1 if lvl == account.LOW_1 else bz.LOW_2, now)

    # -- the screen ---------------------------------------------------------------------
    def refresh(self, now, utc=None):
        if utc is None:
            utc = self.m.timesrc.bill_time(self.m.clock.time())
        s = self.screen
        s.clear()
        self._banner(s)
        if self.mode == ENTRY:
            self._entry(s)
        elif self.mode == MESSAGE:
            self._result(s, utc)
        else:
            self._register(s, self.sequence[self._idx], utc)
        self._supply(s, now)
        d = self.display
        if d is not None and s.draw(d.fb):
            self.redraws += 1
            if not d.show():
                s.forget()  # not on the glass: send it again next time

    def _banner(self, s):
        a = self.m.account
        r = self.m.relay
        if r.friendly and a.exhausted():
            t = _B_FRIENDLY
        elif a.ec_active:
            t = _B_EC
        elif a.level != account.OK:
            t = _B_LEVEL[a.level]
        elif a.debt > 0:
            t = _B_DEBT
        else:
            return
        s.center(0, t)
        s.invert(0)

    def _money(self, s, row, minor, plus=False):
        end = textscreen.COLS
        col = s.num(row, end, minor, self.decimals)
        if plus and col > 0:
            s.text(row, col - 1, b"+")
        s.text(row, 0, self.currency)

    def _register(self, s, which, utc):
        m = self.m
        s.text(1, 0, _TITLES[which])
        if which == _CREDIT:
            self._money(s, 2, m.account.balance)
            if m.account.debt > 0:
                s.text(3, 0, b"Debt")
                s.num(3, 16, m.account.debt, self.decimals)
            d = self.days_left(utc)
            if d < 0:
                s.text(4, 0, b"-- days left")
            else:
                s.num(4, 4, d if d < 1000 else 999)
                s.text(4, 4, b"+ days left" if d >= 1000 else b" day left" if d == 1 else b" days left")
        elif which == _IMPORT or which == _EXPORT:
            if which == _EXPORT:
                s.num(2, 16, m.metering.exp_wh, 3)
            else:
                t = m.tariff
                nr = t.t.nr
                if nr == 1:
                    s.num(2, 16, m.metering.imp_wh, 3)
                else:
                    for r in range(nr if nr < 4 else 4):
                        s.text(2 + r, 0, b"T")
                        s.num(2 + r, 2, r + 1)
                        s.num(2 + r, 16, t.rate_wh[r], 3)
        elif which == _RATE:
            t = m.tariff
            p = t.price_now(utc)
            if t.t.nr > 1:
                s.text(2, 0, b"T")
                s.num(2, 2, t.rate_now(utc) + 1)
            # The tariff's scale (of the tariff in force now) as decimals when it is a power of ten.
            scale = t.t.scale
            k = 0
            p10 = 1
            while p10 < scale:
                p10 *= 10
                k += 1
            if p10 != scale:
                p = p * 100 // scale
                k = 2
            s.num(2, 16, p, self.decimals + k)
            if t.t.nb > 1:
                s.text(3, 0, b"Block")
                s.num(3, 16, t.block_now() + 1)
            if t.t.standing:
                s.text(4, 0, b"Daily")
                s.num(4, 16, t.t.standing, self.decimals)
        elif which == _POWER:
            mt = m.metering
            s.num(2, 14, mt.p_w)
            s.text(2, 15, b"W")
            s.num(3, 14, mt.v_cv, 2)
            s.text(3, 15, b"V")
            s.num(4, 14, mt.i_ma, 3)
            s.text(4, 15, b"A")
        elif which == _ID:
            idn = self._id
            s.text(2, 0, idn)
            if len(idn) > 16:
                for i in range(16, len(idn) if len(idn) < 32 else 32):
                    s.grid[3 * 16 + i - 16] = idn[i]
        elif which == _TIME:
            lc = m.tariff.t.tz
            s.num(2, 4, lc.year, 0, 4)
            s.text(2, 4, b"-")
            s.num(2, 7, lc.month, 0, 2)
            s.text(2, 7, b"-")
            s.num(2, 10, lc.mday, 0, 2)
            mi = lc.minute(utc)
            s.num(3, 2, mi // 60, 0, 2)
            s.text(3, 2, b":")
            s.num(3, 5, mi % 60, 0, 2)
            if m.timesrc.state != timesource.TRUSTED:  # the customer should know it may be off
                s.text(4, 0, b"not set")
        elif which == _METERS:
            for i in range(len(self._pulses)):  # at most two (pulses.MAX_INPUTS)
                s.text(2 + 2 * i, 0, self._pnames[i])
                s.num(3 + 2 * i, 16, self._pulses[i].value)

    def _entry(self, s):
        s.clear()
        s.center(0, b"ENTER TOKEN")
        s.invert(0)
        g = s.grid
        n = self._n
        for i in range(n):
            row = 2 + i // 12
            col = (i % 12) + (i % 12) // 4  # groups of four: "1234 5678 9012"
            g[row * 16 + col] = self._digits[i]
        s.num(4, 16, n)
        s.text(4, 0, b"digits")
        s.text(5, 0, b"#=OK *=DEL C=ESC")

    def _result(self, s, utc):
        title, line, kind = MSG_TEXT[self._msg]
        s.clear()
        s.center(0, title)
        s.invert(0)
        s.center(2, line)
        if kind == _PLUS:
            self._money(s, 3, self._val, True)
        elif kind == _WAIT:
            left = self._val - self.m.timesrc.lower()
            s.text(3, 0, b"Try again in")
            s.clock(4, 5, left if left > 0 else 0)
        if kind == _BAL or self._msg == _M_ACCEPTED:
            s.text(4, 0, b"Credit")
            s.num(4, 16, self.m.account.balance, self.decimals)

    def _supply(self, s, now):
        m = self.m
        r = m.relay
        if r.state == relay_mod.CONNECTED:
            s.text(6, 0, b"SUPPLY ON")
            s.num(6, 15, m.metering.p_w)
            s.text(6, 15, b"W")
            return
        s.text(6, 0, b"SUPPLY OFF")
        if r.state == relay_mod.READY:
            s.text(7, 0, b"Press D/button")
            return
        bit = relay_mod.top(r.reasons)
        i = 0
        while i < 8 and bit != 1 << i:
            i += 1
        if i == 8:
            return
        col = s.text(7, 0, _OFF_TEXT[i])
        if bit == relay_mod.LOAD:
            lim = m.protection.limiter
            if lim.state == limiter_mod.LATCHED:
                s.text(7, col, b" locked")
            else:
                s.clock(7, col + 1, lim.retry_in_s(now))
