# Board: the esp32-atm90e26 board with emulated parts, for host simulations under micropython.
# Same chip driver, calibration and configuration as the real board; the SPI bus goes to a
# register-level ATM90E26 emulator, the relay and button are simulated, flash is littlefs on
# a host file, and time is simulated (network timing stays real).
import atm90e26
import esp32_atm90e26 as real
from simhw.clock import SimClock, RealClock
from simhw.atm90e26_emu import Atm90e26Emu
from simhw.household import Household, Lcg
from simhw.parts import SimRelay, SimButton
from simhw import blockdev

NAME = "sim-atm90e26"
CHIP = real.CHIP


class Board:
    def __init__(self, opts):
        cfg = dict(real.CONFIG)
        cfg.update(opts.get("config", {}))
        self.config = cfg
        self.meter_id = opts["meter_id"]
        self.key = opts.get("key")
        self.clock = SimClock(opts.get("utc_start", 1767225600))  # 2026-01-01 00:00 UTC
        self.net_clock = RealClock()
        self.emu = Atm90e26Emu(cfg["meter_constant"], real.CAL)
        self.chip = atm90e26.ATM90E26(self.emu, self.emu.cs, real.CAL, cfg["meter_constant"])
        self.relay = SimRelay()
        self.button = SimButton(self.clock)
        self.load = Household(opts.get("seed", 1))
        self._rand = Lcg(opts.get("seed", 1) + 7)
        self.flash = blockdev.FileBlockDevice(opts["flash"])
        self.root = "/flash"
        blockdev.mount(self.flash, self.root)
        self._broker = opts.get("broker")

    def advance(self, ms):
        """Let `ms` of simulated time pass at the household's demand (nothing flows while the relay is open)."""
        p = self.load.power_w(self.clock.time(), ms // 1000) if self.relay.closed else 0
        self.emu.set_load(p)
        self.emu.advance(ms)
        self.clock.advance(ms)

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


def build(opts):
    return Board(opts)
