# RelayControl: the full transition table (every state x every trigger), reason priorities,
# overrides, events, reconnect delays and the remote-command rate limit.
import mptest
import events
import relay as R
from relay_fixtures import Out, Log, clock as mkclock, fixed_rand

C, D, Y = R.CONNECTED, R.DISCONNECTED, R.READY
NAME = R.STATE_NAMES


def make(state, **kw):
    out = Out()
    log = Log()
    rc = R.RelayControl(out, log, rand=fixed_rand(42), **kw)
    rc.restore(R.CONNECTED, 0)
    if state == D:
        rc.set_reason(R.CREDIT)
    elif state == Y:
        rc.set_reason(R.CREDIT)
        rc.clear_reason(R.CREDIT)
    mptest.eq(rc.state, state, "setup " + NAME[state])
    log.clear()
    return rc, out, log


# trigger name -> action; expected end state from CONNECTED, DISCONNECTED(credit), READY.
TRIGGERS = [
    ("set safety", lambda r: r.set_reason(R.SAFETY), (D, D, D)),
    ("set voltage", lambda r: r.set_reason(R.VOLTAGE), (D, D, D)),
    ("set tamper", lambda r: r.set_reason(R.TAMPER), (D, D, D)),
    ("set relay_fault", lambda r: r.set_reason(R.FAULT), (D, D, D)),
    ("set remote", lambda r: r.set_reason(R.REMOTE), (D, D, D)),
    ("set credit", lambda r: r.set_reason(R.CREDIT), (D, D, D)),
    ("set load", lambda r: r.set_reason(R.LOAD), (D, D, D)),
    ("set manual", lambda r: r.set_reason(R.MANUAL), (D, D, D)),
    ("clear credit", lambda r: r.clear_reason(R.CREDIT), (C, Y, Y)),
    ("clear load (not set)", lambda r: r.clear_reason(R.LOAD), (C, D, Y)),
    ("local confirm", lambda r: r.confirm_local(), (C, D, C)),
    ("manual disconnect", lambda r: r.manual_disconnect(), (D, D, D)),
    ("remote disconnect", lambda r: r.remote_disconnect(), (D, D, D)),
    ("remote reconnect arm", lambda r: r.remote_reconnect(False), (C, D, Y)),
    ("remote reconnect direct", lambda r: r.remote_reconnect(True), (C, D, C)),
    ("keep power on", lambda r: r.set_keep_power(True), (C, Y, Y)),
    ("keep power off", lambda r: r.set_keep_power(False), (C, D, Y)),
    ("friendly on", lambda r: r.defer_credit(True), (C, Y, Y)),
    ("friendly off", lambda r: r.defer_credit(False), (C, D, Y)),
]

cells = 0
for name, act, expect in TRIGGERS:
    for i, start in enumerate((C, D, Y)):
        rc, out, log = make(start)
        act(rc)
        cells += 1
        tag = "%s from %s" % (name, NAME[start])
        mptest.eq(NAME[rc.state], NAME[expect[i]], tag)
        mptest.eq(out.closed, rc.state == C, tag + ": contacts follow the state")
        moved = rc.state != start
        trans = [c for c in log.codes() if c in (events.RELAY_OPEN, events.RELAY_CLOSED, events.RELAY_ARMED)]
        # Every transition is exactly one event, and none without a transition.
        mptest.eq(len(trans), 1 if moved else 0, tag + ": transition events")
        if moved:
            want = {C: events.RELAY_CLOSED, D: events.RELAY_OPEN, Y: events.RELAY_ARMED}[rc.state]
            mptest.eq(trans[0], want, tag + ": event kind")
            arg = log.last(want)
            mptest.check(arg in (1, 2, 4, 8, 16, 32, 64, 128), tag + ": event carries one reason, got %r" % arg)

# Second half of the table: open for reasons that reconnect by themselves or by remote.
for reason, clear_to in ((R.LOAD, C), (R.VOLTAGE, C), (R.REMOTE, Y), (R.TAMPER, Y), (R.FAULT, Y),
                         (R.SAFETY, Y), (R.MANUAL, Y)):
    rc, out, log = make(C)
    rc.set_reason(reason)
    mptest.eq(rc.state, D, "open for %s" % R.reason_name(reason))
    mptest.eq(log.last(events.RELAY_OPEN), reason, "open event reason %s" % R.reason_name(reason))
    rc.clear_reason(reason)
    mptest.eq(NAME[rc.state], NAME[clear_to], "after clearing %s" % R.reason_name(reason))
    cells += 1

# Remote: arm vs direct from a remote disconnect.
rc, out, log = make(C)
rc.remote_disconnect()
rc.remote_reconnect(False)
mptest.eq(rc.state, Y, "remote arm -> ready")
mptest.eq(rc.confirm_local(), True, "local confirm closes from ready")
mptest.eq(out.delay_ms, 0, "a local confirm closes at once")
rc, out, log = make(C)
rc.remote_disconnect()
rc.remote_reconnect(True)
mptest.eq(rc.state, C, "remote direct -> connected")
mptest.eq(out.delay_ms, 42000, "a remote close waits the randomised delay")
mptest.eq(log.last(events.RELAY_DELAYED), 42, "delay event in seconds")
# Direct reconnect does not override credit.
rc, out, log = make(C)
rc.remote_disconnect()
rc.set_reason(R.CREDIT)
rc.remote_reconnect(True)
mptest.eq(rc.state, D, "credit still holds after a direct remote reconnect")
mptest.eq(rc.reasons, R.CREDIT, "only credit left")

# Priorities: the event names the highest-priority effective reason.
mptest.eq(R.top(R.MANUAL | R.CREDIT | R.VOLTAGE), R.VOLTAGE, "voltage outranks credit and manual")
mptest.eq(R.top(R.REMOTE | R.CREDIT), R.REMOTE, "remote outranks credit")
mptest.eq(R.top(R.SAFETY | R.FAULT), R.SAFETY, "safety first")
rc, out, log = make(C)
rc.set_keep_power(True)
rc.set_reason(R.CREDIT)
rc.set_reason(R.REMOTE)
rc.set_reason(R.LOAD)
mptest.eq(rc.state, C, "keep-power defers credit, remote and load")
rc.defer_credit(True)
rc.set_reason(R.TAMPER)
mptest.eq(rc.state, D, "keep-power never defers safety")
mptest.eq(log.last(events.RELAY_OPEN), R.TAMPER, "opened for tamper")
rc.clear_reason(R.TAMPER)
mptest.eq(rc.state, Y, "tamper cleared: waits for the customer")
rc.set_keep_power(False)
mptest.eq(rc.state, D, "keep-power off: remote applies again")
mptest.eq(log.last(events.RELAY_OPEN), R.REMOTE, "remote outranks load and credit")
rc, out, log = make(C)
rc.defer_credit(True)
rc.set_reason(R.CREDIT)
mptest.eq(rc.state, C, "friendly period defers credit")
rc.set_reason(R.LOAD)
mptest.eq(rc.state, D, "friendly period does not defer load limit")
rc.clear_reason(R.LOAD)
mptest.eq(rc.state, C, "load retry closes (credit still deferred)")
mptest.eq(out.delay_ms, 0, "a load-limit retry is not delayed")
rc.defer_credit(False)
mptest.eq(rc.state, D, "friendly period over: credit disconnects")
mptest.eq(log.count(events.FRIENDLY), 2, "friendly on/off events")

# A latch under keep-power leaves no confirmation owed once nothing opened the contacts.
rc, out, log = make(C)
rc.set_keep_power(True)
rc.require_confirm()
rc.set_reason(R.LOAD)
mptest.eq((rc.state, rc.need_confirm), (C, False), "deferred latch owes nothing while connected")
rc.set_keep_power(False)
rc.clear_reason(R.LOAD)
mptest.eq(rc.state, C, "load alone reconnects by itself afterwards")

# Confirm refused while a reason remains, with the reason as event arg.
rc, out, log = make(D)
mptest.eq(rc.confirm_local(), False, "no confirm while credit holds")
mptest.eq(log.last(events.CONFIRM_REFUSED), R.CREDIT, "refusal names credit")
# The customer's own manual disconnect is undone by a local confirm.
rc, out, log = make(C)
rc.manual_disconnect()
mptest.eq(rc.confirm_local(), True, "confirm undoes manual disconnect")
mptest.eq(rc.reasons, 0, "manual reason gone")

# Auto-reconnect mode: no confirmation owed.
rc, out, log = make(C, auto_reconnect=True)
rc.set_reason(R.CREDIT)
rc.clear_reason(R.CREDIT)
mptest.eq(rc.state, C, "auto mode closes after top-up")
# Custom confirm mask: load needs confirmation too.
rc, out, log = make(C, confirm_mask=R.CONFIRM_DEFAULT | R.LOAD)
rc.set_reason(R.LOAD)
rc.clear_reason(R.LOAD)
mptest.eq(rc.state, Y, "configured: load waits for confirm")

# DLMS control modes: manual disconnect (f), remote reconnect default (a/d), credit (e/h).
for mode, manual_ok, remote_end, credit_end in ((1, True, Y, Y), (2, True, C, Y), (3, False, Y, Y),
                                                (4, False, C, Y), (5, True, Y, C), (6, False, Y, C)):
    tag = "mode %d: " % mode
    rc, out, log = make(C, mode=mode)
    mptest.eq(rc.manual_disconnect(), manual_ok, tag + "manual disconnect allowed")
    mptest.eq(rc.state, D if manual_ok else C, tag + "state after manual disconnect")
    rc, out, log = make(C, mode=mode)
    rc.remote_disconnect()
    rc.remote_reconnect()
    mptest.eq(NAME[rc.state], NAME[remote_end], tag + "remote reconnect default")
    rc, out, log = make(C, mode=mode)
    rc.set_reason(R.CREDIT)
    rc.clear_reason(R.CREDIT)
    mptest.eq(NAME[rc.state], NAME[credit_end], tag + "after top-up")
rc, out, log = make(C, mode=0)
for b in (R.REMOTE, R.CREDIT, R.LOAD, R.MANUAL):
    rc.set_reason(b)
mptest.eq(rc.state, C, "mode 0: always connected for non-safety reasons")
rc.set_reason(R.VOLTAGE)
mptest.eq(rc.state, D, "mode 0: safety still disconnects")
mptest.raises(ValueError, R.RelayControl, Out(), Log(), False, R.CONFIRM_DEFAULT, 180, None, 7)

# Restore: intent only from the record; inconsistent records resolve to the safe side.
out = Out()
rc = R.RelayControl(out, Log())
rc.restore(R.CONNECTED, R.CREDIT, 0)
mptest.eq(rc.state, D, "connected with a reason restores as disconnected")
rc.restore(R.DISCONNECTED, 0, 0)
mptest.eq(rc.state, Y, "open without reasons restores as ready")
rc.restore(7, 0, 0)
mptest.eq(rc.state, Y, "unknown state restores open")
rc.restore(R.CONNECTED, R.REMOTE, 2)
mptest.eq((rc.state, rc.keep_power), (C, True), "keep-power persisted via flags")
rc.restore(R.CONNECTED, R.CREDIT, 4)
mptest.eq((rc.state, rc.friendly), (C, True), "friendly period persisted via flags")
rc.defer_credit(False)
mptest.eq(rc.state, D, "billing ends the period after boot: credit applies")
rc.restore(R.READY, 0, 0)
mptest.eq(rc.need_confirm, True, "ready implies a confirmation is owed")

mptest.done(cells=cells)
