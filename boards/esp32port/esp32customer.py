# The customer interface wired to the ESP32 in the virtual world (esp32world), issue 15: an SSD1306
# OLED at 0x3C and a 4x4 keypad on a PCA9674 at 0x20 on one I2C bus, at the board's PINS sda/scl,
# and a piezo buzzer on its PINS buzzer, all emulated by boards/simhw on the world's virtual ticks.
# The firmware meets them only as I2C transfers (machine.I2C) and a PWM output (machine.PWM). The
# customer types what cfg "keys" says at its virtual time; every key edge is an outside event, so
# virtual time never skips a press while the firmware idles.
import esp32world as W
from simhw import screentext  # now: after boot the host's file system is unmounted
from simhw.buzzer_emu import BuzzerEmu
from simhw.keypad_emu import LAYOUT, KeypadEmu
from simhw.oled_emu import Ssd1306Emu

OLED = 0x3C
KEYPAD = 0x20
# Where the interface is wired when the board's PINS do not say (the DevKit's usual I2C pins).
PINS = {"sda": 21, "scl": 22, "buzzer": 25}
# Fastest SCL each part's datasheet allows: SSD1306 tcycle >= 2.5 us; the keypad's PCA9674 is Fm+,
# 1 MHz (a PCF8574 in its place would be 100 kHz: Philips/NXP and TI). A bus set faster is
# reported (i2c over_rated), not refused: parts often cope on the bench.
RATED_HZ = {OLED: 400000, KEYPAD: 1000000}
_FAR = 0x20000000
_NOBODY = {}
_TONES = 16  # tones in the report


class Clock:
    """The emulators' clock: the world's virtual ticks (no CPU time is charged for reading it)."""

    def __init__(self):
        self.ticks_add = W.tadd  # instance attributes: plain calls, no method frame per tick
        self.ticks_diff = W.tdiff

    def ticks_ms(self):
        return W.ms


class Customer:
    def __init__(self, cfg):
        pins = dict(PINS)
        if cfg["board"]:
            board = __import__(cfg["board"].replace("-", "_"))
            for k in PINS:
                if k in board.PINS:
                    pins[k] = board.PINS[k]
        for k, v in cfg["wiring"].items():
            if k in PINS:
                pins[k] = v
        self.sda, self.scl, self.buzzer_pin = pins["sda"], pins["scl"], pins["buzzer"]
        clock = Clock()
        self.oled = self.keypad = None
        self.devices = {}  # I2C address -> emulator, on the bus at (sda, scl)
        if cfg["display"]:
            self.oled = Ssd1306Emu()
            self.keypad = KeypadEmu(clock)
            self.devices[OLED] = self.oled
            self.devices[KEYPAD] = self.keypad
        self.buzzer = BuzzerEmu(clock)
        if self.oled is not None:
            # What report() needs to read the glass, made now: counted with the harness before the
            # board starts, not taken from the firmware's heap at the end of a run.
            screentext.lines(self.oled.visible())
            self._frame = bytearray(1024)
        # What the customer types: [s, ms, keys, hold, gap], due at that uptime, in time order.
        plan = []
        for e in cfg["keys"]:
            t, keys = e[0], e[1]
            for c in keys:
                if c != " " and c not in LAYOUT:
                    raise ValueError("keys %r: %r is not on the keypad (%s)" % (keys, c, LAYOUT))
            plan.append([t // 1000, t % 1000, keys, e[2] if len(e) > 2 else 150, e[3] if len(e) > 3 else 150])
        plan.sort(key=lambda p: p[0] * 1000 + p[1])
        self._plan = plan if self.keypad is not None else []
        self._next = 0  # the plan's next entry
        self._typing = False
        self.nacks = 0  # transfers nobody acknowledged (scan probes aside)
        self.hz = 0  # the fastest SCL the firmware set on the module's pads

    # -- the bus ---------------------------------------------------------------------------------
    def bus(self, sda, scl, hz):
        """The parts a bus at pads sda/scl reaches (none unless they are the module's)."""
        if sda != self.sda or scl != self.scl:
            return _NOBODY
        if hz > self.hz:
            self.hz = hz
        return self.devices

    # -- the customer's typing, as outside events -----------------------------------------------
    def type(self, keys, hold_ms=150, gap_ms=150):
        """The customer starts typing `keys` now (after any still queued)."""
        self.keypad.type(keys, hold_ms, gap_ms)
        self._typing = True
        self.run_event()

    def next_event(self, now):
        """Milliseconds to the next thing the customer does (2^29 when nothing is planned)."""
        if self._typing:
            return 1  # each ms while keys are held or queued: every press and release on its ms
        if self._next < len(self._plan):
            p = self._plan[self._next]
            left = p[0] - W.up_s
            if left < 200000:  # beyond that, nothing within the world's horizon
                d = left * 1000 + p[1] - W.up_ms
                return d if d > 0 else 0
        return _FAR

    def run_event(self):
        k = self.keypad
        plan = self._plan
        while self._next < len(plan) and (plan[self._next][0] - W.up_s) * 1000 + plan[self._next][1] <= W.up_ms:
            p = plan[self._next]
            self._next += 1
            k.type(p[2], p[3], p[4])
        self._typing = k.busy()  # presses and releases due now happen now, not at the next read
        W.input_changed()

    # -- what the customer saw and heard --------------------------------------------------------
    def report(self):
        o = self.oled
        up = W.up_s * 1000 + W.up_ms
        tones = [[up - W.tdiff(W.ms, s), n, f] for s, n, f in self.buzzer.tones()[-_TONES:]]
        return {"display": {"fitted": o is not None, "lit": o is not None and o.lit(),
                            "text": screentext.lines(o.visible(self._frame)) if o is not None else [""] * 8,
                            "frames": o.frames if o is not None else 0},
                "keys_pressed": self.keypad.presses if self.keypad is not None else 0,
                "tones": tones, "tones_total": self.buzzer.count,
                "i2c": {"nacks": self.nacks, "hz": self.hz,
                        "over_rated": ["0x%02x" % a for a in sorted(self.devices) if self.hz > RATED_HZ[a]]}}
