# What the simulated boards share: simulated clock, relay, button, flash and broker link, and
# households driving each metering channel. A sim board module only says which chip, emulator
# and real board definition it uses.
from simhw.clock import SimClock, RealClock
from simhw.household import Household, Lcg
from simhw.parts import SimRelay, SimButton, SimSwitch
from simhw import blockdev


def front_end(cal, opts):
    """The gains that make the emulated front end read exactly: the board's own calibration,
    or with opts["true_cal"] a unit whose parts differ from it (so a technician can rehearse
    a calibration: tools/repl_sim.py)."""
    t = opts.get("true_cal")
    if not t:
        return cal
    out = dict(cal)
    out.update(t)
    return out


class SimBoard:
    def __init__(self, opts, name, real, make_emu, make_chip, channels=1):
        cfg = dict(real.CONFIG)
        cfg.update(opts.get("config", {}))
        self.name = name
        self.config = cfg
        self.meter_id = opts["meter_id"]
        self.key = opts.get("key")
        self.clock = SimClock(opts.get("utc_start", 1767225600))  # 2026-01-01 00:00 UTC
        self.net_clock = RealClock()
        self.emu = make_emu(cfg)
        self.chip = make_chip(self.emu, cfg)
        self.relay = SimRelay()
        self.button = SimButton(self.clock)
        self.cover = SimSwitch()  # True = terminal cover open
        self.magnet = SimSwitch()
        seed = opts.get("seed", 1)
        self._relay_rand = Lcg(seed + 13)
        # One household per channel (a three-phase supply feeds three circuits' worth of load).
        self.loads = [Household(seed + 101 * k) for k in range(channels)]
        self.load = self.loads[0]
        self._rand = Lcg(seed + 7)
        import pulses

        self.pulses = pulses.from_config(cfg.get("pulses"), self.clock.ticks_diff)
        self.pulses_truth = [0] * len(self.pulses)
        self._water_ml = 0
        import gc

        gc.collect()  # the block device wants one contiguous buffer; compile garbage fragments the heap
        self.flash = blockdev.FileBlockDevice(opts["flash"], blocks=512)  # 2 MiB, the ESP32 data partition
        self.root = "/flash"
        self.fs_state = blockdev.mount(self.flash, self.root)
        self.uid = b"sim%d" % seed  # stands in for machine.unique_id()
        self._load_cal(self.root + "/cal.json", name)
        self._broker = opts.get("broker")
        # A fake time server (docs/time.md): the simulation's true time ("utc" at the start, by
        # default utc_start; a board powered up after a cut starts its clock elsewhere) plus the
        # time simulated, whatever the meter's clock was set to, off by "lie_s"; "down": no answer.
        self._sntp = dict(opts.get("sntp") or {})
        self._utc_start = self._sntp.get("utc", opts.get("utc_start", 1767225600))
        self.sntp_queries = 0
        self.display = self.keypad = self.buzzer = None
        if opts.get("customer"):
            self._customer_parts()

    def _customer_parts(self):
        """The customer's display and keypad on one I2C bus and the buzzer on a PWM output, as the
        real boards wire them (docs/customer.md), emulated: the emulators keep what the customer
        would see, feel and hear."""
        import ssd1306
        import keypad
        from simhw.i2cbus import SimI2C
        from simhw.oled_emu import Ssd1306Emu
        from simhw.keypad_emu import KeypadEmu
        from simhw.buzzer_emu import BuzzerEmu

        self.oled = Ssd1306Emu()
        self.keys = KeypadEmu(self.clock)
        self.i2c = SimI2C({ssd1306.ADDR: self.oled, keypad.ADDR: self.keys})
        self.display = ssd1306.SSD1306(self.i2c)
        self.keypad = keypad.Keypad(self.i2c, self.clock.ticks_diff)
        self.buzzer = self.beeper = BuzzerEmu(self.clock)

    def sntp(self):
        """What ntptime.time() would say, in meter seconds; OSError when the server is down."""
        import timebase
        self.sntp_queries += 1
        if self._sntp.get("down"):
            raise OSError(110)  # ETIMEDOUT, as ntptime's socket raises it
        return timebase.from_unix(self._utc_start) + self.clock.elapsed_s + self._sntp.get("lie_s", 0)

    def advance(self, ms):
        """Let `ms` of simulated time pass at the households' demand (nothing flows while the relay is open)."""
        utc = self.clock.time()
        for k, h in enumerate(self.loads):
            if self.relay.closed:
                p = h.power_w(utc, ms // 1000)
            else:
                p = 0
                h.power_cut()
            self.emu.set_channel(k, p, 23000, getattr(h, "pf_milli", 1000))  # a load may be reactive
        self.emu.advance(ms)
        self._water(utc, ms)
        self.clock.advance(ms)

    def _water(self, utc, ms):
        # A water meter on the first pulse input: 10 ml/s while the household is up (morning and
        # evening), one pulse per per_pulse litres, each with contact bounce on both edges.
        if not self.pulses:
            return
        hour = utc % 86400 // 3600
        if 6 <= hour < 9 or 17 <= hour < 23:
            self._water_ml += 10 * ms // 1000
        p = self.pulses[0]
        clk = self.clock
        t = clk.ticks_ms()
        while self._water_ml >= p.per_pulse * 1000:
            self._water_ml -= p.per_pulse * 1000
            self.pulses_truth[0] += 1
            for dt, level in ((0, 0), (2, 1), (3, 0), (60, 0), (200, 1), (201, 0), (203, 1), (300, 1)):
                p.sample(level, clk.ticks_add(t, dt))

    def _load_cal(self, path, name):
        import os

        try:
            os.stat(path)
        except OSError:
            self.chip.cal_state = "none"  # nothing stored: the calibration module stays unloaded
            return
        import calibration

        calibration.load_into(self.chip, path, name, self.uid)

    def rand(self, n):
        """0..n-1, deterministic per seed (randomised reconnect delays)."""
        return self._relay_rand.next(n)

    def remount(self):
        """After a flash error (see store.remount)."""
        return blockdev.remount(self.flash, self.root)

    def feed_watchdog(self):
        pass

    def make_link(self, on_message, subs, will, birth):
        if not self._broker:
            return None
        from umqtt import simple
        from link import Link

        host, port = self._broker
        return Link(simple, self.net_clock, self._rand.next, "pm-sim-" + self.meter_id, host, port,
                    on_message, subs, self.config["keepalive_s"], timeout_ms=1000, will=will,
                    birth=birth, backoff_min_ms=200,
                    backoff_max_ms=self.config.get("backoff_max_ms", 5000))
