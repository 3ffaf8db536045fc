# Disconnect control: the DLMS three-state model (IC 70) over a persistent set of reasons.
#   CONNECTED --(an effective reason appears)--> DISCONNECTED
#   DISCONNECTED --(last effective reason clears)--> READY if a confirmation is owed, else CONNECTED
#   READY --(local confirm: button ~3 s or REPL; or a direct remote reconnect)--> CONNECTED
#   READY --(an effective reason appears)--> DISCONNECTED
# A reason is "effective" unless an override defers it: keep-power (medical need) defers
# remote, credit and load-limit reasons; a friendly period defers credit only. Safety
# reasons are never deferred. The contacts are only ever driven from here, to match `state`.
# Docs: docs/relay.md.
from micropython import const
import events

CONNECTED = const(0)
DISCONNECTED = const(1)
READY = const(2)  # ready for reconnection: waiting for the customer to confirm locally

STATE_NAMES = ("connected", "disconnected", "ready")
DLMS_STATE = (1, 0, 2)  # IC 70 control_state codes, by our state

# Reasons: the lower the bit, the higher the priority (top reason = lowest set bit).
SAFETY = const(1)  # generic safety hold (e.g. storage unreadable at boot)
VOLTAGE = const(2)  # over/under voltage
TAMPER = const(4)  # tamper configured to disconnect
FAULT = const(8)  # relay feedback fault
REMOTE = const(16)  # authenticated remote disconnect
CREDIT = const(32)  # credit exhausted
LOAD = const(64)  # load limiter trip
MANUAL = const(128)  # customer or technician, locally
REASON_NAMES = ("safety", "voltage", "tamper", "relay_fault", "remote", "credit", "load", "manual")
ALL = const(0xFF)
SAFETY_GROUP = const(SAFETY | VOLTAGE | TAMPER | FAULT)
_KEEP_POWER_DEFERS = const(REMOTE | CREDIT | LOAD)
# Reasons after which the contacts close only once the customer confirms locally. Load-limit
# retries and voltage restores are automatic (DLMS transition h).
CONFIRM_DEFAULT = const(SAFETY | TAMPER | FAULT | REMOTE | CREDIT | MANUAL)

# DLMS IC 70 control_mode -> (manual disconnect allowed, remote reconnect closes directly by
# default (transition a, else d), credit reconnects by itself (transition h, else e)).
# Mode 0 ("always connected") defers every non-safety reason. Protection (load limiter,
# voltage) reconnects by itself in every mode: it is not a DLMS local_disconnect.
MODES = ((False, False, True), (True, False, False), (True, True, False), (False, False, False),
         (False, True, False), (True, False, True), (False, False, True))
DEFAULT_MODE = const(1)
_ALWAYS_DEFERS = const(REMOTE | CREDIT | LOAD | MANUAL)

# Persistent flags (record byte)
_F_CONFIRM = const(1)
_F_KEEP = const(2)
_F_FRIENDLY = const(4)  # kept so a reboot inside a friendly period does not cut the supply;
# billing re-evaluates its calendar after boot and calls defer_credit() again.


def top(reasons):
    """The highest-priority reason bit in `reasons` (0 if none)."""
    return reasons & -reasons


def reason_name(bit):
    i = 0
    while i < 8:
        if bit == 1 << i:
            return REASON_NAMES[i]
        i += 1
    return "none"


class RelayControl:
    """`out` is a relay driver (command(closed, delay_ms)); a plain part with set(closed) works
    too, without delays. `rand(n)` gives 0..n-1 for the randomised reconnect delay."""

    def __init__(self, out, emit, auto_reconnect=False, confirm_mask=CONFIRM_DEFAULT,
                 reconnect_delay_s=180, rand=None, mode=DEFAULT_MODE):
        if not 0 <= mode < len(MODES) or reconnect_delay_s < 0:
            raise ValueError("relay control config")
        self.mode = mode
        self.manual_allowed, self.remote_direct, auto_credit = MODES[mode]
        if auto_credit:
            confirm_mask &= ~CREDIT
        self._out = out
        self._delayed_out = hasattr(out, "command")
        self._emit = emit
        self._confirm_cfg = confirm_mask & ALL  # the reasons that need a confirmation, as configured
        self.confirm_mask = 0 if auto_reconnect else self._confirm_cfg
        self.delay_max_s = reconnect_delay_s
        self._rand = rand
        self.state = CONNECTED
        self.reasons = 0
        self.need_confirm = False  # a confirmation is owed before the contacts close
        self.keep_power = False  # persistent override (medical need)
        self.friendly = False  # set by billing while a friendly (non-disconnect) period runs
        self.on_confirm = None  # called first by confirm_local (the limiter cancels its cycle)
        self._local = False
        self.disconnects = 0
        self.reconnects = 0
        self.last_delay_s = 0
        self.changed = False  # set on every change of durable state; the app commits and clears it

    @property
    def auto_reconnect(self):
        """True: the relay closes by itself when every reason clears (no confirmation)."""
        return self.confirm_mask == 0

    @auto_reconnect.setter
    def auto_reconnect(self, on):
        # Live (the technician's config): no confirmation at all, or the configured ones again.
        self.confirm_mask = 0 if on else self._confirm_cfg

    def attach(self, out):
        """Set the output once it exists (the driver reports faults back to this object)."""
        self._out = out
        self._delayed_out = hasattr(out, "command")

    # -- persistence ------------------------------------------------------------
    def flags(self):
        return ((_F_CONFIRM if self.need_confirm else 0) | (_F_KEEP if self.keep_power else 0)
                | (_F_FRIENDLY if self.friendly else 0))

    def restore(self, state, reasons, flags=0):
        """Set the durable state from the record (the only source after boot: never the network)."""
        self.state = state if state in (CONNECTED, DISCONNECTED, READY) else DISCONNECTED
        self.reasons = reasons & ALL
        self.need_confirm = bool(flags & _F_CONFIRM)
        self.keep_power = bool(flags & _F_KEEP)
        self.friendly = bool(flags & _F_FRIENDLY)
        if self.effective():
            self.state = DISCONNECTED
        elif self.state != CONNECTED:
            # Open with nothing holding it (an inconsistent record):
            # the safe reading is "waiting for the customer".
            self.state = READY
            self.need_confirm = True
        self._drive(0)

    def power_up(self):
        """At boot: drive the contacts to the recorded intent. Closing waits a random delay so
        a feeder full of meters does not reconnect in the same second after an outage."""
        closed = self.state == CONNECTED
        delay = self._pick_delay() if closed else 0
        if self._delayed_out:
            self._out.power_up(closed, delay * 1000)
        else:
            self._out.set(closed)

    # -- overrides --------------------------------------------------------------
    def effective(self):
        r = self.reasons
        if self.mode == 0:
            r &= ~_ALWAYS_DEFERS
        if self.keep_power:
            r &= ~_KEEP_POWER_DEFERS
        if self.friendly:
            r &= ~CREDIT
        return r

    def set_keep_power(self, on):
        on = bool(on)
        if on != self.keep_power:
            self.keep_power = on
            self.changed = True
            self._emit(events.KEEP_POWER, 1 if on else 0)
            self._update(top(self.reasons & _KEEP_POWER_DEFERS))

    def defer_credit(self, on):
        """Billing's hook: True while a friendly period holds off credit disconnection."""
        on = bool(on)
        if on != self.friendly:
            self.friendly = on
            self.changed = True
            self._emit(events.FRIENDLY, 1 if on else 0)
            self._update(CREDIT)

    # -- reasons ------------------------------------------------------------------
    def set_reason(self, reason):
        reason &= ALL
        if not reason or self.reasons & reason == reason:
            return
        self.reasons |= reason
        self.changed = True
        self._emit(events.REASON_SET, reason)
        self._update(reason)

    def clear_reason(self, reason):
        if not self.reasons & reason:
            return
        self.reasons &= ~reason
        self.changed = True
        self._emit(events.REASON_CLEARED, reason)
        self._update(reason)

    def require_confirm(self):
        """The next close needs a local confirmation (e.g. the limiter latched)."""
        if not self.need_confirm:
            self.need_confirm = True
            self.changed = True

    # -- the state machine --------------------------------------------------------
    def _update(self, why):
        eff = self.effective()
        if eff:
            if eff & self.confirm_mask and not self.need_confirm:
                self.need_confirm = True
                self.changed = True
            if self.state != DISCONNECTED:
                self._go(DISCONNECTED, top(eff))
            return
        if self.state == CONNECTED:
            if self.need_confirm:
                self.need_confirm = False  # nothing opened the contacts: nothing is owed
                self.changed = True
            return
        if self._local:
            self._go(CONNECTED, MANUAL)
        elif self.need_confirm:
            if self.state != READY:
                self._go(READY, why)
        else:
            self._go(CONNECTED, why)

    def _go(self, state, reason):
        self.state = state
        self.changed = True
        if state == CONNECTED:
            self.need_confirm = False
            self.reconnects += 1
            self._emit(events.RELAY_CLOSED, reason)
            # A load-limit retry concerns one home; every other automatic close may happen on
            # many meters at once (supply back, broker-wide command), so it waits a random delay.
            self._drive(0 if self._local or reason == LOAD else self._pick_delay())
        elif state == DISCONNECTED:
            self.disconnects += 1
            self._emit(events.RELAY_OPEN, reason)
            self._drive(0)
        else:
            self._emit(events.RELAY_ARMED, reason)
            self._drive(0)

    def _pick_delay(self):
        if self._rand is None or self.delay_max_s <= 0:
            return 0
        return self._rand(self.delay_max_s + 1)

    def _drive(self, delay_s):
        closed = self.state == CONNECTED
        if self._delayed_out:
            self._out.command(closed, delay_s * 1000)
            if delay_s and closed:
                self.last_delay_s = delay_s
                self._emit(events.RELAY_DELAYED, delay_s)
        else:
            self._out.set(closed)

    # -- local and remote commands -------------------------------------------------
    def confirm_local(self):
        """The customer's button (held ~3 s) or the REPL: closes the contacts if nothing but
        a confirmation (or the customer's own reasons) holds them open. Returns True if closed."""
        if self.state == CONNECTED:
            return False
        self._local = True
        try:
            if self.on_confirm is not None:
                self.on_confirm()  # cancels a load-limit retry cycle or latch
            if self.reasons & MANUAL:
                self.clear_reason(MANUAL)
            if self.state != CONNECTED and not self.effective():
                self._update(MANUAL)
        finally:
            self._local = False
        if self.state == CONNECTED:
            return True
        self._emit(events.CONFIRM_REFUSED, top(self.effective()))
        return False

    def manual_disconnect(self):
        """Local disconnect (REPL or technician): undone by a local confirm. Refused (False)
        in the control modes without manual disconnection."""
        if not self.manual_allowed:
            return False
        self.set_reason(MANUAL)
        return True

    def remote_disconnect(self):
        self.set_reason(REMOTE)

    def remote_reconnect(self, direct=None):
        """DLMS remote_reconnect: arms (READY, transition d) or closes directly (transition a)
        when nothing else holds the contacts open; `direct` None = the control mode's default."""
        if direct is None:
            direct = self.remote_direct
        if not direct and self.reasons & REMOTE and not self.need_confirm:
            self.need_confirm = True
            self.changed = True
        if direct and self.need_confirm and not (self.effective() & ~REMOTE):
            self.need_confirm = False
            self.changed = True
        self.clear_reason(REMOTE)
        if direct and self.state == READY and not self.effective():
            self.need_confirm = False
            self._go(CONNECTED, REMOTE)
        return self.state
