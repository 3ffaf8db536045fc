# Register-level emulator of the ATM90E32 (three phases), plugged in where machine.SPI and CS go.
# 4-byte frames; a write commits when CS rises after a complete frame, and only if the register is
# writable: configuration registers (0x00-0x6F) need CfgRegAccEn = 0x55AA. LastSPIData holds the
# data of the previous read or write (updated before a clear-on-read register is cleared).
# SoftReset 0x789A restores power-on values. Energy registers (0.01 CF per LSB) clear on read and
# wrap at 16 bits; totals are the arithmetic sum of the phases (MMode0 default).
#
# Configuration CRC: the chip keeps a CRC-16 (x^16+x^12+x^5+1) of registers 0x00-0x6F, latches
# it as the golden CRC when CfgRegAccEn gets any value but 0x55AA (0xAA55 then also lets
# CRCDigest be written as the golden CRC), reads the current CRC in CRCDigest and sets
# CRCErrStatus bit0 while the two differ. The datasheet gives neither seed nor bit order: this
# model uses CRC-16/CCITT-FALSE (seed 0xFFFF, MSB first, each register high byte first), a
# modelling choice; the driver never computes the CRC, so nothing depends on matching the chip.
# The CRC is recomputed lazily, only after a configuration register changed (a direct poke of
# regs[] bypasses it: use upset()). Power-on clears the golden CRC and the status.
#
# Fault kind "upset" (emu_base): one random bit of one register 0x00-0x6F flips, without a
# reset. The chip meters on with it; whatever it counts wrongly until the driver re-initialises
# (a gain off, or metering stopped) is charged to lost_num, so truth = metered + lost still holds.
from array import array
import atm90e32 as R
from meterchip import to_signed, TWOS16
from simhw.emu_base import EmuBase, s16 as _s16

_POWER_ON = {0x01: 0x0210, 0x02: 0x0654, 0x05: 0x143F, 0x06: 0xC000, 0x07: 0x0001, 0x08: 0x1000,
             0x09: 0x0400, 0x0A: 0xFFFF, 0x0B: 0xC000, 0x0C: 0x1324, 0x0D: 0x13EC,
             0x31: 0x0861, 0x32: 0xC468, 0x33: 0x0087,
             0x61: 0x8000, 0x62: 0x8000, 0x65: 0x8000, 0x66: 0x8000, 0x69: 0x8000, 0x6A: 0x8000}


_AP = (R.AP_ENERGY_T, R.AP_ENERGY_T + 1, R.AP_ENERGY_T + 2, R.AP_ENERGY_T + 3)
_AN = (R.AN_ENERGY_T, R.AN_ENERGY_T + 1, R.AN_ENERGY_T + 2, R.AN_ENERGY_T + 3)

_CFG_END = 0x70  # registers 0x00-0x6F are configuration, covered by the CRC
_GOLDEN_WRITE = 0xAA55  # CfgRegAccEn value that lets CRCDigest be written as the golden CRC
_CRC_T = array("H", bytes(512))  # CRC-16/CCITT table, MSB first
for _b in range(256):
    _c = _b << 8
    for _ in range(8):
        _c = ((_c << 1) ^ 0x1021) if _c & 0x8000 else (_c << 1)
    _CRC_T[_b] = _c & 0xFFFF


def _crc_byte(crc, b):
    return ((crc << 8) & 0xFFFF) ^ _CRC_T[(crc >> 8) ^ b]


def crc16(data, crc=0xFFFF):
    """CRC-16/CCITT-FALSE of a byte sequence (b"123456789" -> 0x29B1)."""
    for b in data:
        crc = _crc_byte(crc, b)
    return crc



class Atm90e32Emu(EmuBase):
    STARTUP_MS = 40  # the datasheet's T1 maximum
    DATA0 = 2
    BILLING_REG = R.AP_ENERGY_T
    UPSET_ADDRS = tuple(range(0x70))  # everything the configuration CRC covers

    def __init__(self, meter_constant=3200, true_cal=None):
        EmuBase.__init__(self, 3, meter_constant, 10)  # MC/10 counts (0.01 pulse) per Wh
        self.mc = meter_constant
        self.regs = array("H", bytes(2 * 0x100))
        self.true_cal = {}
        for k in range(3):
            for q, d in (("ugain", 0x8000), ("igain", 0x8000), ("pgain", 0), ("phi", 0), ("uoffset", 0),
                         ("ioffset", 0)):
                self.true_cal[q + "_" + "abc"[k]] = d
        self.true_cal.update(true_cal or {})
        tc = self.true_cal
        # True gains per phase as plain ints, so advance() allocates nothing.
        self._tu = [tc["ugain_" + ph] for ph in "abc"]
        self._ti = [tc["igain_" + ph] for ph in "abc"]
        self._tp = [32768 + _s16(tc["pgain_" + ph] & 0xFFFF) for ph in "abc"]
        # Phase and RMS offsets that cancel this front end's errors (an offset LSB is 2^7 of the
        # 32-bit RMS value, i.e. 1/512 of a reading LSB, as the drivers' offset method implies).
        self._tphi = [to_signed(R.PHI_FORM, tc["phi_" + ph]) for ph in "abc"]
        self._tuo = [to_signed(TWOS16, tc["uoffset_" + ph]) for ph in "abc"]
        self._tio = [to_signed(TWOS16, tc["ioffset_" + ph]) for ph in "abc"]
        self._acc = [0] * 8  # fraction accumulators: T imp, T exp, A imp, A exp, ...
        self._crc = 0  # CRC of registers 0x00-0x6F, valid unless _crc_dirty
        self._crc_dirty = True
        self._golden = -1  # latched golden CRC, -1 until CfgRegAccEn latches one
        self._power_on()
        self._busy_ms = 0  # powered up long before the test or simulation starts

    def _power_on(self):
        self._account_loss()
        regs = self.regs
        for i in range(len(regs)):
            regs[i] = 0
        for a, v in _POWER_ON.items():
            regs[a] = v
        for i in range(8):
            self._acc[i] = 0
        self._crc_dirty = True
        self._golden = -1
        self.upset_live = False

    def reset(self):
        self._power_on()

    def metering_on(self):
        return self.regs[R.METER_EN] != 0

    # -- SPI frames ---------------------------------------------------------------------

    def _transact(self, tx, rx):
        rx[0] = rx[1] = 0
        self._word(((tx[0] & 0x03) << 8) | tx[1], tx[0] & 0x80, tx, rx)

    def _read(self, addr):
        regs = self.regs
        if addr == R.CRC_ERR_STATUS:
            v = self.crc_error()
        elif addr == R.CRC_DIGEST:
            v = self.crc()
        else:
            v = regs[addr] if addr < 0x100 else 0
        regs[R.LAST_SPI_DATA] = v
        if 0x80 <= addr <= 0xAF:
            regs[addr] = 0  # cleared after LastSPIData took the value
        self._r_addr = addr
        self._r_val = v
        return v

    def _write(self, addr, value):
        regs = self.regs
        if addr == R.SOFT_RESET:
            if value == 0x789A:
                self._power_on()
            return
        regs[R.LAST_SPI_DATA] = value
        if addr < _CFG_END:
            if regs[R.CFG_REG_ACC_EN] != 0x55AA:
                return  # configuration locked
            if regs[addr] != value:
                regs[addr] = value
                self._crc_dirty = True
        elif addr == R.CFG_REG_ACC_EN:
            regs[addr] = value
            if value != 0x55AA:
                self._golden = self.crc()  # locking latches the golden CRC
        elif addr == R.CRC_DIGEST and regs[R.CFG_REG_ACC_EN] == _GOLDEN_WRITE:
            self._golden = value

    # -- configuration CRC and upsets -----------------------------------------------------
    def crc(self):
        """The CRC of registers 0x00-0x6F now (what CRCDigest reads)."""
        if self._crc_dirty:
            regs = self.regs
            c = 0xFFFF
            for a in range(_CFG_END):  # each register high byte first, without building bytes
                v = regs[a]
                c = _crc_byte(_crc_byte(c, v >> 8), v & 0xFF)
            self._crc = c
            self._crc_dirty = False
        return self._crc

    def crc_error(self):
        """CRCErrStatus: bit0 CFG_CRC_ERR while the configuration is locked, a golden CRC is
        latched and the current CRC differs from it (bit1 INT_ERR is not modelled)."""
        if self._golden < 0 or self.regs[R.CFG_REG_ACC_EN] == 0x55AA:
            return 0
        return 1 if self.crc() != self._golden else 0

    def _flip(self, addr, bit):
        self.regs[addr] ^= 1 << bit
        self._crc_dirty = True

    # -- the analogue world ---------------------------------------------------------
    def _integrate(self, dt_ms):
        regs = self.regs
        on = self.metering_on()
        tot = 0  # truth, mJ
        tot_eff = 0  # what the chip sees after each phase's energy gain
        p_tot_w = 0
        for k in range(3):
            p = self.p_w[k]
            gn = 32768 + _s16(regs[R.PQ_GAIN_A + 2 * k])
            gd = self._tp[k]
            e = p * dt_ms
            tot += e
            dphi = to_signed(R.PHI_FORM, regs[R.PHI_A + 2 * k]) - self._tphi[k]
            e_chip = self.phase_mj(k, e, dphi)
            tot_eff += e_chip if gn == gd else e_chip * gn // gd
            if on:
                self._count(2 + 2 * k, e_chip, gn, gd)
                p_chip = self.phase_mj(k, p, dphi) * gn // gd
                p_tot_w += p_chip
                v = self.v_cv[k]
                pf = self.pf_milli[k]
                uo = to_signed(TWOS16, regs[R.U_OFFSET_A + 4 * k]) - self._tuo[k]
                regs[R.URMS_A + k] = _clamp((v * regs[R.U_GAIN_A + 4 * k] * 512 // self._tu[k] + uo) // 512)
                i_ma = abs(p) * 100000000 // (v * pf) if v and pf else 0
                io = to_signed(TWOS16, regs[R.I_OFFSET_A + 4 * k]) - self._tio[k]
                regs[R.IRMS_A + k] = _clamp((i_ma * regs[R.I_GAIN_A + 4 * k] * 512 // self._ti[k] + io) // 512)
                self._pmean(R.PMEAN_T + 1 + k, p_chip)
                self._pmean(R.QMEAN_T + 1 + k, self.q_var(k))
                regs[R.PF_MEAN_T + 1 + k] = pf & 0xFFFF
            else:
                regs[R.URMS_A + k] = regs[R.IRMS_A + k] = 0
                regs[R.PMEAN_T + 1 + k] = regs[R.PMEAN_T + 0x11 + k] = 0
        if tot >= 0:
            self.truth_mj += tot
        else:
            self.truth_export_mj -= tot
        if on:
            self._count(0, tot_eff, 1, 1)
            self._pmean(R.PMEAN_T, p_tot_w)
            regs[R.FREQ] = self.f_chz
        elif tot > 0:
            self.lost_num += tot * self._cn  # drawn while the chip was not metering

    def _count(self, k, e, gn, gd):
        # k indexes (imp, exp) pairs: even = forward register, odd = reverse
        if e >= 0:
            reg = _AP[k // 2]
        else:
            reg = _AN[k // 2]
            k += 1
            e = -e
        n = self.to_counts(k, e, gn, gd)
        if self.regs[reg] + n > 0xFFFF:
            self.overflows += 1
        self.regs[reg] = (self.regs[reg] + n) & 0xFFFF

    def _pmean(self, addr, p_w):
        raw = (p_w * 3125) & 0xFFFFFFFF  # 0.00032 W per LSB
        self.regs[addr] = raw >> 16
        self.regs[addr + 0x10] = raw & 0xFFFF


def _clamp(v):
    # an RMS register is unsigned 16 bit
    return 0 if v < 0 else (0xFFFF if v > 0xFFFF else v)
