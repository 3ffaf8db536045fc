# Voltage protection (trip timing, restore only after a stable period) and the combined
# per-tick protection step (no allocation), with the fake clock.
import micropython
import mptest
import events
import relay as R
import protection as P
from simhw.parts import SimRelay, SimSwitch
from relay_fixtures import Out, Ring, Log, FakeMetering, clock as mkclock, fixed_rand


def vrig(**kw):
    ck = mkclock()
    log = Log()
    out = Out()
    rc = R.RelayControl(out, log, rand=fixed_rand(5))
    rc.restore(R.CONNECTED, 0)
    g = P.VoltageGuard(rc, ck, log, **kw)
    return ck, log, rc, g, out


def feed(ck, g, seconds, v):
    for _ in range(seconds):
        ck.advance(1000)
        g.step(ck.ticks_ms(), v)


# Over-voltage: trips after trip_s above the limit.
ck, log, rc, g, out = vrig(over_cv=26500, under_cv=18000, hyst_cv=500, trip_s=2, restore_s=60)
feed(ck, g, 1, 27000)
feed(ck, g, 1, 27000)
mptest.eq(rc.state, R.CONNECTED, "1 s over: no trip yet")
feed(ck, g, 1, 27000)
mptest.eq((rc.state, rc.reasons), (R.DISCONNECTED, R.VOLTAGE), "over-voltage trip")
mptest.eq(log.last(events.VOLT_OVER), 27000, "event carries the voltage")
# Restore only after 60 s inside the narrowed band; a wobble restarts the count.
feed(ck, g, 1, 23000)
feed(ck, g, 59, 23000)
mptest.eq(rc.state, R.DISCONNECTED, "59 s stable: still open")
feed(ck, g, 1, 26200)  # inside the trip limits but above the restore band (265 - 5 V)
feed(ck, g, 1, 23000)
feed(ck, g, 59, 23000)
mptest.eq(rc.state, R.DISCONNECTED, "a wobble restarted the stable timer")
feed(ck, g, 1, 23000)
mptest.eq(rc.state, R.CONNECTED, "restored after 60 s stable")
mptest.eq(out.delay_ms, 5000, "restore after a supply event waits the randomised delay")
mptest.check(events.VOLT_RESTORED in log.codes(), "restore event")
# Under-voltage, and a transient shorter than trip_s is ignored.
ck, log, rc, g, out = vrig(trip_s=3)
feed(ck, g, 1, 17000)
feed(ck, g, 2, 17000)
feed(ck, g, 1, 23000)
mptest.eq(rc.state, R.CONNECTED, "short sag ignored")
feed(ck, g, 5, 17000)
mptest.eq(log.last(events.VOLT_UNDER), 17000, "under-voltage trip")
# A zero reading (none yet) neither trips nor counts as stable.
ck2, log2, rc2, g2, out2 = vrig()
feed(ck2, g2, 30, 0)
mptest.eq(rc2.state, R.CONNECTED, "0 V (no reading) does not trip")
# Voltage restore does not override credit.
rc.set_reason(R.CREDIT)
feed(ck, g, 70, 23000)
mptest.eq((rc.state, rc.reasons), (R.DISCONNECTED, R.CREDIT), "credit still holds after restore")
# Restore after a power cut while tripped: needs a fresh stable period.
ck, log, rc, g, out = vrig()
rc.restore(R.DISCONNECTED, R.VOLTAGE, 0)
g.restore()
feed(ck, g, 59, 23000)
mptest.eq(rc.state, R.DISCONNECTED, "after boot: waits the stable period again")
feed(ck, g, 2, 23000)
mptest.eq(rc.state, R.CONNECTED, "then restores")
mptest.raises(ValueError, P.VoltageGuard, rc, ck, log, 20000, 21000)

# The combined step: everything from one config, no allocation per tick.
ck = mkclock()
ring = Ring(ck, 64)
rc = R.RelayControl(None, ring, rand=fixed_rand(0))
mt = FakeMetering()
hw = SimRelay()
cover = SimSwitch()
cfg = {"limiter": {"power_w": 3000, "over_s": 5, "retry_s": 20},
       "tamper": {"disconnect": ["cover"]}, "voltage": {"restore_s": 10}}
prot = P.Protection(rc, hw, mt, ck, ring, cfg, cover=cover, magnet=SimSwitch())
rc.restore(R.CONNECTED, 0)
rc.power_up()


def tick(n, p_w, v=23000):
    for _ in range(n):
        ck.advance(1000)
        mt.p_w = p_w if hw.closed else 0
        mt.i_ma = mt.p_w * 1000 // 230
        mt.v_cv = v
        prot.step(ck.ticks_ms())


tick(5, 500)
mptest.eq(hw.closed, True, "closed after power-up")
ok = locked_ok = err = None
micropython.heap_lock()
try:
    tick(120, 500)  # steady state
    tick(40, 4000)  # overload: trip, retry, trip
    tick(30, 500)
    tick(10, 500, 27000)  # over-voltage trip
    tick(30, 500)  # restore
    ok = True
except MemoryError as e:
    ok = False
    err = e
micropython.heap_unlock()
if not ok:
    import sys
    sys.print_exception(err)
mptest.check(ok, "protection step allocated under heap_lock")
codes = ring.codes()
for c in (events.LIMIT_TRIP, events.LIMIT_RETRY, events.VOLT_OVER, events.VOLT_RESTORED):
    mptest.check(c in codes, "locked run raised %s" % events.name(c))
mptest.eq((rc.state, hw.closed), (R.CONNECTED, True), "back to connected")
# Tamper configured to disconnect: the cover opens.
cover.on = True
tick(5, 500)
mptest.eq((rc.state, rc.reasons, hw.closed), (R.DISCONNECTED, R.TAMPER, False), "cover open disconnects")
prot.tamper.clear()
mptest.eq(rc.state, R.READY, "tamper cleared: ready for reconnection")
# A fault from the driver becomes the FAULT reason; clearing it is explicit.
prot._on_fault(1)
mptest.eq(rc.reasons & R.FAULT, R.FAULT, "driver fault -> reason")
prot.clear_fault()
mptest.eq((rc.reasons, prot.driver.fault), (0, 0), "fault cleared")
mptest.raises(ValueError, P.Protection, rc, hw, mt, ck, ring, {"relay": {"kind": "solenoid"}})
mptest.raises(ValueError, P.Protection, rc, hw, mt, ck, ring, {"limiter": {"power_w": "3 kW"}})
mptest.raises(ValueError, P.Protection, rc, hw, mt, ck, ring, {"tamper": {"disconnect": ["smoke"]}})


# build(): from a board's config and parts.
class Board:
    def __init__(self, config):
        self.config = config
        self.relay = SimRelay()
        self.clock = mkclock()
        self.cover = SimSwitch()

    def rand(self, n):
        return n - 1


b = Board({"auto_reconnect": False, "protection": {"relay": {"control_mode": 5, "reconnect_delay_s": 10,
                                                                "confirm": ["remote", "manual"]}}})
rc, prot, rate = P.build(b, FakeMetering(), Log())
mptest.eq((rc.mode, rc.confirm_mask, rc.delay_max_s), (5, R.REMOTE | R.MANUAL, 10), "relay config applied")
mptest.eq(rc._pick_delay(), 10, "board's rand used for the delay")
mptest.eq(rate.tokens, 4, "default burst")
mptest.raises(ValueError, P.build, Board({"protection": {"relay": {"confirm": ["cash"]}}}), FakeMetering(), Log())
mptest.raises(ValueError, P.build, Board({"protection": {"relay": {"control_mode": 9}}}), FakeMetering(), Log())
mptest.raises(ValueError, P.build, Board({"protection": {"relay": {"cmd_burst": 0}}}), FakeMetering(), Log())
mptest.done()
