# Board: the esp32-atm90e26 meter on the ESP32 port's flash stand-in with OTA slots, for the
# firmware-update sweep (tools/ota_sweep_mp.py). Everything the meter writes goes through one
# virtual flash (esp32flash): /data on the "meter" partition as the real board mounts it, the image
# into the next OTA slot, the bootloader's OTA data; so a power cut can land on any of them. The
# harness plays the bootloader at every reboot (esp32ota.bootload), delivers commands and image
# chunks through the link below, and builds a new Board on the surviving flash, keeping what
# outlives a reset: the clock, the chip's emulator, the relay contacts and the button.
import time
import atm90e26
import esp32_atm90e26 as real
import esp32
import store
import sim_powercut

NAME = "sim-ota"
STANDALONE = False  # needs the harness's world flash: tools/sim.py does not offer it
CHIP = real.CHIP


class Reset(BaseException):
    """machine.reset(): the harness runs the bootloader and boots again."""


class DeadBus:
    """The SPI bus of a chip that does not answer: every bit reads as one (MISO pulled up)."""

    def write_readinto(self, tx, rx):
        for i in range(len(rx)):
            rx[i] = 0xFF


class Board(sim_powercut.Board):
    """The sweep's board: sim_powercut's parts and clock, /data and the OTA slots on the world's
    flash (its __init__ is this board's own; advance, rand and the watchdog are inherited)."""

    def __init__(self, opts, before=None):
        cfg = dict(real.CONFIG)
        cfg.update(opts.get("config", {}))
        self.config = cfg
        self.name = real.NAME  # manifests name the real board
        self.meter_id = opts["meter_id"]
        self.key = opts.get("key")
        self.release_key = opts.get("release_key")
        sim_powercut.survivors(self, opts, before)
        # A broken image ("selftest" in its sim marker) boots with a chip that does not answer.
        bus = DeadBus() if opts.get("chip_dead") else self.emu
        self.chip = atm90e26.ATM90E26(bus, self.emu.cs, real.CAL, 3200, self.emu.sleep_ms)
        self.chip_regs = atm90e26
        self.load_w = opts.get("load_w", 1200)
        self.link = opts["link"]
        self.partition = esp32.Partition
        self.root = "/data"
        dev = esp32.Partition.find(esp32.Partition.TYPE_DATA, label=real.DATA_LABEL)[0]
        self._dev = dev
        self.fs_state = store.mount(dev, self.root)

    def remount(self):
        return store.remount(self._dev, self.root)

    def reset(self):
        raise Reset()

    def make_link(self, on_message, subs, will, birth):
        self.link.subs = subs
        return self.link


class Link:
    """Up from the start; what the meter publishes is kept for the harness (the backend)."""

    retained = 0
    state = 1
    connects = 1
    oversized = 0
    host = "backend"  # what the REPL's status() shows
    port = 0
    drops = 0

    def __init__(self):
        self.sent = []  # (topic, payload) in order
        self.subs = ()

    def poll(self):
        pass

    def wait(self, ms):
        time.sleep_ms(ms)

    def publish(self, topic, payload, qos=1, retain=False):
        self.sent.append((bytes(topic), bytes(payload)))
        return True

    def close(self):
        pass


def build(opts):
    return Board(opts)
