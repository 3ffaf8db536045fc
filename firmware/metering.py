# Turns the metering chip's clear-on-read energy counts into integer lifetime registers.
# Energy is kept in whole Wh plus an exact remainder in chip counts, so nothing the chip
# measured is ever rounded away; every value stays a small int on the ESP32.
from micropython import const
import events

_MAX_INIT_TRIES = const(3)
_ABSENT = const(0xFFFF)


class Metering:
    """`chip` is a driver with init(), configured(), read(addr) and the register names
    AP_ENERGY/AN_ENERGY/URMS/IRMS/PMEAN/FREQ of the ATM90E26 module (`regs`).

    meter_constant: chip pulses per kWh; one energy-register LSB is 0.1 pulse,
    so one Wh is meter_constant / 100 counts. max_power_w bounds what a read may
    plausibly contain: a larger count is a bus fault, never energy."""

    def __init__(self, chip, regs, meter_constant, max_power_w, emit):
        self._chip = chip
        self._r = regs
        self._den = meter_constant  # Wh = counts * 100 / meter_constant
        # Counts per second at max power, rounded up, doubled as margin for jitter in the poll period.
        self._max_cps = (max_power_w * meter_constant) // 360000 + 1
        self._emit = emit
        self.imp_wh = 0
        self.imp_rem = 0  # in units of 1/meter_constant of 100 counts, always < meter_constant
        self.exp_wh = 0
        self.exp_rem = 0
        self.step_wh = 0  # import Wh completed by the last poll
        self.v_cv = 0  # RMS voltage, centivolts
        self.i_ma = 0  # RMS current, milliamps
        self.p_w = 0  # active power, W (negative = export)
        self.f_chz = 0  # frequency, centihertz
        self.ok = False
        self.resets = 0
        self.faults = 0

    def start(self):
        for _ in range(_MAX_INIT_TRIES):
            try:
                self._chip.init()
                self.ok = True
                return True
            except Exception:  # ChipError or a bus OSError: count it, try again, never crash the loop
                self.faults += 1
        self.ok = False
        self._emit(events.CHIP_FAULT, 0)
        return False

    def poll(self, dt_ms):
        """One metering step; dt_ms is the time since the last poll (for the plausibility bound)."""
        self.step_wh = 0
        chip = self._chip
        if not self.ok:
            self.start()
            return
        if not chip.configured():
            # A silent reset cleared the chip's energy registers and calibration. What we
            # already read is safe in our registers; re-init and say so.
            self.resets += 1
            self._emit(events.CHIP_RESET, self.resets)
            self.ok = False
            self.start()
            return
        r = self._r
        fwd = chip.read(r.AP_ENERGY)
        rev = chip.read(r.AN_ENERGY)
        limit = 2 * self._max_cps * (dt_ms // 1000 + 1)
        if fwd == _ABSENT or rev == _ABSENT or fwd > limit or rev > limit:
            self.faults += 1
            self._emit(events.CHIP_FAULT, fwd if fwd > rev else rev)
            return
        if fwd:
            acc = self.imp_rem + fwd * 100
            wh = acc // self._den
            self.imp_rem = acc - wh * self._den
            self.imp_wh += wh
            self.step_wh = wh
        if rev:
            acc = self.exp_rem + rev * 100
            wh = acc // self._den
            self.exp_rem = acc - wh * self._den
            self.exp_wh += wh
        self.v_cv = chip.read(r.URMS)
        self.i_ma = chip.read(r.IRMS)
        p = chip.read(r.PMEAN)
        self.p_w = p - 0x10000 if p & 0x8000 else p
        self.f_chz = chip.read(r.FREQ)
