# Pulse inputs from water or gas meters (reed switch or open collector to ground, pulled up):
# debounced counting, converted to integer volume by a configured constant per pulse.
# sample() is the whole interface to hardware: a board calls it from a periodic timer (or on
# every edge plus once per loop), so the logic is the same on the device and in tests.
from micropython import const

_IDLE = const(1)  # contact open, line pulled high


class PulseInput:
    """One input. `per_pulse` volume units per pulse (e.g. 10 litres, or 10 for 0.01 m3 counted
    in m3/1000); `unit` names them for telemetry ('l' or 'm3/1000'). A level change counts only
    after it has been stable for debounce_ms, and a pulse is one closed period of the contact."""

    def __init__(self, name, unit, per_pulse, debounce_ms, ticks_diff):
        if type(per_pulse) is not int or per_pulse <= 0:
            raise ValueError("per_pulse must be a positive integer")
        if type(debounce_ms) is not int or not 0 < debounce_ms < 10000:
            raise ValueError("debounce_ms must be 1..9999")
        self.name = name
        self.unit = unit
        self.per_pulse = per_pulse
        self._debounce = debounce_ms
        self._diff = ticks_diff
        self.count = 0  # pulses since manufacture (persisted with the energy registers)
        self.bounces = 0  # level changes that did not last: contact bounce or noise
        self._level = _IDLE  # debounced level
        self._cand = _IDLE  # level seen last, waiting to be stable
        self._since = 0

    def sample(self, level, now_ms):
        """The line is at `level` (0 or 1) at time now_ms (ticks)."""
        if level != self._cand:
            if self._cand != self._level:
                self.bounces += 1  # the previous change did not last
            self._cand = level
            self._since = now_ms
        elif level != self._level and self._diff(now_ms, self._since) >= self._debounce:
            self._level = level
            if level != _IDLE:
                self.count += 1

    @property
    def value(self):
        """Volume since manufacture in the configured integer unit."""
        return self.count * self.per_pulse


def from_config(doc, ticks_diff):
    """Inputs from a board config list: [{"name": "water", "unit": "l", "per_pulse": 10,
    "debounce_ms": 20}, ...] (at most MAX_INPUTS)."""
    out = []
    for d in doc or ():
        out.append(PulseInput(d["name"], d.get("unit", "l"), d["per_pulse"], d.get("debounce_ms", 20),
                              ticks_diff))
    if len(out) > MAX_INPUTS:
        raise ValueError("at most %d pulse inputs" % MAX_INPUTS)
    return tuple(out)


MAX_INPUTS = 2  # slots in the durable record
