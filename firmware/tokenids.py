# Which offline tokens were used: a window of token ids of their own, apart from the command
# counter (docs/tokens.md). A paper token stays good whatever the backend sends meanwhile, and
# tokens may be typed in any order among the newest SPAN ids: the highest id applied and a bitmap
# of the SPAN ids up to it, as STS meters keep a memory of token ids. An id below the window is
# spent ("stale_id"); one in the bitmap is used. Committed with the balance in the hot record.
# Allocates nothing while ids stay below 2^30 (a 32-bit port's small ints; a token counter gets
# nowhere near it).
from micropython import const

SPAN = const(64)  # ids a token may lag the newest one applied and still be taken
# A new id may pass the newest by at most this much: one absurd id (2^31-1) from a buggy or
# compromised issuer must not make every later token stale.
MAX_ADVANCE = const(1 << 16)
_BYTES = const(8)  # SPAN // 8

# Verdicts of seen().
OK = const(0)
USED = const(1)
REFUSED = const(2)


class TokenIds:
    def __init__(self):
        self.top = 0  # the highest token id applied (0: none yet)
        self.bits = bytearray(_BYTES)  # bit d: id top - d was applied
        self.floor = 0  # ids up to here are spent, applied or not (a resync, an older record)

    def _bit(self, d):
        return (self.bits[d >> 3] >> (d & 7)) & 1

    def seen(self, tid):
        """(verdict, reason) for token id `tid`; changes nothing."""
        if type(tid) is not int or tid <= 0 or tid >= 1 << 31:
            return REFUSED, "malformed"
        if tid > self.top:
            if tid - self.top > MAX_ADVANCE:
                return REFUSED, "id_jump"
            return OK, None
        d = self.top - tid
        if d < SPAN and self._bit(d):
            return USED, None
        if d >= SPAN or tid <= self.floor:
            return REFUSED, "stale_id"
        return OK, None

    def remember(self, tid):
        """Mark an applied token id (after seen() said OK)."""
        b = self.bits
        if tid > self.top:
            k = tid - self.top
            # Shift the bitmap up by k: bit d moves to d + k, what passes SPAN is spent.
            for d in range(SPAN - 1, -1, -1):
                s = d - k
                if s >= 0 and (b[s >> 3] >> (s & 7)) & 1:
                    b[d >> 3] |= 1 << (d & 7)
                else:
                    b[d >> 3] &= 0xFF ^ (1 << (d & 7))
            self.top = tid
            b[0] |= 1
        else:
            d = self.top - tid
            b[d >> 3] |= 1 << (d & 7)

    def reset(self, top):
        """Every id up to `top` is spent (a resync after the window was lost with the record)."""
        self.top = self.floor = top
        for i in range(_BYTES):
            self.bits[i] = 0
