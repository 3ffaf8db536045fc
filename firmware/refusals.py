# A tally of the commands a meter refused or answered again, counted in RAM by reason.
# Anyone who can publish on the command topic can make the meter refuse at will, so a refusal
# must cost no flash: the sync layer logs the first one of each interval at once (an operator
# sees a key mismatch without waiting), counts the rest here, and logs one summary per interval
# ("n refused since t, by reason"). A flood thus costs at most two events an interval.
# Allocates nothing while counting.
from micropython import const
from array import array

# Why commands were refused (auth.py's reasons, the link's and the app's), and repeats of applied
# commands (answered again, not refused, but a replayed capture is one too).
REASONS = ("no_key", "oversized", "malformed", "bad_mac", "wrong_meter", "old_key", "stale_id",
           "expired", "replay_lost", "retained", "repeat", "id_jump", "overflow",
           "exp_far")
OVERSIZED = const(1)
RETAINED = const(9)
REPEAT = const(10)
_MALFORMED = const(2)
OVERFLOW = const(12)  # dropped unread: the link's inbox was full (link.py)
_HALF = const(1 << 29)


def index(reason):
    """The position of a reason name in REASONS; unknown names count as "malformed"."""
    for i in range(len(REASONS)):
        if REASONS[i] == reason:
            return i
    return _MALFORMED


class Tally:
    def __init__(self, clock, interval_ms):
        if not 0 < interval_ms < _HALF:
            raise ValueError("refusal interval: 0 < ms < 2^29")
        self._clock = clock
        self.interval_ms = interval_ms
        self.counts = array("I", bytes(4 * len(REASONS)))
        self.total = 0  # counted in the current interval
        self.since = 0  # meter second of its first count
        self._start = 0  # ticks of its first count
        self.last = array("I", bytes(4 * len(REASONS)))  # the counts of the last summary
        self.last_since = 0
        self.summaries = 0
        self.ever = 0  # counted since boot
        self._logged = False  # the interval's first refusal was logged

    def note(self, i, utc, n=1):
        """Count n of reason number `i` at meter second `utc`. True for the first refusal of an
        interval (the caller logs it at once; a repeat is never logged on its own)."""
        first = not self.total
        self.counts[i] += n
        self.ever += n
        self.total += n
        if first:
            self.since = utc
            self._start = self._clock.ticks_ms()
        if i == REPEAT or self._logged:
            return False
        self._logged = True
        return True

    def due(self, now):
        """The number counted in an interval that has ended (its counts move to `last`), or 0.
        Called every tick: an interval's start is never older than interval_ms + a tick, so
        ticks_diff stays valid across tick wrap."""
        if not self.total or self._clock.ticks_diff(now, self._start) < self.interval_ms:
            return 0
        n = self.total
        for i in range(len(REASONS)):
            self.last[i] = self.counts[i]
            self.counts[i] = 0
        self.last_since = self.since
        self.total = 0
        self._logged = False
        self.summaries += 1
        return n

    def by_reason(self, counts):
        """'"reason":n,...' of the non-zero counts (for the summary message)."""
        return ",".join('"%s":%d' % (REASONS[i], counts[i]) for i in range(len(REASONS)) if counts[i])
