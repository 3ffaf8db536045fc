# ESP32 port stand-in: machine, following ports/esp32 of MicroPython 1.28 (machine_pin.c,
# machine_hw_spi.c, machine_timer.c, machine_wdt.c, machine_rtc.c, modmachine.c) and the stubs'
# signatures. Everything it touches is the virtual hardware in esp32world; where the port would
# only misbehave on the bench (a pull-up on GPIO 34-39, an SPI mode the chip cannot read, flash
# pins) this refuses with a ValueError instead, so a board file's mistake shows on the host.
import esp32world as _w

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5
PIN_WAKE = EXT0_WAKE = 2
EXT1_WAKE = 3
TIMER_WAKE = 4
TOUCHPAD_WAKE = 5
ULP_WAKE = 6
SLEEP = 2
DEEPSLEEP = 4

# GPIOs the ESP32 has (MicroPython enables 16/17 unless the module has PSRAM on them).
_VALID = tuple(range(0, 24)) + (25, 26, 27) + tuple(range(32, 40))
_FLASH_PINS = (6, 7, 8, 9, 10, 11)  # wired to the SPI flash on every ESP32 module
_FIRST_INPUT_ONLY = 34  # GPIO 34-39: no output driver, no pull resistors
STRAPPING = (0, 2, 5, 12, 15)  # sampled at reset: boot mode, flash voltage, boot log, SDIO timing
_freq = 160000000  # ESP32_GENERIC's default CPU clock


def freq(hz=None):
    global _freq
    if hz is None:
        return _freq
    if hz // 1000000 not in (20, 40, 80, 160, 240):
        raise ValueError("frequency must be 20MHz, 40MHz, 80Mhz, 160MHz or 240MHz")
    _freq = hz


def unique_id():
    return _w.mac()


def reset():
    raise _w.HardReset()


def soft_reset():
    raise _w.SoftReset()


def reset_cause():
    return _w.reset_cause


def wake_reason():
    return 0


def idle():
    pass


def lightsleep(time_ms=None):
    _w.sleep_ms(time_ms if time_ms is not None else 0x3FFFFFFF)


def deepsleep(time_ms=None):
    raise _w.DeepSleep()


def disable_irq():
    return 0  # callbacks only ever run where virtual time passes (sleep, poll)


def enable_irq(state=0):
    pass


class Pin:
    IN = 1
    OUT = 3  # the port's OUT is input+output: value() reads the pad back
    OPEN_DRAIN = 7
    PULL_DOWN = 1
    PULL_UP = 2
    IRQ_RISING = 1
    IRQ_FALLING = 2
    WAKE_LOW = 4
    WAKE_HIGH = 5
    DRIVE_0 = 0
    DRIVE_1 = 1
    DRIVE_2 = 2
    DRIVE_3 = 3
    _all = {}

    def __new__(cls, id, *args, **kwargs):
        p = Pin._all.get(id)  # one object per GPIO, as the port's static pin table
        if p is None:
            if not isinstance(id, int) or id not in _VALID:
                raise ValueError("invalid pin")
            if id in _FLASH_PINS:
                raise ValueError("Pin(%d) is wired to the SPI flash" % id)
            p = object.__new__(cls)
            p._id = id
            p._irq = None
            p._trigger = 0
            Pin._all[id] = p
        return p

    def __init__(self, id, mode=-1, pull=-1, *, value=None, drive=None, hold=None):
        if mode != -1 or pull != -1 or value is not None:
            self.init(mode, pull, value=value, drive=drive, hold=hold)

    def init(self, mode=-1, pull=-1, *, value=None, drive=None, hold=None):
        g = self._id
        if mode is not None and mode != -1 and mode & 2 and g >= _FIRST_INPUT_ONLY:
            raise ValueError("pin can only be input")
        if pull is not None and pull != -1 and pull and g >= _FIRST_INPUT_ONLY:
            # The port only logs an ESP-IDF error and leaves the input floating.
            raise ValueError("Pin(%d): GPIO 34-39 have no pull-up or pull-down resistors" % g)
        if g in STRAPPING and g not in _w.straps_used:
            _w.straps_used.append(g)
        _w.set_pad(g, -1 if mode is None or mode == -1 else mode,
                   -1 if pull == -1 else (pull or 0), -1 if value is None else (1 if value else 0))

    def value(self, x=None):
        if x is None:
            return _w.level(self._id)
        _w.set_pad(self._id, -1, -1, 1 if x else 0)

    def __call__(self, x=None):
        return self.value(x)

    def on(self):
        _w.set_pad(self._id, -1, -1, 1)

    def off(self):
        _w.set_pad(self._id, -1, -1, 0)

    def toggle(self):
        _w.set_pad(self._id, -1, -1, 0 if _w.latch[self._id] else 1)

    def mode(self, mode=None):
        if mode is None:
            return _w.mode[self._id] or None
        self.init(mode)

    def pull(self, pull=None):
        if pull is None:
            return _w.pull[self._id] or None
        self.init(-1, pull)

    def irq(self, handler=None, trigger=IRQ_FALLING | IRQ_RISING, *, wake=None, hard=False):
        # Edges the outside world makes on this pad call handler(pin) at their virtual time.
        self._irq = handler
        self._trigger = trigger
        if handler is None:
            _w.irqs.pop(self._id, None)
        else:
            _w.irqs[self._id] = self
        return None

    def _edge(self, level):
        if self._trigger & (Pin.IRQ_RISING if level else Pin.IRQ_FALLING):
            self._irq(self)

    def __repr__(self):
        return "Pin(%d)" % self._id


class SPI:
    MSB = 0
    LSB = 1
    _all = {}
    _DEFAULT_PINS = {1: (14, 13, 12), 2: (18, 23, 19)}  # IO_MUX pins of HSPI and VSPI

    def __new__(cls, id, *args, **kwargs):
        if id not in SPI._DEFAULT_PINS:
            raise ValueError("SPI(%s) doesn't exist" % id)
        s = SPI._all.get(id)  # one object per peripheral, reconfigured by each constructor call
        if s is None:
            s = object.__new__(cls)
            s._id = id
            SPI._all[id] = s
        return s

    def __init__(self, id, baudrate=500000, *, polarity=0, phase=0, bits=8, firstbit=MSB,
                 sck=None, mosi=None, miso=None):
        d = SPI._DEFAULT_PINS[id]
        self._sck, self._mosi, self._miso = d
        self.init(baudrate, polarity=polarity, phase=phase, bits=bits, firstbit=firstbit,
                  sck=sck, mosi=mosi, miso=miso)

    def init(self, baudrate=500000, *, polarity=0, phase=0, bits=8, firstbit=MSB, sck=None,
             mosi=None, miso=None):
        pins = []
        for p, cur in ((sck, self._sck), (mosi, self._mosi), (miso, self._miso)):
            if p is None:
                pins.append(cur)
            elif isinstance(p, Pin):
                pins.append(p._id)
            else:
                raise ValueError("expecting a pin")
        if bits <= 0:
            raise ValueError("invalid bits")
        if bits != 8 or firstbit != SPI.MSB:
            raise ValueError("SPI(%d): the metering chips take 8-bit words, MSB first" % self._id)
        div = (80000000 + baudrate // 2) // baudrate if baudrate > 0 else 1  # APB clock / divider
        baud = 80000000 // (div if div > 0 else 1)
        _w.spi_check(self._id, polarity, phase, baud, pins[0], pins[1], pins[2])
        self._sck, self._mosi, self._miso = pins
        self._baud, self._pol, self._ph = baud, polarity, phase  # private: the port's SPI has no such attributes
        self._on = True

    def deinit(self):
        self._on = False

    def write_readinto(self, write_buf, read_buf):
        if not self._on:
            raise OSError("transfer on deinitialized SPI")
        if len(write_buf) != len(read_buf):
            raise ValueError("buffers must be the same length")
        if not read_buf:
            raise ValueError("buffer too short")
        _w.spi_xfer(self, write_buf, read_buf)

    def readinto(self, buf, write=0):
        self.write_readinto(bytes((write,)) * len(buf), buf)

    def read(self, nbytes, write=0):
        buf = bytearray(nbytes)
        self.readinto(buf, write)
        return bytes(buf)

    def write(self, buf):
        self.write_readinto(buf, bytearray(len(buf)))

    def __repr__(self):
        return "SPI(id=%u, baudrate=%u, polarity=%u, phase=%u, bits=8, firstbit=0, sck=%d, mosi=%d, miso=%d)" % (
            self._id, self._baud, self._pol, self._ph, self._sck, self._mosi, self._miso)


class Timer:
    ONE_SHOT = 0
    PERIODIC = 1

    def __new__(cls, id, *args, **kwargs):
        if not isinstance(id, int) or not 0 <= id < 4:
            raise ValueError("invalid Timer number")  # four hardware timers, two per group
        t = _w.all_timers.get(id)  # the one object of that hardware timer, as on the port
        if t is None:
            t = object.__new__(cls)
            t._id = id
            t._period = 0
            t._mode = 1
            t._cb = None
            t._due = t._base = 0
            t._set = False
            t._fired = 0
            _w.all_timers[id] = t
        return t

    def __init__(self, id, *args, **kwargs):
        if args or kwargs:
            self.init(*args, **kwargs)

    def init(self, *, mode=PERIODIC, callback=None, period=-1, tick_hz=1000, freq=None, hard=False):
        self._disarm()
        if hard:
            raise ValueError("hard Timers are not implemented")
        if freq is not None:
            p = int(1000 / freq)
        else:
            p = (0xFFFFFFFF if period == -1 else period) * 1000 // tick_hz
        p = p if p > 0 else 1  # the virtual clock counts whole milliseconds
        self._period = p if p < 0x1FFFFFFF else 0x1FFFFFFF
        self._mode = 1 if mode else 0
        self._cb = callback
        self._base = _w.ms
        self._due = _w.tadd(_w.ms, self._period)
        self._set = True
        _w.timers.append(self)

    def _disarm(self):
        if self in _w.timers:
            _w.timers.remove(self)

    def deinit(self):
        self._disarm()
        self._set = False

    def value(self):
        if not self._set:
            raise ValueError("timer not set")
        return _w.tdiff(_w.ms, self._base)

    def __repr__(self):
        return "Timer(%u, mode=%s, period=%lu)" % (
            self._id, "PERIODIC" if self._mode else "ONE_SHOT", self._period)


class WDT:
    # The task watchdog: one per chip, started by the first WDT(), and there is no deinit.
    _the = None

    def __new__(cls, id=0, timeout=5000):
        if id != 0:
            raise ValueError()
        if timeout <= 0:
            raise ValueError("WDT timeout too short")
        if WDT._the is None:
            WDT._the = object.__new__(cls)
        _w.wdt_start(timeout)
        return WDT._the

    def __init__(self, id=0, timeout=5000):
        pass

    def feed(self):
        _w.wdt_feed()


class RTC:
    _the = None

    def __new__(cls):
        if RTC._the is None:
            RTC._the = object.__new__(cls)
        return RTC._the

    def __init__(self):
        pass

    def datetime(self, datetimetuple=None):
        import time
        if datetimetuple is None:
            t = time.gmtime(_w.rtc_s)
            return (t[0], t[1], t[2], t[6], t[3], t[4], t[5], _w.rtc_ms * 1000)
        self._set(datetimetuple, 4)

    def init(self, datetimetuple):
        self._set(datetimetuple, 3)

    def _set(self, t, h):
        import time
        if len(t) != 8:
            raise ValueError("requested length 8 but object has length %d" % len(t))
        _w.rtc_s = time.mktime((t[0], t[1], t[2], t[h], t[h + 1], t[h + 2], 0, 0))
        _w.rtc_ms = t[7] // 1000

    def memory(self, data=None):
        if data is None:
            return _w.rtc_memory
        if len(data) > 2048:
            raise ValueError("buffer too long")
        _w.rtc_memory = bytes(data)
