# Register-level emulator of the ADE7953 (one voltage, two current channels A and B), plugged in
# where machine.SPI and CS go. Frames: 16-bit address, a read/write byte, then 1-4 data bytes by
# address range; 0x3xx reads the 24-bit register at 0x2xx sign-extended to 32 bits. Writes commit
# when CS rises; register 0x120 accepts a write only right after 0xAD went to 0x0FE; WRITE_PROTECT
# blocks width classes. LAST_OP / LAST_ADD / LAST_RWDATA record the last transaction. Energy
# registers are 24-bit signed, read-with-reset while LCYCMODE bit 6 is set (power-on), and wrap.
# CONFIG bit 7 is a software reset.
from binascii import crc32
import ade7953 as R
from meterchip import to_signed, TWOS24
from simhw.emu_base import EmuBase

_POWER_ON = {R.LCYCMODE: 0x40, R.CONFIG: 0x8004, 0x103: 0x3F, 0x104: 0x3F, 0x107: 0x0300,
             0x100: 0xFFFF, R.AP_NOLOAD: 0x00E419, 0x204: 0x00E419, 0x22C: 0x100000,
             R.AIGAIN: 0x400000, R.AVGAIN: 0x400000, R.AWGAIN: 0x400000,
             R.BIGAIN: 0x400000, R.BWGAIN: 0x400000, 0x224: 0xFFFFFF, 0x225: 0xFFFFFF}
_RO = (R.LAST_OP, R.LAST_RWDATA_8, R.LAST_ADD, R.LAST_RWDATA_16, R.LAST_RWDATA_24, R.LAST_RWDATA_32,
       R.PFA, R.PFB, R.PERIOD, R.AWATT, R.BWATT, R.AVAR, R.BVAR, R.IRMSA, R.IRMSB, R.VRMS, R.AENERGYA, R.AENERGYB)
_MASK = (0, 0xFF, 0xFFFF, 0xFFFFFF, 0xFFFFFFFF)
# Prebuilt so the read path allocates nothing (module attributes are not compile-time constants here).
_LAST = (R.LAST_RWDATA_8, R.LAST_RWDATA_16, R.LAST_RWDATA_24, R.LAST_RWDATA_32)
_ENERGY = (R.AENERGYA, R.AENERGYB)
# Configuration registers covered by the CRC register (0x37F). Which registers the chip covers,
# and how it computes the checksum, is not in the notes: this model takes a CRC-32 of these, in
# address order, recomputed whenever one of them changes. The driver only compares it.
_CFG = (R.LCYCMODE, R.PGA_V, R.PGA_IA, R.PGA_IB, 0x100, R.CONFIG, 0x103, 0x104, 0x107, R.PHCALA,
        R.PHCALB, R.RESERVED_120, R.AP_NOLOAD, 0x204, 0x224, 0x225, 0x22C, R.AIGAIN, R.AVGAIN,
        R.AWGAIN, R.AIRMSOS, R.VRMSOS, R.BIGAIN, R.BWGAIN, R.BIRMSOS)


class Ade7953Emu(EmuBase):
    STARTUP_MS = 100  # what the drivers wait for the RESET interrupt
    DATA0 = 3
    BILLING_REGS = 2  # billed import = channel A + channel B
    # Upsets hit the checksummed configuration, except AP_NOLOAD, the driver's reset marker: a
    # flipped marker reads as neither ours nor power-on, which the driver cannot tell from a
    # bus fault (docs/metering.md).
    UPSET_ADDRS = tuple(a for a in _CFG if a != R.AP_NOLOAD)
    UPSET_BITS = 24

    def __init__(self, true_cal=None):
        EmuBase.__init__(self, 2, R.ADE7953.WH_DEN)  # 23716 counts per Wh
        self.true_cal = dict(R.CAL_DEFAULTS)
        self.true_cal.update(true_cal or {})
        tc = self.true_cal
        # True gains as plain ints, so advance() allocates nothing.
        self._tu = tc["ugain"]
        self._ti = [tc["igain_a"], tc["igain_b"]]
        self._tp = [tc["pgain_a"], tc["pgain_b"]]
        # Phase and RMS offsets that cancel this front end's errors; an offset LSB moves the RMS
        # register by one count (modelled as linear).
        self._tphi = [to_signed(R.PHI_FORM, tc["phi_a"]), to_signed(R.PHI_FORM, tc["phi_b"])]
        self._tuo = to_signed(TWOS24, tc["uoffset"])
        self._tio = [to_signed(TWOS24, tc["ioffset_a"]), to_signed(TWOS24, tc["ioffset_b"])]
        self.regs = {R.AENERGYA: 0, R.AENERGYB: 0}
        self._acc = [0, 0]
        self._unlocked = False
        self._power_on()
        self._busy_ms = 0  # powered up long before the test or simulation starts

    def _power_on(self):
        self._account_loss()
        regs = self.regs
        regs.clear()
        for a in (R.LAST_OP, R.LAST_RWDATA_8, R.LAST_ADD, R.LAST_RWDATA_16, R.LAST_RWDATA_24,
                  R.LAST_RWDATA_32, R.RESERVED_120, R.UNLOCK, R.WRITE_PROTECT, R.PFA, R.PFB,
                  R.PERIOD, R.AWATT, R.BWATT, R.AVAR, R.BVAR, R.IRMSA, R.IRMSB, R.VRMS, R.AENERGYA, R.AENERGYB):
            regs[a] = 0
        for a, v in _POWER_ON.items():
            regs[a] = v
        self._acc[0] = self._acc[1] = 0
        self._top = self._last_top = 0
        self._unlocked = False
        self.upset_live = False
        self._update_crc()

    def reset(self):
        self._power_on()

    def _flip(self, addr, bit):
        self.regs[addr] = self.regs.get(addr, 0) ^ (1 << (bit % (8 * R.width(addr))))
        self._update_crc()

    def _update_crc(self):
        buf = bytearray(4 * len(_CFG))
        for i, a in enumerate(_CFG):
            v = self.regs.get(a, 0)
            buf[4 * i] = v >> 24 & 0xFF
            buf[4 * i + 1] = v >> 16 & 0xFF
            buf[4 * i + 2] = v >> 8 & 0xFF
            buf[4 * i + 3] = v & 0xFF
        self.crc = crc32(buf) & 0xFFFFFFFF
        # Served as a top byte and 24 low bits: a 32-bit value passes 2^30, a big int on a
        # 32-bit port, and the emulator stands in for hardware that allocates nothing.
        self._crc_top = self.crc >> 24
        self._crc_low = self.crc & 0xFFFFFF

    def _billing_unread(self):
        # Both channels' import make up the billing total.
        n = 0
        for k in range(2):
            v = self.regs[R.AENERGYA + k]
            v = v - 0x1000000 if v & 0x800000 else v
            if v > 0:
                n += v * self._cd
            if self._acc[k] > 0:
                n += self._acc[k]
        return n

    def metering_on(self):
        return True  # the ADE7953 meters from power-on; only its calibration is lost on reset

    # -- SPI frames ---------------------------------------------------------------------

    def _transact(self, tx, rx):
        addr = (tx[0] << 8) | tx[1]
        n = R.width(addr)
        rx[0] = rx[1] = rx[2] = 0
        if len(tx) != 3 + n:
            for i in range(3, len(rx)):
                rx[i] = 0  # wrong frame length for this register: ignored
            return
        if tx[2] == 0x80:
            v = self._read(addr, n)  # 32-bit registers: the top byte is in self._top
            o = 3
            if n == 4:
                rx[3] = self._top
                o = 4
                n = 3
            for i in range(n):
                rx[o + i] = (v >> (8 * (n - 1 - i))) & 0xFF
        else:
            for i in range(n):
                rx[3 + i] = 0
            v = 0
            for i in range(n):
                v = (v << 8) | tx[3 + i]
            self._r_addr = -1
            self._w_addr = addr
            self._w_val = v

    def _stuck_read(self, tx):
        # A garbled answer to a read-with-reset of an importing channel: that energy is gone.
        if self._r_addr in _ENERGY:
            v = self._r_val
            if not v & 0x800000:
                self.lost_num += v * self._cd

    def _last(self, v, n, addr, op, top=0):
        regs = self.regs
        regs[R.LAST_OP] = op
        regs[R.LAST_ADD] = addr
        regs[_LAST[n - 1]] = v
        if n == 4:
            self._last_top = top

    def _read(self, addr, n):
        # 32-bit registers are returned as their low 24 bits, with the top byte in self._top.
        regs = self.regs
        top = 0
        if addr == R.CRC:
            v = self._crc_low
            top = self._crc_top
        elif n == 4 and addr != R.LAST_RWDATA_32:
            v = regs.get(addr - 0x100, 0)
            if v & 0x800000:
                top = 0xFF  # sign-extended
        else:
            v = regs.get(addr, 0)
            if addr == R.LAST_RWDATA_32:
                top = self._last_top
        self._top = top
        self._last(v, n, addr, 0x35, top)
        if addr in _ENERGY and regs[R.LCYCMODE] & 0x40:
            regs[addr] = 0  # read-with-reset
        self._r_addr = addr
        self._r_val = v
        return v

    def _write(self, addr, value):
        regs = self.regs
        n = R.width(addr)
        if regs[R.WRITE_PROTECT] & (1 << (n - 1 if n < 4 else 2)) and addr != R.WRITE_PROTECT:
            return
        if n == 4:
            addr -= 0x100
            value &= 0xFFFFFF
        unlocked = self._unlocked
        self._unlocked = addr == R.UNLOCK and value == 0xAD
        self._last(value, n, addr, 0xCA)
        if addr in _RO or (addr == R.RESERVED_120 and not unlocked):
            return
        if addr == R.CONFIG and value & 0x80:
            self._power_on()
            return
        regs[addr] = value & _MASK[n]
        if addr in _CFG:
            self._update_crc()

    # -- the analogue world ---------------------------------------------------------
    def _integrate(self, dt_ms):
        regs = self.regs
        v = self.v_cv[0]
        uo = to_signed(TWOS24, regs.get(R.VRMSOS, 0)) - self._tuo
        regs[R.VRMS] = _clamp(v * 260 * regs[R.AVGAIN] // self._tu + uo)
        regs[R.PERIOD] = 22375000 // self.f_chz - 1 if self.f_chz else 0
        for k in range(2):
            p = self.p_w[k]
            gn = regs[R.AWGAIN if k == 0 else R.BWGAIN]
            gd = self._tp[k]
            e = p * dt_ms
            if p >= 0:
                self.truth_mj += e
            else:
                self.truth_export_mj -= e
            dphi = to_signed(R.PHI_FORM, regs.get(R.PHCALA + k, 0)) - self._tphi[k]
            n = self.to_counts(k, self.phase_mj(k, e, dphi), gn, gd)  # signed register: one accumulator per channel
            a = R.AENERGYA + k
            old = regs[a] - 0x1000000 if regs[a] & 0x800000 else regs[a]
            new = old + n
            if not -0x800000 <= new <= 0x7FFFFF:
                self.overflows += 1
            regs[a] = new & 0xFFFFFF
            pf = self.pf_milli[k]
            i_ma = abs(p) * 100000000 // (v * pf) if v and pf else 0
            gi = regs[R.AIGAIN if k == 0 else R.BIGAIN]
            io = to_signed(TWOS24, regs.get(R.AIRMSOS if k == 0 else R.BIRMSOS, 0)) - self._tio[k]
            regs[R.IRMSA + k] = _clamp(i_ma * 100 * gi // self._ti[k] + io)
            regs[R.AWATT + k] = (self.phase_mj(k, p, dphi) * 154 * gn // gd) & 0xFFFFFF
            regs[R.AVAR + k] = (self.q_var(k) * 154) & 0xFFFFFF
            regs[R.PFA + k] = (pf * 0x7FFF // 1000) & 0xFFFF


def _clamp(v):
    # an RMS register is unsigned 24 bit
    return 0 if v < 0 else (0xFFFFFF if v > 0xFFFFFF else v)
