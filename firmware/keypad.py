# The customer keypad: a 4x4 key matrix on a PCA9674 I/O expander (the PCF8574's 1 MHz twin) on the
# display's I2C bus (why: docs/customer.md). Rows on P0-P3, columns on P4-P7; scan() drives one row
# low at a time and reads the columns, from the main loop every 20-50 ms (customer.slice_ms). A key
# counts once two scans at least debounce_ms apart read it the same (contacts bounce for under 10
# ms; a press lasts 50 ms or more) and it is the only key down (a matrix without diodes shows ghost
# keys when three are pressed). Presses wait in a small ring until the interface takes them.
from micropython import const

ADDR = const(0x20)
KEYS = b"123A456B789C*0#D"  # row by row, as printed on the keypad
_QUEUE = const(8)
_BUSY_MS = const(2000)  # after the last key the customer may still be typing


class Keypad:
    def __init__(self, i2c, ticks_diff, addr=ADDR, debounce_ms=20):
        self._i2c = i2c
        self._addr = addr
        self._diff = ticks_diff
        self._debounce = debounce_ms
        self._o = bytearray(1)
        self._i = bytearray(1)
        self._raw = 0  # the key mask the last scan read
        self._since = 0  # when it started to read so
        self._stable = 0  # the debounced mask
        self._q = bytearray(_QUEUE)
        self._head = 0
        self._n = 0
        self._active_at = 0  # when a key was last seen down (ticks), while _idle is False
        self._idle = True  # no key for 2 s: the stamp is no longer compared (it would go stale)
        self.errors = 0  # scans the expander did not answer
        self.ghosts = 0  # scans with more than one key down (ignored)

    def _io(self, out):
        # The one bus choke point: set the expander's outputs, read its pins back.
        self._o[0] = out
        self._i2c.writeto(self._addr, self._o)
        self._i2c.readfrom_into(self._addr, self._i)
        return self._i[0]

    def scan(self, now):
        try:
            m = 0
            for r in range(4):
                v = self._io(0xFF ^ (1 << r))
                m |= ((v >> 4) ^ 0x0F) << (r << 2)  # a column read low: that key is down
            self._io(0xFF)  # rows released between scans
        except OSError:
            self.errors += 1
            return
        if m:
            self._active_at = now
            self._idle = False
        if m != self._raw:
            self._raw = m
            self._since = now
            return
        if m == self._stable or self._diff(now, self._since) < self._debounce:
            return
        new = m & ~self._stable
        self._stable = m
        if not new:
            return  # a release
        if m & (m - 1):
            self.ghosts += 1
            return
        k = 0
        while not new & 1:
            new >>= 1
            k += 1
        if self._n < _QUEUE:
            self._q[(self._head + self._n) % _QUEUE] = KEYS[k]
            self._n += 1

    def get(self):
        """The next key pressed (its character code, e.g. ord("5")), or 0."""
        if not self._n:
            return 0
        k = self._q[self._head]
        self._head = (self._head + 1) % _QUEUE
        self._n -= 1
        return k

    def down(self):
        """Whether a key is held now (debounced)."""
        return self._stable != 0

    def busy(self, now):
        """A key is down, or was within the last 2 s: the customer is typing (scan often). Once
        idle the stamp is left alone: after 2^29 ms a ticks_diff of it would turn negative and
        read as recent for days."""
        if self._raw:
            return True
        if not self._idle and self._diff(now, self._active_at) >= _BUSY_MS:
            self._idle = True
        return not self._idle
