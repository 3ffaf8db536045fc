# An SSD1306 128x64 OLED controller on I2C, at the level of its command set: the control byte
# (Co, D/C#), the multi-byte commands, the three addressing modes and their windows, the
# segment and COM remaps, start line, inversion, contrast, the charge pump and display on/off.
# visible() gives the image a person sees on the glass, in framebuf's MONO_VLSB layout, so a
# test reads what is shown, not what the firmware believes it drew (screentext.py decodes it).
from micropython import const

W = const(128)
H = const(64)
_PAGES = const(8)
# Argument counts of the multi-byte commands (everything else takes none).
_ARGS = {0x81: 1, 0x20: 1, 0x21: 2, 0x22: 2, 0xA8: 1, 0xD3: 1, 0xD5: 1, 0xD9: 1, 0xDA: 1,
         0xDB: 1, 0x8D: 1, 0x26: 6, 0x27: 6, 0x29: 5, 0x2A: 5, 0xA3: 2}


class Ssd1306Emu:
    def __init__(self):
        self.ram = bytearray(W * _PAGES)  # GDDRAM: page-major, one byte = 8 rows of a column
        self._args = bytearray(8)
        self.reset()
        self.frames = 0  # data bytes written that completed the last column of the last page
        self.data_bytes = 0
        self.commands = 0

    def reset(self):
        # The controller's state after its own reset (datasheet defaults).
        self.on = False
        self.pump = False
        self.contrast = 0x7F
        self.mode = 2  # page addressing
        self.col_lo, self.col_hi = 0, W - 1
        self.page_lo, self.page_hi = 0, _PAGES - 1
        self.col = 0
        self.page = 0
        self.seg_remap = False
        self.com_remap = False
        self.start = 0
        self.inverse = False
        self.all_on = False
        self.mux = H - 1
        self._cmd = -1  # the multi-byte command being received
        self._need = 0
        self._got = 0
        self._ctl = True  # the next byte is a control byte
        self._stream = False
        self._dc = 0

    # -- the bus ------------------------------------------------------------------
    def i2c_start(self):
        self._ctl = True

    def i2c_byte(self, b):
        if self._ctl:
            self._stream = not b & 0x80  # Co = 0: the rest is one stream
            self._dc = b & 0x40
            self._ctl = False
            return
        if self._dc:
            self._data(b)
        else:
            self._command(b)
        if not self._stream:
            self._ctl = True

    def i2c_read(self):
        return 0x43 if self.on else 0x03  # status: display off flag (bit 6), ID bits

    # -- commands and data --------------------------------------------------------
    def _command(self, b):
        if self._need:
            self._args[self._got] = b
            self._got += 1
            if self._got == self._need:
                self._need = 0
                self._apply(self._cmd)
            return
        self.commands += 1
        n = _ARGS.get(b, 0)
        if n:
            self._cmd, self._need, self._got = b, n, 0
            return
        if b == 0xAE or b == 0xAF:
            self.on = b == 0xAF
        elif b == 0xA0 or b == 0xA1:
            self.seg_remap = b == 0xA1
        elif b == 0xC0 or b == 0xC8:
            self.com_remap = b == 0xC8
        elif b == 0xA6 or b == 0xA7:
            self.inverse = b == 0xA7
        elif b == 0xA4 or b == 0xA5:
            self.all_on = b == 0xA5
        elif 0x40 <= b <= 0x7F:
            self.start = b - 0x40
        elif 0xB0 <= b <= 0xB7 and self.mode == 2:
            self.page = b - 0xB0
        elif b <= 0x0F and self.mode == 2:
            self.col = (self.col & 0xF0) | b
        elif 0x10 <= b <= 0x1F and self.mode == 2:
            self.col = (self.col & 0x0F) | (b - 0x10) << 4

    def _apply(self, c):
        a = self._args
        if c == 0x81:
            self.contrast = a[0]
        elif c == 0x20:
            self.mode = a[0] & 3 if a[0] & 3 != 3 else 2
        elif c == 0x21:
            self.col_lo, self.col_hi = a[0] & 0x7F, a[1] & 0x7F
            self.col = self.col_lo
        elif c == 0x22:
            self.page_lo, self.page_hi = a[0] & 7, a[1] & 7
            self.page = self.page_lo
        elif c == 0x8D:
            self.pump = bool(a[0] & 0x04)
        elif c == 0xA8:
            self.mux = a[0] & 0x3F

    def _data(self, b):
        self.data_bytes += 1
        self.ram[self.page * W + self.col] = b
        if self.mode == 0:  # horizontal: along the columns, then to the next page
            if self.col >= self.col_hi:
                self.col = self.col_lo
                if self.page >= self.page_hi:
                    self.page = self.page_lo
                    self.frames += 1
                else:
                    self.page += 1
            else:
                self.col += 1
        elif self.mode == 1:  # vertical: down the pages, then to the next column
            if self.page >= self.page_hi:
                self.page = self.page_lo
                if self.col >= self.col_hi:
                    self.col = self.col_lo
                    self.frames += 1
                else:
                    self.col += 1
            else:
                self.page += 1
        else:  # page mode: along one page, wrapping within it
            self.col = 0 if self.col >= W - 1 else self.col + 1

    # -- what is seen -------------------------------------------------------------
    def lit(self):
        """Whether the glass shows anything: the panel needs the display on and its charge pump."""
        return self.on and self.pump

    def pixel(self, x, y):
        """The pixel a person sees at (x, y), top left = (0, 0), on a module mounted the usual way
        up (the one the common 0xA1/0xC8 set-up shows upright)."""
        if not self.lit():
            return 0
        if self.all_on:
            return 1
        col = x if self.seg_remap else W - 1 - x
        row = y if self.com_remap else self.mux - y
        row = (row + self.start) % H
        v = self.ram[(row >> 3) * W + col] >> (row & 7) & 1
        return v ^ 1 if self.inverse else v

    def visible(self, out=None):
        """The image on the glass, MONO_VLSB (page-major) like a framebuf, 1024 bytes."""
        if out is None:
            out = bytearray(W * _PAGES)
        for page in range(_PAGES):
            for x in range(W):
                v = 0
                for bit in range(8):
                    v |= self.pixel(x, page * 8 + bit) << bit
                out[page * W + x] = v
        return out
