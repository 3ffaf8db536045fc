# Calibration from the REPL, and the stored calibration record.
#
#   >>> import calibration
#   >>> cal = calibration.Calibration(meter.metering, board.chip, "/data/cal.json", board.name, board.uid)
#   >>> cal.voltage(230.0)          # reference voltmeter reads 230.0 V
#   >>> cal.current(10.0)           # reference ammeter reads 10.0 A (resistive load)
#   >>> cal.power(2300.0)           # reference wattmeter reads 2300 W (same load, PF 1)
#   >>> cal.phase(1150.0)           # same current at PF 0.5 lagging: reference wattmeter, W
#   >>> cal.offset("current", 0.5)  # a low current (5 % of base): reference ammeter, A
#   >>> cal.check_current(1.0); cal.check_current(30.0)   # multi-point check, error in ppm
#   >>> cal.save()
#
# The record is JSON: the calibration registers by name, keyed to the board type, the chip and
# the board's unique id (never a device name), with a CRC-32 over the rest; it is checked at
# every boot (load_into) and can be exported and imported as text.
import json
from binascii import crc32, hexlify

VERSION = 1
_RANGE_PPM = 200000  # one calibration step may move a gain by at most 20 %
_PROBE_DOUBLINGS = 8  # trim: widen the trial step at most this often to see the reading move
_SECANT_STEPS = 4  # trim: refinements after the first trial
_PF_MIN = 300  # phase calibration needs a reactive load: |PF| within 0.3..0.8
_PF_MAX = 800


class CalError(ValueError):
    pass


def _body(board, chip, uid, regs):
    keys = sorted(regs)
    return json.dumps({"v": VERSION, "board": board, "chip": chip, "uid": uid,
                       "regs": [[k, regs[k]] for k in keys]})


def encode(board, chip, uid, regs):
    """The record as JSON text: the body plus its CRC-32."""
    body = _body(board, chip, uid, regs)
    return '{"crc":%d,"body":%s}' % (crc32(body.encode()) & 0xFFFFFFFF, body)


def decode(text, board, chip, uid):
    """Registers of a record made for this board, chip and unit; CalError otherwise."""
    try:
        doc = json.loads(text)
        crc = doc["crc"]
        b = doc["body"]
        regs = {}
        for k, v in b["regs"]:
            if type(k) is not str or type(v) is not int:
                raise CalError("bad register entry")
            regs[k] = v
        body = _body(b["board"], b["chip"], b["uid"], regs)
    except (ValueError, KeyError, TypeError) as e:
        if isinstance(e, CalError):
            raise
        raise CalError("not a calibration record")
    if crc32(body.encode()) & 0xFFFFFFFF != crc or b["v"] != VERSION:
        raise CalError("calibration record damaged (CRC)")
    if b["board"] != board or b["chip"] != chip or b["uid"] != uid:
        raise CalError("calibration belongs to %s/%s/%s" % (b["board"], b["chip"], b["uid"]))
    return regs


def uid_hex(uid):
    return uid if isinstance(uid, str) else hexlify(uid).decode()


def load_into(chip, path, board, uid):
    """Boot check: apply a valid stored record to the driver. Sets and returns chip.cal_state:
    'ok', 'none' (no record: board defaults) or 'invalid' (kept the board defaults)."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        chip.cal_state = "none"
        return chip.cal_state
    try:
        regs = decode(text, board, chip.NAME, uid_hex(uid))
        cal = dict(chip.cal)
        cal.update(regs)
        chip.set_cal(cal)
        chip.cal_state = "ok"
    except (CalError, KeyError):
        chip.cal_state = "invalid"
    return chip.cal_state


def _units(ref, scale):
    """A reference reading typed at the REPL (float or int) in integer units of 1/scale."""
    v = int(ref * scale + 0.5)
    if v <= 0:
        raise CalError("reference must be positive")
    return v


class Calibration:
    """Guided calibration of one meter against reference instruments. `tick()` is called between
    samples (default: wait a second for the chip's next averaging period)."""

    def __init__(self, metering, chip, path, board, uid, samples=4, tick=None):
        self.metering = metering
        self.chip = chip
        self.path = path
        self.board = board
        self.uid = uid_hex(uid)
        self.samples = samples
        self.tick = tick or _wait_second
        self.points = []  # (reference mA, measured mA, error ppm) of check_current()

    def _mean(self, arr, ch):
        return self._sum(arr, ch) // self.samples

    def _rescale(self, key, ref, measured):
        if measured <= 0:
            raise CalError("nothing measured: is the reference applied?")
        if abs(ref - measured) * 1000000 > _RANGE_PPM * ref:
            raise CalError("reading %d is more than 20%% from the reference %d: check wiring" % (measured, ref))
        new = self.chip.scale_gain(key, ref, measured)
        cal = dict(self.chip.cal)
        cal[key] = new
        self._apply(cal)
        return new

    def _apply(self, cal):
        self.chip.set_cal(cal)
        if not self.metering.reinit():
            raise CalError("the chip did not accept the new calibration")

    def voltage(self, ref_v, ch=0):
        """Voltage gain from a reference voltmeter reading (V)."""
        return self._rescale(self.chip.cal_key("ugain", ch), _units(ref_v, 100), self._mean(self.chip.v_cv, ch))

    def current(self, ref_a, ch=0):
        """Current gain from a reference ammeter reading (A)."""
        return self._rescale(self.chip.cal_key("igain", ch), _units(ref_a, 1000), self._mean(self.chip.i_ma, ch))

    def power(self, ref_w, ch=0):
        """Active power/energy gain from a reference wattmeter reading (W) at unity power factor."""
        return self._rescale(self.chip.cal_key("pgain", ch), _units(ref_w, 1), self._mean(self.chip.p_w, ch))

    def neutral(self, ref_a):
        """Neutral current gain from a reference ammeter reading (A), on a chip that measures the
        neutral too (ATM90E26): the live/neutral tamper check compares the two currents, so an
        uncalibrated neutral channel would raise false tamper events (or hide real ones)."""
        chip = self.chip
        if "igain_n" not in chip.cal or chip.i_n_ma < 0:
            raise CalError("this chip has no neutral current channel")
        return self._rescale("igain_n", _units(ref_a, 1000), self._mean(_Neutral(chip), 0))

    def phase(self, ref_w, ch=0):
        """Phase calibration from a reference wattmeter reading (W) on an inductive load at a
        power factor near 0.5 (after voltage, current and power at PF 1). A phase error shows
        as an active-power error that grows with the load angle; the phase register is
        trimmed until the meter agrees with the reference."""
        pf = self._mean(self.chip.pf_milli, ch)
        if not _PF_MIN <= abs(pf) <= _PF_MAX:
            raise CalError("phase calibration needs a load at PF about 0.5, the meter sees %s%d.%03d" % (
                "-" if pf < 0 else "", abs(pf) // 1000, abs(pf) % 1000))
        return self._trim(self.chip.cal_key("phi", ch), self.chip.p_w, ch, _units(ref_w, 1))

    def offset(self, quantity, ref, ch=0):
        """RMS offset calibration at a low reference ("voltage" in V or "current" in A, e.g. 5 %
        of the base current), after the gain: the offset register is trimmed until the reading
        agrees with the reference there, which is where an offset error shows."""
        if quantity == "voltage":
            key, arr, units = "uoffset", self.chip.v_cv, _units(ref, 100)
        elif quantity == "current":
            key, arr, units = "ioffset", self.chip.i_ma, _units(ref, 1000)
        else:
            raise CalError('offset("voltage" or "current", reference)')
        return self._trim(self.chip.cal_key(key, ch), arr, ch, units)

    def _sum(self, arr, ch):
        chip = self.chip
        total = 0
        for _ in range(self.samples):
            self.tick()
            chip.read_inst()
            total += arr[ch]
        return total

    def _trim(self, key, arr, ch, ref):
        """Trim signed register `key` until the reading of arr[ch] equals ref. The register's
        effect is measured, not assumed (its scale and sign convention differ between chips and
        are not all documented): a trial step, widened until the reading moves, then secant
        steps. Returns the new register value; raises CalError, with the calibration as it was,
        when the reading cannot be brought closer."""
        chip = self.chip
        before = dict(chip.cal)
        n = self.samples
        goal = ref * n  # sums of n samples keep the sub-LSB part of the mean
        top = chip.CAL_FORMS[key.partition("_")[0]][3]

        def error_at(x):  # write x, let it settle, return the summed reading's error
            cal = dict(chip.cal)
            cal[key] = chip.cal_encode(key, x)
            self._apply(cal)
            return self._sum(arr, ch) - goal

        x0 = chip.cal_signed(key)
        d0 = start = self._sum(arr, ch) - goal
        if abs(d0) * 1000000 > _RANGE_PPM * goal:
            raise CalError("reading %d is more than 20%% from the reference %d: check wiring and load" % (
                (d0 + goal) // n, ref))
        if 2 * abs(d0) <= n:
            return chip.cal_value(key)  # already within half a reading LSB
        best_x, best_d = x0, d0
        try:
            step = chip.CAL_PROBE[key.partition("_")[0]]
            for _ in range(_PROBE_DOUBLINGS):
                # The direction is a guess (the chips differ); the measured slope decides after.
                x1 = _clip(x0 + (step if d0 < 0 else -step), top)
                d1 = error_at(x1)
                if abs(d1 - d0) >= 2 * n:
                    break
                step *= 2
            else:
                raise CalError("the %s register has no measurable effect" % key)
            for _ in range(_SECANT_STEPS + 1):
                if abs(d1) < abs(best_d):
                    best_x, best_d = x1, d1
                if 2 * abs(best_d) <= n or d1 == d0:
                    break
                x2 = _clip(x1 - _div_round(d1 * (x1 - x0), d1 - d0), top)
                if x2 == x1:
                    break
                x0, d0 = x1, d1
                x1, d1 = x2, error_at(x2)
            if abs(best_d) >= abs(start):
                raise CalError("the %s register did not bring the reading closer" % key)
            if best_x != chip.cal_signed(key):
                error_at(best_x)
        except (CalError, ValueError) as e:
            self._apply(before)
            raise CalError("%s: calibration unchanged" % e)
        return chip.cal_value(key)

    def check_current(self, ref_a, ch=0):
        """One point of the multi-point current check: error of the reading in ppm."""
        ref = _units(ref_a, 1000)
        m = self._mean(self.chip.i_ma, ch)
        err = (m - ref) * 1000000 // ref
        self.points.append((ref, m, err))
        return err

    def export(self):
        return encode(self.board, self.chip.NAME, self.uid, self.chip.cal)

    def import_(self, text):
        """Apply a record exported from this very unit; a bad one raises CalError and changes nothing."""
        regs = decode(text, self.board, self.chip.NAME, self.uid)
        cal = dict(self.chip.cal)
        for k in regs:
            if k not in cal:
                raise CalError("unknown calibration register %r" % k)
        cal.update(regs)
        self._apply(cal)

    def save(self):
        text = self.export()
        tmp = self.path + ".new"
        with open(tmp, "w") as f:
            f.write(text)
        import os

        os.rename(tmp, self.path)
        self.chip.cal_state = "ok"


class _Neutral:
    # The neutral current as a one-channel reading array, for _sum.
    def __init__(self, chip):
        self._chip = chip

    def __getitem__(self, ch):
        return self._chip.i_n_ma


def _div_round(a, b):
    """a / b rounded to the nearest integer, ties away from zero (integers only)."""
    q = (abs(a) * 2 + abs(b)) // (2 * abs(b))
    return q if (a >= 0) == (b > 0) else -q


def _clip(x, top):
    return top if x > top else (-top if x < -top else x)


def _wait_second():
    import time

    time.sleep_ms(1000)


_STEPS = ("voltage", "current", "neutral", "power", "phase", "offset", "check", "show", "save", "export", "import")


def repl_step(m, step=None, *args):
    """The REPL's calibrate() entry (firmware/repl.py): calibrate("voltage", 230.0),
    calibrate("current", 10.0), calibrate("neutral", 10.0), calibrate("power", 2300), calibrate("phase", 1150),
    calibrate("offset", "current", 0.5), calibrate("check", 1.0), calibrate("save"),
    calibrate("export"), calibrate("import", text); an optional last numeric argument after
    the reference is the channel (phase or current channel)."""
    if step not in _STEPS:
        print("calibrate(step, ...): step is one of " + ", ".join(_STEPS))
        return None
    board = m.board
    # Between samples the chip averages for a second: a simulated board lets a second of its
    # own time pass (the clock and the chip in step), a real one waits for it.
    adv = getattr(board, "advance", None)
    cal = Calibration(m.metering, m.metering.chip, board.root + "/cal.json",
                      getattr(board, "name", ""), getattr(board, "uid", b""),
                      tick=(lambda: adv(1000)) if adv is not None else None)
    try:
        if step == "show":
            return dict(cal.chip.cal)
        if step == "save":
            cal.save()
            return True
        if step == "export":
            return cal.export()
        if step == "import":
            cal.import_(args[0])
            return True
        if step == "offset":
            return cal.offset(args[0], args[1], args[2] if len(args) > 2 else 0)
        if step == "neutral":
            return cal.neutral(args[0])
        ch = args[1] if len(args) > 1 else 0
        if step == "check":
            return cal.check_current(args[0], ch)
        return getattr(cal, step)(args[0], ch)
    except (CalError, ValueError, IndexError) as e:
        print("calibration: %s" % e)
        return None
