# Disconnect control: the DLMS three-state model with a set of disconnect reasons.
#   CONNECTED --(any reason set)--> DISCONNECTED --(all reasons cleared)--> READY
#   READY --(local confirm, or direct remote reconnect)--> CONNECTED
# With auto_reconnect the contacts close as soon as the last reason clears.
# The contacts are only ever driven from here, and only to match `state`.
from micropython import const
import events

CONNECTED = const(0)
DISCONNECTED = const(1)
READY = const(2)  # ready for reconnection: waiting for the customer to confirm locally

STATE_NAMES = ("connected", "disconnected", "ready")

# Reasons, by priority (lowest bit = highest priority).
SAFETY = const(1)
REMOTE = const(2)
CREDIT = const(4)
LOAD = const(8)
MANUAL = const(16)
REASON_NAMES = ("safety", "remote", "credit", "load", "manual")


class RelayControl:
    def __init__(self, hw, emit, auto_reconnect=False):
        self._hw = hw
        self._emit = emit
        self.auto_reconnect = auto_reconnect
        self.state = CONNECTED
        self.reasons = 0
        self.disconnects = 0
        self.reconnects = 0
        self.changed = False  # set on every transition; the app commits and clears it

    def restore(self, state, reasons):
        """After boot: the intent comes only from the persisted record (never from the network)."""
        self.state = state if state in (CONNECTED, DISCONNECTED, READY) else DISCONNECTED
        self.reasons = reasons & 0x1F
        if self.reasons and self.state == CONNECTED:
            self.state = DISCONNECTED
        self._hw.set(self.state == CONNECTED)

    def _go(self, state, arg):
        self.state = state
        self.changed = True
        self._hw.set(state == CONNECTED)
        if state == CONNECTED:
            self.reconnects += 1
            self._emit(events.RELAY_CLOSED, arg)
        elif state == DISCONNECTED:
            self.disconnects += 1
            self._emit(events.RELAY_OPEN, arg)
        else:
            self._emit(events.RELAY_ARMED, arg)

    def set_reason(self, reason):
        if self.reasons & reason:
            return
        self.reasons |= reason
        self.changed = True
        if self.state != DISCONNECTED:
            self._go(DISCONNECTED, reason)

    def clear_reason(self, reason):
        if not self.reasons & reason:
            return
        self.reasons &= ~reason
        self.changed = True
        if not self.reasons and self.state == DISCONNECTED:
            self._go(CONNECTED if self.auto_reconnect else READY, reason)

    def confirm_local(self):
        """The customer's button (or the REPL): closes the contacts only from READY."""
        if self.state == READY and not self.reasons:
            self._go(CONNECTED, MANUAL)
            return True
        return False

    def remote_reconnect(self, direct):
        self.clear_reason(REMOTE)
        if direct and self.state == READY:
            self._go(CONNECTED, REMOTE)
        return self.state
