# Turns a metering chip's clear-on-read energy counts into integer lifetime registers, and
# watches the chip: silent resets, bus faults, reverse energy and live/neutral mismatch.
# Energy is kept in whole Wh plus an exact remainder (in 1/WH_DEN Wh), per register, so
# nothing the chip measured is ever rounded away; every value stays a small int on the ESP32.
# The chip is any driver with the meterchip.MeterChip read API (ATM90E26, ATM90E32, ADE7953).
from micropython import const
from array import array
import events
from meterchip import OK, RESET, UPSET

_MAX_INIT_TRIES = const(3)
# Per-channel registers roll over at 10^9 Wh, as the tariff's do (tariff.REG_MOD, docs/storage.md).
_REG_MOD = const(1000000000)
_LN_MIN_MA = const(200)  # live/neutral difference below this is noise, whatever the ratio
_LN_POLLS = const(3)  # consecutive polls of mismatch before a tamper event
# A chip that has not been in its configured state for this long is configured again: a flipped
# bit in the very register a driver recognises its configuration by reads like a bus fault, and
# waiting longer would not bring it back (a truly dead bus just fails the re-init).
_REINIT_AFTER_MS = const(600000)

# CHIP_FAULT event arguments: what went wrong.
FAULT_INIT = const(1)  # init failed after retries (absent chip, or checksums not accepted)
FAULT_NO_ANSWER = const(2)  # the chip stopped answering consistently
FAULT_IMPLAUSIBLE = const(3)  # an energy read beyond what max power allows: discarded


class Metering:
    """max_power_w bounds what a read may plausibly contain (all channels together): a larger
    count is a bus fault, never energy. It also fixes the longest safe poll interval,
    max_poll_ms, after which the fullest energy register could overflow."""

    def __init__(self, chip, max_power_w, emit, pulses=()):
        self._chip = chip
        self.pulses = pulses  # pulses.PulseInput of water/gas meters, persisted with the energy
        self._num = chip.WH_NUM
        self._den = chip.WH_DEN
        self._max_cps = max_power_w * self._den // (3600 * self._num) + 1
        self.max_poll_ms = chip.max_poll_ms(max_power_w)
        self._emit = emit
        self.imp_wh = 0
        self.imp_rem = 0  # in 1/WH_DEN Wh, always < WH_DEN
        self.exp_wh = 0
        self.exp_rem = 0
        self.step_wh = 0  # import Wh completed by the last poll
        n = chip.CHANNELS
        if n > 3:
            raise ValueError("the record holds 3 channels")
        self.channels = n
        # Per-channel lifetime registers (only for multi-channel chips): [imp ch1, exp ch1, ...]
        n = n if n > 1 else 0
        self.ch_wh = array("i", bytes(8 * n))
        self.ch_rem = array("i", bytes(8 * n))
        self.rolled = 0  # per-channel register rollovers not yet reported (the app clears it)
        self.v_cv = 0  # RMS voltage of the first channel, centivolts
        self.i_ma = 0  # RMS current, all channels, milliamps
        self.p_w = 0  # active power, all channels, W (negative = export)
        self.f_chz = 0  # frequency, centihertz
        self._ready = False
        self.resets = 0
        self.upsets = 0  # configuration upsets the chip flagged (re-initialised like a reset)
        self.faults = 0
        self.rejected = 0  # energy reads discarded as implausible
        self.tampers = 0
        self._since_ms = 0  # since the chip last cleared the total import register (a delivered read)
        self._bad = False  # inside a fault episode (one event per episode)
        self._bad_ms = 0  # how long the chip has not been in its configured state
        self._reverse = False
        self._ln_count = 0
        self._cal_reported = False

    @property
    def ok(self):
        """The chip is initialised and the latest poll was good: v_cv, i_ma, p_w are fresh.
        (Protection and the REPL must not act on readings from a chip that stopped answering.)"""
        return self._ready and not self._bad

    @property
    def chip(self):
        """The driver (for the technician's REPL and calibration, never the hot path's business)."""
        return self._chip

    def channel_readings(self):
        """Per-channel (phase) RMS voltage (cV), current (mA) and active power (W) arrays of a
        multi-channel chip while its readings are fresh, else None."""
        if self.channels < 2 or not self.ok:
            return None
        c = self._chip
        return c.v_cv, c.i_ma, c.p_w

    @property
    def bus_errors(self):
        return self._chip.bus_errors

    def start(self):
        if self._chip.cal_state == "invalid" and not self._cal_reported:
            # The stored calibration failed its CRC or is another unit's: metering runs on the
            # board defaults, which the utility must know about.
            self._cal_reported = True
            self._emit(events.CAL_INVALID, 0)
        for _ in range(_MAX_INIT_TRIES):
            try:
                self._chip.init()
                self._ready = True
                self._since_ms = 0
                return True
            except Exception:  # ChipError or a bus OSError: count it, try again, never crash the loop
                self.faults += 1
        self._ready = False
        self._fault(FAULT_INIT)
        return False

    def _fault(self, kind):
        self.faults += 1
        if not self._bad:
            self._bad = True
            self._emit(events.CHIP_FAULT, kind)

    def poll(self, dt_ms):
        """One metering step; dt_ms is the time since the last poll (for the plausibility bound)."""
        self.step_wh = 0
        if self._since_ms < self.max_poll_ms:  # beyond that any count up to E_MAX is plausible
            self._since_ms += dt_ms
        chip = self._chip
        if not self._ready:
            self.start()
            return
        st = chip.state()
        if st == RESET or st == UPSET:
            # A silent reset cleared the chip's energy registers and calibration. What we
            # already read is safe in our registers; a chip that meters on through a reset
            # (ADE7953) has counted since, so take that first; then re-init and say so.
            # An upset (a configuration bit flipped, the chip's CRC check caught it) keeps the
            # counts, taken the same way; its own event, since ESD is also a tamper technique.
            if st == RESET:
                self.resets += 1
                self._emit(events.CHIP_RESET, self.resets)
            else:
                self.upsets += 1
                self._emit(events.CHIP_UPSET, self.upsets)
            self._account()
            self._ready = False
            self.start()
            return
        if st != OK:
            self._fault(FAULT_NO_ANSWER)
            self._bad_ms += dt_ms
            if self._bad_ms >= _REINIT_AFTER_MS:
                self._bad_ms = 0
                self._account()  # whatever it counted meanwhile, if it can be read
                self._ready = False
                self.start()
            return
        self._bad_ms = 0
        if self._account():
            self._bad = False
            chip.read_inst()
            self._inst(chip)

    def _account(self):
        """Read the energy registers into the lifetime registers. Returns False (after counting
        and reporting it) if any register gave no answer or garbage."""
        chip = self._chip
        chip.read_energy()
        e = chip.energy
        if self._since_ms >= self.max_poll_ms:
            limit = chip.E_MAX  # (a register left unread that long may also have wrapped)
        else:
            # Whole seconds and the rest apart: max_cps x ms passes 2^30 (a big int on the
            # ESP32) once polls are ~5 s apart on a fast-counting chip such as the ADE7953.
            t = self._since_ms + 1000
            s = t // 1000  # (divmod would allocate a tuple)
            limit = self._max_cps * s + self._max_cps * (t - s * 1000) // 1000
            if limit > chip.E_MAX:
                limit = chip.E_MAX
        good = True
        num = self._num
        den = self._den
        fwd = e[0]
        if fwd >= 0:
            self._since_ms = 0  # delivered, so the chip has cleared the register, garbage or not
        if 0 <= fwd <= limit:
            if fwd:
                acc = self.imp_rem + fwd * num
                wh = acc // den
                self.imp_rem = acc - wh * den
                self.imp_wh += wh
                self.step_wh += wh
        else:
            good = False
        rev = e[1]
        if 0 <= rev <= limit:
            if rev:
                acc = self.exp_rem + rev * num
                wh = acc // den
                self.exp_rem = acc - wh * den
                self.exp_wh += wh
                if not self._reverse:
                    self._reverse = True
                    self._emit(events.REVERSE_ENERGY, rev)
            elif fwd > 0:
                self._reverse = False
        else:
            good = False
        if self.channels > 1:
            ch_wh = self.ch_wh
            ch_rem = self.ch_rem
            for k in range(2 * self.channels):
                c = e[k + 2]
                if 0 <= c <= limit:
                    if c:
                        acc = ch_rem[k] + c * num
                        wh = acc // den
                        ch_rem[k] = acc - wh * den
                        wh += ch_wh[k]
                        if wh >= _REG_MOD:
                            wh -= _REG_MOD
                            self.rolled += 1
                        ch_wh[k] = wh
                else:
                    good = False
        if not good:
            # Never energy: either the chip did not answer (it still holds the counts), or the
            # answer was garbage (counted in `rejected`).
            self.rejected += 1
            self._fault(FAULT_IMPLAUSIBLE)
        return good

    def _inst(self, chip):
        self.v_cv = chip.v_cv[0]
        i = 0
        p = 0
        for k in range(self.channels):
            i += chip.i_ma[k]
            p += chip.p_w[k]
        self.i_ma = i
        self.p_w = p
        self.f_chz = chip.f_chz
        i_n = chip.i_n_ma
        if i_n >= 0:
            self._check_ln(chip.i_ma[0], i_n)

    def _check_ln(self, i_l, i_n):
        # Current through the live but not back through the neutral (or the reverse) means
        # a bypass around the meter: a tamper, reported once per episode.
        d = i_l - i_n if i_l > i_n else i_n - i_l
        big = i_l if i_l > i_n else i_n
        if d > _LN_MIN_MA and d * 8 > big:
            self._ln_count += 1
            if self._ln_count == _LN_POLLS:
                self.tampers += 1
                self._emit(events.TAMPER_LN, d)
        else:
            self._ln_count = 0

    def reinit(self):
        """Re-initialise the chip (after a calibration change) without losing what it has counted.
        No state check first: the driver already holds the new calibration, which the chip's
        digest of its configuration would take for an upset."""
        if self._ready:
            self._account()
        self._ready = False
        return self.start()
