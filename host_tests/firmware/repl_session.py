# A technician's REPL session on a simulated meter, under micropython.
#   micropython repl_session.py [--board=sim-atm90e32] FLASH TICKS [CONFIG_JSON [BROKER_HOST:PORT]] < commands
# Boots the sim meter through main.start(), runs TICKS loop steps, then executes each stdin line
# like the REPL would after `from repl import *`, echoing it with a ">>> " prompt.
# The last line is JSON with a few facts the test checks against the printed text.
import sys
import json
import simkit
import main
import app

argv = sys.argv[1:]
name = "sim-atm90e26"
if argv[0].startswith("--board="):
    name = argv.pop(0)[8:]
flash, ticks = argv[0], int(argv[1])
cfg = json.loads(argv[2]) if len(argv) > 2 else {"opening_balance": 1000}
board = simkit.board(flash, config=cfg, name=name)
if len(argv) > 3:
    host, _, port = argv[3].partition(":")
    board._broker = (host, int(port))  # the sim board's link target (boards/sim_atm90e26.py)
m = main.start(board)
main.loop(m, ticks)
ops_boot = board.relay.operations  # before any REPL command (includes the power-up close)


class _Steady:
    """A household that always draws the same power (so readings can be checked exactly)."""

    def __init__(self, w):
        self.w = w

    def power_w(self, utc, dt_s):
        return self.w

    def power_cut(self):
        pass


def steady_loads(*watts):
    """Test helper in the session: channel k draws watts[k] from now on."""
    board.loads = [_Steady(w) for w in watts]
    board.advance(1000)


g = {"steady_loads": steady_loads}
exec("from repl import *", g)
for line in sys.stdin:
    line = line.rstrip("\n")
    if not line:
        continue
    print(">>> " + line)
    try:
        r = eval(line, g)
        if r is not None:
            print(repr(r))
    except SyntaxError:
        exec(line, g)
    except Exception as e:
        print("EXC %s: %s" % (type(e).__name__, e))
m = app.current
print(json.dumps({"balance": m.account.balance, "imp_wh": m.metering.imp_wh, "relay": m.relay.state,
                  "reasons": m.relay.reasons, "relay_ops": board.relay.operations,
                  "relay_ops_boot": ops_boot, "closed": board.relay.closed, "time": simkit.unix_now(board),
                  "tele_ms": m.reporter.tele_ms, "events": m.events.seq, "topups": m.topups,
                  "commits": m.store.commits, "logged": m.log.events.next_seq}))
