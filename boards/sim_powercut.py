# Board: the sim-atm90e26 board on a RAM flash that can lose power (simhw.cutdev), for the
# power-cut sweep (tools/powercut_mp.py). A reboot builds a new Board on the surviving flash
# and keeps the parts that outlive a power cut: the clock, the chip emulator (the household's
# wiring), the relay contacts and the button. The load is fixed so runs are reproducible.
# Optional parts for the sweep's scenarios (opts, all off by default): "keypad" (the customer's
# keypad on an I2C bus, no display), "cal" (the technician's stored calibration applied at boot,
# as the real board does) and "true_cal" (a front end whose true gains differ from the board's).
import time
import atm90e26
import esp32_atm90e26 as real
from simhw.clock import SimClock
from simhw.atm90e26_emu import Atm90e26Emu
from simhw.parts import SimRelay, SimButton
from simhw.household import Lcg
import store

NAME = "sim-powercut"
STANDALONE = False  # needs the harness's flash device (opts["dev"]): tools/sim.py does not offer it
CHIP = real.CHIP


def survivors(board, opts, before):
    """What outlives a power cut or a reset, carried from the Board `before` (None: a new one):
    the clock, the chip's emulator (the household's wiring), the relay contacts, the button."""
    if before is None:
        board.clock = SimClock(opts.get("utc_start", 1767225600))
        board.emu = Atm90e26Emu(board.config["meter_constant"], opts.get("true_cal"))
        board.relay = SimRelay()
        board.button = SimButton(board.clock)
        # Randomised reconnect delays from a seeded generator that outlives reboots, so a
        # sweep is the same run every time (the port's RNG would make each one different).
        board._rand = Lcg(opts.get("seed", 1) + 13)
    else:
        board.clock = before.clock
        board.emu = before.emu
        board.relay = before.relay
        board.button = before.button
        board._rand = before._rand
        # A power cut opens a monostable relay; boot must drive it from the record.
        board.relay.closed = False


class Board:
    def __init__(self, opts, before=None):
        cfg = dict(real.CONFIG)
        cfg.update(opts.get("config", {}))
        self.config = cfg
        self.meter_id = opts["meter_id"]
        self.key = opts.get("key")
        survivors(self, opts, before)
        self.chip = atm90e26.ATM90E26(self.emu, self.emu.cs, real.CAL, 3200, self.emu.sleep_ms)
        self.chip_regs = atm90e26
        self.load_w = opts.get("load_w", 3000)
        self.flash = opts["dev"]
        self.root = "/flash"
        # littlefs read/prog sizes: the store's own (the meter image's partition), or another
        # geometry to reproduce, e.g. the stock image's root file system (store.ROOT_READ/PROG)
        self._geom = opts.get("lfs", (store.LFS_READ, store.LFS_PROG))
        self.fs_state = store.mount(self.flash, self.root, *self._geom)
        self.name = NAME
        self.uid = b"pc%d" % opts.get("seed", 1)  # stands in for machine.unique_id()
        if opts.get("cal"):
            self._load_cal()
        if opts.get("keypad"):
            self._keypad()

    def _load_cal(self):
        # As the real board at boot: a stored calibration is checked (CRC, board, unit) and applied.
        import calibration
        calibration.load_into(self.chip, self.root + "/cal.json", self.name, self.uid)

    def _keypad(self):
        # A new expander and a customer who has let go of every key: a power cut ends any typing.
        import keypad
        from simhw.i2cbus import SimI2C
        from simhw.keypad_emu import KeypadEmu
        self.keys = KeypadEmu(self.clock)
        self.keypad = keypad.Keypad(SimI2C({keypad.ADDR: self.keys}), self.clock.ticks_diff)
        self.display = self.buzzer = None

    def remount(self):
        return store.remount(self.flash, self.root, *self._geom)

    def advance(self, ms):
        self.emu.set_load(self.load_w if self.relay.closed else 0)
        self.emu.advance(ms)
        self.clock.advance(ms)

    def feed_watchdog(self):
        pass

    def rand(self, n):
        """0..n-1, deterministic per seed (randomised reconnect delays)."""
        return self._rand.next(n)

    def make_link(self, on_message, subs, will, birth):
        return _NoLink()


class _NoLink:
    """A link that never connects: commands are handed to the app directly by the harness,
    and uplink messages stay in the outbox for the harness to read."""

    retained = False
    state = 0
    connects = 0
    oversized = 0  # packets refused for size (firmware/link.py): none ever arrive here

    def poll(self):
        pass

    def wait(self, ms):
        time.sleep_ms(ms)

    def publish(self, topic, payload, qos=0):
        return False

    def close(self):
        pass


def build(opts):
    return Board(opts)
