"""The character grid behind the customer display (firmware/textscreen.py): number, money and
countdown formatting, clipping at the edge, and drawing only what changed."""
import textscreen


def row(s, r):
    return bytes(s.grid[r * 16:(r + 1) * 16]).decode()


def test_numbers_right_aligned_with_decimals_and_sign():
    s = textscreen.TextScreen()
    assert s.num(0, 16, 123456, 2) == 9
    assert row(s, 0) == " " * 9 + "1234.56"
    s.num(1, 16, 5, 2)
    s.num(2, 16, -5, 2)
    s.num(3, 8, 7, 0, 2)
    s.num(4, 16, 0)
    assert row(s, 1).strip() == "0.05"
    assert row(s, 2).strip() == "-0.05"
    assert row(s, 3) == "      07        "
    assert row(s, 4).strip() == "0"
    s.num(5, 16, 10 ** 20, 3)  # wider than the row: cut at the left edge, never outside it
    assert len(row(s, 5)) == 16 and row(s, 6) == " " * 16


def test_text_clips_and_marks_unprintable_bytes():
    s = textscreen.TextScreen()
    assert s.text(0, 10, b"ABCDEFGHIJ") == 16
    assert row(s, 0) == "          ABCDEF"
    s.text(1, 0, b"a\x01b")
    assert row(s, 1).startswith("a?b")
    s.center(2, b"MID")
    assert row(s, 2) == "      MID       "


def test_countdown_as_minutes_or_hours():
    s = textscreen.TextScreen()
    assert s.clock(0, 3, 100) == 7
    assert row(s, 0) == "   1:40         "
    s.clock(1, 0, 3700)
    assert row(s, 1).startswith("1:01 ")
    s.clock(2, 0, -5)
    assert row(s, 2).startswith("0:00 ")
    s.clock(3, 0, 600)
    assert row(s, 3).startswith("10:00 ")


class Fb:
    def __init__(self):
        self.calls = []

    def fill(self, c):
        self.calls.append(("fill", c))

    def fill_rect(self, x, y, w, h, c):
        self.calls.append(("rect", y, c))

    def text(self, ch, x, y, c):
        self.calls.append(("text", ch, x, y, c))


def test_draws_only_when_changed_and_inverts_banners():
    s = textscreen.TextScreen()
    fb = Fb()
    s.text(1, 0, b"HI")
    s.invert(0)
    s.text(0, 0, b"X")
    assert s.draw(fb)
    assert ("rect", 0, 1) in fb.calls
    assert ("text", "X", 0, 0, 0) in fb.calls  # dark on light in the banner row
    assert ("text", "H", 0, 8, 1) in fb.calls and ("text", "I", 8, 8, 1) in fb.calls
    n = len(fb.calls)
    s.clear()
    s.text(1, 0, b"HI")
    s.invert(0)
    s.text(0, 0, b"X")
    assert not s.draw(fb) and len(fb.calls) == n  # recomposed the same: nothing drawn
    s.text(1, 1, b"O")
    assert s.draw(fb)
    s.forget()
    assert s.draw(fb)  # after forget() it draws again even unchanged
