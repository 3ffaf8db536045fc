# Simulated board parts: relay contacts (with feedback and fault injection), the customer's
# button, and plain switch inputs (terminal cover, magnetic sensor).


class SimRelay:
    """Contacts driven like a monostable (set) or latching (pulse) relay. `feedback()` is the
    load-side voltage sense: True while the contacts are really closed.
    Faults: weld() (contacts stay closed whatever is driven), fail_coil() (the coil no
    longer moves the contacts; a monostable one drops open)."""

    def __init__(self):
        self.closed = False  # unpowered: a monostable relay starts open
        self.operations = 0
        self.pulses = 0
        self.welded = False
        self.coil_failed = False

    def _move(self, closed):
        if self.welded and not closed:
            return
        if self.coil_failed:
            return
        if closed != self.closed:
            self.operations += 1
        self.closed = closed

    def set(self, closed):
        self._move(closed)

    def pulse(self, closed, ms):
        self.pulses += 1
        self._move(closed)

    def feedback(self):
        return self.closed

    def weld(self):
        self.welded = True
        self.closed = True

    def fail_coil(self, drop_open=True):
        self.coil_failed = True
        if drop_open and not self.welded:
            self.closed = False

    def repair(self):
        self.welded = False
        self.coil_failed = False


class SimSwitch:
    """A digital input: call it to read; set `on` to change it."""

    def __init__(self, on=False):
        self.on = on

    def __call__(self):
        return self.on


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
