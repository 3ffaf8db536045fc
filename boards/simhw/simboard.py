# What the simulated boards share: simulated clock, relay, button, flash and broker link, and
# households driving each metering channel. A sim board module only says which chip, emulator
# and real board definition it uses.
from simhw.clock import SimClock, RealClock
from simhw.household import Household, Lcg
from simhw.parts import SimRelay, SimButton
from simhw import blockdev


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
        seed = opts.get("seed", 1)
        # One household per channel (a three-phase supply feeds three circuits' worth of load).
        self.loads = [Household(seed + 101 * k) for k in range(channels)]
        self.load = self.loads[0]
        self._rand = Lcg(seed + 7)
        import pulses

        self.pulses = pulses.from_config(cfg.get("pulses"), self.clock.ticks_diff)
        self.pulses_truth = [0] * len(self.pulses)
        self._water_ml = 0
        self.flash = blockdev.FileBlockDevice(opts["flash"])
        self.root = "/flash"
        blockdev.mount(self.flash, self.root)
        import calibration

        self.uid = b"sim%d" % seed  # stands in for machine.unique_id()
        calibration.load_into(self.chip, self.root + "/cal.json", name, self.uid)
        self._broker = opts.get("broker")

    def advance(self, ms):
        """Let `ms` of simulated time pass at the households' demand (nothing flows while the relay is open)."""
        utc = self.clock.time()
        for k, h in enumerate(self.loads):
            p = h.power_w(utc, ms // 1000) if self.relay.closed else 0
            self.emu.set_load(k, p)
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
                    birth=birth, backoff_min_ms=200, backoff_max_ms=5000)
