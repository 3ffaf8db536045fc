# Tamper inputs: debounce, latch, events, optional disconnect, clearing.
import mptest
import events
import relay as R
import tamper as T
from simhw.parts import SimSwitch
from relay_fixtures import Out, Log, FakeMetering, clock as mkclock


def rig(mask=0, mt=None):
    ck = mkclock()
    log = Log()
    rc = R.RelayControl(Out(), log)
    rc.restore(R.CONNECTED, 0)
    cover = SimSwitch()
    magnet = SimSwitch()
    t = T.Tamper(rc, ck, log, mask, 2, 50, mt, cover, magnet)
    return ck, log, rc, t, cover, magnet


def run(ck, t, n, p_w=100):
    for _ in range(n):
        ck.advance(1000)
        t.step(ck.ticks_ms(), p_w)


ck, log, rc, t, cover, magnet = rig()
cover.on = True
run(ck, t, 2)
cover.on = False
run(ck, t, 3)
mptest.eq(t.flags, 0, "a 1 s bounce is not a tamper")
magnet.on = True
run(ck, t, 4)
mptest.eq(t.flags, T.MAGNET, "magnet latched")
mptest.eq(log.last(events.TAMPER), T.MAGNET, "tamper event names the kind")
mptest.eq(rc.state, R.CONNECTED, "not configured to disconnect: event only")
magnet.on = False
run(ck, t, 3)
mptest.eq(t.flags, T.MAGNET, "stays latched after the magnet is gone")
mptest.eq(log.count(events.TAMPER), 1, "one event per latch")
run(ck, t, 4, -300)
mptest.eq(t.flags & T.REVERSE, T.REVERSE, "reverse energy flow latched")

ck, log, rc, t, cover, magnet = rig(T.mask_of(["cover", "reverse"]))
cover.on = True
run(ck, t, 3)
mptest.eq((rc.state, rc.reasons), (R.DISCONNECTED, R.TAMPER), "cover configured to disconnect")
mptest.eq(log.last(events.RELAY_OPEN), R.TAMPER, "opened for tamper")
t.clear()
mptest.eq((t.flags, rc.state), (0, R.READY), "cleared: waits for a local confirm")
mptest.eq(log.last(events.TAMPER_CLEARED), T.COVER, "clear event carries the old flags")
run(ck, t, 3)
mptest.eq(rc.state, R.DISCONNECTED, "cover still open after clear: tamper again")

mt = FakeMetering()
mt.ln_mismatch = False
ck, log, rc, t, cover, magnet = rig(T.mask_of(["ln_mismatch"]), mt)
run(ck, t, 3)
mptest.eq(t.flags, 0, "no mismatch")
mt.ln_mismatch = True
run(ck, t, 3)
mptest.eq((t.flags, rc.reasons), (T.LN_MISMATCH, R.TAMPER), "live/neutral mismatch from metering")
mptest.raises(ValueError, T.mask_of, ["cover", "lid"])
mptest.done()
