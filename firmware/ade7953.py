# ADE7953 single-phase, two-current-channel energy-metering IC, SPI driver.
# Frame per CS-low window: [addr hi][addr lo][0x80 read | 0x00 write][data, MSB first], the data
# width following from the address: 0x0xx 8 bit, 0x1xx 16 bit, 0x2xx 24 bit, 0x3xx 32 bit
# (0x7xx/0x8xx 8 bit). SPI mode 0. Every transaction goes through _xfer(), with one preallocated
# buffer pair per width so a read cycle allocates nothing.
from micropython import const
from meterchip import MeterChip, ChipError, OK, RESET, NO_ANSWER, UPSET, SIGN_MAG, TWOS24  # noqa: F401 (re-exported)

LCYCMODE = const(0x004)
PGA_V = const(0x007)
PGA_IA = const(0x008)
PGA_IB = const(0x009)
WRITE_PROTECT = const(0x040)
LAST_OP = const(0x0FD)
UNLOCK = const(0x0FE)
LAST_RWDATA_8 = const(0x0FF)
CONFIG = const(0x102)
PFA = const(0x10A)
PFB = const(0x10B)
PERIOD = const(0x10E)
RESERVED_120 = const(0x120)
LAST_ADD = const(0x1FE)
LAST_RWDATA_16 = const(0x1FF)
AP_NOLOAD = const(0x203)
AWATT = const(0x212)
BWATT = const(0x213)
AVAR = const(0x214)
BVAR = const(0x215)
IRMSA = const(0x21A)
IRMSB = const(0x21B)
VRMS = const(0x21C)
AENERGYA = const(0x21E)
AENERGYB = const(0x21F)
AIGAIN = const(0x280)
AVGAIN = const(0x281)
AWGAIN = const(0x282)
AIRMSOS = const(0x286)
VRMSOS = const(0x288)
BIGAIN = const(0x28C)
BWGAIN = const(0x28E)
BIRMSOS = const(0x292)
PHCALA = const(0x108)
PHCALB = const(0x109)
LAST_RWDATA_24 = const(0x2FF)
CRC = const(0x37F)  # 32 bit: the chip's checksum of its configuration registers
LAST_RWDATA_32 = const(0x3FF)

_STARTUP_MS = const(100)  # the chip is ready about 100 ms after a reset (what the drivers wait)
_SWRST = const(0x0080)  # CONFIG bit 7: software reset
_CONFIG_VALUE = const(0x0004)  # HPF on, COMM_LOCK cleared
_UNLOCK_KEY = const(0xAD)
_R120_VALUE = const(0x0030)  # datasheet-mandated setting of register 0x120
_RSTREAD = const(0x40)  # LCYCMODE: energy registers read-with-reset
_NOLOAD = const(0x00720C)  # no-load threshold we set; non-default so a silent reset shows
_NOLOAD_POWER_ON = const(0x00E419)

CAL_DEFAULTS = {"ugain": 0x400000, "igain_a": 0x400000, "pgain_a": 0x400000,
                "igain_b": 0x400000, "pgain_b": 0x400000, "phi_a": 0, "phi_b": 0,
                "uoffset": 0, "ioffset_a": 0, "ioffset_b": 0}
_CAL_ADDR = {"ugain": AVGAIN, "igain_a": AIGAIN, "pgain_a": AWGAIN, "igain_b": BIGAIN,
             "pgain_b": BWGAIN, "phi_a": PHCALA, "phi_b": PHCALB, "uoffset": VRMSOS,
             "ioffset_a": AIRMSOS, "ioffset_b": BIRMSOS}
# PHCALx: sign-magnitude, sign in bit 9, magnitude up to 383. RMS offsets: 24-bit two's complement.
PHI_FORM = (SIGN_MAG, 0x200, 0x1FF, 383)

# Scaling of the reference design (Shelly-class front end): counts per unit.
_V_COUNTS_PER_CV = const(260)  # VRMS: 26000 per volt
_I_COUNTS_PER_MA = const(100)  # IRMS: 100000 per amp
_W_COUNTS = const(154)  # AWATT per watt; energy counts per Wh = 154 * 154


def width(addr):
    """Data bytes of a register, from its address."""
    w = (addr >> 8) & 0x0F
    return w + 1 if w < 4 else 1


def _s24(v):
    return v - 0x1000000 if v & 0x800000 else v


class ADE7953(MeterChip):
    NAME = "ade7953"
    E_MAX = 0x7FFFFF  # 24-bit signed energy registers
    WH_NUM = 1
    WH_DEN = _W_COUNTS * _W_COUNTS  # 23716 counts per Wh
    ONES = 0xFFFFFF
    GAIN_MAX = 0x7FFFFF
    SIGNED_PGAIN = False  # AWGAIN/BWGAIN: 0x400000 is unity
    CAL_FORMS = {"phi": PHI_FORM, "uoffset": TWOS24, "ioffset": TWOS24}
    CAL_PROBE = {"phi": 8, "uoffset": 512, "ioffset": 200}

    def __init__(self, spi, cs, cal=None, delay_ms=None):
        MeterChip.__init__(self, 2, delay_ms)
        self._spi = spi
        self._cs = cs
        self._tx = (bytearray(4), bytearray(5), bytearray(6), bytearray(7))
        self._rx = (bytearray(4), bytearray(5), bytearray(6), bytearray(7))
        self._crc0 = bytearray(4)  # the configuration checksum taken at init
        self._crc_now = bytearray(4)
        self.set_cal(cal or {})
        cs(1)

    def set_cal(self, cal):
        c = dict(CAL_DEFAULTS)
        c.update(cal)
        for k in c:
            _CAL_ADDR[k]  # unknown names fail here, not half-way through init
        self.cal = c

    def cal_value(self, name):
        return self.cal[name]

    def cal_key(self, quantity, ch=0):
        return quantity if quantity in ("ugain", "uoffset") else quantity + "_" + "ab"[ch]

    def _frame(self, addr, rw, value):
        # The one bus choke point: one frame, returning the receive buffer (data from byte 3).
        n = width(addr)
        tx = self._tx[n - 1]
        rx = self._rx[n - 1]
        tx[0] = (addr >> 8) & 0xFF
        tx[1] = addr & 0xFF
        tx[2] = rw
        for i in range(n):
            tx[3 + i] = (value >> (8 * (n - 1 - i))) & 0xFF
        self._cs(0)
        self._spi.write_readinto(tx, rx)
        self._cs(1)
        return rx

    def _xfer(self, addr, rw, value):
        # A frame's data as an int (24 bits at most on the metering path: small ints on the ESP32).
        n = width(addr)
        rx = self._frame(addr, rw, value)
        v = 0
        for i in range(n):
            v = (v << 8) | rx[3 + i]
        return v

    def _read(self, addr):
        return self._xfer(addr, 0x80, 0)

    def _write(self, addr, value):
        self._xfer(addr, 0x00, value)

    def _ones(self, addr):
        return (1 << (8 * width(addr))) - 1

    def _last(self, addr):
        n = width(addr)
        return (LAST_RWDATA_8, LAST_RWDATA_16, LAST_RWDATA_24, LAST_RWDATA_32)[n - 1]

    def read(self, addr):
        return self._read(addr)

    def init(self):
        self._write(CONFIG, _CONFIG_VALUE | _SWRST)
        self._settle(_STARTUP_MS)
        if self.read_sure(CONFIG) < 0:
            raise ChipError("chip absent (MISO reads all ones)")
        self.write_verified(CONFIG, _CONFIG_VALUE)
        self.write_verified(UNLOCK, _UNLOCK_KEY)
        self.write_verified(RESERVED_120, _R120_VALUE)
        self.write_verified(LCYCMODE, _RSTREAD)
        self.write_verified(AP_NOLOAD, _NOLOAD)
        for name in sorted(self.cal):
            self.write_verified(_CAL_ADDR[name], self.cal[name] & 0xFFFFFF)
        self._take_crc()
        self.read_sure(AENERGYA)  # read-with-reset: start counting from zero
        self.read_sure(AENERGYB)

    def state(self):
        """OK, RESET (AP_NOLOAD back at its power-on value), UPSET (the chip's checksum of its
        configuration is no longer the one taken at init) or NO_ANSWER."""
        st = self._check_reg(AP_NOLOAD, _NOLOAD, _NOLOAD_POWER_ON)
        if st != OK:
            return st
        # One more frame per poll. The 32-bit checksum is compared byte by byte, never made an
        # int (above 2^30 it would allocate on the ESP32); a mismatch is read again before it
        # counts, so a bus fault cannot pass for an upset (which costs a soft reset).
        if self._crc_matches():
            return OK
        rx = self._rx[3]
        first = self._crc_now
        for i in range(4):
            first[i] = rx[3 + i]
        if self._crc_matches():
            return OK
        for i in range(4):
            if rx[3 + i] != first[i]:
                return NO_ANSWER  # two different answers: the bus, not the chip
        return UPSET

    def _crc_matches(self):
        rx = self._frame(CRC, 0x80, 0)
        crc = self._crc0
        for i in range(4):
            if rx[3 + i] != crc[i]:
                return False
        return True

    def _take_crc(self):
        # The configuration is complete: keep the chip's checksum of it (two reads that agree).
        for _ in range(3):
            rx = self._frame(CRC, 0x80, 0)
            for i in range(4):
                self._crc0[i] = rx[3 + i]
            if self._crc_matches():
                return
            self.bus_errors += 1
        raise ChipError("configuration checksum unreadable")

    def read_energy(self):
        e = self.energy
        e[0] = e[1] = 0
        for k in range(2):
            v = self.read_sure(AENERGYA + k)
            if v < 0:
                e[2 + 2 * k] = e[3 + 2 * k] = -1
                continue
            v = _s24(v)
            if v >= 0:
                e[2 + 2 * k] = v
                e[3 + 2 * k] = 0
                e[0] += v
            else:
                e[2 + 2 * k] = 0
                e[3 + 2 * k] = -v
                e[1] -= v

    def read_inst(self):
        v = self.read_sure(VRMS)
        self.v_cv[0] = self.v_cv[1] = v // _V_COUNTS_PER_CV if v > 0 else 0
        for k in range(2):
            i = self.read_sure(IRMSA + k)
            self.i_ma[k] = i // _I_COUNTS_PER_MA if i > 0 else 0
            p = self.read_sure(AWATT + k)
            self.p_w[k] = _s24(p) // _W_COUNTS if p >= 0 else 0
            q = self.read_sure(AVAR + k)
            self.q_var[k] = _s24(q) // _W_COUNTS if q >= 0 else 0
            pf = self.read_sure(PFA + k)
            if pf >= 0:
                pf = pf - 0x10000 if pf & 0x8000 else pf
                self.pf_milli[k] = pf * 1000 // 0x7FFF
        per = self.read_sure(PERIOD)
        self.f_chz = 22375000 // (per + 1) if per >= 0 else 0

    def _diagnose(self, problems):
        # ADE7953: AP_NOLOAD as reset marker, energy registers read-with-reset (else every poll
        # would count the whole register again), CONFIG as written (COMM_LOCK cleared, HPF on).
        nl = self.read_sure(AP_NOLOAD)
        lc = self.read_sure(LCYCMODE)
        cfg = self.read_sure(CONFIG)
        if nl == _NOLOAD_POWER_ON:
            problems.append("chip was reset (AP_NOLOAD back at power-on value 0x%06x)" % nl)
        if lc >= 0 and not lc & _RSTREAD:
            problems.append("energy registers not read-with-reset (LCYCMODE 0x%02x, RSTREAD off)" % lc)
        if cfg >= 0 and cfg != _CONFIG_VALUE:
            problems.append("CONFIG 0x%04x, not the 0x%04x written (COMM_LOCK, HPF)" % (cfg & 0xFFFF, _CONFIG_VALUE))
        # (a change the checks above already name changes the checksum too)
        if not problems and nl == _NOLOAD and not self._crc_matches() and not self._crc_matches():
            problems.append("configuration checksum changed since init (a register was upset)")
        return "AP_NOLOAD 0x%06x, LCYCMODE 0x%02x (RSTREAD %s), CONFIG 0x%04x" % (
            nl & 0xFFFFFF, lc & 0xFF, "on" if lc >= 0 and lc & _RSTREAD else "off", cfg & 0xFFFF)
