# A deterministic household load: base load, a cycling fridge, morning and evening peaks and
# random appliance runs. The same seed gives the same watts under MicroPython and CPython.


class Lcg:
    """Tiny portable PRNG (numerical recipes LCG), identical on every runtime."""

    def __init__(self, seed):
        self.s = (seed * 2654435761 + 1) & 0xFFFFFFFF

    def next(self, n):
        self.s = (self.s * 1664525 + 1013904223) & 0xFFFFFFFF
        return (self.s >> 8) % n


class Household:
    pf_milli = 1000  # power factor x 1000: a household's mix is taken as resistive

    def __init__(self, seed):
        self._r = Lcg(seed)
        self._appliance_w = 0
        self._appliance_left_s = 0

    def power_cut(self):
        """The supply went off: whatever appliance was running is not restarted afterwards
        (after an overload trip the customer switches the big load off)."""
        self._appliance_left_s = 0

    def power_w(self, utc, dt_s):
        """Average demand in W over the next dt_s seconds starting at `utc`."""
        sec = utc % 86400
        hour = sec // 3600
        w = 90  # standby, router, clocks
        if (sec // 60) % 40 < 15:
            w += 110  # fridge compressor
        if 6 <= hour < 9:
            w += 250
        elif 17 <= hour < 23:
            w += 450
        elif 9 <= hour < 17:
            w += 120
        if self._appliance_left_s > 0:
            self._appliance_left_s -= dt_s
            w += self._appliance_w
        else:
            # Chance per second (in millionths) of starting a kettle, oven, washer or heater:
            # about five runs in the 9 peak hours and one in the other 15.
            busy = 6 <= hour < 9 or 17 <= hour < 23
            if self._r.next(1000000) < (150 if busy else 20) * dt_s:
                kind = self._r.next(4)
                self._appliance_w = (2200, 2800, 600, 1500)[kind]
                self._appliance_left_s = (180, 2400, 5400, 3600)[kind]
        return w
