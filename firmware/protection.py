# Protection: over/under-voltage trips, and the one per-tick step that runs every protection
# (voltage, load limiter, tamper, relay driver) from the latest metering values.
# Everything here allocates nothing per tick. Defaults: docs/relay.md.
from micropython import const
import events
import relay as relay_mod
import relay_driver
import limiter as limiter_mod
import tamper as tamper_mod
from bucket import TokenBucket

_OK = const(0)
OVER = const(1)
UNDER = const(2)


class VoltageGuard:
    """Trips after the voltage has been outside [under_cv, over_cv] for trip_s; restores only
    after it has stayed inside the band narrowed by hyst_cv for restore_s without a break."""

    def __init__(self, relay, clock, emit, over_cv=26500, under_cv=18000, hyst_cv=500, trip_s=2,
                 restore_s=60):
        if not 0 < under_cv + hyst_cv < over_cv - hyst_cv or trip_s < 0 or restore_s < 0:
            raise ValueError("voltage config")
        self._relay = relay
        self._clock = clock
        self._emit = emit
        self.over_cv = over_cv
        self.under_cv = under_cv
        self._hyst = hyst_cv
        self._trip_ms = trip_s * 1000
        self._restore_ms = restore_s * 1000
        self.tripped = _OK  # OVER or UNDER while tripped
        self._pending = _OK
        self._since = 0
        self._stable = False
        self.trips = 0

    def restore(self):
        """After boot: a persisted VOLTAGE reason means we were tripped; restore needs a fresh
        stable period."""
        self.tripped = UNDER if self._relay.reasons & relay_mod.VOLTAGE else _OK
        self._stable = False

    def step(self, now, v_cv):
        if v_cv <= 0:
            return  # no reading yet: the meter runs off this supply, so 0 V is never measured
        ck = self._clock
        if not self.tripped:
            bad = OVER if v_cv > self.over_cv else (UNDER if v_cv < self.under_cv else _OK)
            if bad != self._pending:
                self._pending = bad
                self._since = now
            if bad and ck.ticks_diff(now, self._since) >= self._trip_ms:
                self.tripped = bad
                self._pending = _OK
                self._stable = False
                self.trips += 1
                self._emit(events.VOLT_OVER if bad == OVER else events.VOLT_UNDER, v_cv)
                self._relay.set_reason(relay_mod.VOLTAGE)
            return
        if self.under_cv + self._hyst <= v_cv <= self.over_cv - self._hyst:
            if not self._stable:
                self._stable = True
                self._since = now
            elif ck.ticks_diff(now, self._since) >= self._restore_ms:
                self.tripped = _OK
                self._stable = False
                self._emit(events.VOLT_RESTORED, v_cv)
                self._relay.clear_reason(relay_mod.VOLTAGE)
        else:
            self._stable = False


def _get(doc, key, default):
    v = doc.get(key, default)
    if not isinstance(v, int) or isinstance(v, bool):
        raise ValueError("protection config %s must be an integer" % key)
    return v


class Protection:
    """Builds and runs the protections from the board config (`cfg["protection"]`)."""

    def __init__(self, relay, hw, metering, clock, emit, cfg, cover=None, magnet=None):
        rc = cfg.get("relay", {})
        kind = rc.get("kind", "monostable")
        if kind not in relay_driver.KIND_NAMES:
            raise ValueError("relay kind %r" % kind)
        self.driver = relay_driver.RelayDriver(
            hw, clock, emit, relay_driver.KIND_NAMES.index(kind), _get(rc, "pulse_ms", 100),
            _get(rc, "dwell_s", 5), _get(rc, "settle_s", 3), _get(rc, "min_actuation_cv", 17250),
            _get(rc, "open_ma", 150), tuple(rc.get("redrive_s", (60, 120, 180))), self._on_fault)
        self.relay = relay
        relay.attach(self.driver)
        vc = cfg.get("voltage", {})
        self.voltage = VoltageGuard(relay, clock, emit, _get(vc, "over_cv", 26500), _get(vc, "under_cv", 18000),
                                    _get(vc, "hyst_cv", 500), _get(vc, "trip_s", 2), _get(vc, "restore_s", 60))
        self.voltage_on = vc.get("enabled", True) is True
        lc = cfg.get("limiter", {})
        self.limiter = limiter_mod.Limiter(relay, clock, emit, _get(lc, "power_w", 0), _get(lc, "current_ma", 60000),
                                           _get(lc, "over_s", 30), _get(lc, "retry_s", 120),
                                           _get(lc, "max_trips", 4), _get(lc, "window_s", 1800))
        relay.on_confirm = self.limiter.cancel
        tc = cfg.get("tamper", {})
        self.tamper = tamper_mod.Tamper(relay, clock, emit, tamper_mod.mask_of(tc.get("disconnect", ())),
                                        _get(tc, "debounce_s", 2), _get(tc, "reverse_w", 50), metering, cover, magnet)
        self._mt = metering

    def restore(self, latched, tamper_flags, fault, trips_total):
        """From the record, after the relay control has been restored."""
        self.limiter.restore(latched, trips_total)
        self.tamper.restore(tamper_flags)
        self.driver.fault = fault if fault in (relay_driver.WELDED, relay_driver.NO_CLOSE) else 0
        self.voltage.restore()

    def _on_fault(self, kind):
        self.relay.set_reason(relay_mod.FAULT)

    def clear_fault(self):
        self.driver.clear_fault()
        self.relay.clear_reason(relay_mod.FAULT)

    def changed(self):
        return self.limiter.changed or self.tamper.changed

    def committed(self):
        self.limiter.changed = False
        self.tamper.changed = False

    def step(self, now):
        mt = self._mt
        v = mt.v_cv
        i = mt.i_ma
        if mt.ok:
            # Stale or absent readings must not trip anything.
            if self.voltage_on:
                self.voltage.step(now, v)
            self.limiter.step(now, mt.p_w, i)
            self.tamper.step(now, mt.p_w)
            self.driver.step(now, v, i)
        else:
            # No readings: the meter runs off the same mains, so assume enough supply to
            # actuate, and judge no contacts by a current we cannot see.
            self.tamper.step(now, 0)
            self.driver.step(now, self.driver.min_cv, 0)


def build(board, metering, emit):
    """The relay control, the protections and the remote relay-command rate limit, from the
    board's config (`auto_reconnect`, `protection`) and parts (relay, optional cover/magnet
    inputs, optional rand)."""
    cfg = board.config
    pcfg = cfg.get("protection", {})
    rcfg = pcfg.get("relay", {})
    relay = relay_mod.RelayControl(
        None, emit, cfg.get("auto_reconnect", False), _reason_mask(rcfg.get("confirm", relay_mod.CONFIRM_DEFAULT)),
        _get(rcfg, "reconnect_delay_s", 180), _rand_for(board), _get(rcfg, "control_mode", relay_mod.DEFAULT_MODE))
    prot = Protection(relay, board.relay, metering, board.clock, emit, pcfg, getattr(board, "cover", None),
                      getattr(board, "magnet", None))
    rate = TokenBucket(board.clock, _get(rcfg, "cmd_burst", 4), _get(rcfg, "cmd_refill_s", 900) * 1000)
    return relay, prot, rate


def _reason_mask(v):
    """Config: a reason bitmask or a list of reason names."""
    if isinstance(v, int):
        return v
    m = 0
    for n in v:
        if n not in relay_mod.REASON_NAMES:
            raise ValueError("relay reason %r" % n)
        m |= 1 << relay_mod.REASON_NAMES.index(n)
    return m


def _rand_for(board):
    """The board's random source (seeded in simulations), else the port's RNG."""
    r = getattr(board, "rand", None)
    if r is not None:
        return r
    import random

    return lambda n: random.getrandbits(24) % n
