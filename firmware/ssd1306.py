# SSD1306 128x64 OLED on I2C (the customer display; why this part: docs/customer.md).
# The frame lives in one preallocated buffer drawn through framebuf; show() sends it whole
# (1 KiB, about 25 ms at 400 kHz) and only when the caller changed it. Every transfer goes
# through _send(), the one bus choke point: a display that stops answering is counted and
# retried at the next show(), never an exception into the meter loop.
from micropython import const
import framebuf

ADDR = const(0x3C)
WIDTH = const(128)
HEIGHT = const(64)
# Set-up as one command stream (control byte 0x00): display off, horizontal addressing, start
# line 0, segment remap and COM scan remapped (upright on the usual module), 64 rows, no offset,
# oscillator default, pre-charge and VCOMH for the internal pump, COM pins alternative, contrast,
# RAM shown (not all on), not inverted, charge pump on, display on.
_INIT = b"\x00\xae\x20\x00\x40\xa1\xc8\xa8\x3f\xd3\x00\xd5\x80\xd9\xf1\xda\x12\xdb\x30\x81\xcf\xa4\xa6\x8d\x14\xaf"
_WINDOW = b"\x00\x21\x00\x7f\x22\x00\x07"  # columns 0-127, pages 0-7: the whole frame follows
_DATA = b"\x40"  # control byte: a stream of display data


class SSD1306:
    def __init__(self, i2c, addr=ADDR):
        self._i2c = i2c
        self._addr = addr
        self.buf = bytearray(WIDTH * HEIGHT // 8)
        self.fb = framebuf.FrameBuffer(self.buf, WIDTH, HEIGHT, framebuf.MONO_VLSB)
        self._frame = (_DATA, self.buf)  # one vector, built once: writevto sends it without a copy
        self._c = bytearray(3)  # control byte + a command with one argument
        self._c1 = bytearray(2)  # control byte + a one-byte command
        self.ready = False  # set-up accepted: until then every show() tries it first
        self.errors = 0  # transfers the display did not acknowledge
        self.shows = 0

    def _send(self, data, vector=False):
        try:
            if vector:
                self._i2c.writevto(self._addr, data)
            else:
                self._i2c.writeto(self._addr, data)
            return True
        except OSError:
            self.errors += 1
            self.ready = False  # it may have lost power: set it up again before the next frame
            return False

    def init(self):
        self.ready = self._send(_INIT)
        return self.ready

    def show(self):
        """Send the frame. False if the display did not answer (the frame is kept for next time)."""
        if not self.ready and not self.init():
            return False
        if self._send(_WINDOW) and self._send(self._frame, True):
            self.shows += 1
            return True
        return False

    def contrast(self, level):
        c = self._c
        c[0], c[1], c[2] = 0x00, 0x81, level & 0xFF
        return self._send(c)

    def power(self, on):
        c = self._c1
        c[0], c[1] = 0x80, 0xAF if on else 0xAE
        return self._send(c)
