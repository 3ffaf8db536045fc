"""The simulated meter's OLED frames as PNGs: one per frame and a captioned contact sheet.

    python tools/screens.py DIR [--scale N] [--columns N]

DIR/screens.jsonl: one {"n", "t" (Unix seconds, UTC), "text", "why"?} per line;
DIR/frames/NNNN.bin: 1024 bytes, 128x64 MONO_VLSB (byte page*128+x, bit y%8, LSB top, 1 = lit).
Writes DIR/screen-NNNN.png and DIR/contact-sheet.png and prints each path written. Bad input is
found before anything is written: exit 2 with the reason on stderr.
Standard library only (PNG by zlib/struct, captions in a built-in 3x5 font), so it runs anywhere.
"""
import argparse
import json
import struct
import sys
import zlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

W, H = 128, 64
FRAME_BYTES = W * H // 8
BORDER = 2
LIT, BG, BEZEL = b"\xe8\xf4\xff", b"\x05\x08\x0c", b"\x2a\x32\x3c"  # OLED on, OLED off, dark border
SHEET_BG, INK = b"\xff\xff\xff", b"\x20\x20\x20"
PAD = 8  # sheet margin and gap between cells
FONT_SCALE = 2
CAPTION_H = 5 * FONT_SCALE + 6  # glyph height plus space above and below
UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

# 3x5 glyphs, rows top to bottom, "1" = ink. Only what captions use: "0012  05 14:30".
FONT = {
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111", "3": "111001111001111",
    "4": "101101111001001", "5": "111100111001111", "6": "111100111101111", "7": "111001001001001",
    "8": "111101111101111", "9": "111101111001111", ":": "000010000010000",
    "-": "000000111000000", " ": "000000000000000",
}


class ScreensError(Exception):
    pass


def png_bytes(width, height, rgb_rows):
    """An 8-bit RGB PNG; rgb_rows: `height` bytes-likes of width*3 bytes each (R, G, B)."""
    raw = bytearray()
    for row in rgb_rows:
        if len(row) != width * 3:
            raise ValueError("row of %d bytes, expected %d" % (len(row), width * 3))
        raw += b"\x00" + bytes(row)  # filter type 0 (none) per row
    if len(raw) != height * (width * 3 + 1):
        raise ValueError("expected %d rows" % height)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(bytes(raw), 9)) + chunk(b"IEND", b""))


def frame_to_pixels(buf):
    """64 rows of 128 ints (0/1) from a MONO_VLSB frame."""
    if len(buf) != FRAME_BYTES:
        raise ValueError("frame is %d bytes, expected %d" % (len(buf), FRAME_BYTES))
    return [[(buf[(y >> 3) * W + x] >> (y & 7)) & 1 for x in range(W)] for y in range(H)]


def screen_rows(pixels, scale):
    """RGB rows of the frame scaled by `scale` (nearest neighbour) inside the dark border."""
    w = W * scale + 2 * BORDER
    edge = BEZEL * w
    side = BEZEL * BORDER
    rows = [edge] * BORDER
    for prow in pixels:
        line = side + b"".join((LIT if p else BG) * scale for p in prow) + side
        rows += [line] * scale
    return rows + [edge] * BORDER


def meter_time(t):
    """'dd hh:mm' (UTC) of a Unix time."""
    return (UNIX_EPOCH + timedelta(seconds=t)).strftime("%d %H:%M")


def caption_rows(text, width):
    """`width` pixels wide, CAPTION_H high: `text` in the built-in font, left-aligned."""
    canvas = [bytearray(SHEET_BG * width) for _ in range(CAPTION_H)]
    x0 = 0
    for ch in text:
        bits = FONT.get(ch, FONT[" "])
        for i, b in enumerate(bits):
            if b == "1":
                gx, gy = x0 + (i % 3) * FONT_SCALE, 3 + (i // 3) * FONT_SCALE
                for dy in range(FONT_SCALE):
                    for dx in range(FONT_SCALE):
                        if gx + dx < width:
                            canvas[gy + dy][(gx + dx) * 3:(gx + dx) * 3 + 3] = INK
        x0 += 4 * FONT_SCALE
    return canvas


def load(d):
    """[(record, frame bytes)] in file order; raises ScreensError before anything is written."""
    d = Path(d)
    if not d.is_dir():
        raise ScreensError("%s: no such directory" % d)
    index = d / "screens.jsonl"
    if not index.is_file():
        raise ScreensError("%s: missing" % index)
    out, seen = [], set()
    for lineno, line in enumerate(index.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = "%s:%d" % (index, lineno)
        try:
            rec = json.loads(line)
        except ValueError as e:
            raise ScreensError("%s: not JSON (%s)" % (where, e))
        if not isinstance(rec, dict):
            raise ScreensError("%s: not a JSON object" % where)
        missing = [k for k in ("n", "t", "text") if k not in rec]
        if missing:
            raise ScreensError("%s: missing %s" % (where, ", ".join(missing)))
        n, t = rec["n"], rec["t"]
        # bool is an int in Python; n names a 4-digit file.
        if type(n) is not int or not 0 <= n <= 9999 or type(t) is not int:
            raise ScreensError("%s: n must be an integer 0..9999 and t an integer" % where)
        if not isinstance(rec["text"], list):
            raise ScreensError("%s: text must be a list" % where)
        if n in seen:
            raise ScreensError("%s: frame %d listed twice" % (where, n))
        seen.add(n)
        fpath = d / "frames" / ("%04d.bin" % n)
        if not fpath.is_file():
            raise ScreensError("%s: frame file %s missing" % (where, fpath))
        data = fpath.read_bytes()
        if len(data) != FRAME_BYTES:
            raise ScreensError("%s: %d bytes, expected %d" % (fpath, len(data), FRAME_BYTES))
        out.append((rec, data))
    if not out:
        raise ScreensError("%s: no frames" % index)
    return out


def _check(name, v):
    if type(v) is not int or not 1 <= v <= 64:
        raise ScreensError("%s must be an integer 1..64" % name)


def render(d, scale=3, _frames=None):
    """Write DIR/screen-NNNN.png per frame; returns their paths."""
    _check("scale", scale)
    frames = _frames if _frames is not None else load(d)
    paths = []
    for rec, data in frames:
        rows = screen_rows(frame_to_pixels(data), scale)
        p = Path(d) / ("screen-%04d.png" % rec["n"])
        p.write_bytes(png_bytes(len(rows[0]) // 3, len(rows), rows))
        paths.append(p)
    return paths


def sheet_size(count, columns, scale):
    """(width, height) of the contact sheet: min(count, columns) cells across."""
    cols = min(count, columns)
    tw, th = W * scale + 2 * BORDER, H * scale + 2 * BORDER + CAPTION_H
    return PAD + cols * (tw + PAD), PAD + -(-count // cols) * (th + PAD)


def contact_sheet(d, columns=6, scale=2, _frames=None):
    """Write DIR/contact-sheet.png: every frame with 'NNNN  dd hh:mm' under it; returns its path."""
    _check("columns", columns)
    _check("scale", scale)
    frames = _frames if _frames is not None else load(d)
    sw, sh = sheet_size(len(frames), columns, scale)
    tw = W * scale + 2 * BORDER
    canvas = [bytearray(SHEET_BG * sw) for _ in range(sh)]
    for i, (rec, data) in enumerate(frames):
        x = PAD + (i % columns) * (tw + PAD)
        y = PAD + (i // columns) * (H * scale + 2 * BORDER + CAPTION_H + PAD)
        cell = screen_rows(frame_to_pixels(data), scale)
        cell += caption_rows("%04d  %s" % (rec["n"], meter_time(rec["t"])), tw)
        for k, row in enumerate(cell):
            canvas[y + k][x * 3:x * 3 + len(row)] = row
    p = Path(d) / "contact-sheet.png"
    p.write_bytes(png_bytes(sw, sh, canvas))
    return p


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--scale", type=int, default=3, help="per-frame PNG scale (the sheet uses 2)")
    ap.add_argument("--columns", type=int, default=6)
    a = ap.parse_args(argv)
    try:
        _check("--scale", a.scale)
        _check("--columns", a.columns)
        frames = load(a.dir)  # everything checked before the first write
        paths = render(a.dir, a.scale, _frames=frames) + [contact_sheet(a.dir, a.columns, _frames=frames)]
    except ScreensError as e:
        print("screens: %s" % e, file=sys.stderr)
        return 2
    for p in paths:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
