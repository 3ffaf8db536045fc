# The technician's REPL on a simulated meter (`make repl-sim`; started by tools/repl_sim.py with
# `micropython -i`). The sim board runs the real firmware; its time is paced to run `speed` times
# as fast as the wall clock (1: like a meter on the bench), so resume() meters in real time until
# Ctrl-C and calibrate() waits the chip's averaging seconds as on a device. The front end of this
# unit is a few percent off the board's calibration, so a calibration has something to correct;
# reference() reads the reference instruments a technician would clamp on.
#   micropython -i tools/repl_sim_mp.py BOARD FLASH SPEED LOAD_W KEY_HEX
import sys
import time
from binascii import unhexlify

import main

_board_name, _flash, _speed, _load_w = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
_key = unhexlify(sys.argv[5])  # this simulated meter's key (tools/repl_sim.py keeps one per flash)
# This unit's parts: voltage reads 2 % low and current 3 % high with the board's calibration
# (the gain registers that would make it exact); on the ATM90E26 also a phase error and a current
# offset, for the phase and offset steps.
_TRUE_CAL = {"sim-atm90e26": {"ugain": 0x6720 * 102 // 100, "igain": 0x7A13 * 97 // 100,
                              "phi": 0x8000 | 40, "ioffset": 0xFFFF & -6000},
             "sim-atm90e32": {"ugain_a": 0x8000 * 102 // 100, "igain_a": 0x8000 * 97 // 100},
             "sim-ade7953": {"ugain": 0x400000 * 102 // 100, "igain_a": 0x400000 * 97 // 100}}


class _Steady:
    """A load that draws the same power until told otherwise (so references stay put)."""

    def __init__(self, w, pf_milli=1000):
        self.w = w
        self.pf_milli = pf_milli  # lagging

    def power_w(self, utc, dt_s):
        return self.w

    def power_cut(self):
        pass


board = __import__(_board_name.replace("-", "_")).build({
    "meter_id": "sim-repl", "key": _key, "flash": _flash, "seed": 1, "config": {"opening_balance": 10000},
    "true_cal": _TRUE_CAL.get(_board_name)})
board.loads = [_Steady(_load_w) for _ in board.loads]
_advance = board.advance


_pace = [0]  # the speed in force: none while the meter powers up


def _paced(ms):
    """Simulated time, paced to the wall clock (in pieces, so Ctrl-C is taken at once)."""
    if _pace[0]:
        left = ms // _pace[0]
        while left > 0:
            time.sleep_ms(100 if left > 100 else left)
            left -= 100
    _advance(ms)


board.advance = _paced  # main.loop, the REPL's settling and calibrate() all go through it
meter = main.start(board)
# The meter has been on the bench a while: past the power-up's randomised reconnect delay.
for _ in range(600):
    main.loop(meter, 1)
    if board.relay.closed:
        break
main.loop(meter, 5)  # a few readings of the load
_pace[0] = _speed
from repl import *  # noqa: E402,F401,F403  (the technician's kit, as `make repl` has it on a device)


def reference(ch=0):
    """What reference instruments on channel `ch` read now (the values calibrate() wants)."""
    emu = board.emu
    v = emu.v_cv[ch] / 100
    w = emu.p_w[ch]
    a = w * 1000 / (v * emu.pf_milli[ch]) if v else 0
    print("reference: %.2f V  %.3f A  %d W  pf %.3f" % (v, a, w, emu.pf_milli[ch] / 1000))
    return v, a, w


def set_load(w, pf=1.0, ch=0):
    """Change the load on channel `ch` to `w` watts at power factor `pf` (lagging); it settles
    for two seconds of the meter's time."""
    if not 0 <= w <= 20000 or not 0.1 <= pf <= 1 or not 0 <= ch < len(board.loads):
        print("set_load(W, pf=1.0, ch=0): W 0..20000, pf 0.1..1, ch a channel of this meter")
        return
    board.loads[ch] = _Steady(w, int(pf * 1000 + 0.5))
    board.advance(2000)
    print("load on channel %d: %d W at pf %.3f" % (ch, w, pf))


print("simulated meter %s (%s), flash %s, time x%d. help_() lists the kit; reference() reads the "
      "reference meter, set_load(W) changes the load; resume() meters until Ctrl-C." % (
          meter.board.meter_id, _board_name, _flash, _speed))
