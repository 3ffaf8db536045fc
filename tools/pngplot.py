"""Tiny dependency-free PNG charts for the headend: stacked panels of step/line series.

    from pngplot import Chart
    c = Chart(800, 500)
    c.panel("LOAD W", xs, ys, bars=True)
    c.panel("BALANCE", xs, ys2)
    c.save("out.png")

Only integers go in; labels use a built-in 3x5 pixel font (digits, capitals, a few signs).
"""
import struct
import zlib

_FONT = {  # 3x5 glyphs, rows top to bottom, 3 bits each (MSB = left)
    "0": "75557", "1": "26227", "2": "71747", "3": "71717", "4": "55711", "5": "74717", "6": "74757",
    "7": "71111", "8": "75757", "9": "75717", "A": "25755", "B": "65656", "C": "34443", "D": "65556",
    "E": "74647", "F": "74644", "G": "34553", "H": "55755", "I": "72227", "J": "11153", "K": "55655",
    "L": "44447", "M": "57555", "N": "65555", "O": "25552", "P": "65644", "Q": "25573", "R": "65655",
    "S": "34216", "T": "72222", "U": "55557", "V": "55552", "W": "55575", "X": "55255", "Y": "55222",
    "Z": "71247", "-": "00700", ".": "00002", ":": "02020", " ": "00000", "/": "11244", "%": "51245",
}
WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
GREY = (210, 210, 210)
BLUE = (40, 90, 200)
GREEN = (30, 150, 60)
RED = (200, 40, 40)


class Canvas:
    def __init__(self, w, h, bg=WHITE):
        self.w = w
        self.h = h
        self.px = bytearray(bytes(bg) * (w * h))

    def set(self, x, y, c):
        if 0 <= x < self.w and 0 <= y < self.h:
            i = 3 * (y * self.w + x)
            self.px[i:i + 3] = bytes(c)

    def rect(self, x0, y0, x1, y1, c):
        for y in range(max(0, min(y0, y1)), min(self.h, max(y0, y1) + 1)):
            for x in range(max(0, min(x0, x1)), min(self.w, max(x0, x1) + 1)):
                i = 3 * (y * self.w + x)
                self.px[i:i + 3] = bytes(c)

    def line(self, x0, y0, x1, y1, c):
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        err = dx + dy
        while True:
            self.set(x0, y0, c)
            if x0 == x1 and y0 == y1:
                return
            e2 = 2 * err
            if e2 >= dy:
                err += dy
                x0 += sx
            if e2 <= dx:
                err += dx
                y0 += sy

    def text(self, x, y, s, c=BLACK, scale=2):
        for ch in s.upper():
            g = _FONT.get(ch, _FONT[" "])
            for r, bits in enumerate(g):
                v = int(bits, 16)
                for col in range(3):
                    if v & (4 >> col):
                        self.rect(x + col * scale, y + r * scale, x + col * scale + scale - 1,
                                  y + r * scale + scale - 1, c)
            x += 4 * scale

    def png(self):
        raw = b"".join(b"\x00" + bytes(self.px[3 * y * self.w:3 * (y + 1) * self.w]) for y in range(self.h))

        def chunk(kind, data):
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", self.w, self.h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


class Chart:
    def __init__(self, w=900, h=560, title=""):
        self.w = w
        self.h = h
        self.title = title
        self.panels = []

    def panel(self, label, xs, ys, bars=False, color=BLUE, fmt=str, xfmt=None):
        if len(xs) != len(ys):
            raise ValueError("xs and ys differ in length")
        self.panels.append((label, list(xs), list(ys), bars, color, fmt, xfmt))

    def render(self):
        c = Canvas(self.w, self.h)
        top = 30 if self.title else 10
        if self.title:
            c.text(10, 8, self.title, BLACK, 3)
        n = max(1, len(self.panels))
        ph = (self.h - top - 10) // n
        for k, (label, xs, ys, bars, color, fmt, xfmt) in enumerate(self.panels):
            self._draw(c, 90, top + k * ph + 20, self.w - 20, top + (k + 1) * ph - 30, label, xs, ys, bars, color,
                       fmt, xfmt)
        return c

    def _draw(self, c, x0, y0, x1, y1, label, xs, ys, bars, color, fmt, xfmt=None):
        c.text(x0, y0 - 16, label, BLACK, 2)
        lo = min(0, min(ys)) if ys else 0
        hi = max(ys) if ys else 1
        if hi <= lo:
            hi = lo + 1
        for i in range(5):  # grid lines and y labels at 0, 1/4 .. 4/4
            y = y1 - (y1 - y0) * i // 4
            c.line(x0, y, x1, y, GREY)
            c.text(4, y - 5, fmt(lo + (hi - lo) * i // 4)[:10], BLACK, 2)
        c.line(x0, y0, x0, y1, BLACK)
        c.line(x0, y1, x1, y1, BLACK)
        if not xs:
            c.text(x0 + 10, (y0 + y1) // 2, "NO DATA", RED, 2)
            return
        xa, xb = xs[0], xs[-1] if xs[-1] > xs[0] else xs[0] + 1

        def px(x):
            return x0 + (x - xa) * (x1 - x0) // (xb - xa)

        def py(y):
            return y1 - (y - lo) * (y1 - y0) // (hi - lo)

        if xfmt is not None:  # first and last x under the axis
            c.text(x0, y1 + 4, xfmt(xs[0]), BLACK, 2)
            last = xfmt(xs[-1])
            c.text(x1 - 8 * len(last), y1 + 4, last, BLACK, 2)
        zero = py(0)
        prev = None
        for i, (x, y) in enumerate(zip(xs, ys)):
            if bars:
                left = px(xs[i - 1]) + 1 if i else px(x)
                c.rect(left, py(y), px(x), zero, color)
            else:
                if prev is not None:
                    c.line(prev[0], prev[1], px(x), py(y), color)
                prev = (px(x), py(y))

    def save(self, path):
        data = self.render().png()
        with open(path, "wb") as f:
            f.write(data)
        return len(data)
