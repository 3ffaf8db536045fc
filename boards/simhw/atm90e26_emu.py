# Register-level emulator of the ATM90E26, plugged in where machine.SPI and the CS pin go.
# It decodes 3-byte frames (a write commits only when CS rises after a complete frame), keeps
# the register map with power-on values, runs the CalStart/AdjStart checksum state machine
# (0x5678 restores the bank defaults and meters unchecked, 0x8765 checks the bank against CS1/CS2
# and sets the SysStatus error bits), reads CS1/CS2 back as the checksum it computes, echoes
# LastData, soft-resets on 0x789A, clears energy registers on read and wraps them at 16 bits.
# The front end's true gains (the register values that make readings exact) are parameters,
# so calibration can be exercised.
from array import array
import atm90e26 as R
from meterchip import to_signed, TWOS16
from simhw.emu_base import EmuBase, s16 as _s16

_METERING_OFF = 0x6886
_ENERGY = (R.AP_ENERGY, R.AN_ENERGY, 0x42, 0x43, 0x44, 0x45)
_INST = (R.URMS, R.IRMS, R.IRMS2, R.PMEAN, R.QMEAN, R.FREQ, R.POWER_F)



class Atm90e26Emu(EmuBase):
    STARTUP_MS = 5  # T1 after SoftReset in the notes' S7 driver
    DATA0 = 1
    BILLING_REG = R.AP_ENERGY
    # Upsets hit the calibration banks, which the chip's CS1/CS2 read-back covers. The chip is
    # modelled as metering on with the flipped value (it checks the banks against CS1/CS2 only
    # when CalStart/AdjStart is written); SysStatus does not flag it.
    UPSET_ADDRS = R.BANK1 + R.BANK2

    def __init__(self, meter_constant=3200, true_cal=None):
        EmuBase.__init__(self, 1, meter_constant, 100)  # MC/100 counts (0.1 pulse) per Wh
        self.mc = meter_constant
        self.regs = array("H", bytes(2 * 0x80))
        # true_cal: the gain register values that make this front end read exactly. Without it
        # the front end is ideal: readings are exact whatever gains the driver writes.
        self._ideal = true_cal is None
        self.true_cal = {"ugain": 0x6720, "igain": 0x7A13, "igain_n": 0x7530, "pgain": 0, "phi": 0,
                         "uoffset": 0, "ioffset": 0}
        self.true_cal.update(true_cal or {})
        tc = self.true_cal
        # True gains as plain ints, so advance() allocates nothing.
        self._tu = tc["ugain"]
        self._ti = tc["igain"]
        self._tin = tc["igain_n"]
        self._tp = 32768 + _s16(tc["pgain"] & 0xFFFF)
        # Phase and RMS offsets: the register values that cancel this front end's errors.
        # An offset LSB is 1/512 of a reading LSB (modelled on the ATM90E32's offset method).
        self._tphi = to_signed(R.PHI_FORM, tc["phi"])
        self._tuo = to_signed(TWOS16, tc["uoffset"])
        self._tio = to_signed(TWOS16, tc["ioffset"])
        self.n_ratio_milli = 1000  # neutral current / live current (1000 = no tamper)
        self._acc = [0, 0]  # fraction accumulators, import and export (mJ * cn)
        self._power_on()
        self._busy_ms = 0  # powered up long before the test or simulation starts

    # -- chip state ---------------------------------------------------------------
    def _power_on(self):
        self._account_loss()
        regs = self.regs
        for i in range(len(regs)):
            regs[i] = 0
        regs[R.FUNC_EN] = 0x000C
        regs[R.SAG_TH] = 0x1D6A
        regs[R.CAL_START] = _METERING_OFF
        regs[R.ADJ_START] = _METERING_OFF
        self._bank_defaults(R.BANK1, R.BANK1_DEFAULTS)
        self._bank_defaults(R.BANK2, R.BANK2_DEFAULTS)
        self._acc[0] = self._acc[1] = 0
        self.upset_live = False

    def _flip(self, addr, bit):
        self.regs[addr] ^= 1 << bit

    def _bank_defaults(self, regs, defaults):
        for r, d in zip(regs, defaults):
            self.regs[r] = d

    def reset(self):
        """A silent reset (brown-out): calibration and uncounted energy are gone."""
        self._power_on()

    def metering_on(self):
        r = self.regs
        return (r[R.CAL_START] in (0x5678, 0x8765) and r[R.ADJ_START] in (0x5678, 0x8765)
                and not r[R.SYS_STATUS] & 0xF000)

    def _cs_value(self, bank):
        return R.checksum(bank, self.regs)

    def _start_cmd(self, value, bank, defaults, csreg, errmask):
        st = self.regs[R.SYS_STATUS]
        if value == 0x5678:
            self._bank_defaults(bank, defaults)
            st &= ~errmask
        elif value == 0x8765 and self._cs_value(bank) == self.regs[csreg]:
            st &= ~errmask
        else:
            st |= errmask
        self.regs[R.SYS_STATUS] = st

    # -- SPI frames ---------------------------------------------------------------------

    def _transact(self, tx, rx):
        rx[0] = 0
        self._word(tx[0] & 0x7F, tx[0] & 0x80, tx, rx)

    def _read(self, addr):
        regs = self.regs
        if addr == R.CS1:
            v = self._cs_value(R.BANK1)
        elif addr == R.CS2:
            v = self._cs_value(R.BANK2)
        else:
            v = regs[addr]
        if R.AP_ENERGY <= addr <= 0x45:
            regs[addr] = 0  # energy registers clear on read
        regs[R.LAST_DATA] = v
        self._r_addr = addr
        self._r_val = v
        return v

    def _write(self, addr, value):
        regs = self.regs
        regs[R.LAST_DATA] = value
        if addr == R.SOFT_RESET:
            if value == 0x789A:
                self._power_on()
            return
        if addr in (R.SYS_STATUS, R.LAST_DATA) or addr >= 0x40:
            return  # read-only
        regs[addr] = value
        if addr == R.CAL_START:
            self._start_cmd(value, R.BANK1, R.BANK1_DEFAULTS, R.CS1, 0xC000)
        elif addr == R.ADJ_START:
            self._start_cmd(value, R.BANK2, R.BANK2_DEFAULTS, R.CS2, 0x3000)

    # -- the analogue world ---------------------------------------------------------
    def set_load(self, p_w, v_cv=23000, f_chz=5000, pf_milli=1000):
        """The single-channel form (kept for callers written before set_channel)."""
        self.set_channel(0, p_w, v_cv, pf_milli)
        self.f_chz = f_chz

    def _integrate(self, dt_ms):
        p = self.p_w[0]
        e = (p if p >= 0 else -p) * dt_ms
        if p >= 0:
            self.truth_mj += e
        else:
            self.truth_export_mj += e
        regs = self.regs
        if not self.metering_on():
            if p > 0:
                self.lost_num += e * self._cn  # drawn while the chip was not metering
            for a in _INST:
                regs[a] = 0
            return
        gn = 32768 + _s16(regs[R.L_GAIN])
        gd = gn if self._ideal else self._tp
        dphi = 0 if self._ideal else to_signed(R.PHI_FORM, regs[R.L_PHI]) - self._tphi
        if dphi:
            e = self.phase_mj(0, p * dt_ms, dphi)  # signed: what the chip measures
        else:
            e = p * dt_ms
        if e >= 0:
            n = self.to_counts(0, e, gn, gd)
            a = R.AP_ENERGY
        else:
            n = self.to_counts(1, -e, gn, gd)
            a = R.AN_ENERGY
        if regs[a] + n > 0xFFFF:
            self.overflows += 1
        regs[a] = (regs[a] + n) & 0xFFFF  # the 16-bit register wraps
        v = self.v_cv[0]
        pf = self.pf_milli[0]
        i_ma = abs(p) * 100000 * 1000 // (v * pf) if v and pf else 0
        i_n = i_ma * self.n_ratio_milli // 1000  # what flows back through the neutral
        if self._ideal:
            regs[R.URMS] = min(0xFFFF, v)
        else:
            i_n = i_n * regs[R.I_GAIN_N] // self._tin
            uo = to_signed(TWOS16, regs[R.U_OFFSET]) - self._tuo
            regs[R.URMS] = _clamp((v * regs[R.U_GAIN] * 512 // self._tu + uo) // 512)
            io = to_signed(TWOS16, regs[R.I_OFFSET_L]) - self._tio
            i_ma = (i_ma * regs[R.I_GAIN_L] * 512 // self._ti + io) // 512
        regs[R.IRMS] = _clamp(i_ma)
        regs[R.IRMS2] = _clamp(i_n)
        regs[R.PMEAN] = (self.phase_mj(0, p, dphi) * gn // gd) & 0xFFFF
        regs[R.QMEAN] = self.q_var(0) & 0xFFFF
        regs[R.FREQ] = self.f_chz
        regs[R.POWER_F] = (0x8000 | -pf) if pf < 0 else pf


def _clamp(v):
    # an RMS register is unsigned 16 bit
    return 0 if v < 0 else (0xFFFF if v > 0xFFFF else v)
