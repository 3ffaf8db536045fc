# MicroPython-side helpers for tests of the customer interface on the sim board: a meter with
# the emulated display, keypad and buzzer, keys typed at a human pace while the main loop's
# keypad slices run, and the screen read back from the display's pixels (simhw.screentext).
import mptest
import simkit
from simhw import screentext

SLICE_MS = 20  # as main.loop polls the keypad between ticks


class Load:
    """A steady load in place of the household (watts settable)."""
    pf_milli = 1000

    def __init__(self, w):
        self.w = w

    def power_cut(self):
        pass

    def power_w(self, utc, dt_s):
        return self.w


def meter(flash, config=None, load_w=None, **kw):
    cfg = {"customer": {"currency": "KES", "scroll_s": 0, "sequence": [
        "credit", "import", "export", "rate", "power", "id", "time", "meters"]}}
    cfg.update(config or {})
    b, m = simkit.meter(simkit.fresh_flash(flash), config=cfg, customer=True, **kw)
    if load_w is not None:
        b.loads[0] = b.load = Load(load_w)
    n = 0
    while not b.relay.closed and m.relay.state == 0 and n < 900:  # the power-up delay (docs/relay.md)
        b.advance(1000)
        m.step()
        n += 1
    return b, m


def run(b, m, seconds):
    """Let whole seconds pass, one meter step each (no keypad slices: nobody types)."""
    for _ in range(seconds):
        b.advance(1000)
        m.step()


def wait(b, m, ms):
    """Let ms pass as the device loop would: keypad slices, a meter step each second."""
    t = 0
    while t < ms:
        b.advance(SLICE_MS)
        t += SLICE_MS
        m.ui.poll(b.clock.ticks_ms())
        if t % 1000 == 0:
            m.step()


def press(b, m, keys, hold=120, gap=120):
    """Type `keys` on the keypad ("#" enters, "*" deletes, "A"-"D" the function keys)."""
    b.keys.type(keys, hold, gap)
    n = 0
    while b.keys.busy() and n < 20000:
        wait(b, m, SLICE_MS)
        n += 1
    wait(b, m, 100)


def lines(b):
    return screentext.lines(b.oled.visible())


def banner(b):
    """The top row's text if it is shown inverted (a banner), else None."""
    t, inv = screentext.read(b.oled.visible())[0]
    return t.strip() if inv else None


def shows(b, want, msg=""):
    """Check every string in `want` is on the screen (each within one row)."""
    got = lines(b)
    for w in want:
        mptest.check(any(w in line for line in got), "%s: %r not on the screen %r" % (msg, w, got))
    return got


def money(minor, dec=2):
    """Minor units as the display should print them, formatted independently of the firmware."""
    neg = minor < 0
    s = "%d" % abs(minor)
    if dec:
        s = "0" * (dec + 1 - len(s)) + s
        s = s[:-dec] + "." + s[-dec:]
    return ("-" if neg else "") + s
