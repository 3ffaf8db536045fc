# Simulated board parts: relay contacts and the customer's button.


class SimRelay:
    def __init__(self):
        self.closed = True
        self.operations = 0

    def set(self, closed):
        if closed != self.closed:
            self.operations += 1
        self.closed = closed


class SimButton:
    """Held down until `release_ms` (simulated ticks from the board clock)."""

    def __init__(self, clock):
        self._clock = clock
        self._until = None

    def hold(self, ms):
        self._until = self._clock.ticks_add(self._clock.ticks_ms(), ms)

    def __call__(self):
        if self._until is None:
            return False
        if self._clock.ticks_diff(self._until, self._clock.ticks_ms()) > 0:
            return True
        self._until = None
        return False
