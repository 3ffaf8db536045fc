# RelayDriver on simulated contacts with the fake clock: dwell, delays, minimum actuation
# voltage, welded/bypass and no-close detection, bounded re-drive then fault; no allocation.
import micropython
import mptest
import events
import relay_driver as RD
from simhw.parts import SimRelay
from relay_fixtures import Ring, clock as mkclock

LOAD_MA = 5000


def rig(kind=RD.MONOSTABLE, **kw):
    ck = mkclock()
    hw = SimRelay()
    hw.closed = False
    ring = Ring(ck, 64)
    faults = []
    d = RD.RelayDriver(hw, ck, ring, kind, on_fault=faults.append, **kw)
    return ck, hw, ring, d, faults


def run(ck, hw, d, seconds, v=23000, load=LOAD_MA):
    """One tick per second; the current is what the physical contacts let through."""
    for _ in range(seconds):
        ck.advance(1000)
        d.step(ck.ticks_ms(), v, load if hw.closed else 0)


# Plain close and open; minimum dwell between actuations.
ck, hw, ring, d, faults = rig(dwell_s=5)
d.command(True)
run(ck, hw, d, 1)
mptest.eq(hw.closed, True, "closes on the next step")
d.command(False)
run(ck, hw, d, 3)
mptest.eq(hw.closed, True, "dwell: not reopened after 3 s")
run(ck, hw, d, 2)
mptest.eq(hw.closed, False, "reopened once 5 s dwell passed")
mptest.eq(hw.operations, 2, "two operations, no chatter")

# A delayed close (randomised reconnect).
ck, hw, ring, d, faults = rig()
d.command(True, 30000)
run(ck, hw, d, 29)
mptest.eq(hw.closed, False, "not before the delay")
run(ck, hw, d, 1)
mptest.eq(hw.closed, True, "closed when the delay is over")
# A new command cancels a pending delayed close.
ck, hw, ring, d, faults = rig()
d.command(True, 30000)
run(ck, hw, d, 10)
d.command(False)
run(ck, hw, d, 40)
mptest.eq(hw.closed, False, "open command cancels the delayed close")

# Minimum actuation voltage: a latching relay waits for supply; a monostable one can always open.
ck, hw, ring, d, faults = rig(RD.LATCHING)
d.command(True)
run(ck, hw, d, 10, v=15000)
mptest.eq((hw.closed, hw.pulses), (False, 0), "latching: no pulse below 0.75 Un")
mptest.check(events.RELAY_POSTPONED in ring.codes(), "postponement is an event")
mptest.eq(d.postponements, 1, "one postponement counted, not one per tick")
run(ck, hw, d, 1, v=22000)
mptest.eq((hw.closed, hw.pulses), (True, 1), "latching: one pulse once the supply is back")
ck, hw, ring, d, faults = rig(RD.MONOSTABLE)
hw.closed = True
d.power_up(True)
run(ck, hw, d, 1)
d.command(False)
run(ck, hw, d, 10, v=10000)
mptest.eq(hw.closed, False, "monostable opens at low voltage (coil released)")
d.command(True)
run(ck, hw, d, 10, v=10000)
mptest.eq(hw.closed, False, "monostable does not close at low voltage")

# Welded contacts (or a bypass): current after opening -> re-drive at 60/120/180 s -> fault.
ck, hw, ring, d, faults = rig()
d.command(True)
run(ck, hw, d, 10)
hw.weld()
d.command(False)
t0 = ck.elapsed_ms
redrive_at = []
found_at = None
for s in range(400):
    before = d.redrives
    run(ck, hw, d, 1)
    if found_at is None and d.mismatch == RD.WELDED:
        found_at = ck.elapsed_ms
    if d.redrives != before:
        redrive_at.append((ck.elapsed_ms - found_at) // 1000)
mptest.check(found_at is not None and found_at - t0 <= 8000, "mismatch found within settle + debounce")
mptest.eq(redrive_at, [60, 120, 180], "re-driven at 60/120/180 s after detection")
mptest.eq(d.fault, RD.WELDED, "reported as welded/bypass")
mptest.eq(faults, [RD.WELDED], "fault callback once")
codes = ring.codes()
mptest.eq(codes.count(events.RELAY_FAULT), 1, "one fault event")
mptest.eq(codes.count(events.RELAY_REDRIVE), 3, "three re-drive events")
mptest.eq(d.redrives, 3, "re-driving stops after the fault")

# Coil failure: no load-side voltage after closing.
ck, hw, ring, d, faults = rig()
hw.fail_coil()
d.command(True)
run(ck, hw, d, 400)
mptest.eq(d.fault, RD.NO_CLOSE, "no close reported")
mptest.eq(faults, [RD.NO_CLOSE], "no-close fault callback")
# No feedback input fitted: an idle closed relay is never called faulty.
class Plain:
    def __init__(self):
        self.closed = False

    def set(self, c):
        self.closed = c


ck = mkclock()
p = Plain()
d = RD.RelayDriver(p, ck, Ring(ck))
d.command(True)
for _ in range(400):
    ck.advance(1000)
    d.step(ck.ticks_ms(), 23000, 0)
mptest.eq(d.fault, RD.OK, "without feedback, zero current while closed is not a fault")

# Recovery: the mismatch goes away before the re-drives run out.
ck, hw, ring, d, faults = rig()
d.command(True)
run(ck, hw, d, 10)
hw.weld()
d.command(False)
run(ck, hw, d, 70)
mptest.eq(d.redrives, 1, "one re-drive so far")
hw.repair()
run(ck, hw, d, 60)  # the next re-drive opens the contacts
mptest.eq((d.fault, d.mismatch, hw.closed), (RD.OK, RD.OK, False), "recovered after a re-drive")
mptest.check(events.RELAY_RECOVERED in ring.codes(), "recovery event")
mptest.eq(faults, [], "no fault reported")

# The per-tick step allocates nothing: steady state, actuation, mismatch, re-drive, fault.
ck, hw, ring, d, faults = rig()
faults_pre = []
d.on_fault = None
d.command(True)
hw.weld()
d.command(False)
v = 23000
ok = locked_ok = None
micropython.heap_lock()
try:
    for _ in range(400):
        ck.advance(1000)
        d.step(ck.ticks_ms(), v, LOAD_MA if hw.closed else 0)
    locked_ok = True
except MemoryError:
    locked_ok = False
micropython.heap_unlock()
mptest.check(locked_ok, "driver step allocated under heap_lock")
mptest.eq(d.fault, RD.WELDED, "the heap-locked run went through to the fault")

# jog (the REPL relay test): moves the contacts through the coil kind, leaves the driver's
# own position alone, and a jog back means nothing to verify.
for kind in (RD.MONOSTABLE, RD.LATCHING):
    ck, hw, ring, d, faults = rig(kind)
    d.command(True)
    run(ck, hw, d, 10)
    acts = d.actuations
    d.jog(False)
    mptest.eq((hw.closed, d.out, d.want), (False, True, True), "jog opens the contacts only (kind %d)" % kind)
    mptest.eq(hw.pulses, 2 if kind == RD.LATCHING else 0, "a latching coil is pulsed (kind %d)" % kind)
    d.jog(True)
    run(ck, hw, d, 10)
    mptest.eq((hw.closed, d.actuations, d.mismatch, d.fault), (True, acts, RD.OK, RD.OK),
              "after jogging back: closed, no mismatch (kind %d)" % kind)

mptest.raises(ValueError, RD.RelayDriver, hw, ck, ring, 5)
mptest.raises(ValueError, RD.RelayDriver, hw, ck, ring, RD.MONOSTABLE, 100, 5, 3, 17250, 150, (60, 0))
mptest.done()
