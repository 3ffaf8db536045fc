"""machine stand-in (boards/esp32port/machine.py) against the ESP32 port's behaviour: one object
per hardware timer, a watchdog that cannot be stopped and resets the board when starved,
input-only pins, SPI set-ups the attached chip's datasheet rules out, the RTC's epoch."""

USES_MICROPYTHON = True


def test_timer_is_one_object_per_hardware_timer_and_fires_in_virtual_time(esp32):
    r = esp32("""
import mptest, esp32world as W
W.setup({"timer_quiet_ms": 0})
from machine import Timer
import time
mptest.check(Timer(0) is Timer(0), "Timer(0) is Timer(0)")
mptest.check(Timer(1) is not Timer(0), "each hardware timer is its own object")
mptest.raises(ValueError, Timer, 4)  # two groups of two: Timer(0)..Timer(3)
mptest.raises(TypeError, Timer)  # no virtual timers on the 1.28 port: the id is required
a, b = [], []
Timer(0).init(period=5, mode=Timer.PERIODIC, callback=lambda t: a.append(time.ticks_ms()))
time.sleep_ms(1000)
mptest.eq(len(a), 200, "every 5 ms")
mptest.eq(time.ticks_diff(a[1], a[0]), 5, "at its own time")
Timer(0).init(period=100, callback=lambda t: b.append(t))  # a second user takes the timer over
n = len(a)
time.sleep_ms(1000)
mptest.eq((len(a), len(b)), (n, 10), "the new callback replaced the old one")
mptest.check(b[0] is Timer(0), "the callback gets the timer")
Timer(0).deinit()
time.sleep_ms(1000)
mptest.eq(len(b), 10, "deinit stops it")
mptest.raises(ValueError, Timer(0).value)
Timer(2).init(period=50, mode=Timer.ONE_SHOT, callback=lambda t: b.append(2))
time.sleep_ms(200)
mptest.eq(b.count(2), 1, "one shot")
mptest.done()
""")
    assert r["ok"], r["failures"]


def test_fast_timer_is_exact_around_input_changes_and_coalesced_when_inputs_are_quiet(esp32):
    # Quiet spells run a 5 ms sampler once a second; any edge the world drives brings back every
    # period for settle_ms, so a debounced pulse input counts exactly what the world sent.
    r = esp32("""
import mptest, esp32world as W, time
from machine import Timer, Pin
W.setup({"timer_quiet_ms": 1000, "settle_ms": 1000})
seen = []
p = Pin(36, Pin.IN)
W.ext[36] = 1
Timer(0).init(period=5, callback=lambda t: seen.append((time.ticks_ms(), p.value())))
time.sleep_ms(10000)
quiet = len(seen)
mptest.check(quiet <= 11, "quiet: about once a second, got %d" % quiet)
W.drive(36, 0)
t0 = time.ticks_ms()
time.sleep_ms(500)
W.drive(36, 1)
time.sleep_ms(2000)
busy = [s for s in seen[quiet:] if time.ticks_diff(s[0], t0) < 1500]
mptest.eq(len(busy), 300, "every 5 ms from the first edge until settle_ms after the last")
mptest.eq(sum(1 for s in busy if s[1] == 0), 101, "the low half second seen by every sample, both ends")
mptest.done()
""")
    assert r["ok"], r["failures"]


def test_wdt_cannot_be_stopped_and_resets_the_board_when_starved(esp32):
    r = esp32("""
import mptest, esp32world as W, time
from machine import WDT
w = WDT(timeout=2000)
mptest.check(not hasattr(w, "deinit"), "the port's WDT has no deinit")
mptest.check(WDT(timeout=2000) is w, "one task watchdog")
mptest.raises(ValueError, WDT, id=1)
mptest.raises(ValueError, WDT, timeout=0)
for _ in range(5):
    time.sleep_ms(1900)
    w.feed()
mptest.check(True, "fed in time: no reset")
t0 = time.ticks_ms()
e = mptest.raises(W.WatchdogReset, time.sleep_ms, 5000)
mptest.check(isinstance(e, BaseException) and not isinstance(e, Exception),
             "a reset is no Exception: the firmware's `except Exception` cannot swallow it")
mptest.eq(time.ticks_diff(time.ticks_ms(), t0), 2000, "at the timeout after the last feed")
mptest.eq(e.cause, 3, "the next boot's reset_cause() is WDT_RESET")
mptest.done()
""")
    assert r["ok"], r["failures"]


def test_input_only_and_flash_pins_are_refused_like_the_port(esp32):
    r = esp32("""
import mptest, esp32world as W
from machine import Pin
for g in range(34, 40):
    e = mptest.raises(ValueError, Pin, g, Pin.OUT)
    mptest.check(e is not None and "input" in str(e), "GPIO %d is input-only: %s" % (g, e))
    mptest.raises(ValueError, Pin, g, Pin.IN, Pin.PULL_UP)  # no pull resistors there
mptest.raises(ValueError, Pin, 35, Pin.OPEN_DRAIN)
Pin(35, Pin.IN)  # as an input it is fine
mptest.raises(ValueError, Pin, 24)  # no GPIO 24 on the ESP32
mptest.raises(ValueError, Pin, 6)  # GPIO 6-11 drive the SPI flash
mptest.check(Pin(26) is Pin(26), "one object per GPIO")
p = Pin(26, Pin.OUT, value=1)
mptest.eq(p.value(), 1, "OUT reads its output back (input+output mode)")
p.off()
mptest.eq(p(), 0, "off")
b = Pin(0, Pin.IN, Pin.PULL_UP)
mptest.eq(b.value(), 1, "a switch to ground, open: the pull-up")
W.drive(0, 0)
mptest.eq(b.value(), 0, "pressed")
mptest.check(0 in W.straps_used and 5 not in W.straps_used, "strapping pins in use are noted")
mptest.done()
""")
    assert r["ok"], r["failures"]


SPI_MODES = """
import mptest, esp32world as W
W.setup({"board": %r})
from machine import SPI, Pin
def spi(pol, ph, baud=%d):
    return SPI(2, baudrate=baud, polarity=pol, phase=ph, sck=Pin(18), mosi=Pin(23), miso=Pin(19))
for pol, ph in ((0, 0), (0, 1), (1, 0), (1, 1)):
    mode = pol * 2 + ph
    if mode in %r:
        spi(pol, ph)
    else:
        e = mptest.raises(ValueError, spi, pol, ph)
        mptest.check(e is not None and "mode" in str(e), "mode %%d refused clearly: %%s" %% (mode, e))
e = mptest.raises(ValueError, spi, %d, %d, %d)
mptest.check(e is not None and "maximum" in str(e), "too fast: %%s" %% e)
mptest.raises(ValueError, SPI, 0)  # SPI(1) and SPI(2) only
# Another bus, or other pins, is not where the chip is: nothing refuses, nothing answers.
s = SPI(1, baudrate=4000000, polarity=0, phase=0)
rx = bytearray(3)
s.write_readinto(b"\\x80\\x00\\x00", rx)
mptest.eq(bytes(rx), b"\\xff\\xff\\xff", "MISO pulled up")
mptest.done()
"""


def test_spi_refuses_what_the_attached_chip_cannot_read(esp32):
    # (board, modes the datasheet allows, a baud rate that works, a mode that works and a baud above the maximum)
    for board, modes, ok_baud, too_fast in (("esp32-atm90e26", (3,), 160000, (1, 1, 400000)),
                                            ("esp32-atm90e32", (0, 3), 200000, (0, 0, 4000000)),
                                            ("esp32-ade7953", (0, 3), 1000000, (0, 0, 8000000))):
        r = esp32(SPI_MODES % ((board, ok_baud, modes) + too_fast), heap="512k")
        assert r["ok"], (board, r["failures"])


def test_chip_answers_only_while_its_cs_is_low(esp32):
    r = esp32("""
import mptest, esp32world as W
W.setup({"board": "esp32-atm90e26"})
from machine import SPI, Pin
import time
cs = Pin(5, Pin.OUT, value=1)
s = SPI(2, baudrate=160000, polarity=1, phase=1, sck=Pin(18), mosi=Pin(23), miso=Pin(19))
def xfer(tx):
    rx = bytearray(3)
    cs(0)
    s.write_readinto(tx, rx)
    cs(1)
    return bytes(rx)
mptest.eq(xfer(b"\\x82\\x00\\x00")[1:], b"\\x00\\x0c", "FuncEn reads its power-on 0x000C")
rx = bytearray(3)
s.write_readinto(b"\\x82\\x00\\x00", rx)
mptest.eq(bytes(rx), b"\\xff\\xff\\xff", "CS high: the chip does not drive MISO")
xfer(b"\\x02\\x00\\x30")  # write FuncEn: committed when CS rises
mptest.eq(xfer(b"\\x82\\x00\\x00")[1:], b"\\x00\\x30", "the write reached the chip")
mptest.done()
""", heap="512k")
    assert r["ok"], r["failures"]


def test_rtc_counts_from_2000_and_needs_the_full_tuple(esp32):
    r = esp32("""
import mptest, esp32world as W, time
from machine import RTC
W.setup({"rtc": 0})  # a power-up after a cut: no battery, the RTC starts at the epoch
mptest.eq(RTC().datetime(), (2000, 1, 1, 5, 0, 0, 0, 0), "2000-01-01 00:00, a Saturday")
mptest.check(RTC() is RTC(), "one RTC")
mptest.raises(ValueError, RTC().datetime, (2026, 3, 1, 0, 12, 0, 0))  # 7 items
RTC().datetime((2026, 3, 1, 0, 12, 30, 5, 0))  # the weekday given is ignored
mptest.eq(RTC().datetime()[:7], (2026, 3, 1, 6, 12, 30, 5), "set (2026-03-01 is a Sunday)")
mptest.eq(time.time(), 825683405, "time() counts seconds since 2000")
time.sleep_ms(2500)
mptest.eq(RTC().datetime()[6:], (7, 500000), "it runs with virtual time")
mptest.done()
""")
    assert r["ok"], r["failures"]


def test_machine_functions_follow_the_port(esp32):
    r = esp32("""
import mptest, esp32world as W, machine
W.setup({"reset_cause": 3, "mac": "30aea4010203"})
mptest.eq(machine.reset_cause(), machine.WDT_RESET, "the cause the harness booted with")
mptest.eq((machine.PWRON_RESET, machine.HARD_RESET, machine.WDT_RESET, machine.DEEPSLEEP_RESET,
           machine.SOFT_RESET), (1, 2, 3, 4, 5), "the port's constants")
mptest.eq(machine.unique_id(), b"\\x30\\xae\\xa4\\x01\\x02\\x03", "the MAC")
mptest.eq(machine.freq(), 160000000, "ESP32_GENERIC's clock")
mptest.raises(ValueError, machine.freq, 100000000)
e = mptest.raises(W.HardReset, machine.reset)
mptest.eq(e.cause if e else None, machine.HARD_RESET, "machine.reset() comes back as HARD_RESET")
mptest.done()
""")
    assert r["ok"], r["failures"]
