# A technician's REPL session on a simulated meter, under micropython.
#   micropython repl_session.py FLASH TICKS [CONFIG_JSON [BROKER_HOST:PORT]] < commands
# Boots the sim meter through main.start(), runs TICKS loop steps, then executes each stdin line
# like the REPL would after `from repl import *`, echoing it with a ">>> " prompt.
# The last line is JSON with a few facts the test checks against the printed text.
import sys
import json
import simkit
import main
import app

flash, ticks = sys.argv[1], int(sys.argv[2])
cfg = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {"opening_balance": 1000}
board = simkit.board(flash, config=cfg)
if len(sys.argv) > 4:
    host, _, port = sys.argv[4].partition(":")
    board._broker = (host, int(port))  # the sim board's link target (boards/sim_atm90e26.py)
m = main.start(board)
main.loop(m, ticks)
ops_boot = board.relay.operations  # before any REPL command (includes the power-up close)
g = {}
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
