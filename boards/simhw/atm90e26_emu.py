# Register-level emulator of the ATM90E26, plugged in where machine.SPI and the CS pin go.
# It decodes 3-byte frames, keeps the register map with power-on values, runs the
# CalStart/AdjStart checksum state machine, echoes LastData, clears energy registers on read,
# and turns the load it is given into energy counts exactly (plus a ground-truth integrator).
from micropython import const
from array import array
import atm90e26 as R

_MJ_PER_KWH = const(3600000000)
_METERING_OFF = const(0x6886)


class Atm90e26Emu:
    def __init__(self, meter_constant=3200):
        self.mc = meter_constant
        self.regs = array("H", bytes(2 * 0x80))
        self.truth_mj = 0  # energy the load really drew (W x ms), import
        self.truth_export_mj = 0
        self._num_imp = 0  # energy not yet a whole count, scaled by meter_constant*10
        self._num_exp = 0
        self._frame_write = None  # (addr, value) waiting for CS to rise
        self.absent = False
        self.frames = 0
        self.v_cv = 23000
        self.p_w = 0
        self.f_chz = 5000
        self.pf_milli = 1000
        self._power_on()
        self.cs = self._cs

    # -- chip state ---------------------------------------------------------------
    def _power_on(self):
        regs = self.regs
        for i in range(len(regs)):
            regs[i] = 0
        regs[R.FUNC_EN] = 0x000C
        regs[R.SAG_TH] = 0x1D6A
        regs[R.CAL_START] = _METERING_OFF
        regs[R.ADJ_START] = _METERING_OFF
        self._bank_defaults(R.BANK1, R.BANK1_DEFAULTS)
        self._bank_defaults(R.BANK2, R.BANK2_DEFAULTS)
        self._num_imp = self._num_exp = 0

    def _bank_defaults(self, regs, defaults):
        for r, d in zip(regs, defaults):
            self.regs[r] = d

    def reset(self):
        """A silent reset (brown-out): calibration and uncounted energy are gone."""
        self._power_on()

    def metering_on(self):
        r = self.regs
        st = r[R.SYS_STATUS]
        return (r[R.CAL_START] in (0x5678, 0x8765) and r[R.ADJ_START] in (0x5678, 0x8765)
                and not st & 0xF000)

    def _cs_value(self, bank):
        return R.checksum([self.regs[a] for a in bank])

    def _start_cmd(self, value, bank, defaults, csreg, errmask):
        st = self.regs[R.SYS_STATUS]
        if value == 0x5678:
            self._bank_defaults(bank, defaults)
            st &= ~errmask
        elif value == 0x8765:
            if self._cs_value(bank) == self.regs[csreg]:
                st &= ~errmask
            else:
                st |= errmask
        else:
            st |= errmask
        self.regs[R.SYS_STATUS] = st

    # -- SPI seam ---------------------------------------------------------------
    def _cs(self, level):
        if level and self._frame_write is not None:
            addr, value = self._frame_write
            self._frame_write = None
            self._write(addr, value)

    def write_readinto(self, tx, rx):
        self.frames += 1
        if self.absent:
            for i in range(len(rx)):
                rx[i] = 0xFF
            return
        rx[0] = 0
        addr = tx[0] & 0x7F
        if tx[0] & 0x80:
            v = self._read(addr)
            rx[1] = v >> 8
            rx[2] = v & 0xFF
        else:
            rx[1] = rx[2] = 0
            self._frame_write = (addr, (tx[1] << 8) | tx[2])  # commits on a complete frame (CS high)

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
        self.p_w = p_w
        self.v_cv = v_cv
        self.f_chz = f_chz
        self.pf_milli = pf_milli

    def advance(self, dt_ms):
        """Let dt_ms pass at the present load: integrate the truth and, while metering runs, the counts."""
        p = self.p_w
        e = (p if p >= 0 else -p) * dt_ms
        if p >= 0:
            self.truth_mj += e
        else:
            self.truth_export_mj += e
        regs = self.regs
        if not self.metering_on():
            for a in (R.URMS, R.IRMS, R.PMEAN, R.FREQ):
                regs[a] = 0
            return
        scale = self.mc * 10
        if p >= 0:
            self._num_imp += e * scale
            n = self._num_imp // _MJ_PER_KWH
            self._num_imp -= n * _MJ_PER_KWH
            regs[R.AP_ENERGY] = (regs[R.AP_ENERGY] + n) & 0xFFFF  # 16-bit register wraps
        else:
            self._num_exp += e * scale
            n = self._num_exp // _MJ_PER_KWH
            self._num_exp -= n * _MJ_PER_KWH
            regs[R.AN_ENERGY] = (regs[R.AN_ENERGY] + n) & 0xFFFF
        regs[R.URMS] = self.v_cv
        i_ma = (p if p >= 0 else -p) * 100000 // self.v_cv if self.v_cv else 0
        regs[R.IRMS] = i_ma if i_ma < 0xFFFF else 0xFFFF
        regs[R.PMEAN] = p & 0xFFFF
        regs[R.FREQ] = self.f_chz
