# Where the meter's wall time comes from, and how far each source is believed (docs/time.md).
# The ESP32's RTC has no battery: after a power cut it restarts at 2000-01-01, where TLS refuses
# every certificate and the tariff's calendar is wrong. The hot record keeps a time floor (the
# latest time the meter could vouch for); this module raises the clock to it, takes SNTP's answer
# to move it forward (unauthenticated, so bounded), and the backend's signed `time` as the
# authority. Pure logic: the clock, the setter and the SNTP query are injected by the app/board.
#
# Two times come out of it:
#   bill_time(now)  the second the calendar runs on (tariff rate, block period, midnight, friendly
#                   periods): the floor itself while UNCERTAIN, the clock otherwise;
#   lower()         a second the true time is surely not before: the clock minus whatever SNTP
#                   added on its own word. Expiry, token lockouts and the floor run on it, so a
#                   lying time server can neither revive an expired command nor end a lockout
#                   early, nor push the floor (and every later boot) into the future.
from micropython import const
import struct
import timebase

UNCERTAIN = const(0)  # booted with the RTC below the floor: the clock runs on from the floor
ESTIMATED = const(1)  # uncertain for _STILL_MAX_S: the calendar moves on the clock (a lower bound)
NETWORK = const(2)  # SNTP moved the clock forward; not authenticated
TRUSTED = const(3)  # the backend's time command, the technician, or an RTC that kept trusted time
NAMES = ("uncertain", "estimated", "network", "trusted")

# The calendar stands still at the floor for at most a day of uncertainty: a power cut cannot buy
# a cheap rate (or a friendly period) for longer than that.
_STILL_MAX_S = const(86400)
# What survives a reset without a power cut in the RTC's own memory (lost with the RTC): the
# state and how far SNTP had moved the clock, so a reset does not turn SNTP's word into trust.
_TAG = b"pmT1"
_KEEP_FMT = "<4sBxxxi"
KEEP_SIZE = const(12)
# While up and still uncertain, the time server is asked again after 30 s, then at doubling gaps up
# to an hour (meter seconds: no tick stamp to outlive a wrap); before a connect attempt, always.
_GAP_MIN_S = const(30)
_GAP_MAX_S = const(3600)


class TimeSource:
    """clock: .time() in meter seconds. set_clock(t): move the wall clock to meter second t.
    sntp: callable() -> meter seconds from a time server (raises OSError/ValueError), or None.
    keep: callable(bytes) storing KEEP_SIZE bytes that survive resets but not power cuts, or None.
    emit: callable(code, arg) for events, or None."""

    def __init__(self, clock, set_clock, sntp=None, keep=None, emit=None, ev_set=0, ev_refused=0):
        self._clock = clock
        self._set = set_clock
        self._sntp = sntp
        self._keep = keep
        self._emit = emit
        self._ev_set = ev_set
        self._ev_refused = ev_refused
        self.state = TRUSTED
        self.still = 0  # the calendar's second while UNCERTAIN (the floor at boot)
        self.skew = 0  # seconds the clock runs ahead of lower(): what SNTP added on its own word
        self.queries = 0  # SNTP queries made (each bounded by the board's timeout)
        self.refused = 0  # SNTP answers not taken
        self._next = 0  # meter second of the next query while the link is up
        self._gap = _GAP_MIN_S

    def boot(self, floor, kept=None):
        """Once, after the hot record is read (floor: its time floor, meter seconds). kept: the
        bytes keep() last stored, if the RTC kept its memory over a reset."""
        now = self._clock.time()
        if now < floor or now < timebase.SET_MIN:
            # The RTC lost its power (2000-01-01) or was set back: start from the floor, a time
            # the broker's certificate is valid at (it was in use then), and hold the calendar.
            if floor > now:
                self._set(floor)
            self.state = UNCERTAIN
            self.still = self._clock.time()
            self.skew = 0
        elif kept is not None and len(kept) == KEEP_SIZE and kept[:4] == _TAG:
            _, state, skew = struct.unpack(_KEEP_FMT, kept)
            self.state = state if state <= TRUSTED else NETWORK
            self.skew = skew if 0 <= skew <= now - floor else now - floor
            self.still = now
        else:
            self.state = TRUSTED  # an RTC that kept counting and nothing says SNTP set it
        self._save()

    def bill_time(self, now):
        """The second the tariff and the credit rules run on (allocation-free)."""
        if self.state == UNCERTAIN:
            if now - self.still < _STILL_MAX_S:
                return self.still
            self._to(ESTIMATED)  # a day without any source: the clock is all we have
        return now

    def lower(self):
        """A meter second the true time is not before (as far as anything authentic knows)."""
        return self._clock.time() - self.skew

    def wants_network(self):
        return self.state <= ESTIMATED and self._sntp is not None

    def query(self, connecting=True):
        """Ask the time server once, if the time is still uncertain: before every connect attempt
        (a TLS handshake may need the answer), and while the link is up on a backing-off schedule.
        The board bounds the wait. Returns True when the answer was taken. Never raises."""
        if not self.wants_network():
            return False
        now = self._clock.time()
        if not connecting and now - self._next < 0:
            return False
        self._next = now + self._gap
        self._gap = self._gap * 2 if self._gap < _GAP_MAX_S // 2 else _GAP_MAX_S
        self.queries += 1
        try:
            t = self._sntp()
        except Exception:  # noqa: BLE001 - no server, no Wi-Fi, a timeout: try at the next connect
            return False
        return self.offer(t)

    def offer(self, t):
        """An SNTP answer (meter seconds). Taken only out of UNCERTAIN/ESTIMATED and only forward
        of lower(): it may set the clock after an outage of any length (TLS needs that), never
        backwards past what the meter already knows, and never once the clock is set."""
        if self.state > ESTIMATED:
            return False
        low = self.lower()
        if type(t) is not int or t < low or t > timebase.MAX_T:
            self.refused += 1
            if self._emit is not None and self.refused == 1:  # once per boot: it asks again hourly
                self._emit(self._ev_refused, 0)
            return False
        self._set(t)
        self.skew = self._clock.time() - low
        self._to(NETWORK)
        return True

    def authoritative(self):
        """The clock was just set by an authority (the backend's signed `time`, the technician):
        everything it says is trusted, including a time below the old floor."""
        self.skew = 0
        self._to(TRUSTED)

    def _to(self, state):
        if state != self.state or state == TRUSTED:
            self.state = state
            self._save()
            if self._emit is not None:
                self._emit(self._ev_set, state)

    def _save(self):
        if self._keep is not None:
            try:
                self._keep(struct.pack(_KEEP_FMT, _TAG, self.state, self.skew))
            except (OSError, ValueError):
                pass
