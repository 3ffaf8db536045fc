# Relay driver: turns the wanted contact position into coil actions, then checks by
# measurement that the contacts really moved. Pure logic: the board gives `hw` with
#   set(closed)            monostable: coil energised = contacts closed
#   pulse(closed, ms)      latching: one coil pulse moves the contacts, which then stay put
#   feedback()             optional: True when the load side is live (aux contact or voltage sense)
# step() runs every tick and allocates nothing.
from micropython import const
import events

MONOSTABLE = const(0)
LATCHING = const(1)
KIND_NAMES = ("monostable", "latching")

# Feedback verdicts (event args and `fault`).
OK = const(0)
WELDED = const(1)  # current or a live load side after opening: welded contacts or a bypass
NO_CLOSE = const(2)  # load side dead after closing: coil or contact failure
FAULT_NAMES = ("ok", "welded_or_bypass", "no_close")



class RelayDriver:
    def __init__(self, hw, clock, emit, kind=MONOSTABLE, pulse_ms=100, dwell_s=5, settle_s=3,
                 min_actuation_cv=17250, open_ma=150, redrive_s=(60, 120, 180), on_fault=None):
        if kind not in (MONOSTABLE, LATCHING):
            raise ValueError("relay kind")
        for s in redrive_s:
            if s <= 0:
                raise ValueError("redrive_s")
        self._hw = hw
        self._clock = clock
        self._emit = emit
        self.kind = kind
        self._pulse_ms = pulse_ms
        self._dwell_ms = dwell_s * 1000
        self._settle_ms = settle_s * 1000
        self._quiet_ms = max(self._dwell_ms, self._settle_ms)
        self.min_cv = min_actuation_cv
        self._open_ma = open_ma
        self._redrive_ms = tuple(s * 1000 for s in redrive_s)
        self._has_fb = hasattr(hw, "feedback")
        self.on_fault = on_fault  # called with WELDED or NO_CLOSE once the re-drives are used up
        self.want = False  # the position the control layer asked for
        self.out = False  # the position we last drove the coil to
        self._due = 0  # ticks: do not act on `want` before this (randomised reconnect delay)
        self._delayed = False
        self._last_act = 0
        self._acted = False  # dwell counts only after a first actuation
        self._bad_since = 0
        self._bad = OK  # mismatch being debounced
        self._found_at = 0  # when the confirmed mismatch was found
        self._redrives = 0
        self._postponed = False
        self.mismatch = OK  # confirmed mismatch now being re-driven
        self.fault = OK  # reported fault: stays until clear_fault()
        self.actuations = 0
        self.redrives = 0
        self.postponements = 0

    # -- commands from the control layer ----------------------------------------
    def command(self, closed, delay_ms=0):
        """Ask for a position; the coil moves in step() once the delay, the minimum dwell
        and the supply voltage allow it."""
        if closed == self.want and not delay_ms:
            return
        self.want = closed
        if delay_ms > 0:
            self._due = self._clock.ticks_add(self._clock.ticks_ms(), delay_ms)
            self._delayed = True
        else:
            self._delayed = False
        self._reset_check()

    set = command  # the plain-hardware interface (set(closed)) works on a driver too

    def power_up(self, closed, delay_ms=0):
        """After boot the coil position is unknown (a latching relay keeps whatever it had,
        a monostable one dropped open): drive it to the recorded intent once."""
        self.want = not closed
        self.command(closed, delay_ms)
        self.out = not closed  # force one actuation even if it already is there
        self._acted = False

    def clear_fault(self):
        self.fault = OK
        self._reset_check()

    def pending(self):
        """True while a commanded position has not been driven yet."""
        return self.out != self.want

    def jog(self, closed):
        """Move the contacts now, bypassing `want` (the REPL relay test, which puts them back
        before the next step verifies them)."""
        if self.kind == LATCHING:
            self._hw.pulse(closed, self._pulse_ms)
        else:
            self._hw.set(closed)

    # -- the per-tick step ------------------------------------------------------
    def step(self, now, v_cv, i_ma):
        ck = self._clock
        if self._acted and ck.ticks_diff(now, self._last_act) >= self._quiet_ms:
            # Dwell and settling are over: forget the time of the last act before ticks_diff
            # wraps (2^29 ms, about 6.2 days), or the dwell check would hold the relay for days.
            self._acted = False
        if self.out != self.want:
            if self._delayed and ck.ticks_diff(self._due, now) > 0:
                return
            if self._acted and ck.ticks_diff(now, self._last_act) < self._dwell_ms:
                return  # minimum dwell: no chatter
            # A latching coil needs energy either way; a monostable one only to close.
            if (self.want or self.kind == LATCHING) and v_cv < self.min_cv:
                if not self._postponed:
                    self._postponed = True
                    self.postponements += 1
                    self._emit(events.RELAY_POSTPONED, v_cv)
                return
            self._postponed = False
            self._delayed = False
            self._drive(now)
            return
        self._verify(now, v_cv, i_ma)

    def _drive(self, now):
        closed = self.want
        if self.kind == LATCHING:
            self._hw.pulse(closed, self._pulse_ms)
        else:
            self._hw.set(closed)
        self.out = closed
        self._last_act = now
        self._acted = True
        self.actuations += 1

    def _reset_check(self):
        self._bad = OK
        self._redrives = 0
        if self.mismatch:
            self.mismatch = OK

    def _observe(self, v_cv, i_ma):
        """What the measurements say is wrong with the position we drove (OK if nothing)."""
        if self.out:
            # Only a feedback input can tell an idle closed relay from a failed one,
            # and only while the supply is there.
            if self._has_fb and v_cv >= self.min_cv and not self._hw.feedback():
                return NO_CLOSE
            return OK
        if i_ma > self._open_ma or (self._has_fb and self._hw.feedback()):
            return WELDED
        return OK

    def _verify(self, now, v_cv, i_ma):
        ck = self._clock
        if ck.ticks_diff(now, self._last_act) < self._settle_ms and self._acted:
            return  # contacts and measurements still settling
        bad = self._observe(v_cv, i_ma)
        if bad == OK:
            if self.mismatch:
                self.mismatch = OK
                self._redrives = 0
                self._emit(events.RELAY_RECOVERED, 0)
            self._bad = OK
            return
        if self.fault:
            return  # reported; re-driving stopped until cleared
        if bad != self._bad:
            self._bad = bad
            self._bad_since = now
            return
        if not self.mismatch:
            if ck.ticks_diff(now, self._bad_since) < self._settle_ms:
                return  # debounce
            self.mismatch = bad
            self._found_at = now
            self._redrives = 0
            self._emit(events.RELAY_MISMATCH, bad)
            return
        n = self._redrives
        if n < len(self._redrive_ms):
            if ck.ticks_diff(now, self._found_at) >= self._redrive_ms[n]:
                self._redrives = n + 1
                self.redrives += 1
                self._emit(events.RELAY_REDRIVE, n + 1)
                self._drive(now)
            return
        # Every re-drive used and the mismatch is still there: report it and stop.
        self.fault = bad
        self.mismatch = OK
        self._emit(events.RELAY_FAULT, bad)
        if self.on_fault is not None:
            self.on_fault(bad)
