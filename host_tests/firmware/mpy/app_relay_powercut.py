# The relay through the whole app on the simulated board: a power cut at every step of a
# relay story returns, at the next boot, to the last committed intent (never to what RAM
# held, never to anything from the network), and the contacts follow that intent.
# Also: rate limiting of remote relay commands, and the new relay command ops.
import sys
import mptest
import relay as R
import limiter as L
import app as app_mod
import sim_atm90e26

FLASH = sys.argv[1]
CFG = {"opening_balance": 300,
       "protection": {"tamper": {"disconnect": ["cover"]}, "relay": {"reconnect_delay_s": 30}}}
board = sim_atm90e26.build({"meter_id": "pc-0001", "key": None, "seed": 3, "flash": FLASH, "config": CFG})


def intent(m):
    p = m.protection
    return (R.STATE_NAMES[m.relay.state], m.relay.reasons, m.relay.flags(), p.limiter.latched(),
            p.tamper.flags, p.driver.fault)


def run(m, seconds, tick=1):
    for _ in range(seconds // tick):
        board.advance(tick * 1000)
        m.step()


def boot():
    board.relay.closed = False  # a monostable relay drops open while the power is off
    m = app_mod.Meter(board)
    m.boot()
    return m


def no_commit():
    raise OSError(5)


def trip(m):
    m.protection.limiter.power_w = 1  # any demand is an overload for this step
    run(m, 40)
    m.protection.limiter.power_w = 0


def latch(m):
    m.protection.limiter.power_w = 1
    run(m, 700)
    m.protection.limiter.power_w = 0


def exhaust(m):
    m.account.debit(m.account.balance)
    run(m, 2)


def confirm(m):
    board.button.hold(5000)  # held a little over the 3 s the meter wants
    run(m, 6)


def cover_open(m):
    board.cover.on = True
    run(m, 5)


def cover_shut(m):
    board.cover.on = False
    m._apply({"op": "clear", "what": "tamper"})
    m.commit()


def cmd(doc):
    def f(m):
        m._apply(doc)
        m.commit()
    return f


def friendly(on):
    def f(m):
        # The friendly calendar (configuration, so it holds across reboots) says "now is friendly"
        # or not; the app hands that to the relay each tick through relay.defer_credit.
        import account
        account.Friendly.active = (lambda self, lc, utc: True) if on else (lambda self, lc, utc: False)
        run(m, 2)
    return f


def topup(m):
    m._apply({"op": "topup", "amt": 500})
    m.commit()


STEPS = [
    ("credit exhausted", exhaust, "disconnected"),
    ("top-up", topup, "ready"),
    ("local confirm", confirm, "connected"),
    ("remote disconnect", cmd({"op": "disconnect"}), "disconnected"),
    ("remote reconnect (arm)", cmd({"op": "reconnect"}), "ready"),
    ("local confirm 2", confirm, "connected"),
    ("overload trip", trip, "disconnected"),
    ("limiter retry", lambda m: run(m, 130), "connected"),
    ("overload latch", latch, "disconnected"),
    ("backend clears latch", cmd({"op": "clear", "what": "limiter"}), "ready"),
    ("local confirm 3", confirm, "connected"),
    ("keep power on", cmd({"op": "keep_power", "on": True}), "connected"),
    ("remote disconnect under keep-power", cmd({"op": "disconnect"}), "connected"),
    ("keep power off", cmd({"op": "keep_power", "on": False}), "disconnected"),
    ("remote reconnect (direct)", cmd({"op": "reconnect", "direct": True}), "connected"),
    ("cover opened", cover_open, "disconnected"),
    ("tamper cleared", cover_shut, "ready"),
    ("local confirm 4", confirm, "connected"),
    ("friendly period starts", friendly(True), "connected"),
    ("credit exhausted in a friendly period", exhaust, "connected"),
    # The friendly calendar is configuration, not state: after any reboot the meter applies it
    # again, so once the period has ended the contacts open even if that was never committed.
    ("friendly period ends", friendly(False), "disconnected", "calendar"),
    ("top-up 2", topup, "ready"),
    ("local confirm 5", confirm, "connected"),
]

m = boot()
run(m, 60)
mptest.eq(intent(m)[0], "connected", "fresh meter connected")
mptest.eq(board.relay.closed, True, "contacts closed after the boot delay")
for step in STEPS:
    name, act, expect = step[:3]
    before = intent(m)
    # 1. The power fails after the step happened in RAM but before its record was committed.
    m.store.commit = no_commit
    m.relay_cmds.tokens = 4
    act(m)
    board.cover.on = False  # (the tamperer shut the cover again while the power was off)
    m = boot()
    mptest.eq(intent(m), before, name + ": cut before commit -> previous intent")
    run(m, 40)
    if len(step) > 3:
        mptest.eq(board.relay.closed, expect == "connected", name + ": contacts follow the calendar")
    else:
        mptest.eq(board.relay.closed, before[0] == "connected", name + ": contacts follow the previous intent")
    # 2. The same step again, committed this time; then the power fails.
    m.relay_cmds.tokens = 4
    act(m)
    after = intent(m)
    mptest.eq(after[0], expect, name + ": state after the step")
    m = boot()
    mptest.eq(intent(m), after, name + ": cut after commit -> new intent")
    run(m, 40)
    mptest.eq(board.relay.closed, after[0] == "connected", name + ": contacts follow the new intent")

# Rate limit on remote relay commands: refused ones are events and change nothing.
import events
m.relay_cmds.tokens = 0
m.relay_cmds._since = m.clock.ticks_ms()
seq0 = m.events.seq
r = m._apply({"op": "disconnect"})
mptest.eq(app_mod.RESULTS[r], "rate_limited", "rate-limited command result")
mptest.eq(intent(m)[0], "connected", "refused command changed nothing")
found = False
for s in range(seq0, m.events.seq):
    e = m.events.get(s)
    if e and e[0] == events.RELAY_CMD_LIMITED:
        found = True
mptest.check(found, "relay_cmd_limited event raised")
mptest.eq(app_mod.RESULTS[m._apply({"op": "reconnect", "direct": "yes"})], "bad_args", "direct must be a boolean")


# A retained command (e.g. replayed by the broker after a reboot) never moves the relay.
class RetainedLink:
    retained = True


m.relay_cmds.tokens = 4
m.sync.link = RetainedLink()
seq0 = m.events.seq
state0 = intent(m)
m.on_message(b"pm/v1/pc-0001/cmd", b'{"id":99,"op":"disconnect"}')
mptest.eq(intent(m), state0, "retained command ignored")
mptest.eq(m.events.get(m.events.seq - 1)[0], events.RETAINED_CMD, "retained command is an event")
m.sync.link = None
mptest.eq(app_mod.RESULTS[m._apply({"op": "keep_power", "on": 1})], "bad_args", "keep_power needs a boolean")
mptest.eq(app_mod.RESULTS[m._apply({"op": "clear", "what": "all"})], "bad_args", "clear needs a known target")
mptest.done(steps=len(STEPS), trips=m.protection.limiter.trips_total, elapsed=board.clock.elapsed_ms, wh=m.metering.imp_wh, ops=board.relay.operations, disc=m.relay.disconnects)
