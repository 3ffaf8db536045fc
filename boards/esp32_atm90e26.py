# Board: ESP32 DevKit + ATM90E26 on VSPI, monostable load relay, reconnect button.
# The definitions at the top (pins, chip, relay, calibration, config) are plain data so the
# simulated board can reuse them; hardware is only touched inside build().
NAME = "esp32-atm90e26"
CHIP = "atm90e26"
RELAY = "monostable"  # contacts closed while the coil output is high

# VSPI IO-MUX pins; the ATM90E26 wants SPI mode 3 at <= 200 kHz.
# Pin map and the reasons for it: docs/hardware.md. Customer inputs stay off the strapping pins
# (0, 2, 5, 12, 15): a reconnect button on GPIO0 held through a power-up or a watchdog reset
# left the ESP32 in its ROM download mode, not metering.
PINS = {"sck": 18, "mosi": 23, "miso": 19, "cs": 5, "relay": 26, "button": 32, "led": 2,
        "cover": 34, "magnet": 35,  # tamper switches on input-only pins, external pull-ups
        "pulse1": 36, "pulse2": 39,  # water/gas pulse inputs, input-only, 10 k pull-ups to 3.3 V
        # The customer interface (docs/customer.md): display and keypad expander share one I2C
        # bus (external 4.7 k pull-ups), the buzzer is a PWM output. Off the straps and GPIO21
        # (the ADE7953 board's chip reset).
        "sda": 33, "scl": 22, "buzzer": 25}
I2C_ID = 0
I2C_FREQ = 400000  # fast mode: a full display frame in about 25 ms
SPI_ID = 2
SPI_BAUD = 160000
_ANCHOR_MS = 3600000  # the clock takes the RTC's seconds once an hour (see _Clock)
_NTP_TIMEOUT_S = 1  # one SNTP query waits at most this long (in the link's connect phase)

# Calibration defaults for a 1 mOhm shunt / 1000:1 voltage divider front end (per-unit values
# come from the REPL calibration procedure; the driver computes CS1/CS2 itself).
CAL = {
    "plconst_h": 0x0015, "plconst_l": 0xD174,  # PLconst: datasheet default, MC = 3200 imp/kWh
    "pgain": 0x1D39,  # Lgain
    "ugain": 0x6720, "igain": 0x7A13, "igain_n": 0x7530,
}

CONFIG = {
    "meter_constant": 3200,  # pulses per kWh for the PLconst above
    "max_power_w": 13800,  # 60 A at 230 V: bounds a plausible energy read
    "tariff": {"v": 1, "kind": "flat", "price_per_kwh": 25000, "scale": 1000},
    "credit": {"low1": 200, "low2": 50, "hysteresis": 20, "reconnect_threshold": 0,
               "max_balance": 10000000},
    "auto_reconnect": False,
    "opening_balance": 0,
    "commit_wh": 5,
    "commit_s": 900,
    "telemetry_s": 900,
    "tick_ms": 1000,
    "keepalive_s": 900,
    # Relay and protection; every key not given takes the default in docs/relay.md.
    "protection": {"relay": {"kind": RELAY}},
    # Water meter with a reed contact, 10 litres per pulse (see docs/metering.md).
    "pulses": [{"name": "water", "unit": "l", "per_pulse": 10, "debounce_ms": 20}],
    # Display, keypad and buzzer fitted; the settings (currency, register sequence, quiet hours)
    # are in docs/customer.md. Leave the key out for a meter built without them.
    "customer": {"currency": "", "decimals": 2},
}


class Board:
    """Real hardware. Secrets come from /secrets.json written at provisioning: no defaults."""

    def __init__(self, config=CONFIG, name=NAME):
        import json
        import time
        from binascii import unhexlify
        import machine
        from machine import Pin, SPI, WDT

        self.config = config
        self.name = name
        self.chip = self._make_chip(machine, SPI, Pin)
        self._pulse_inputs(Pin, time)
        self.display = self.keypad = self.buzzer = None
        if "customer" in config:
            self._customer_parts(Pin, time)
        self.relay = _Relay(Pin(PINS["relay"], Pin.OUT))
        self._button = Pin(PINS["button"], Pin.IN, Pin.PULL_UP)
        # Tamper switches read high when tripped (cover lifted / reed closed by a magnet).
        self.cover = Pin(PINS["cover"], Pin.IN).value
        self.magnet = Pin(PINS["magnet"], Pin.IN).value
        self.root = "/data"
        self.fs_state, self.fs_fallback, self._fs = mount_data(self.root)
        if self.fs_fallback:
            self.config = fallback_config(config)
        import calibration

        self.uid = machine.unique_id()
        calibration.load_into(self.chip, self.root + "/cal.json", name, self.uid)
        with open("/secrets.json") as f:
            s = json.load(f)
        self.meter_id = s["meter_id"]
        self.key = unhexlify(s["key"]) if s.get("key") else None
        self._broker = s.get("broker", "")
        self._mqtt_user = s.get("mqtt_user")
        self._mqtt_password = s.get("mqtt_password")
        self._wifi = (s.get("wifi_ssid"), s.get("wifi_password"))
        self._ca = s.get("ca")  # path of the broker CA (DER); with it the link speaks TLS
        self._ntp = s.get("ntp", "pool.ntp.org")  # time server (docs/time.md); "" for none
        # Updates over the air (docs/ota.md): only on an image with OTA slots, and only signed by
        # the utility's release key (its public modulus, provisioned; no key, no update).
        self.release_key = unhexlify(s["release_key"]) if s.get("release_key") else None
        self.partition = self._ota_partitions()
        self.clock = _Clock(time)
        self.net_clock = self.clock
        # Read before anything can reset: the RTC still counting after a power-on reset means the
        # power never went (these boards have no RTC battery; a power cut restarts it at 2000).
        import timebase
        self._reset = machine.reset_cause()
        self._rtc_kept = self.clock.time() >= timebase.SET_MIN  # below it: never set, or lost power
        self._wdt = WDT(timeout=30000)
        self._chip_id = machine.unique_id()

    @staticmethod
    def _ota_partitions():
        try:
            import esp32
            import otadata
        except ImportError:
            return None
        return esp32.Partition if otadata.ota_slots(esp32.Partition) else None

    def reset(self):
        """Restart the ESP32 (a firmware update switches images this way)."""
        import machine
        machine.reset()

    def reset_cause(self):
        """machine.reset_cause() of this boot (read before anything could reset)."""
        return self._reset

    def brownout(self):
        """Whether this boot follows a brownout. The port reports one as a power-on reset
        (ESP_RST_BROWNOUT -> PWRON_RESET in modmachine.c), but ESP-IDF restarts from a brownout
        without the RTC losing power: a power-on reset that finds the RTC still counting was a
        brownout (these boards have no RTC battery; a power cut restarts it at 2000)."""
        import machine

        return self._reset == machine.PWRON_RESET and self._rtc_kept

    def _pulse_inputs(self, pin_cls, time):
        import pulses
        from machine import Timer

        self.pulses = pulses.from_config(self.config.get("pulses"), time.ticks_diff)
        pins = tuple(pin_cls(PINS["pulse%d" % (i + 1)], pin_cls.IN) for i in range(len(self.pulses)))
        inputs = self.pulses
        ticks_ms = time.ticks_ms

        def sample(_t):
            now = ticks_ms()
            for i in range(len(inputs)):
                inputs[i].sample(pins[i].value(), now)

        if inputs:
            self._pulse_timer = Timer(0)
            self._pulse_timer.init(period=5, mode=Timer.PERIODIC, callback=sample)

    def _customer_parts(self, pin_cls, time):
        """The customer's display (SSD1306) and keypad (PCA9674) on one I2C bus, the buzzer on
        PWM. A part that is missing or stops answering is the interface's problem, never the
        meter's: the drivers count their errors and retry."""
        from machine import I2C, PWM
        import ssd1306
        import keypad

        i2c = I2C(I2C_ID, scl=pin_cls(PINS["scl"]), sda=pin_cls(PINS["sda"]), freq=I2C_FREQ)
        self.display = ssd1306.SSD1306(i2c)
        self.keypad = keypad.Keypad(i2c, time.ticks_diff)
        self.buzzer = PWM(pin_cls(PINS["buzzer"]), freq=2700, duty_u16=0)

    def _make_chip(self, machine, spi_cls, pin_cls):
        import atm90e26

        spi = spi_cls(SPI_ID, baudrate=SPI_BAUD, polarity=1, phase=1, sck=pin_cls(PINS["sck"]),
                      mosi=pin_cls(PINS["mosi"]), miso=pin_cls(PINS["miso"]))
        import time

        return atm90e26.ATM90E26(spi, pin_cls(PINS["cs"], pin_cls.OUT, value=1), CAL,
                                 CONFIG["meter_constant"], time.sleep_ms)

    def button(self):
        return self._button.value() == 0

    def remount(self):
        """After a flash error (store.remount): the file system /data is on, never formatted."""
        import store
        dev, path, rs, ps = self._fs
        return dev is not None and store.remount(dev, path, rs, ps)

    def feed_watchdog(self):
        self._wdt.feed()

    def make_link(self, on_message, subs, will, birth):
        import network
        import random
        from umqtt import simple
        from link import Link

        wlan = network.WLAN(network.STA_IF)
        wlan.active(True)
        if not wlan.isconnected() and self._wifi[0]:
            wlan.connect(*self._wifi)  # returns at once; the link retries until Wi-Fi is up
        if not self._broker:
            return None
        host, _, port = self._broker.partition(":")
        cid = "pm-" + "".join("%02x" % b for b in self._chip_id)
        ctx = None
        if self._ca:
            import ssl
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.verify_mode = ssl.CERT_REQUIRED  # never CERT_NONE: an unverified broker could be anyone
            with open(self._ca, "rb") as f:
                ctx.load_verify_locations(cadata=f.read())
        return Link(simple, self.net_clock, lambda n: random.getrandbits(24) % n,
                    cid, host, int(port or (8883 if ctx else 1883)), on_message, subs, self.config["keepalive_s"],
                    will=will, birth=birth, user=self._mqtt_user, password=self._mqtt_password,
                    ssl_context=ctx)

    def store_key(self, key):
        """A rotated command key replaces the provisioned one in /secrets.json (written aside and
        renamed over it: a power cut leaves the old file or the new one), so the old key does not
        stay on the board (firmware/remote.py)."""
        import json
        import os
        from binascii import hexlify

        with open("/secrets.json") as f:
            s = json.load(f)
        s["key"] = hexlify(key).decode()
        with open("/secrets.json.tmp", "w") as f:
            json.dump(s, f)
        os.rename("/secrets.json.tmp", "/secrets.json")
        self.key = bytes(key)

    def set_time(self, utc):
        """Set the RTC from a Unix time (the backend's set-time command; TLS needs a sane clock)."""
        import machine
        import time
        import timebase
        t = time.gmtime(timebase.from_unix(utc) + self.clock._offset)
        machine.RTC().datetime((t[0], t[1], t[2], t[6], t[3], t[4], t[5], 0))
        self.clock.anchor(True)

    def sntp(self):
        """Meter seconds from the time server (the port's ntptime, one query bounded by its
        timeout; OSError without an answer). It does not set the RTC: the app's time source
        decides how far to believe an unauthenticated answer (docs/time.md)."""
        if not self._ntp:
            raise OSError(2)  # ENOENT: no time server configured
        import ntptime
        ntptime.host = self._ntp
        ntptime.timeout = _NTP_TIMEOUT_S
        return ntptime.time() - self.clock._offset

    def keep_time(self, data):
        """The time source's state in the RTC's memory: kept over resets, lost with the RTC."""
        import machine
        machine.RTC().memory(data)

    def kept_time(self):
        import machine
        return machine.RTC().memory()


DATA_LABEL = "meter"  # the meter image's data partition (boards/esp32_meter/partitions.csv)


def mount_data(root):
    """Mount `root` (/data) for the store. On the meter image: its "meter" partition with the store's
    littlefs geometry, where the record is inline and a commit rarely erases a block. On a stock
    image without it: a directory on the root file system, which the port mounted with VfsLfs2's
    defaults; power-cut safe too, but there every commit erases a block (several times the wear,
    docs/storage.md), so the board says so and the app raises store_fallback at every boot.
    Returns (store.mount result, fallback, (device, mount point, read size, prog size))."""
    import store
    try:
        from esp32 import Partition
        found = Partition.find(Partition.TYPE_DATA, label=DATA_LABEL)
    except ImportError:  # no esp32 module (a host harness): as on a stock image
        found = None
    if found:
        dev = found[0]
        return store.mount(dev, root), False, (dev, root, store.LFS_READ, store.LFS_PROG)
    print("storage: no '%s' partition (a stock image): %s on the root file system, a flash erase "
          "per commit (docs/storage.md)" % (DATA_LABEL, root))
    import os
    try:
        os.mkdir(root)
    except OSError:
        pass
    try:
        from flashbdev import bdev  # the port's root block device, as its _boot.py mounted it
    except ImportError:
        bdev = None
    return store.MOUNTED, True, (bdev, root.rsplit("/", 1)[0] or "/", store.ROOT_READ, store.ROOT_PROG)


FALLBACK_OUTBOX = 750  # messages: 3.9 days of backfill instead of 7.7


def fallback_config(config):
    """The config on a stock image's root file system, which also holds the firmware files: every
    log at full size would fill it (docs/storage.md), and the record, not inline there, needs a free
    block for each commit. A smaller outbox keeps about 50 blocks free, unless the board set one."""
    storage = config.get("storage", {})
    if "outbox" in storage:
        return config
    config = dict(config)
    config["storage"] = dict(storage, outbox=FALLBACK_OUTBOX)
    return config


class _Relay:
    def __init__(self, pin):
        self._pin = pin

    def set(self, closed):
        self._pin.value(1 if closed else 0)


class _Clock:
    """Meter seconds (timebase.py) without a big int per call. The port counts seconds from 2000
    on the ESP32 (from 1970 elsewhere), which passes 2^30 in 2034: so the port's seconds are read
    once an hour (the anchor) and the ticks count the seconds in between. The result never goes
    back (a new anchor may find the port a fraction of a second behind); setting the RTC
    re-anchors at once and may move it either way."""

    def __init__(self, time):
        from timebase import EPOCH
        self.ticks_ms = time.ticks_ms
        self.ticks_diff = time.ticks_diff
        self.ticks_add = time.ticks_add
        self._offset = EPOCH - (946684800 if time.gmtime(0)[0] == 2000 else 0)
        self._time = time.time
        self._last = 0
        self.anchor(True)

    def anchor(self, jump=False):
        self._t0 = self.ticks_ms()
        s = self._time() - self._offset  # a big int only here, hourly, once the port is past 2034
        self._s0 = s if jump or s > self._last else self._last

    def time(self):
        d = self.ticks_diff(self.ticks_ms(), self._t0)
        if d >= _ANCHOR_MS:
            self.anchor()
            d = 0
        t = self._s0 + d // 1000
        self._last = t
        return t


def build(opts=None):
    return Board()
