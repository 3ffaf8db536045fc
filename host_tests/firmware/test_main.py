"""firmware/main.py: board selection, the loop, Ctrl-C to the REPL, saved settings."""

SCRIPT = r"""
import sys, os, json, mptest, simkit, main, app
flash = sys.argv[1]

class Interrupting:
    # The sim board, but Ctrl-C arrives during the 5th tick.
    def __init__(self, b):
        self.b = b
        self.n = 0
    def __getattr__(self, k):
        return getattr(self.b, k)
    def advance(self, ms):
        self.n += 1
        if self.n == 5:
            raise KeyboardInterrupt
        self.b.advance(ms)

mptest.raises(ImportError, main.load_board, "no-such-board", {})
mod_board = main.load_board("sim-atm90e26", {"meter_id": "x", "flash": flash + "2"})
mptest.check(mod_board.config["tick_ms"] > 0, "board config present")
mptest.eq(mod_board.meter_id, "x", "load_board builds the named board")
os.umount("/flash")
b = simkit.board(flash, config={"opening_balance": 500})
m = main.start(Interrupting(b))
mptest.check(app.current is m, "app.current is the live meter")
n = main.loop(m)
mptest.eq(n, 4, "loop stops at Ctrl-C after 4 whole ticks")
t = m.clock.time()
mptest.eq(main.loop(m, 3), 3, "loop resumes for a bounded number of ticks")
mptest.eq(m.clock.time() - t, 3, "each tick is tick_ms of board time")
with open("/flash/settings.json", "w") as f:
    f.write('{"commit_wh": 7, "low1": 300}')
mptest.eq(main.apply_settings(b), 2, "saved settings are applied")
mptest.eq(b.config["commit_wh"], 7, "top-level setting")
mptest.eq(b.config["credit"]["low1"], 300, "credit setting goes under credit")
mptest.eq(b.config["credit"]["low2"], 50, "other credit settings kept")
try:
    main.board_name()
    mptest.check(False, "board_name without /board.txt or board_config must fail")
except RuntimeError as e:
    mptest.check("board.txt" in str(e), "clear message")
mptest.done()
"""


def test_main_loop_interrupt_resume_and_settings(mpy, tmp_path):
    r = mpy(SCRIPT, str(tmp_path / "f.img"), heap="192k")
    assert r.result["ok"], r.result
    assert "meter loop paused" in r.stdout
    assert "from repl import *" in r.stdout
