# Reads the text on an emulated display back from its pixels, with framebuf's own 8x8 font (the
# font the firmware draws with): every 8x8 cell of a 128x64 image is matched against each
# printable character, plain or inverted. A cell that is neither reads "?", so a test sees a
# garbled screen as garbled, never what the firmware meant to draw.
import framebuf

COLS = 16
ROWS = 8
_glyphs = None


def _table():
    global _glyphs
    if _glyphs is None:
        _glyphs = {}
        cell = bytearray(8)
        fb = framebuf.FrameBuffer(cell, 8, 8, framebuf.MONO_VLSB)
        for c in range(32, 127):
            fb.fill(0)
            fb.text(chr(c), 0, 0, 1)
            key = bytes(cell)
            if key not in _glyphs:  # the space is first: a blank cell reads " "
                _glyphs[key] = (chr(c), False)
            inv = bytes(b ^ 0xFF for b in cell)
            if inv not in _glyphs:
                _glyphs[inv] = (chr(c), True)
    return _glyphs


def read(frame, width=128):
    """[(text, inverse), ...] per text row; inverse: the row's cells are all light on dark
    inverted (a banner). A row mixing both reports the first cell's."""
    t = _table()
    rows = []
    for r in range(ROWS):
        chars = []
        inv = None
        for c in range(COLS):
            i = r * width + c * 8
            g = t.get(bytes(frame[i:i + 8]))
            if g is None:
                chars.append("?")
                continue
            chars.append(g[0])
            if inv is None and g[0] != " ":
                inv = g[1]
            if g[0] == " " and inv is None and g[1]:
                inv = True
        rows.append(("".join(chars), bool(inv)))
    return rows


def lines(frame, width=128):
    """The rows' text, trailing blanks removed."""
    return [t.rstrip() for t, _ in read(frame, width)]


def text(frame, width=128):
    """The whole screen as one string, rows joined by newlines, blank rows kept."""
    return "\n".join(lines(frame, width))
