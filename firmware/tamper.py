# Tamper detection: terminal cover and magnetic-field inputs (board GPIOs), reverse energy
# flow, and live/neutral current mismatch (from metering, when it provides `ln_mismatch`).
# Each kind is latched in `flags` once it has been present for debounce_s, raises a TAMPER
# event, and disconnects (reason TAMPER) if configured. Flags persist until cleared by an
# authenticated command or the REPL. step() allocates nothing.
from micropython import const
from array import array
import events
import relay as relay_mod

COVER = const(1)  # terminal cover opened
MAGNET = const(2)  # strong magnetic field at the sensor
REVERSE = const(4)  # energy flowing out of a consumption-only connection
LN_MISMATCH = const(8)  # live and neutral currents disagree (a bypass or an earth path)
NAMES = ("cover", "magnet", "reverse", "ln_mismatch")
_KINDS = const(4)


def mask_of(names):
    """Config list of kind names -> bitmask; unknown names are an error."""
    m = 0
    for n in names:
        if n not in NAMES:
            raise ValueError("tamper kind %r" % n)
        m |= 1 << NAMES.index(n)
    return m


class Tamper:
    def __init__(self, relay, clock, emit, disconnect_mask=0, debounce_s=2, reverse_w=50, metering=None,
                 cover=None, magnet=None):
        self._relay = relay
        self._clock = clock
        self._emit = emit
        self.disconnect_mask = disconnect_mask
        self._debounce_ms = debounce_s * 1000
        self._reverse_w = reverse_w
        self._mt = metering
        self._has_ln = metering is not None and hasattr(metering, "ln_mismatch")
        self._cover = cover  # callable: True while the cover is open
        self._magnet = magnet  # callable: True while a magnet is detected
        self._since = array("i", bytes(4 * _KINDS))
        self._seen = 0  # kinds present now (being debounced or latched)
        self.flags = 0  # latched kinds, persisted
        self.events = 0
        self.changed = False

    def restore(self, flags):
        self.flags = flags & 0x0F

    def inputs(self, p_w):
        m = 0
        if self._cover is not None and self._cover():
            m |= COVER
        if self._magnet is not None and self._magnet():
            m |= MAGNET
        if p_w < -self._reverse_w:
            m |= REVERSE
        if self._has_ln and self._mt.ln_mismatch:
            m |= LN_MISMATCH
        return m

    def step(self, now, p_w):
        present = self.inputs(p_w)
        new = present & ~self._seen
        self._seen = present
        ck = self._clock
        i = 0
        while i < _KINDS:
            bit = 1 << i
            if new & bit:
                self._since[i] = now
            elif present & bit and not self.flags & bit:
                if ck.ticks_diff(now, self._since[i]) >= self._debounce_ms:
                    self._latch(bit)
            i += 1

    def _latch(self, bit):
        self.flags |= bit
        self.events += 1
        self.changed = True
        self._emit(events.TAMPER, bit)
        if bit & self.disconnect_mask:
            self._relay.set_reason(relay_mod.TAMPER)

    def clear(self):
        """Authenticated command or REPL: forget latched tamper and lift the TAMPER reason
        (the relay then waits for a local confirmation)."""
        had = self.flags
        self.flags = 0
        self._seen = 0
        self.changed = True
        self._emit(events.TAMPER_CLEARED, had)
        self._relay.clear_reason(relay_mod.TAMPER)
