# What the chip emulators share: the analogue world (per-channel voltage, power, power factor,
# frequency over time), the ground-truth energy integrator, exact conversion of energy into
# register counts, and fault injection on the SPI seam. Runs under MicroPython and CPython.
#
# Fault kinds (injected by schedule() or directly):
#   reset   silent chip reset: calibration gone, uncounted energy lost (reported in lost_in_chip_mj)
#   absent  MISO reads all ones for a while (chip unpowered or disconnected)
#   stuck   MISO's first data bit stuck high for a while (garbage that looks consistent)
#   flip    one transaction gets one random bit of its answer flipped
#   drop    one transaction never reaches the chip (it reads all ones, nothing happens)
#   upset   one bit of a configuration register the chip's own check covers flips (ESD, a
#           single-event upset) without a reset; the chip meters on with it, and what it counts
#           wrongly until the driver re-initialises is charged to lost_num

from simhw.household import Lcg

_MJ_PER_WH = 3600000

KINDS = ("resets", "absent", "stuck", "flip", "drop", "upset")  # the sim's --faults kinds (bus = flip + drop)


def _isqrt(n):
    x = n
    y = (x + 1) // 2
    while y < x:
        x = y
        y = (x + n // x) // 2
    return x


# How the emulated front ends respond to the phase and offset registers (a model, not datasheet
# figures; calibration.py measures the response instead of assuming it): one phase LSB shifts the
# current by PHASE_URAD microradians, so active power moves by Q * dphi * PHASE_URAD / 10^6.
PHASE_URAD = 300


def s16(v):
    """A 16-bit register as a signed value."""
    return v - 0x10000 if v & 0x8000 else v


class EmuBase:
    """Subclasses set DATA0 (index of the first data byte in an answer) and implement
    _transact(tx, rx) (one decoded frame, leaving a write in _w_addr/_w_val for CS high),
    _write(addr, value), _integrate(dt_ms)
    (truth and register counts, using to_counts), reset() and metering_on(). The 16-bit Atmel
    chips share _word() (their register frame), _billing_unread() and _stuck_read() through
    BILLING_REG; a chip built otherwise overrides the last two."""

    BILLING_REG = -1  # the clear-on-read register that is billed (with fraction accumulator 0)

    ABSENT_MS = 60000  # one injected absence lasts this long
    STARTUP_MS = 0  # after a reset the chip ignores the bus this long (MISO high, writes lost)
    UPSET_ADDRS = ()  # configuration registers an upset may hit (those the chip's check covers)
    UPSET_BITS = 16  # their width
    STUCK_MS = 30000

    def __init__(self, channels, counts_per_wh_num, counts_per_wh_den=1):
        self._w_addr = -1  # a write waiting for CS to rise (see _cs_high)
        self._w_val = 0
        self._r_addr = -1
        self._r_val = 0
        self.n = channels
        self.v_cv = [23000] * channels
        self.p_w = [0] * channels
        self.pf_milli = [1000] * channels
        self.f_chz = 5000
        self._cn = counts_per_wh_num  # register counts per Wh = cn / cd
        self._cd = counts_per_wh_den * _MJ_PER_WH
        self.truth_mj = 0  # what the billing import register should have seen
        self.truth_export_mj = 0
        # Energy lost in chip resets or stuck reads, in mJ * cn units; signed, because energy
        # counted wrongly while a configuration upset lasted goes here too.
        self.lost_num = 0
        self.upset_live = False  # a flipped configuration bit is in effect (until a reset)
        self._busy_ms = 0  # left of the start-up window after a reset
        self.now_ms = 0
        self.frames = 0
        self.bus_bytes = 0
        self.overflows = 0
        self.absent = False
        self.stuck = False
        self._absent_until = 0
        self._stuck_until = 0
        self._flips = 0  # bus faults armed for upcoming transactions
        self._drops = 0
        self._schedule = []
        self._rand = Lcg(99)
        self.injected = {"resets": 0, "absent": 0, "stuck": 0, "flip": 0, "drop": 0, "upset": 0}

    @property
    def lost_in_chip_mj(self):
        return self.lost_num // self._cn

    BILLING_REGS = 1  # registers whose sum is the billed import (each keeps its own fraction)

    @property
    def lsb_mj(self):
        """Resolution of the billed import: one count per billing register, in mJ, rounded up."""
        return self.BILLING_REGS * -(-self._cd // self._cn)

    # -- the analogue world ---------------------------------------------------------
    def set_channel(self, ch, p_w, v_cv=23000, pf_milli=1000):
        self.p_w[ch] = p_w
        self.v_cv[ch] = v_cv
        self.pf_milli[ch] = pf_milli

    def q_var(self, ch):
        """Reactive power of a channel from its active power and power factor (inductive when
        the power factor is positive, capacitive when negative)."""
        p = self.p_w[ch]
        pf = self.pf_milli[ch]
        if not pf:
            return 0
        a = pf if pf > 0 else -pf
        q = abs(p) * _isqrt(1000000 - a * a) // a
        return q if pf > 0 else -q

    def phase_mj(self, ch, e_mj, dphi):
        """Energy (or power) e_mj as a chip whose phase register is dphi LSBs off measures it."""
        if not dphi:
            return e_mj
        p = self.p_w[ch]
        if not p:
            return e_mj
        # Q * dt, from the same dt as e_mj (e_mj = p * dt)
        return e_mj + e_mj * self.q_var(ch) * dphi * PHASE_URAD // (p * 1000000)

    def to_counts(self, k, e_mj, gn, gd):
        """Add e_mj (signed), scaled by the chip's energy gain gn/gd (exact when calibrated,
        gn == gd), to fraction accumulator k (in mJ * cn); returns the whole counts taken out
        (truncated toward zero). Allocates nothing on the unix port."""
        x = e_mj * self._cn
        if gn != gd:
            x = x * gn // gd
        acc = self._acc[k] + x
        d = self._cd
        n = acc // d if acc >= 0 else -((-acc) // d)
        self._acc[k] = acc - n * d
        return n

    def advance(self, dt_ms):
        if self.upset_live:
            t0 = self.truth_mj
            c0 = self._billing_unread()
            l0 = self.lost_num
            self._advance(dt_ms)
            if self.upset_live:
                # Drawn minus counted this step (plus any reset loss) is what the upset cost.
                self.lost_num = l0 + (self.truth_mj - t0) * self._cn - (self._billing_unread() - c0)
        else:
            self._advance(dt_ms)

    def _advance(self, dt_ms):
        self.now_ms += dt_ms
        self._run_schedule()  # (a fault falls at the start of the step: dt_ms pass after it)
        if self._busy_ms:
            self.sleep_ms(dt_ms)
        if self.absent and self.now_ms >= self._absent_until:
            self.absent = False
        if self.stuck and self.now_ms >= self._stuck_until:
            self.stuck = False
        self._integrate(dt_ms)

    # -- faults ---------------------------------------------------------------------
    def schedule(self, faults, span_ms, seed=1):
        """Spread faults (dict kind -> count) over the first 90 % of span_ms, reproducibly."""
        for k in faults:
            if k not in KINDS:
                raise ValueError("fault kind %r: the emulators model %s" % (k, ", ".join(KINDS)))
        r = Lcg(seed)
        ev = []
        for k in KINDS:
            for _ in range(faults.get(k, 0)):
                ev.append((1000 + r.next(span_ms * 9 // 10), k))
        ev.sort()
        self._schedule = ev

    def _run_schedule(self):
        s = self._schedule
        while s and s[0][0] <= self.now_ms:
            self.inject(s.pop(0)[1])

    def inject(self, kind):
        self.injected[kind] += 1
        if kind == "resets":
            self.reset()
        elif kind == "absent":
            self.absent = True
            self._absent_until = self.now_ms + self.ABSENT_MS
        elif kind == "stuck":
            self.stuck = True
            self._stuck_until = self.now_ms + self.STUCK_MS
        elif kind == "flip":
            self._flips += 1
        elif kind == "drop":
            self._drops += 1
        else:
            self.upset()

    def upset(self, addr=-1, bit=-1):
        """Flip one bit of configuration register addr (random register and bit when not given)."""
        if addr < 0:
            addr = self.UPSET_ADDRS[self._rand.next(len(self.UPSET_ADDRS))]
        if bit < 0:
            bit = self._rand.next(self.UPSET_BITS)
        if addr not in self.UPSET_ADDRS or not 0 <= bit < self.UPSET_BITS:
            raise ValueError("upset: one of the configuration registers the chip checks, bit 0-%d" % (
                self.UPSET_BITS - 1))
        self._flip(addr, bit)
        self.upset_live = True

    def _billing_unread(self):
        # Energy counted but not yet read from the billed register, in mJ * cn (loss accounting).
        return self.regs[self.BILLING_REG] * self._cd + self._acc[0]

    def _stuck_read(self, tx):
        # The billed clear-on-read register was read but the answer was garbled: that energy is gone.
        if self._r_addr == self.BILLING_REG:
            self.lost_num += self._r_val * self._cd

    def _word(self, addr, read, tx, rx):
        """One 16-bit register frame: a read answers at DATA0; a write waits for CS to rise."""
        d = self.DATA0
        if read:
            v = self._read(addr)
            rx[d] = v >> 8
            rx[d + 1] = v & 0xFF
        else:
            rx[d] = rx[d + 1] = 0
            self._r_addr = -1
            self._w_addr = addr
            self._w_val = (tx[d] << 8) | tx[d + 1]

    def _account_loss(self):
        """Energy the chip counted but nobody read yet (registers and the fraction of a count)
        is gone with any reset, silent or commanded; called by each emulator's _power_on(),
        which also starts the start-up window."""
        self.lost_num += self._billing_unread()
        self._busy_ms = self.STARTUP_MS

    def sleep_ms(self, ms):
        """The board's delay as the driver sees it: time passes for the start-up window (the
        analogue world is not advanced for a few milliseconds)."""
        self._busy_ms = self._busy_ms - ms if self._busy_ms > ms else 0

    # -- SPI seam -----------------------------------------------------------------------
    def _cs_high(self):
        # Every chip commits a write only on a complete frame, when CS rises.
        if self._w_addr >= 0:
            a = self._w_addr
            self._w_addr = -1
            self._write(a, self._w_val)

    def cs(self, level):
        if level:
            self._cs_high()

    def write_readinto(self, tx, rx):
        self.frames += 1
        self.bus_bytes += len(tx)
        if self.absent or self._drops or self._busy_ms:
            if not self.absent and not self._busy_ms:
                self._drops -= 1
            for i in range(len(rx)):
                rx[i] = 0xFF
            return
        self._transact(tx, rx)
        if self.stuck and not rx[self.DATA0] & 0x80:
            rx[self.DATA0] |= 0x80
            self._stuck_read(tx)
        if self._flips:
            self._flips -= 1
            bit = self._rand.next(8 * (len(rx) - self.DATA0))
            rx[self.DATA0 + bit // 8] ^= 1 << (bit % 8)

    def summary(self):
        return {"lost_in_chip_mj": self.lost_in_chip_mj, "lsb_mj": self.lsb_mj,
                "faults_injected": dict(self.injected), "emu_overflows": self.overflows}
