# Calibration from the REPL, and the stored calibration record.
#
#   >>> import calibration
#   >>> cal = calibration.Calibration(meter.metering, board.chip, "/data/cal.json", board.name, board.uid)
#   >>> cal.voltage(230.0)          # reference voltmeter reads 230.0 V
#   >>> cal.current(10.0)           # reference ammeter reads 10.0 A (resistive load)
#   >>> cal.power(2300.0)           # reference wattmeter reads 2300 W (same load, PF 1)
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
        chip = self.chip
        total = 0
        for _ in range(self.samples):
            self.tick()
            chip.read_inst()
            total += arr[ch]
        return total // self.samples

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


def _wait_second():
    import time

    time.sleep_ms(1000)


_STEPS = ("voltage", "current", "power", "check", "show", "save", "export", "import")


def repl_step(m, step=None, *args):
    """The REPL's calibrate() entry (firmware/repl.py): calibrate("voltage", 230.0),
    calibrate("current", 10.0), calibrate("power", 2300), calibrate("check", 1.0),
    calibrate("save"), calibrate("export"), calibrate("import", text); an optional last
    numeric argument after the reference is the channel (phase or current channel)."""
    if step not in _STEPS:
        print("calibrate(step, ...): step is one of " + ", ".join(_STEPS))
        return None
    board = m.board
    cal = Calibration(m.metering, m.metering._chip, board.root + "/cal.json",
                      getattr(board, "name", ""), getattr(board, "uid", b""))
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
        ch = args[1] if len(args) > 1 else 0
        if step == "check":
            return cal.check_current(args[0], ch)
        return getattr(cal, step)(args[0], ch)
    except (CalError, ValueError, IndexError) as e:
        print("calibration: %s" % e)
        return None
