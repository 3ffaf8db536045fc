# MicroPython-side helpers for tests that run the whole firmware app on the sim board.
import os
import json
from binascii import hexlify
from hmac256 import HmacSha256
import sim_atm90e26
from billtest import EPOCH_S

TEST_KEY = bytes(range(32))  # generated per test run by the tests themselves is not needed: it never leaves the test


def fresh_flash(path):
    try:
        os.remove(path)
    except OSError:
        pass
    return path


def board(flash, key=TEST_KEY, meter_id="t-0001", config=None, seed=1, name="sim-atm90e26", **opts):
    """A sim board; name picks the chip (sim-atm90e26, sim-atm90e32, sim-ade7953); further
    options go to the board as given (utc_start, sntp, broker; None leaves the board's default)."""
    try:
        os.umount("/flash")  # a test may boot several meters in one process
    except OSError:
        pass
    mod = sim_atm90e26 if name == "sim-atm90e26" else __import__(name.replace("-", "_"))
    o = {"meter_id": meter_id, "key": key, "flash": flash, "seed": seed, "config": config or {}}
    for k, v in opts.items():
        if v is not None:
            o[k] = v
    return mod.build(o)


def meter(flash, **kw):
    """(board, app.Meter) booted on a sim board (arguments as board())."""
    import app
    b = board(flash, **kw)
    m = app.Meter(b)
    m.boot()
    return b, m


def run(b, m, n, ms=10000):
    """n loop steps, `ms` of simulated time before each."""
    for _ in range(n):
        b.advance(ms)
        m.step()


def unix_now(b):
    """The board's wall clock in Unix seconds, as commands and uplink messages carry it (the
    firmware keeps meter seconds; billtest counts the epoch independently of timebase.py)."""
    return b.clock.time() + EPOCH_S


def sign(key, doc):
    body = json.dumps(doc).encode()
    return hexlify(HmacSha256(key).digest(body)) + b" " + body


class Replies:
    """Collects what the app queued for the backend (tele/evt/reply) from its outbox, then the
    unnumbered answers (to refused and repeated commands) it holds in RAM for the link."""

    def __init__(self, meter):
        self.m = meter

    def drain(self):
        out = []
        ob = self.m.sync.outbox
        while ob.count:
            kind, payload = ob.peek()
            ob.pop()
            out.append((kind, json.loads(payload)))
        a = self.m.sync.answers
        while a:
            out.append((2, json.loads(a.pop(0))))
        return out

    def replies(self):
        return [d for k, d in self.drain() if k == 2]
