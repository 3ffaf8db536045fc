# What every metering-chip driver shares: the read API the Metering layer relies on, verified
# reads and writes through the chip's "last data" register, and the chip states.
#
# A driver subclass provides _read(addr) and _write(addr, value) (one bus transaction each,
# through its single _xfer choke point), _last(addr) (address of the register echoing the last
# transaction's data), ONES (what a silent bus reads: MISO pulled up), and the chip-specific
# init(), state(), read_energy() and read_inst().
from micropython import const
from array import array

OK = const(0)
RESET = const(1)  # configuration is back at power-on values: the chip reset silently
NO_ANSWER = const(2)  # absent chip or a bus fault that retries did not clear
UPSET = const(3)  # the chip's own configuration check failed without a reset (e.g. ESD): re-init

_TRIES = const(3)  # bounded retries per register before giving up for this poll


# Formats of the signed calibration registers (phase and offsets), as (kind, sign bit, mask of
# the value bits, largest magnitude): sign-magnitude or two's complement.
SIGN_MAG = const(0)
TWOS = const(1)
TWOS16 = (TWOS, 0x8000, 0xFFFF, 0x7FFF)
TWOS24 = (TWOS, 0x800000, 0xFFFFFF, 0x7FFFFF)
ATMEL_PHI = (SIGN_MAG, 0x8000, 0x3FF, 0x3FF)  # ATM90E26 Lphi/Nphi: sign bit 15, magnitude bits 9:0


def to_signed(form, raw):
    """A signed calibration register's value as a plain int."""
    kind, sign, mask, _ = form
    if kind == SIGN_MAG:
        m = raw & mask
        return -m if raw & sign else m
    raw &= mask
    return raw - mask - 1 if raw & sign else raw


def from_signed(form, n):
    """The register value for n; ValueError if the register cannot hold it."""
    kind, sign, mask, top = form
    if not -top <= n <= top:
        raise ValueError("%d is outside the register's range +-%d" % (n, top))
    if kind == SIGN_MAG:
        return sign | -n if n < 0 else n
    return n & mask


class ChipError(Exception):
    pass


class MeterChip:
    """Common part of the drivers. Energy is read into `energy` as counts since the last read:
    [import total, export total, import ch1, export ch1, ...]; -1 marks a register that could
    not be read. Wh = counts * WH_NUM / WH_DEN. Instantaneous values go to per-channel arrays:
    v_cv (0.01 V), i_ma (mA), p_w (W, signed), q_var (var, signed), pf_milli (signed), and
    f_chz (0.01 Hz)."""

    CHANNELS = 1
    ONES = 0xFFFF
    i_n_ma = -1  # neutral current where the chip measures it (ATM90E26), else -1
    cal_state = "none"  # stored calibration: 'none' (board defaults), 'ok', 'invalid'
    GAIN_MAX = 0xFFFF
    SIGNED_PGAIN = True  # Atmel chips: energy gain is a signed correction around unity

    def __init__(self, channels, delay_ms=None):
        self.CHANNELS = channels
        self._delay = delay_ms  # the board's sleep_ms: waits the chip needs after a reset
        self.energy = array("i", bytes(4 * 2 * (channels + 1)))
        self.v_cv = array("i", bytes(4 * channels))
        self.i_ma = array("i", bytes(4 * channels))
        self.p_w = array("i", bytes(4 * channels))
        self.q_var = array("i", bytes(4 * channels))
        self.pf_milli = array("i", bytes(4 * channels))
        self.f_chz = 0
        self.bus_errors = 0  # transactions that had to be repeated
        self.cal = {}  # calibration register values by name (see the driver's CAL_DEFAULTS)

    def read_sure(self, addr):
        """Read a register and confirm it against the chip's own record of what it sent.
        Returns the value, or -1 if the bus never gave a consistent answer.

        An all-ones word means the chip did not drive MISO (absent, or a dropped frame): it did
        not act on the read, so reading again is safe even for clear-on-read registers. Any
        other word was delivered, so a clear-on-read register is already cleared; the value is
        then taken from the last-data register (read until two answers agree), never re-read."""
        tries = 0
        ones = self._ones(addr)
        v = self._read(addr)
        while v == ones:
            tries += 1
            if tries >= _TRIES:
                return -1
            self.bus_errors += 1
            v = self._read(addr)
        last_reg = self._last(addr)
        while True:
            last = self._read(last_reg)
            if last == v:
                return v
            tries += 1
            self.bus_errors += 1
            if tries > 2 * _TRIES:
                return -1
            if last != ones:  # an all-ones echo is no answer: never let it become the value
                v = last

    def _settle(self, ms):
        # The chip ignores the bus for a while after a reset: without a wait, init would find
        # it "absent" every time on real hardware.
        if self._delay:
            self._delay(ms)

    def _ones(self, addr):
        return self.ONES

    def cal_key(self, quantity, ch=0):
        """Name of the calibration parameter for quantity ('ugain', 'igain', 'pgain') on channel ch."""
        return quantity

    # Signed calibration registers by quantity ('phi', 'uoffset', 'ioffset'): their format, and
    # a first trial step (register units) for the measured trim in calibration.py.
    CAL_FORMS = {}
    CAL_PROBE = {}

    def cal_signed(self, key):
        """A phase or offset calibration register (by name) as a signed number."""
        return to_signed(self.CAL_FORMS[key.partition("_")[0]], self.cal_value(key))

    def cal_encode(self, key, n):
        """Register value of phase/offset register `key` for the signed number n (ValueError if out of range)."""
        return from_signed(self.CAL_FORMS[key.partition("_")[0]], n)

    def scale_gain(self, key, ref, measured):
        """New value of gain register `key` so that a reading of `measured` becomes `ref`.
        Energy gains of the Atmel chips ('pgain*') are signed corrections around unity
        (factor 1 + g/2^15); every other gain is proportional."""
        old = self.cal_value(key)
        if key.startswith("pgain") and self.SIGNED_PGAIN:
            f = 32768 + (old - 0x10000 if old & 0x8000 else old)
            new = (f * ref + measured // 2) // measured - 32768
            if not -32768 <= new <= 32767:
                raise ValueError("energy gain out of range")
            return new & 0xFFFF
        new = (old * ref + measured // 2) // measured
        if not 0 < new <= self.GAIN_MAX:
            raise ValueError("gain out of range")
        return new

    def write_verified(self, addr, value):
        """Write, then check the echo in the last-data register; repeat a bounded number of times."""
        for _ in range(_TRIES):
            self._write(addr, value)
            if self.read_sure(self._last(addr)) == value:
                return
            self.bus_errors += 1
        raise ChipError("write 0x%03x=0x%x not confirmed" % (addr, value))

    def _check_reg(self, addr, ours, power_on):
        """Chip state from one configuration register we set to a non-power-on value: ours means
        configured, the power-on value means a silent reset, anything else is a bus fault."""
        v = self.read_sure(addr)
        if v == ours:
            return OK
        if v == power_on:
            return RESET
        return NO_ANSWER

    def max_poll_ms(self, max_power_w):
        """Longest poll interval before the fullest energy register could overflow at max_power_w
        (total import of all channels at once, the worst case)."""
        counts_per_s = max_power_w * self.WH_DEN // (3600 * self.WH_NUM) + 1
        return self.E_MAX * 1000 // counts_per_s

    # -- technician's diagnosis (REPL selftest; never on the metering hot path) ------------
    def diagnose(self):
        """What the chip can tell about its own health: (problems, detail). problems is a list
        of readable faults, empty when healthy; detail says in one line what was checked.
        The absent check and the chip state are shared; the driver's _diagnose() adds what
        only that chip can tell (its status flags and the configuration we wrote)."""
        st = self.state()
        if st == NO_ANSWER and self._silent():
            return ["chip absent: MISO reads all ones"], "no answer on the bus"
        problems = []
        detail = self._diagnose(problems)
        if st != OK and not problems:  # the state saw something the specific checks did not name
            problems.append(_STATE_TEXT[st])
        return problems, detail

    def _silent(self):
        # Nobody drives MISO: even the last-data register answers all ones, again and again.
        # (A live chip answers there with the data of a recent transaction: a configuration
        # or state value, never all ones.)
        addr = self._last(0)
        ones = self._ones(addr)
        for _ in range(_TRIES):
            if self._read(addr) != ones:
                return False
        return True

    def _diagnose(self, problems):
        # A driver adds its own checks here (see the end of each driver class).
        return "chip state read"


_STATE_TEXT = ("ok", "chip was reset (configuration back at power-on values)",
               "no consistent answer from the chip (bus fault)",
               "configuration upset (the chip's own configuration check failed)")
