# What is wired to the ESP32 in the virtual world (esp32world): the metering chip on the board's
# SPI bus (a register-level emulator from boards/simhw), one household load per metering channel
# behind the relay contacts, a water meter's reed contact on the first pulse input, tamper switches,
# and a customer who holds the reconnect button while the lights are out. All of it is outside the
# ESP32: the firmware meets it only as GPIO levels and SPI frames. The circuit (chip, bus, pins)
# comes from the board module's plain data, so the world is built the way the board file says.
import esp32world as W
from simhw.household import Household

# What each chip's datasheet allows on SPI (/work/shared/research/metering_ics.md): the modes
# (CPOL*2 + CPHA) it samples correctly in, and the fastest SCLK.
CHIPS = {
    # Mode 3 in every driver (its sister part samples SDI on the rising edge, every driver uses
    # mode 3); the notes give 160-200 kHz as the safe maximum.
    "atm90e26": ((3,), 200000, "mode 3 (polarity=1, phase=1)"),
    # SDI sampled on the rising edge, SDO shifted on the falling edge: mode 0 or 3; tCYC >= 7T+10 ns.
    "atm90e32": ((0, 3), 2200000, "mode 0 or 3"),
    # MISO shifted out on the falling edge, to be sampled on the rising edge: mode 0 or 3; 2 MHz is
    # the notes' conservative maximum.
    "ade7953": ((0, 3), 2000000, "mode 0 or 3"),
}
# A reed contact's closure as the pulse input sees it: (ms after the start, level), with bounce.
_PULSE = ((0, 0), (2, 1), (3, 0), (200, 1), (201, 0), (203, 1))
_PRESS_MS = 3500  # the customer holds the button a little longer than the 3 s the relay wants


def _emulator(chip, board):
    if chip == "atm90e26":
        from simhw.atm90e26_emu import Atm90e26Emu
        return Atm90e26Emu(board.CONFIG["meter_constant"], board.CAL), 1
    if chip == "atm90e32":
        from simhw.atm90e32_emu import Atm90e32Emu
        return Atm90e32Emu(board.CONFIG["meter_constant"]), 3
    if chip == "ade7953":
        from simhw.ade7953_emu import Ade7953Emu
        return Ade7953Emu(board.CAL), 2
    raise ValueError("no emulator for chip %r" % chip)


class House:
    def __init__(self, cfg):
        board = __import__(cfg["board"].replace("-", "_"))
        if board.RELAY != "monostable":
            raise ValueError("the world models a monostable relay, not %r" % board.RELAY)
        pins = dict(board.PINS)
        pins.update(cfg["wiring"])
        self.chip = board.CHIP
        self.modes, self.max_hz, self.mode_text = CHIPS[self.chip]
        self.emu, channels = _emulator(self.chip, board)
        self.pending_ms = 0  # time the emulator has not integrated yet (it catches up before a frame)
        # A chip that does not answer at all (an image with the "selftest" fault, esp32boot): nothing
        # drives MISO, which reads as all ones through its pull-up.
        self.dead = False
        self.spi_id = board.SPI_ID
        self.sck, self.mosi, self.miso, self.cs = pins["sck"], pins["mosi"], pins["miso"], pins["cs"]
        self.reset_pin = pins.get("reset", -1)
        self.relay = pins["relay"]
        seed = cfg["seed"]
        self.loads = [Household(seed + 101 * k) for k in range(channels)]  # as the sim boards
        self._p = [0] * channels
        self.relay_ops = 0  # times the coil output changed
        self._queue = []  # [tick, gpio, level]: edges the outside world will drive, in time order
        W.hooks[self.cs] = self.emu.cs
        W.hooks[self.relay] = self._relay
        if self.reset_pin >= 0:
            W.hooks[self.reset_pin] = self._chip_reset
        # Inputs at rest: the button is a switch to ground (the pad's pull-up makes it high);
        # tamper switches read low until tripped; the pulse inputs have external pull-ups.
        self.button = pins.get("button", -1)
        if self.button >= 0:
            W.ext[self.button] = None
        for name in ("cover", "magnet"):
            if name in pins:
                W.ext[pins[name]] = 0
        for name in ("pulse1", "pulse2"):
            if name in pins:
                W.ext[pins[name]] = 1
        self._customer_s = cfg["customer_ms"] // 1000
        self._customer_left = self._customer_s
        self.presses = 0
        water = board.CONFIG.get("pulses") or ()
        self._water_pin = pins.get("pulse1", -1) if cfg["water"] and water and water[0]["unit"] == "l" else -1
        self._water_step_ml = water[0]["per_pulse"] * 1000 if self._water_pin >= 0 else 0
        self._water_ml = 0
        self.water_pulses = 0

    # -- the bus ---------------------------------------------------------------------------
    def check_spi(self, spi_id, polarity, phase, baud, sck, mosi, miso):
        if spi_id != self.spi_id or (sck, mosi, miso) != (self.sck, self.mosi, self.miso):
            return  # another bus, or pins the chip is not on: nothing answers there
        name = self.chip.upper()
        if polarity * 2 + phase not in self.modes:
            raise ValueError("SPI(%d): the %s needs SPI %s by its datasheet; polarity=%d, phase=%d "
                             "is mode %d" % (spi_id, name, self.mode_text, polarity, phase, polarity * 2 + phase))
        if baud > self.max_hz:
            raise ValueError("SPI(%d): %d Hz is above the %s's %d Hz maximum SCLK" % (
                spi_id, baud, name, self.max_hz))

    def selected(self, spi):
        return (not self.dead and spi._id == self.spi_id and spi._sck == self.sck and spi._mosi == self.mosi
                and spi._miso == self.miso and not W.level(self.cs)
                and (self.reset_pin < 0 or W.level(self.reset_pin)))

    def flush(self):
        if self.pending_ms:
            self.emu.advance(self.pending_ms)
            self.pending_ms = 0

    def _chip_reset(self, level):
        if not level:
            self.flush()
            self.emu.reset()  # RESET low: the chip restarts, its registers at power-on values

    # -- the loads -------------------------------------------------------------------------
    def closed(self):
        return W.level(self.relay) == 1  # monostable: contacts closed while the coil is driven

    def _relay(self, level):
        self.flush()
        self.relay_ops += 1
        self._apply()

    def _apply(self):
        closed = self.closed()
        for k in range(len(self._p)):
            self.emu.set_channel(k, self._p[k] if closed else 0)

    def second(self, day_s):
        """Once per virtual second: the households' demand, the water, the customer."""
        self.flush()
        closed = self.closed()
        for k, h in enumerate(self.loads):
            if closed:
                self._p[k] = h.power_w(day_s, 1)
            else:
                h.power_cut()  # an appliance that lost its supply is not restarted
                self._p[k] = 0
        self._apply()
        if self._water_pin >= 0:
            hour = day_s // 3600
            if 6 <= hour < 9 or 17 <= hour < 23:
                self._water_ml += 10  # a tap running at 10 ml/s while the household is up
            if self._water_ml >= self._water_step_ml:
                self._water_ml -= self._water_step_ml
                self.water_pulses += 1
                for dt, level in _PULSE:
                    self.schedule(dt, self._water_pin, level)
        if self._customer_s and self.button >= 0:
            self._customer_left -= 1
            if self._customer_left <= 0:
                self._customer_left = self._customer_s
                if not closed and W.ext.get(self.button) is None:
                    self.presses += 1
                    self.schedule(0, self.button, 0)
                    self.schedule(_PRESS_MS, self.button, None)

    # -- outside events ----------------------------------------------------------------------
    def schedule(self, dt, gpio, level):
        t = W.tadd(W.ms, dt)
        q = self._queue
        i = len(q)
        while i and W.tdiff(q[i - 1][0], t) > 0:
            i -= 1
        q.insert(i, [t, gpio, level])

    def next_event(self, now):
        """Milliseconds to the next edge the outside world drives (2^29 when none is queued)."""
        q = self._queue
        return W.tdiff(q[0][0], now) if q else 0x20000000

    def run_event(self):
        _, g, level = self._queue.pop(0)
        W.drive(g, level)

    def report(self):
        self.flush()
        e = self.emu
        return {"chip": self.chip, "truth_mj": e.truth_mj, "truth_export_mj": e.truth_export_mj,
                "lost_in_chip_mj": e.lost_in_chip_mj, "relay_closed": self.closed(), "relay_ops": self.relay_ops,
                "water_pulses": self.water_pulses, "presses": self.presses, "frames": e.frames}
