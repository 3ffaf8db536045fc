# A 4x4 key matrix on a PCA9674 I/O expander (I2C; the PCF8574's 1 MHz twin), as the customer
# presses it. The expander's pins are quasi-bidirectional: a pin written 1 is weakly high and reads
# low when something pulls it down; written 0 it is driven low. Rows are P0-P3 (the firmware drives
# one low at a time), columns P4-P7 (read): a pressed key joins its row to its column. Keys are
# pressed for a time on the board's clock, so a simulation types at any speed it likes.
LAYOUT = "123A456B789C*0#D"  # row by row, as printed on the keypad


class KeypadEmu:
    def __init__(self, clock):
        self._clock = clock
        self.out = 0xFF  # the expander's output latch (all weakly high after power-up)
        self._down = -1  # the key index held, or -1
        self._until = 0
        self._queue = []  # (key index, hold ms, gap ms) to type, from _qi on
        self._qi = 0  # read by index, never popped: taking a key must not allocate
        self._next = 0  # ticks when the queue's next key goes down
        self.presses = 0

    def press(self, key, hold_ms=150):
        """Hold `key` (a character of LAYOUT) for hold_ms from now."""
        self._down = LAYOUT.index(key)
        self._until = self._clock.ticks_add(self._clock.ticks_ms(), hold_ms)
        self.presses += 1

    def type(self, keys, hold_ms=150, gap_ms=150):
        """Queue keys to be pressed one after another (after whatever is queued)."""
        if self._qi >= len(self._queue):
            self._queue = []
            self._qi = 0
            if self._down < 0:
                self._next = self._clock.ticks_ms()
        for k in keys:
            if k != " ":
                self._queue.append((LAYOUT.index(k), hold_ms, gap_ms))

    def busy(self):
        """Keys still held or queued."""
        self._update()
        return self._down >= 0 or self._qi < len(self._queue)

    def _update(self):
        c = self._clock
        now = c.ticks_ms()
        if self._down >= 0 and c.ticks_diff(now, self._until) >= 0:
            self._down = -1
        if self._down < 0 and self._qi < len(self._queue) and c.ticks_diff(now, self._next) >= 0:
            k, hold, gap = self._queue[self._qi]
            self._qi += 1
            self._down = k
            self._until = c.ticks_add(now, hold)
            self._next = c.ticks_add(now, hold + gap)
            self.presses += 1

    # -- the bus ------------------------------------------------------------------
    def i2c_start(self):
        pass

    def i2c_byte(self, b):
        self.out = b

    def i2c_read(self):
        self._update()
        v = self.out
        k = self._down
        if k >= 0:
            row, col = k >> 2, k & 3
            if not self.out >> row & 1:  # its row is driven low: the column reads low
                v &= ~(1 << (4 + col)) & 0xFF
            if not self.out >> (4 + col) & 1:  # and the other way round
                v &= ~(1 << row) & 0xFF
        return v
