# A 16 x 8 character screen (framebuf's 8x8 font on a 128x64 display): what the customer
# interface writes, cell by cell, into a preallocated grid. draw() puts the grid into a
# framebuf only when it differs from what was last drawn, so a screen recomposed every second
# costs a comparison, and nothing here allocates: text comes as bytes constants, numbers are
# written digit by digit.
from micropython import const

COLS = const(16)
ROWS = const(8)
_CELLS = const(128)
_SPACE = const(32)
_GLYPH = tuple(chr(c) for c in range(32, 127))  # one str per character, made once


class TextScreen:
    def __init__(self):
        self.grid = bytearray(_CELLS)
        self.inv = bytearray(ROWS)  # 1: the row is drawn dark on light (a banner)
        self._shown = bytearray(_CELLS)
        self._shown_inv = bytearray(ROWS)
        self._valid = False  # nothing drawn yet
        self.clear()

    def clear(self):
        g = self.grid
        for i in range(_CELLS):
            g[i] = _SPACE
        for r in range(ROWS):
            self.inv[r] = 0

    def text(self, row, col, s):
        """Write bytes `s` from (row, col); cut at the right edge. Returns the column after it."""
        g = self.grid
        base = row * COLS
        for c in s:
            if col >= COLS:
                break
            g[base + col] = c if 32 <= c < 127 else 63  # "?"
            col += 1
        return col

    def center(self, row, s):
        n = len(s)
        return self.text(row, (COLS - n) >> 1 if n < COLS else 0, s)

    def num(self, row, end, value, decimals=0, min_digits=1):
        """Write integer `value` right-aligned to end before column `end`, with a decimal point
        `decimals` digits from the right (minor currency units as money, Wh as kWh). Returns the
        first column used."""
        g = self.grid
        base = row * COLS
        neg = value < 0
        if neg:
            value = -value
        col = end - 1
        digits = 0
        while col >= 0 and (value or digits <= decimals or digits < min_digits):
            if decimals and digits == decimals:
                g[base + col] = 46  # "."
                col -= 1
                if col < 0:
                    break
            g[base + col] = 48 + value % 10
            value //= 10
            digits += 1
            col -= 1
        if neg and col >= 0:
            g[base + col] = 45  # "-"
            col -= 1
        return col + 1

    def clock(self, row, col, seconds):
        """m:ss below an hour, else h:mm (a countdown or an age). Returns the column after it."""
        if seconds < 0:
            seconds = 0
        if seconds >= 3600:
            a, b = seconds // 3600, seconds // 60 % 60
        else:
            a, b = seconds // 60, seconds % 60
        n = 1
        t = a
        while t >= 10:
            t //= 10
            n += 1
        col = self.num(row, col + n, a) + n
        g = self.grid
        base = row * COLS
        if col + 3 > COLS:
            return col
        g[base + col] = 58  # ":"
        g[base + col + 1] = 48 + b // 10
        g[base + col + 2] = 48 + b % 10
        return col + 3

    def invert(self, row):
        self.inv[row] = 1

    def changed(self):
        if not self._valid:
            return True
        g, s = self.grid, self._shown
        for i in range(_CELLS):
            if g[i] != s[i]:
                return True
        for r in range(ROWS):
            if self.inv[r] != self._shown_inv[r]:
                return True
        return False

    def draw(self, fb):
        """Draw the grid into framebuf `fb` if it changed since the last draw. True if it did."""
        if not self.changed():
            return False
        fb.fill(0)
        g = self.grid
        for r in range(ROWS):
            y = r * 8
            fg = 1
            if self.inv[r]:
                fb.fill_rect(0, y, COLS * 8, 8, 1)
                fg = 0
            base = r * COLS
            for c in range(COLS):
                ch = g[base + c]
                if ch != _SPACE:
                    fb.text(_GLYPH[ch - 32], c * 8, y, fg)
        s = self._shown
        for i in range(_CELLS):
            s[i] = g[i]
        for r in range(ROWS):
            self._shown_inv[r] = self.inv[r]
        self._valid = True
        return True

    def forget(self):
        """Draw again next time (the display lost its frame, e.g. it was powered off)."""
        self._valid = False
