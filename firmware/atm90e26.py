# ATM90E26 single-phase energy-metering IC, SPI driver.
# Frame: 24 clocks per CS-low window: [R/W|addr7][data hi][data lo], MSB first, SPI mode 3.
# Every bus transaction goes through _xfer(); buffers are preallocated so a read cycle allocates nothing.
from micropython import const
from meterchip import MeterChip, ChipError, OK, RESET, NO_ANSWER, UPSET, TWOS16, ATMEL_PHI  # noqa: F401 (re-exported)

SOFT_RESET = const(0x00)
SYS_STATUS = const(0x01)
FUNC_EN = const(0x02)
SAG_TH = const(0x03)
LAST_DATA = const(0x06)
CAL_START = const(0x20)
PL_CONST_H = const(0x21)
PL_CONST_L = const(0x22)
L_GAIN = const(0x23)
L_PHI = const(0x24)
N_GAIN = const(0x25)
N_PHI = const(0x26)
P_START_TH = const(0x27)
P_NOL_TH = const(0x28)
Q_START_TH = const(0x29)
Q_NOL_TH = const(0x2A)
M_MODE = const(0x2B)
CS1 = const(0x2C)
ADJ_START = const(0x30)
U_GAIN = const(0x31)
I_GAIN_L = const(0x32)
I_GAIN_N = const(0x33)
U_OFFSET = const(0x34)
I_OFFSET_L = const(0x35)
I_OFFSET_N = const(0x36)
P_OFFSET_L = const(0x37)
Q_OFFSET_L = const(0x38)
P_OFFSET_N = const(0x39)
Q_OFFSET_N = const(0x3A)
CS2 = const(0x3B)
AP_ENERGY = const(0x40)
AN_ENERGY = const(0x41)
EN_STATUS = const(0x46)
IRMS = const(0x48)
URMS = const(0x49)
PMEAN = const(0x4A)
QMEAN = const(0x4B)
FREQ = const(0x4C)
POWER_F = const(0x4D)
IRMS2 = const(0x68)

_RESET_CODE = const(0x789A)
_CAL_ENABLE = const(0x5678)  # bank writable, metering runs without checksum check
_CAL_CHECK = const(0x8765)  # check bank against CS, run if it matches
_FUNC_EN_VALUE = const(0x0030)  # sag IRQ + WarnOut; non-default so a silent reset shows
_FUNC_EN_POWER_ON = const(0x000C)
_SAG_TH_DEFAULT = const(0x17DD)
_STARTUP_MS = const(100)  # after SoftReset (T1 is 5 ms in one driver; Microchip's demo waits 100 ms)
_CAL_ERR = const(0xC000)
_ADJ_ERR = const(0x3000)

# Bank 1 (metering calibration, checked by CS1) and bank 2 (measurement calibration, CS2),
# in address order, with the power-on values used for any register the board does not set.
BANK1 = (PL_CONST_H, PL_CONST_L, L_GAIN, L_PHI, N_GAIN, N_PHI, P_START_TH, P_NOL_TH, Q_START_TH, Q_NOL_TH, M_MODE)
BANK1_DEFAULTS = (0x0015, 0xD174, 0, 0, 0, 0, 0x08BD, 0, 0x0AEC, 0, 0x9422)
BANK2 = (U_GAIN, I_GAIN_L, I_GAIN_N, U_OFFSET, I_OFFSET_L, I_OFFSET_N, P_OFFSET_L, Q_OFFSET_L, P_OFFSET_N, Q_OFFSET_N)
BANK2_DEFAULTS = (0x6720, 0x7A13, 0x7530, 0, 0, 0, 0, 0, 0, 0)

# Calibration parameters by name (what the REPL calibration and the stored record use).
CAL_REGS = {"plconst_h": PL_CONST_H, "plconst_l": PL_CONST_L, "pgain": L_GAIN, "phi": L_PHI,
            "ngain": N_GAIN, "nphi": N_PHI, "mmode": M_MODE, "ugain": U_GAIN, "igain": I_GAIN_L,
            "igain_n": I_GAIN_N, "uoffset": U_OFFSET, "ioffset": I_OFFSET_L, "poffset": P_OFFSET_L}


# Lphi/Nphi: sign-magnitude, sign in bit 15, magnitude in bits 9:0. Offsets: two's complement.
PHI_FORM = ATMEL_PHI


def checksum(values, regs=None):
    """CS1/CS2 of a bank of 16-bit registers: high byte = XOR of all bytes, low byte = sum mod 256.
    With regs, values are addresses looked up in it (no list built: allocation-free)."""
    s = 0
    x = 0
    for v in values:
        if regs is not None:
            v = regs[v]
        hi = (v >> 8) & 0xFF
        lo = v & 0xFF
        s += hi + lo
        x ^= hi ^ lo
    return (x << 8) | (s & 0xFF)


def bank_values(regs, defaults, cal):
    """Register values for a bank: calibration (dict name or addr -> value) over the power-on defaults."""
    by_addr = {}
    for k, v in cal.items():
        by_addr[CAL_REGS[k] if isinstance(k, str) else k] = v
    return tuple(by_addr.get(r, d) & 0xFFFF for r, d in zip(regs, defaults))


def _s16(v):
    return v - 0x10000 if v & 0x8000 else v


class ATM90E26(MeterChip):
    NAME = "atm90e26"
    E_MAX = 0xFFFF  # 16-bit energy registers, 0.1 pulse per LSB
    WH_NUM = 100  # Wh = counts * 100 / meter_constant
    CAL_DEFAULTS = {"ugain": 0x6720, "igain": 0x7A13, "pgain": 0, "phi": 0}
    CAL_FORMS = {"phi": PHI_FORM, "nphi": PHI_FORM, "uoffset": TWOS16, "ioffset": TWOS16, "poffset": TWOS16}
    CAL_PROBE = {"phi": 8, "uoffset": 1024, "ioffset": 1024}

    def __init__(self, spi, cs, cal=None, meter_constant=3200, delay_ms=None):
        MeterChip.__init__(self, 1, delay_ms)
        self.WH_DEN = meter_constant
        self._spi = spi
        self._cs = cs
        self._tx = bytearray(3)
        self._rx = bytearray(3)
        self.i_n_ma = 0  # neutral current, for the live/neutral tamper check
        self.set_cal(cal or {})
        cs(1)

    def set_cal(self, cal):
        for k in cal:
            if isinstance(k, str) and k not in CAL_REGS:
                raise ValueError("unknown calibration register %r" % k)
        self.bank1 = bank_values(BANK1, BANK1_DEFAULTS, cal)
        self.bank2 = bank_values(BANK2, BANK2_DEFAULTS, cal)
        self.cs1 = checksum(self.bank1)
        self.cs2 = checksum(self.bank2)
        self.cal = {}
        for k in CAL_REGS:
            self.cal[k] = self.cal_value(k)

    def cal_value(self, name):
        r = CAL_REGS[name]
        if r in BANK1:
            return self.bank1[BANK1.index(r)]
        return self.bank2[BANK2.index(r)]

    def _xfer(self, cmd, value):
        # The one bus choke point. Returns the 16 bits clocked in after the command byte.
        tx = self._tx
        tx[0] = cmd
        tx[1] = (value >> 8) & 0xFF
        tx[2] = value & 0xFF
        self._cs(0)
        self._spi.write_readinto(tx, self._rx)
        self._cs(1)
        return (self._rx[1] << 8) | self._rx[2]

    def _read(self, addr):
        return self._xfer(0x80 | addr, 0)

    def _write(self, addr, value):
        self._xfer(addr & 0x7F, value)

    def _last(self, addr):
        return LAST_DATA

    # Kept for REPL use and tests: a raw read/write of one register.
    def read(self, addr):
        return self._read(addr)

    def write(self, addr, value):
        self._write(addr, value)

    def init(self):
        """Soft reset, then load both calibration banks with checksums computed here."""
        self._write(SOFT_RESET, _RESET_CODE)
        self._settle(_STARTUP_MS)
        if self.read_sure(SYS_STATUS) < 0:
            raise ChipError("chip absent (MISO reads all ones)")
        self.write_verified(FUNC_EN, _FUNC_EN_VALUE)
        self.write_verified(SAG_TH, _SAG_TH_DEFAULT)
        for start, regs, vals, csreg, cs in (
            (CAL_START, BANK1, self.bank1, CS1, self.cs1),
            (ADJ_START, BANK2, self.bank2, CS2, self.cs2),
        ):
            self.write_verified(start, _CAL_ENABLE)
            for r, v in zip(regs, vals):
                self.write_verified(r, v)
            self.write_verified(csreg, cs)
            self.write_verified(start, _CAL_CHECK)
        status = self.read_sure(SYS_STATUS)
        if status < 0:
            raise ChipError("no consistent answer from the chip")
        if status & _CAL_ERR:
            raise ChipError("CS1 mismatch: chip computed 0x%04x" % self.read_sure(CS1))
        if status & _ADJ_ERR:
            raise ChipError("CS2 mismatch: chip computed 0x%04x" % self.read_sure(CS2))
        # Reading the energy registers clears them: start counting from zero after init.
        self.read_sure(AP_ENERGY)
        self.read_sure(AN_ENERGY)

    def state(self):
        """OK, RESET (FuncEn back at its power-on value, or the chip flags a calibration
        checksum error and has stopped metering), UPSET (a calibration register changed since
        init: the chip's CS1/CS2 read-back, its checksum of the banks as they are now, no longer
        matches ours) or NO_ANSWER."""
        st = self._check_reg(FUNC_EN, _FUNC_EN_VALUE, _FUNC_EN_POWER_ON)
        if st != OK:
            return st
        status = self.read_sure(SYS_STATUS)
        if status < 0:
            return NO_ANSWER
        if status & (_CAL_ERR | _ADJ_ERR):
            return RESET
        return self._banks_intact()

    def _banks_intact(self):
        # Two verified reads per poll (no tuple built: the poll allocates nothing).
        st = self._bank_intact(CS1, self.cs1)
        return st if st != OK else self._bank_intact(CS2, self.cs2)

    def _bank_intact(self, reg, ours):
        # A mismatch is read once more before it counts, so a bus fault cannot pass for an
        # upset (an upset costs a re-init, a soft reset).
        v = self.read_sure(reg)
        if v == ours:
            return OK
        v = self.read_sure(reg)
        if v < 0:
            return NO_ANSWER
        return OK if v == ours else UPSET

    def read_energy(self):
        e = self.energy
        e[0] = self.read_sure(AP_ENERGY)
        e[1] = self.read_sure(AN_ENERGY)

    def read_inst(self):
        """Instantaneous values; a register that gives no consistent answer reads as 0."""
        self.v_cv[0] = _pos(self.read_sure(URMS))
        self.i_ma[0] = _pos(self.read_sure(IRMS))
        self.i_n_ma = _pos(self.read_sure(IRMS2))
        p = self.read_sure(PMEAN)
        self.p_w[0] = _s16(p) if p >= 0 else 0
        q = self.read_sure(QMEAN)
        self.q_var[0] = _s16(q) if q >= 0 else 0
        pf = self.read_sure(POWER_F)  # sign-magnitude, 0.001 per LSB
        self.pf_milli[0] = (-(pf & 0x7FFF) if pf & 0x8000 else pf) if pf >= 0 else 0
        self.f_chz = _pos(self.read_sure(FREQ))

    def _diagnose(self, problems):
        # ATM90E26: the checksum flags in SysStatus, the chip's own checksums of the banks as
        # they are now (an upset shows there first), FuncEn as reset marker, and both banks
        # back in check mode (0x8765) after init.
        st = self.read_sure(SYS_STATUS)
        fn = self.read_sure(FUNC_EN)
        cal = self.read_sure(CAL_START)
        adj = self.read_sure(ADJ_START)
        cs1 = self.read_sure(CS1)
        cs2 = self.read_sure(CS2)
        for flag, got, ours, name in ((_CAL_ERR, cs1, self.cs1, "CS1 (metering bank)"),
                                      (_ADJ_ERR, cs2, self.cs2, "CS2 (measurement bank)")):
            # (after a reset the banks are at their defaults: that is the reset, not a mismatch)
            if (st >= 0 and st & flag) or (got >= 0 and got != ours and fn == _FUNC_EN_VALUE):
                problems.append("%s mismatch: chip computes 0x%04x, we wrote 0x%04x" % (name, got & 0xFFFF, ours))
        if fn == _FUNC_EN_POWER_ON:
            problems.append("chip was reset (FuncEn at power-on value 0x%04x)" % fn)
        if cal != _CAL_CHECK or adj != _CAL_CHECK:
            problems.append("calibration banks not in check mode (CalStart 0x%04x, AdjStart 0x%04x)" % (
                cal & 0xFFFF, adj & 0xFFFF))
        return "SysStatus 0x%04x, FuncEn 0x%04x, CalStart/AdjStart 0x%04x/0x%04x, CS1 0x%04x CS2 0x%04x" % (
            st & 0xFFFF, fn & 0xFFFF, cal & 0xFFFF, adj & 0xFFFF, self.cs1, self.cs2)


def _pos(v):
    return v if v > 0 else 0
