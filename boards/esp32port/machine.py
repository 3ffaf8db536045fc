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


# -- I2C: ports/esp32/machine_i2c.c (the legacy driver, v1.28's default) and extmod/machine_i2c.c --
_ENODEV = 19


def _gpio(p):
    # machine_pin_get_id: a Pin or a GPIO number.
    if isinstance(p, Pin):
        return p._id
    if type(p) is int:
        return Pin(p)._id
    raise ValueError("invalid pin")


def _claim(g):
    if g in STRAPPING and g not in _w.straps_used:
        _w.straps_used.append(g)


def _i2c_pad(g, pull):
    if g >= _FIRST_INPUT_ONLY:
        # The port only logs "gpio number error" and the bus never works.
        raise ValueError("I2C on Pin(%d): GPIO 34-39 are inputs only, SCL and SDA need open-drain outputs" % g)
    _claim(g)
    _w.set_pad(g, Pin.OPEN_DRAIN, pull, 1)  # released: the bus idles high


class _I2CBus:
    # The standard bus operations over one transfer each. Every byte goes straight to the device
    # that acknowledged its address (the world's wiring, looked up again after a world setup or
    # a new configuration), and the time it takes on the wire (START, 9 clocks per byte with its
    # ACK, STOP) passes in virtual time after it. Nothing allocates on the success path: the
    # firmware's display and keypad paths run under heap_lock.
    _gen = -1
    _devs = None

    def _attach(self):
        self._devs = _w.i2c_bus(self._sda, self._scl, self._hz)
        self._gen = _w.gen

    def _attached(self):
        """address -> device on this bus now (looked up again after a world setup)."""
        if self._gen != _w.gen:
            self._attach()
        return self._devs

    def _begin(self, addr):
        """START and the address: the device that acknowledged it (OSError ENODEV if none)."""
        d = self._attached().get(addr & 0x7F)  # addr << 1 fills one byte
        if d is None:
            _w.i2c_nack()
            self._time(11)  # START, the address byte unanswered, STOP
            raise OSError(_ENODEV)
        d.i2c_start()
        return d

    def _time(self, bits):
        us = bits * self._ns // 1000
        t = _w.sub_us + us
        if t < 1000:
            _w.sub_us = t  # within the ms: what sleep_us does, without its call (keypad scans)
        else:
            _w.sleep_us(us)

    def scan(self):
        found = []
        for a in range(0x08, 0x78):  # 0b0000xxx and 0b1111xxx are reserved
            self._time(11)
            if self._attached().get(a) is not None:
                found.append(a)
        return found

    def writeto(self, addr, buf, stop=True):
        if type(buf) is str:
            buf = buf.encode()  # a str has the buffer protocol in MicroPython
        d = self._begin(addr)
        for b in buf:
            d.i2c_byte(b)
        n = len(buf)
        self._time(9 * n + (11 if stop else 10))
        return n  # the legacy driver returns the bytes written

    def writevto(self, addr, vector, stop=True):
        t = type(vector)
        if t is not tuple and t is not list:
            raise TypeError("object '%s' isn't a tuple or list" % t.__name__)
        d = self._begin(addr)
        n = 0
        for v in vector:
            for b in v:
                d.i2c_byte(b)
            n += len(v)
        self._time(9 * n + (11 if stop else 10))
        return n

    def readfrom_into(self, addr, buf, stop=True):
        d = self._begin(addr)
        n = len(buf)
        for i in range(n):
            buf[i] = d.i2c_read()
        self._time(9 * n + (11 if stop else 10))

    def readfrom(self, addr, nbytes, stop=True):
        buf = bytearray(nbytes)
        self.readfrom_into(addr, buf, stop)
        return bytes(buf)

    def _mem(self, addr, memaddr, addrsize):
        """START, the address, and the memory address (big-endian, addrsize bits)."""
        if addrsize & 7 or addrsize > 32:
            raise ValueError("invalid addrsize")
        d = self._begin(addr)
        i = addrsize - 8
        while i >= 0:
            d.i2c_byte((memaddr >> i) & 0xFF)
            i -= 8
        return d

    def readfrom_mem_into(self, addr, memaddr, buf, *, addrsize=8):
        d = self._mem(addr, memaddr, addrsize)
        d.i2c_start()  # repeated START, the address again with R
        n = len(buf)
        for i in range(n):
            buf[i] = d.i2c_read()
        self._time(9 * (2 + (addrsize >> 3) + n) + 3)

    def readfrom_mem(self, addr, memaddr, nbytes, *, addrsize=8):
        buf = bytearray(nbytes)
        self.readfrom_mem_into(addr, memaddr, buf, addrsize=addrsize)
        return bytes(buf)

    def writeto_mem(self, addr, memaddr, buf, *, addrsize=8):
        d = self._mem(addr, memaddr, addrsize)
        for b in buf:
            d.i2c_byte(b)
        self._time(9 * (1 + (addrsize >> 3) + len(buf)) + 2)


class I2C(_I2CBus):
    _all = {}
    _DEFAULT_PINS = {0: (18, 19), 1: (25, 26)}  # (scl, sda): MICROPY_HW_I2C0/1 on the ESP32

    def __new__(cls, *args, **kwargs):
        if args and args[0] == -1:
            print("Warning: I2C(-1, ...) is deprecated, use SoftI2C(...) instead")
            return SoftI2C(*args[1:], **kwargs)
        id = args[0] if args else kwargs.get("id", 0)
        if type(id) is not int:
            raise TypeError("can't convert %s to int" % type(id).__name__)
        if id not in I2C._DEFAULT_PINS:
            raise ValueError("I2C(%d) doesn't exist" % id)
        b = I2C._all.get(id)  # one object per controller, reconfigured by each constructor call
        if b is None:
            b = object.__new__(cls)
            b._id = id
            b._scl, b._sda = I2C._DEFAULT_PINS[id]
            b._hz = 400000
            b._timeout = 50000
            I2C._all[id] = b
        return b

    def __init__(self, id=0, *, scl=None, sda=None, freq=-1, timeout=-1):
        scl = self._scl if scl is None else _gpio(scl)
        sda = self._sda if sda is None else _gpio(sda)
        hz = self._hz if freq == -1 else freq
        if not 0 < hz <= 4000000:
            # 0 divides by zero in the bus timing (a panic); above APB/20 i2c_param_config fails,
            # which the port ignores, leaving the bus untimed.
            raise ValueError("I2C(%d): freq=%d, the ESP32 clocks I2C at 1 Hz to 4 MHz" % (self._id, hz))
        _i2c_pad(scl, Pin.PULL_UP)  # the port enables the internal pull-ups
        _i2c_pad(sda, Pin.PULL_UP)
        self._scl, self._sda, self._hz = scl, sda, hz
        self._gen = -1
        if timeout != -1:
            self._timeout = timeout
        self._ns = (1000000000 + hz // 2) // hz  # one SCL period

    def _unsupported(self, *args, **kwargs):
        raise OSError("I2C operation not supported")  # the hardware I2C has no primitives

    init = start = stop = readinto = write = _unsupported

    def __repr__(self):
        return "I2C(%u, scl=%u, sda=%u, freq=%u, timeout=%u)" % (self._id, self._scl, self._sda, self._hz, self._timeout)


class SoftI2C(_I2CBus):
    # extmod's bit-banged I2C: a new object each time; a bit takes two half-period delays.

    def __init__(self, scl, sda, *, freq=400000, timeout=50000):
        self.init(scl, sda, freq=freq, timeout=timeout)

    def init(self, scl, sda, *, freq=400000, timeout=50000):
        scl = _gpio(scl)
        sda = _gpio(sda)
        if freq <= 0:
            raise ValueError("SoftI2C: freq=%d (the port divides by it)" % freq)
        delay = 500000 // freq
        delay = delay if delay > 0 else 1
        _i2c_pad(scl, -1)  # open drain, no pull-up (mp_hal_pin_open_drain)
        _i2c_pad(sda, -1)
        self._scl, self._sda, self._delay, self._timeout = scl, sda, delay, timeout
        self._ns = 2000 * delay
        self._hz = 1000000 // (2 * delay)
        self._gen = -1
        self._d = None  # the device that acknowledged the address after start()
        self._first = False  # the next write() byte is an address

    def start(self):
        self._time(2)
        self._d = None
        self._first = True

    def stop(self):
        self._time(2)
        self._d = None
        self._first = False

    def write(self, buf):
        acks = 0
        for b in buf:
            self._time(9)
            if self._first:
                self._first = False
                self._d = self._attached().get(b >> 1)
                if self._d is None:
                    _w.i2c_nack()
                    return acks  # a NACK stops the write
                self._d.i2c_start()
            elif self._d is None:
                return acks
            else:
                self._d.i2c_byte(b)
            acks += 1
        return acks

    def readinto(self, buf, nack=True):
        d = self._d
        for i in range(len(buf)):
            self._time(9)
            buf[i] = d.i2c_read() if d is not None else 0xFF  # nobody drives SDA: pulled up

    def __repr__(self):
        return "SoftI2C(scl=%u, sda=%u, freq=%u)" % (self._scl, self._sda, 500000 // self._delay)


# -- PWM: ports/esp32/machine_pwm.c (LEDC) and extmod/machine_pwm.c -------------------------------
_pwm_by_pin = {}  # GPIO -> the PWM object last configured on it (the port finds a channel by pin)


def _ilog2(i):
    n = 0
    while i > 1:
        i >>= 1
        n += 1
    return n


def _round256(src, b):
    # round((src << 8) / b) as ESP-IDF's LEDC driver computes it in 64 bits, here in small ints
    # (b < 2^28): long division two bits at a time.
    q = src // b  # (divmod would allocate its tuple)
    r = src % b
    for _ in range(4):
        r <<= 2
        q = (q << 2) + r // b
        r %= b
    return q + (r + b // 2) // b


def _bad_div(dp):
    return dp <= 255 or dp > 0x3FFFF  # LEDC_IS_DIV_INVALID: 10.8 fixed point, integer part >= 1


class PWM:
    def __init__(self, dest, freq=-1, *, duty=-1, duty_u16=-1, duty_ns=-1, invert=None, lightsleep=None):
        g = _gpio(dest)
        if g >= _FIRST_INPUT_ONLY:
            raise ValueError("PWM on Pin(%d): GPIO 34-39 are inputs only" % g)
        _claim(g)
        self._pin = g
        self._reset()
        self.init(freq, duty=duty, duty_u16=duty_u16, duty_ns=duty_ns, invert=invert, lightsleep=lightsleep)

    def _reset(self):
        self._on = False  # the port's timer >= 0
        self._hz = -1  # the frequency asked for (the timer's key)
        self._scale = 0  # 16 duty_u16, 10 duty, 1 duty_ns
        self._ui = 0  # the duty as given, in its scale
        self._res = 0  # LEDC duty resolution, bits
        self._act = 0  # the frequency the divider gives (ledc_get_freq)
        self._raw = 0  # the channel's duty register
        self._inv = False
        self._sleep = False

    def init(self, freq=-1, *, duty=-1, duty_u16=-1, duty_ns=-1, invert=None, lightsleep=None):
        if lightsleep is not None:
            self._sleep = bool(lightsleep)
        if freq != -1:
            self._check_freq(freq, 40000000)
        if duty_u16 >= 0:
            self._check_u16(duty_u16)
        elif duty_ns >= 0:
            self._check_ns(duty_ns)  # needs an active PWM: a new one raises, as on the port
        elif duty >= 0:
            self._check_u10(duty)
        elif self._scale == 0:
            self._scale, self._ui = 16, 32768  # 50 %
        if invert is not None:
            self._inv = bool(invert)
        if freq == -1:
            o = _pwm_by_pin.get(self._pin)
            freq = o._hz if o is not None and o._on else 5000
        self._set_freq(freq)
        self._apply()

    def _active(self):
        if not self._on:
            raise RuntimeError("PWM is inactive")

    def _check_freq(self, f, top):
        if f <= 0 or f > top:
            raise ValueError("frequency must be from 1Hz to %dMHz" % (top // 1000000))

    def _check_u16(self, d):
        if d < 0 or d > 65535:
            raise ValueError("duty_u16 must be from 0 to 65536")
        self._scale, self._ui = 16, 65536 if d == 65535 else d

    def _check_u10(self, d):
        if d < 0 or d > 1023:
            raise ValueError("duty must be from 0 to 1023")
        self._scale, self._ui = 10, 1024 if d == 1023 else d

    def _check_ns(self, ns):
        top = self._to_ns(65536)
        if ns < 0 or ns > top:
            raise ValueError("duty_ns must be from 0 to %d ns" % top)
        self._scale, self._ui = 1, ns

    def _to_ns(self, duty):
        # duty_to_ns: (duty * 1e9 + f * 32768) // (f * 65536), in small ints.
        self._active()
        f = self._hz
        m = (duty >> 7) * 1953125 + (f >> 1) + ((duty & 127) * 1953125 + 64 * (f & 1)) // 128
        return m // f

    def _to_duty(self, ns):
        # ns_to_duty: (ns * 65536 * f + 5e8) // 1e9, clamped; in small ints.
        self._active()
        x = ns * self._hz
        d = (x // 3906250) * 256 + ((x % 3906250) * 256 + 1953125) // 3906250
        if ns > 0 and d == 0:
            return 1
        return 65536 if d > 65536 else d

    def _set_freq(self, f):
        # The LEDC timer: ESP32 timers run from the 80 MHz APB clock (the CPU clock below 80 MHz),
        # the 1 MHz REF_TICK under 10 Hz, the 8 MHz RC_FAST clock for lightsleep=True.
        if self._sleep:
            src = 8000000
        elif f < 10:
            src = 1000000
        else:
            src = _freq if _freq < 80000000 else 80000000
        self._check_freq(f, src // 2)
        if f != self._hz or not self._on or self._sleep:
            # ledc_find_suitable_duty_resolution, then MicroPython's 16-bit cap.
            res = _ilog2((src + f // 2) // f)
            res = res if res < 20 else 20
            if _bad_div(_round256(src, f << res)):
                res = _ilog2(src // f)
                res = res if res < 20 else 20
                if _bad_div(_round256(src, f << res)):
                    res = 0
            res = res if res < 16 else 16
            dp = _round256(src, f << res)  # the divider ledc_timer_config sets
            if res >= 8:  # ledc_get_freq: round((src << 8) / (dp << res))
                a = res - 8
                self._act = ((2 * src + (dp << a)) >> (a + 1)) // dp
            else:
                self._act = _round256(src, dp << res)
            self._res = res
        self._hz = f
        self._on = True
        _pwm_by_pin[self._pin] = self

    def _apply(self):
        self._active()
        s = self._scale
        d = self._ui if s == 16 else (self._ui << 6 if s == 10 else self._to_duty(self._ui))
        self._raw = d >> (16 - self._res)
        self._out()

    def _out(self):
        # What the pad carries: a wave only strictly between 0 and 100 % (else a steady level).
        full = 1 << self._res
        raw = self._raw
        d = 0
        if 0 < raw < full:
            d = (full - raw if self._inv else raw) << (16 - self._res)
        _w.pwm_out(self._pin, self._act, d)

    def _u16(self):
        self._active()
        d = self._raw << (16 - self._res)
        return 65535 if d == 65536 else d

    def freq(self, value=None):
        self._active()
        if value is None:
            return self._act
        self._check_freq(value, 40000000)
        if value == self._hz:
            return
        self._set_freq(value)
        self._apply()

    def duty_u16(self, value=None):
        if value is None:
            return self._u16()
        self._check_u16(value)
        self._apply()

    def duty(self, value=None):
        if value is None:
            return self._u16() >> 6
        self._check_u10(value)
        self._apply()

    def duty_ns(self, value=None):
        if value is None:
            return self._to_ns(self._u16())
        self._check_ns(value)
        self._apply()

    def deinit(self):
        if self._on:
            _w.pwm_out(self._pin, self._act, 0)  # ledc_stop: the idle level, no wave
            if _pwm_by_pin.get(self._pin) is self:
                del _pwm_by_pin[self._pin]
        self._reset()

    def __repr__(self):
        if not self._on:
            return "PWM(Pin(%u))" % self._pin
        s = self._scale
        if s == 10:
            d = ", duty=%d" % (self._u16() >> 6)
        elif s == 1:
            d = ", duty_ns=%d" % self._to_ns(self._u16())
        else:
            d = ", duty_u16=%d" % self._u16()
        return "PWM(Pin(%u), freq=%u%s%s%s)" % (self._pin, self._act, d, ", invert=True" if self._inv else "",
                                                 ", lightsleep=True" if self._sleep else "")
