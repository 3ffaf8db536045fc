# The virtual hardware behind the ESP32 port stand-ins in this folder (machine, time, select,
# network, esp32, flashbdev). One clock of virtual milliseconds moves only when the firmware lets
# time pass (sleep_ms/sleep_us, select's poll, lightsleep), and everything that hangs off it moves
# with it, in order: the RTC, hardware timers, the watchdog, the Wi-Fi association, GPIO levels the
# outside world drives, the metering circuit (esp32house) and the customer interface on I2C and PWM
# (esp32customer). A run is configured by the JSON file
# named in $PM_ESP32_WORLD (tools/esp32_host.py writes it) or by setup(dict) in a test. A power cut,
# the end of the run and every kind of reset leave the firmware as a Reboot, a BaseException, so no
# `except Exception` in the firmware can swallow it; the boot script (esp32boot) reports it.
# Every value kept here stays a small int on a 32-bit port (the ESP32's 31-bit range).
from micropython import const
import micropython
import utime

_MASK = const(0x3FFFFFFF)  # ticks_ms/ticks_us wrap at 2^30 on the ESP32
_HALF = const(0x20000000)
_FAR = const(0x10000000)  # "nothing due before this": well inside half a tick period
_TICKS0 = const(0x3FFFFFFF - 60000 + 1)  # boot a minute before a wrap: every run crosses one
_US0 = const(0x3FFFFFFF - 30000000 + 1)
PINS = const(40)  # GPIO 0-39


class Reboot(BaseException):
    """The ESP32 stops running Python here; `reason` says why (the boot script reports it)."""
    reason = "reset"
    cause = 2  # machine.reset_cause() after the reboot: HARD_RESET


class PowerCut(Reboot):
    reason = "power_cut"
    cause = 1  # PWRON_RESET


class EndOfRun(Reboot):
    reason = "end"
    cause = 1


class WatchdogReset(Reboot):
    reason = "wdt"
    cause = 3  # WDT_RESET


class HardReset(Reboot):
    reason = "hard_reset"  # machine.reset(): esp_restart, reported as HARD_RESET by the port


class SoftReset(Reboot):
    reason = "soft_reset"
    cause = 5


class DeepSleep(Reboot):
    reason = "deepsleep"
    cause = 4


DEFAULTS = {
    "board": None,  # e.g. "esp32-atm90e26": the circuit (chip, SPI wiring, pins) from its data
    "flash": None,  # host path of the flash image; None: no flash (Partition.find finds nothing)
    "flash_size": 0x400000,
    "partitions": None,  # host path of a partition table CSV; None: ESP32_GENERIC's 4 MiB table
    "utc": 1767225600,  # the outside world's Unix time at power-up (household and water profiles)
    "rtc": 0,  # RTC seconds since 2000-01-01 at power-up (0 after a power cut)
    "rtc_ms": 0,
    "rtc_memory": "",  # RTC.memory() (hex), kept over every reset but a power cut
    "reset_cause": 1,  # machine.reset_cause() of this boot (PWRON_RESET)
    "end_ms": None,  # EndOfRun this many virtual ms after power-up
    "cut_ms": None,  # PowerCut this many virtual ms after power-up
    "speed": 0,  # at most this many virtual ms per real ms while idle (0: as fast as it goes)
    # The firmware's own work takes time too: each real ms it runs (between idle waits) lets this
    # many virtual ms pass, a device so many times slower than this host (0: work takes no time).
    "cpu_scale": 0,
    # With speed set: the scaled work takes that real time too (the host waits it out), so messages
    # arrive faster than such a device can read them, as they would at it (an overload test).
    "cpu_real": False,
    "seed": 1,
    "mac": None,  # 12 hex digits; default from the seed
    "timer_quiet_ms": 1000,  # fast periodic timers run once per this while inputs are quiet (0: always exact)
    "settle_ms": 1000,  # inputs are quiet this long after the outside world changed one
    "wifi": None,  # {"ssid", "password", "connect_ms"}; None: any network connects after 2500 ms
    "customer_ms": 300000,  # the customer holds the button 3.5 s every this often while the lights are out (0: never)
    "water": True,  # a water meter's reed contact on the board's first pulse input
    "inputs": {},  # GPIO -> level the outside drives (tamper switches), overriding the house defaults
    "wiring": {},  # pin overrides of the board's PINS (the circuit as built)
    "sntp": None,  # the time server (ntptime.py): {"lie_s", "rtt_ms"} answers the true time; None never answers
    "tls": None,  # the broker's certificate dates {"not_before", "not_after"} (Unix s) for ssl.py; None: any date
    "control": False,  # the harness steers the run over stdin: a line "cut" or "end" (or EOF) stops it
    "frozen": False,  # the image has the firmware frozen in (the meter image) rather than a stock one
    "runtime_frozen": False,  # this MicroPython has the firmware frozen in (the 32-bit host build)
    # The customer interface (esp32customer): an SSD1306 display at I2C 0x3C and a PCA9674 keypad at
    # 0x20 on the bus at the board's PINS sda/scl (21/22 without them), a buzzer on PINS buzzer (25).
    "display": True,  # the display and keypad are fitted (False: nothing answers at 0x3C or 0x20)
    # What the customer types on the keypad: [ms_after_power_up, "keys", hold_ms, gap_ms] each, keys
    # from "123A456B789C*0#D" (a space is a pause); every press and release is an outside event.
    "keys": [],
}

cfg = dict(DEFAULTS)

# -- virtual time ---------------------------------------------------------------------------
ms = _TICKS0  # time.ticks_ms()
us = _US0  # time.ticks_us()
sub_us = 0  # microseconds into the current millisecond (sleep_us)
up_s = 0  # uptime: seconds and milliseconds since power-up
up_ms = 0
rtc_s = 0  # RTC: seconds since 2000-01-01 and milliseconds
rtc_ms = 0
rtc_memory = b""
day0 = 0  # the outside world's second of the (UTC) day at power-up
reset_cause = 1

_stop_s = -1  # EndOfRun / PowerCut at this uptime (seconds, ms), whichever comes first
_stop_ms = 0
_stop_exc = None
_control = None  # a poll on stdin while the harness steers the run (cfg "control")

# -- peripherals ----------------------------------------------------------------------------
timers = []  # armed machine.Timer objects (the stand-in keeps due/period/base on them)
all_timers = {}  # id -> machine.Timer: one object per hardware timer, as on the port
wdt_timeout = 0  # 0: no watchdog started
wdt_due = 0
wdt_gap_max = 0  # the longest the watchdog went unfed, virtual ms
wlan_due = -1  # tick at which a pending Wi-Fi association completes (network stand-in)
wlan_done = None
house = None  # esp32house.House: the metering circuit, when a board is configured
customer = None  # esp32customer.Customer: display, keypad and buzzer
gen = 0  # bumped by setup(): whoever cached the wiring (machine.I2C) looks again
flash = None  # esp32flash.Flash
running = None  # on a table with OTA slots: the label of the slot the bootloader started (esp32boot)

# GPIO: the output register and pad configuration the firmware set, what the outside drives, and
# who listens to a pad (the chip's CS, the relay coil, the chip's RESET) or asked for an IRQ.
latch = bytearray(PINS)
mode = bytearray(PINS)  # 0 unset, else the Pin mode (IN 1, OUT 3, OPEN_DRAIN 7)
pull = bytearray(PINS)  # PULL_DOWN 1, PULL_UP 2
ext = {}  # GPIO -> 0/1 driven from outside, or None (a switch to ground that is open)
hooks = {}  # GPIO -> callable(level), called when the pad level changes
irqs = {}  # GPIO -> machine.Pin with an irq handler
straps_used = []  # strapping pins the firmware configured (0, 2, 5, 12, 15 on the ESP32)
last_input = ms  # when the outside world last changed an input

# -- pacing against real time ---------------------------------------------------------------
_speed = 0
_budget = 0
_real = utime.ticks_ms()
_cpu = 0  # cfg cpu_scale
_cpu_mark = 0  # utime.ticks_us() when the firmware's work was last charged
_cpu_frac = 0  # virtual microseconds not charged yet
_charging = False
_cpu_real = False  # cfg cpu_real
# At most this much real time is charged at once: the firmware reads the clock far more often
# than that, so a longer gap is the host running something else (a busy CI machine), not work.
_CPU_MAX_US = 20000


def tdiff(a, b):
    """ticks_diff as the port computes it, without leaving the small-int range on 32 bits."""
    d = (a - b) & _MASK
    if d >= _HALF:
        d = d - _MASK - 1
    return d


def tadd(a, d):
    if d >= 0:
        r = a - _MASK + d - 1  # a + d - 2^30, never above 2^30
        return r + _MASK + 1 if r < 0 else r
    r = a + d
    return r + _MASK + 1 if r < 0 else r


def setup(conf=None):
    """(Re)configure the world: a dict of DEFAULTS keys; without one, the JSON file named by
    $PM_ESP32_WORLD, if any. Called once at import; tests call it again."""
    global cfg, ms, us, sub_us, up_s, up_ms, rtc_s, rtc_ms, rtc_memory, day0, reset_cause
    global _stop_s, _stop_ms, _stop_exc, wdt_timeout, wlan_due, wlan_done, house, flash, customer
    global last_input, _speed, _budget, _real, ext, hooks, irqs, timers, all_timers, straps_used, _control
    global _cpu, _cpu_frac, _cpu_mark, _cpu_real, wdt_gap_max, gen
    global running
    gen += 1
    if conf is None:
        import os
        path = os.getenv("PM_ESP32_WORLD")
        conf = {}
        if path:
            import json
            with open(path) as f:
                conf = json.load(f)
    cfg = dict(DEFAULTS)
    cfg.update(conf)
    # Through tadd: the frozen build's compiler leaves these constants as long ints, and a long int
    # clock would allocate at every step until it first moved (under a test's heap_lock too).
    ms, us, sub_us, up_s, up_ms = tadd(_TICKS0, 0), tadd(_US0, 0), 0, 0, 0
    rtc_s = cfg["rtc"]
    rtc_ms = cfg["rtc_ms"]
    from binascii import unhexlify
    rtc_memory = unhexlify(cfg["rtc_memory"])
    day0 = cfg["utc"] % 86400
    reset_cause = cfg["reset_cause"]
    _stop_s, _stop_exc = -1, None
    for key, exc in (("cut_ms", PowerCut), ("end_ms", EndOfRun)):
        t = cfg[key]
        if t is not None and (_stop_exc is None or t <= _stop_s * 1000 + _stop_ms):
            _stop_s, _stop_ms, _stop_exc = t // 1000, t % 1000, exc
    _control = None
    if cfg["control"]:
        import sys
        import uselect
        _control = uselect.poll()
        _control.register(sys.stdin, uselect.POLLIN)
    timers = []
    all_timers = {}
    wdt_timeout = 0
    wdt_gap_max = 0
    wlan_due, wlan_done = -1, None
    for i in range(PINS):
        latch[i] = mode[i] = pull[i] = 0
    ext, hooks, irqs, straps_used = {}, {}, {}, []
    last_input = tadd(ms, -cfg["settle_ms"])
    _speed, _budget, _real = cfg["speed"], 0, utime.ticks_ms()
    _cpu, _cpu_frac, _cpu_real = cfg["cpu_scale"], 0, cfg["cpu_real"]
    _cpu_mark = utime.ticks_us() if _cpu else 0
    flash = None
    running = None
    if cfg["flash"]:
        import esp32flash
        flash = esp32flash.Flash(cfg["flash"], cfg["flash_size"], cfg["partitions"])
    house = None
    if cfg["board"]:
        import esp32house
        house = esp32house.House(cfg)
    import esp32customer
    customer = esp32customer.Customer(cfg)
    for g, v in cfg["inputs"].items():
        ext[int(g)] = v


def mac():
    m = cfg["mac"]
    if m:
        from binascii import unhexlify
        return unhexlify(m)
    s = cfg["seed"]
    return bytes((0x30, 0xAE, 0xA4, (s >> 16) & 0xFF, (s >> 8) & 0xFF, s & 0xFF))  # an Espressif OUI


# -- the clock ------------------------------------------------------------------------------
def charge():
    """With cfg cpu_scale: the real time the firmware worked since the last charge passes, scaled,
    in virtual time (whatever falls due meanwhile happens, a watchdog reset included). The world's
    own work while it does so is not charged."""
    global _cpu_mark, _cpu_frac, _charging
    if not _cpu or _charging:
        return
    now = utime.ticks_us()
    d = utime.ticks_diff(now, _cpu_mark)
    t = _cpu_frac + (d if d < _CPU_MAX_US else _CPU_MAX_US) * _cpu
    _cpu_mark = now
    _cpu_frac = t % 1000
    if t >= 1000:
        _charging = True
        try:
            if _cpu_real and _speed:
                # The device is still at it: the rest of the scaled time passes for real too.
                w = (t // 1000) // _speed - d // 1000
                if w > 0:
                    utime.sleep_ms(w)
            advance(t // 1000)
        finally:
            _charging = False
            _cpu_mark = utime.ticks_us()


def _idle_done():
    global _cpu_mark
    if _cpu:
        _cpu_mark = utime.ticks_us()  # idle real time is not work


def ticks_ms():
    charge()
    return ms


def ticks_us():
    charge()
    return tadd(us, sub_us)


def _move(d):
    """The clock moves d ms (0 <= d < 2^29) with nothing due on the way."""
    global ms, us, up_s, up_ms, rtc_s, rtc_ms
    ms = tadd(ms, d)
    u = d
    while u > 500000:  # d * 1000 must stay a small int
        us = tadd(us, 500000000)
        u -= 500000
    us = tadd(us, u * 1000)
    t = up_ms + d
    if t >= 1000:
        up_s += t // 1000
        t %= 1000
    up_ms = t
    t = rtc_ms + d
    if t >= 1000:
        rtc_s += t // 1000
        t %= 1000
    rtc_ms = t
    if house is not None:
        house.pending_ms += d


_what = 0  # set by _next_due: what is due (1 stop, 2 watchdog, 3 timer, 4 second, 5 house, 6 wlan, 7 customer)
_timer = None


def _next_due(limit):
    """Milliseconds to the first thing due within `limit` ms (limit if none). Sources are looked
    at in priority order: of two things due at once, the earlier in this list goes first."""
    global _what, _timer
    best = limit
    _what = 0
    if _stop_exc is not None:
        left = _stop_s - up_s
        if left < 200000:  # beyond that, nothing within limit (< 2^28 ms)
            left = left * 1000 + _stop_ms - up_ms
            if left <= best:
                best, _what = left, 1
    if wdt_timeout:
        d = tdiff(wdt_due, ms)
        if d < best or (d == best and not _what):
            best, _what = d, 2
    for t in timers:
        d = tdiff(t._due, ms)
        if d < best or (d == best and not _what):
            best, _what, _timer = d, 3, t
    if house is not None or _control is not None:
        d = 1000 - up_ms
        if d < best or (d == best and not _what):
            best, _what = d, 4
    if house is not None:
        d = house.next_event(ms)
        if d < best or (d == best and not _what):
            best, _what = d, 5
    if wlan_due >= 0:
        d = tdiff(wlan_due, ms)
        if d < best or (d == best and not _what):
            best, _what = d, 6
    if customer is not None:
        d = customer.next_event(ms)
        if d < best or (d == best and not _what):
            best, _what = d, 7
    return best if best > 0 else 0


def advance(n):
    """Let n virtual ms pass. Whatever falls due meanwhile happens at its own time, in order;
    a stop, a watchdog reset or a reset from a timer callback raises its Reboot from here."""
    while n >= 0:
        step = n if n < _FAR else _FAR
        d = _next_due(step)
        _move(d)
        n -= d
        w = _what
        if w == 0:
            if n <= 0:
                return
        elif w == 3:
            _fire(_timer)  # the firmware's callback: under the firmware's heap_lock, as on the port
        else:
            _outside(w)


def _outside(w):
    # The world's own work (the house, the customer, the harness, a reset) is not the ESP32's: it
    # runs with the heap unlocked even while the firmware holds micropython.heap_lock() and lets
    # time pass (an I2C transfer under test), and the lock is restored after it.
    global wlan_due
    micropython.heap_lock()
    depth = micropython.heap_unlock()  # heap_unlock returns the depth left: the firmware's
    for _ in range(depth):
        micropython.heap_unlock()
    try:
        if w == 1:
            if house is not None:
                house.flush()
            e = _stop_exc()
        elif w == 2:
            e = WatchdogReset()
        else:
            e = None
            if w == 4:
                if house is not None:
                    house.second((day0 + up_s) % 86400)
                if _control is not None and _control.poll(0):
                    e = _command()
            elif w == 5:
                house.run_event()
            elif w == 6:
                wlan_due = -1
                wlan_done()
            else:
                customer.run_event()
    finally:
        for _ in range(depth):
            micropython.heap_lock()
    if e is not None:
        raise e


def _command():
    # A line from the harness, read at a whole virtual second: the power goes, or the run ends
    # (the Reboot to raise, or None).
    import sys
    line = sys.stdin.readline()
    if line.startswith("cut"):
        if house is not None:
            house.flush()
        return PowerCut()
    if not line or line.startswith("end"):
        if house is not None:
            house.flush()
        return EndOfRun()
    return None


def _fire(t):
    """A timer alarm: the port schedules the callback (mp_sched_schedule) and it runs at once."""
    global last_input
    p = t._period
    t._base = t._due
    if t._mode:
        q = cfg["timer_quiet_ms"]
        settle = cfg["settle_ms"]
        if q and p < q and tdiff(ms, last_input) >= settle:
            # Inputs have been still: the callbacks in between would read the same levels. Run it
            # once per q ms on its own period grid; any input change re-aligns it (drive()).
            last_input = tadd(ms, -settle)  # still quiet, and never so far back that ticks_diff wraps
            t._due = tadd(t._due, p * (q // p))
        else:
            t._due = tadd(t._due, p)
    else:
        timers.remove(t)
    t._fired += 1
    cb = t._cb
    if cb is not None:
        cb(t)


def _realign():
    # An input changed: fast timers go back to their exact period from the next grid point.
    for t in timers:
        late = tdiff(ms, t._base)
        p = t._period
        k = (late + p - 1) // p if late > 0 else 1
        t._due = tadd(t._base, k * p)


# -- pacing ------------------------------------------------------------------------------------
def pace(n):
    """Real ms to wait before n more virtual ms may pass, so virtual time runs at most `speed`
    times real time while the firmware idles (0 when unpaced or behind)."""
    global _budget, _real
    if not _speed:
        return 0
    now = utime.ticks_ms()
    _budget += utime.ticks_diff(now, _real) * _speed
    _real = now
    if _budget > 10 * n + 1000:
        _budget = 10 * n + 1000  # no burst after a long real stall (a blocking publish)
    if _budget >= n:
        _budget -= n
        return 0
    wait = (n - _budget + _speed - 1) // _speed
    _budget -= n
    return wait


def sleep_ms(n):
    if n > 0:
        charge()
        w = pace(n)
        if w:
            utime.sleep_ms(w)
        _idle_done()
        advance(n)
        _idle_done()


def sleep_us(n):
    global sub_us
    if n > 0:
        t = sub_us + n
        sub_us = t % 1000
        if t >= 1000:
            sleep_ms(t // 1000)


def wait(n, poller):
    """Up to n virtual ms pass unless the real uselect `poller` reports an event first (a command
    from the broker): the idle wait of the meter's main loop. Paced, as much virtual time passes
    as the real wait took; unpaced, 1 ms: handling what arrived takes the device some time too,
    and a socket that stays readable must not stop the clock (the watchdog, the half-open check)."""
    global _budget
    charge()
    w = pace(n)
    t0 = utime.ticks_ms()
    r = poller.poll(w)
    _idle_done()
    if r:
        v = utime.ticks_diff(utime.ticks_ms(), t0) * _speed if _speed else 0
        v = 1 if v < 1 else (v if v < n else n)
        if _speed:
            _budget += n - v
        advance(v)
        _idle_done()
        return r
    advance(n)
    _idle_done()
    return r


# -- watchdog -------------------------------------------------------------------------------
def wdt_start(timeout):
    global wdt_timeout, wdt_due
    first = not wdt_timeout
    wdt_timeout = timeout
    if first:
        wdt_due = tadd(ms, timeout)
    else:
        wdt_feed()


def wdt_feed():
    global wdt_due, wdt_gap_max
    g = wdt_timeout - tdiff(wdt_due, ms)  # virtual ms since it was last fed
    if g > wdt_gap_max:
        wdt_gap_max = g
    wdt_due = tadd(ms, wdt_timeout)


# -- GPIO -----------------------------------------------------------------------------------
def level(g):
    """The level on pad g: the output register where the pad drives, else what the outside
    drives, else the pull resistor (a floating input reads 0)."""
    m = mode[g]
    if m & 2 and not (m & 4 and latch[g]):
        return latch[g]
    e = ext.get(g)
    if e is not None:
        return e
    return 1 if pull[g] & 2 else 0


def set_pad(g, m=-1, p=-1, v=-1):
    """The firmware configures pad g (mode, pull, output register; -1 leaves one as it is)."""
    old = level(g)
    if v >= 0:
        latch[g] = v
    if m >= 0:
        mode[g] = m
    if p >= 0:
        pull[g] = p
    new = level(g)
    if new != old:
        h = hooks.get(g)
        if h is not None:
            h(new)


def input_changed():
    """The outside world changed an input now (a pad, a key): fast timers run exact again."""
    global last_input
    last_input = ms
    _realign()


def drive(g, v):
    """The outside world drives pad g to v (0/1), or releases it (None)."""
    old = level(g)
    ext[g] = v
    input_changed()
    new = level(g)
    if new != old:
        h = hooks.get(g)
        if h is not None:
            h(new)
        p = irqs.get(g)
        if p is not None:
            p._edge(new)


# -- SPI --------------------------------------------------------------------------------------
def spi_check(spi_id, polarity, phase, baud, sck, mosi, miso):
    """Refuse an SPI set-up the chip wired to that bus cannot work with (ValueError)."""
    if house is not None:
        house.check_spi(spi_id, polarity, phase, baud, sck, mosi, miso)


def spi_xfer(spi, tx, rx):
    h = house
    if h is None or not h.selected(spi):
        for i in range(len(rx)):
            rx[i] = 0xFF  # nobody drives MISO: its pull-up reads all ones
        return
    h.flush()
    h.emu.write_readinto(tx, rx)


# -- I2C and PWM --------------------------------------------------------------------------------
_NOBODY = {}


def i2c_bus(sda, scl, hz):
    """The devices on the I2C bus at pads sda/scl, clocked at hz: {address: emulator with
    i2c_start/i2c_byte/i2c_read}, empty where nothing is wired. Valid until the next setup()
    (`gen` changes)."""
    c = customer
    return c.bus(sda, scl, hz) if c is not None else _NOBODY


def i2c_nack():
    """A transfer nobody acknowledged."""
    if customer is not None:
        customer.nacks += 1


def pwm_out(g, hz, duty_u16):
    """Pad g now carries a square wave of hz at duty_u16 (0: no wave, a steady level)."""
    c = customer
    if c is not None and g == c.buzzer_pin:
        b = c.buzzer
        b.freq(hz)
        b.duty_u16(duty_u16)


def report():
    """What the world saw, for the harness (after the run: allocation is fine here)."""
    r = {"uptime_ms": up_s * 1000 + up_ms, "rtc": rtc_s, "rtc_memory": "".join("%02x" % b for b in rtc_memory),
         "straps_used": straps_used, "utc_end": cfg["utc"] + up_s}
    if house is not None:
        r.update(house.report())
    if customer is not None:
        r.update(customer.report())
    if flash is not None:
        r["flash_erases"] = flash.erases
        import esp32ota
        if esp32ota.has_ota(flash):
            r["ota"] = esp32ota.report(flash, running)
    r["wdt_max_gap_ms"] = wdt_gap_max
    r["timer_fired"] = dict(("%d" % i, t._fired) for i, t in all_timers.items())
    return r


setup()
