"""tools/screens.py: PNGs of the meter's OLED frames, checked by decoding what was written."""
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

import screens

TOOL = Path(__file__).resolve().parents[2] / "tools" / "screens.py"
LIT, BG, BEZEL = (0xE8, 0xF4, 0xFF), (0x05, 0x08, 0x0C), (0x2A, 0x32, 0x3C)
T0 = 8 * 86400 + 14 * 3600 + 30 * 60 + 59  # Unix seconds: 1970-01-09 14:30:59 UTC


def decode_png(data):
    """(width, height, rows of (r, g, b)) of an 8-bit RGB PNG, every chunk CRC checked."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        assert struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0] == zlib.crc32(kind + body), kind
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    w, h, depth, ctype = ihdr[:4]
    assert (depth, ctype) == (8, 2)
    raw = zlib.decompress(idat)
    assert len(raw) == h * (3 * w + 1)
    rows = []
    for y in range(h):
        line = raw[y * (3 * w + 1):(y + 1) * (3 * w + 1)]
        assert line[0] == 0  # the writer uses filter 0 only
        rows.append([tuple(line[1 + 3 * x:4 + 3 * x]) for x in range(w)])
    return w, h, rows


def frame_from(lit):
    """MONO_VLSB bytes with the pixels (x, y) in `lit` set."""
    buf = bytearray(1024)
    for x, y in lit:
        buf[(y // 8) * 128 + x] |= 1 << (y % 8)
    return bytes(buf)


CORNERS = {(0, 0), (127, 0), (0, 63), (127, 63), (5, 7), (5, 8), (64, 33)}  # page edges too
CHECKER = {(x, y) for x in range(128) for y in range(64) if (x + y) % 2}


def make_dir(d, frames, t0=T0):
    (d / "frames").mkdir(parents=True)
    with open(d / "screens.jsonl", "w") as f:
        for n, lit in enumerate(frames):
            f.write(json.dumps({"n": n, "t": t0 + 60 * n, "text": [""] * 8, "why": "token"}) + "\n")
            (d / "frames" / ("%04d.bin" % n)).write_bytes(frame_from(lit))
    return d


def test_frame_to_pixels_reads_vlsb_lsb_top():
    px = screens.frame_to_pixels(frame_from(CORNERS))
    assert len(px) == 64 and all(len(r) == 128 for r in px)
    assert {(x, y) for y in range(64) for x in range(128) if px[y][x]} == CORNERS
    with pytest.raises(ValueError):
        screens.frame_to_pixels(b"\x00" * 1023)


@pytest.mark.parametrize("scale", [1, 3])
def test_render_pixels_match_frame_bits_scaled(tmp_path, scale):
    d = make_dir(tmp_path / "s", [CORNERS, CHECKER])
    paths = screens.render(d, scale=scale)
    assert [p.name for p in paths] == ["screen-0000.png", "screen-0001.png"]
    b = 2
    for path, lit in zip(paths, (CORNERS, CHECKER)):
        w, h, rows = decode_png(path.read_bytes())
        assert (w, h) == (128 * scale + 2 * b, 64 * scale + 2 * b)
        assert rows[0][0] == rows[1][w - 1] == rows[h - 1][5] == rows[10][1] == BEZEL
        for y in range(64):
            for x in range(128):
                want = LIT if (x, y) in lit else BG
                # every pixel of the scale x scale block, offset by the border
                for dy in range(scale):
                    for dx in range(scale):
                        assert rows[b + y * scale + dy][b + x * scale + dx] == want, (x, y)


def test_png_readable_by_pillow_when_present(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    d = make_dir(tmp_path / "s", [CHECKER])
    im = Image.open(screens.render(d, scale=2)[0])
    im.load()
    assert im.size == (260, 132) and im.mode == "RGB"
    assert im.getpixel((2 + 2 * 1, 2)) == LIT and im.getpixel((2, 2)) == BG  # (1,0) lit, (0,0) not


def test_png_bytes_rejects_wrong_row_length():
    with pytest.raises(ValueError):
        screens.png_bytes(2, 1, [b"\x00" * 5])
    w, h, rows = decode_png(screens.png_bytes(2, 1, [b"\x01\x02\x03\x04\x05\x06"]))
    assert rows == [[(1, 2, 3), (4, 5, 6)]]


@pytest.mark.parametrize("count,columns", [(1, 6), (7, 3), (6, 6), (13, 6)])
def test_contact_sheet_dimensions_follow_count_and_columns(tmp_path, count, columns):
    d = make_dir(tmp_path / "s", [CORNERS] * count)
    w, h, rows = decode_png(screens.contact_sheet(d, columns=columns, scale=2).read_bytes())
    cols, nrows = min(count, columns), -(-count // columns)
    tile_w, tile_h = 128 * 2 + 4, 64 * 2 + 4 + screens.CAPTION_H
    assert (w, h) == (8 + cols * (tile_w + 8), 8 + nrows * (tile_h + 8))
    # the last frame's cell: border at its corner, its (0,0) pixel lit, ink in its caption
    i = count - 1
    x0, y0 = 8 + (i % columns) * (tile_w + 8), 8 + (i // columns) * (tile_h + 8)
    assert rows[y0][x0] == BEZEL and rows[y0 + 2][x0 + 2] == LIT and rows[y0 + 4][x0 + 4] == BG
    caption = rows[y0 + 64 * 2 + 4:y0 + tile_h]
    assert any(p == (0x20, 0x20, 0x20) for r in caption for p in r[x0:x0 + tile_w])


def test_caption_time_is_meter_epoch_utc():
    assert screens.meter_time(T0) == "09 14:30"
    assert screens.meter_time(0) == "01 00:00"


def run(*args):
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], capture_output=True, text=True)


def test_cli_writes_both_and_lists_them(tmp_path):
    d = make_dir(tmp_path / "s", [CORNERS, CHECKER, set()])
    r = run(d, "--scale", 2, "--columns", 2)
    assert r.returncode == 0, r.stderr
    out = r.stdout.split()
    assert len(out) == 4 and out[-1].endswith("contact-sheet.png")
    assert all(Path(p).is_file() for p in out)
    assert decode_png(Path(out[0]).read_bytes())[:2] == (260, 132)


def _bad_json(d):
    (d / "screens.jsonl").write_text('{"n": 0, "t": 1, "text": []}\n{oops\n')


def _missing_key(d):
    (d / "screens.jsonl").write_text('{"n": 0, "t": 1, "text": []}\n{"n": 1, "text": []}\n')


BAD = {
    "dir missing": lambda d: d.rename(d.with_name("gone")),
    "index missing": lambda d: (d / "screens.jsonl").unlink(),
    "not json": _bad_json,
    "missing key": _missing_key,
    "frame missing": lambda d: (d / "frames" / "0001.bin").unlink(),
    "frame short": lambda d: (d / "frames" / "0001.bin").write_bytes(b"\x00" * 1023),
    "frame long": lambda d: (d / "frames" / "0000.bin").write_bytes(b"\x00" * 1025),
    "no frames": lambda d: (d / "screens.jsonl").write_text("\n"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_cli_bad_input_exit_2_writes_nothing(tmp_path, case):
    d = make_dir(tmp_path / "s", [CORNERS, CHECKER])
    BAD[case](d)
    r = run(d)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stdout == "" and r.stderr.startswith("screens: ") and "Traceback" not in r.stderr
    assert not list(tmp_path.rglob("*.png"))
    with pytest.raises(screens.ScreensError):
        screens.render(d)
