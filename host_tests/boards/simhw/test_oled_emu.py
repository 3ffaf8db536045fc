"""The SSD1306 driver (firmware/ssd1306.py) against the controller emulator, read back from the
glass with framebuf's font (simhw/screentext.py): every printable character plain and inverted,
the controller's addressing modes and remaps, and a display that is off or set up the wrong way
round reads as blank or garbled, never as what the firmware meant to show."""

USES_MICROPYTHON = True

CASES = r"""
import framebuf, mptest
import ssd1306
from simhw.i2cbus import SimI2C
from simhw.oled_emu import Ssd1306Emu
from simhw import screentext

emu = Ssd1306Emu()
bus = SimI2C({0x3C: emu})
d = ssd1306.SSD1306(bus)
mptest.check(not emu.lit(), "dark before set-up")
mptest.check(d.init() and emu.lit(), "the set-up switches the panel and its pump on")
chars = "".join(chr(c) for c in range(32, 127))
rows = [chars[i:i + 16] for i in range(0, len(chars), 16)]
d.fb.fill(0)
for r, t in enumerate(rows):
    if r == 1:
        d.fb.fill_rect(0, 8, 128, 8, 1)
    d.fb.text(t, 0, r * 8, 0 if r == 1 else 1)
mptest.check(d.show(), "sent")
got = screentext.read(emu.visible())
for r, t in enumerate(rows):
    mptest.eq(got[r][0].rstrip(), t.rstrip(), "row %d read back" % r)
mptest.eq(got[1][1], True, "row 1 is inverted")
mptest.eq(got[0][1], False, "row 0 is not")
mptest.eq(emu.frames, 1, "one whole frame in horizontal addressing")

# The controller's own view: inversion, display off, all-on.
emu._command(0xA7)
mptest.eq(screentext.read(emu.visible())[0], (rows[0], True), "inverted panel reads inverted")
emu._command(0xA6)
emu._command(0xAE)
mptest.eq(screentext.lines(emu.visible()), [""] * 8, "display off: blank glass")
emu._command(0xAF)

# Mounted/set up the wrong way (segment remap off): the text is mirrored and does not read.
emu._command(0xA0)
mptest.check(screentext.lines(emu.visible())[2] != rows[2].rstrip(), "mirrored: garbled")
emu._command(0xA1)

# Page addressing (the controller's reset default): data goes where the page/column commands say.
emu.reset()
emu.on = emu.pump = True
emu.seg_remap = emu.com_remap = True
bus.writeto(0x3C, b"\x00\xb2\x00\x10")  # page 2, column 0
cell = bytearray(8)
fb = framebuf.FrameBuffer(cell, 8, 8, framebuf.MONO_VLSB)
fb.text("Z", 0, 0, 1)
bus.writevto(0x3C, (b"\x40", cell))
mptest.eq(screentext.lines(emu.visible())[2], "Z" + rows[2][1:], "page mode wrote one cell; the RAM kept the rest")

# A display that stops answering: counted, set up again on the next show.
bus.failing = True
mptest.check(not d.show(), "no answer")
mptest.eq(d.errors, 1, "one error counted")
mptest.eq(d.ready, False, "to be set up again")
bus.failing = False
emu.reset()  # it lost power meanwhile
mptest.check(d.show() and emu.lit(), "set up again and shown")
mptest.eq(screentext.lines(emu.visible())[0], rows[0], "the frame is back")
mptest.done()
"""


def test_driver_to_glass_and_back(mpy):
    res = mpy(CASES, heap="256k")
    assert res.result["ok"], res.result["failures"]
    assert res.result["checks"] >= 15
