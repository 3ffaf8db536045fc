"""machine.I2C, SoftI2C and PWM of the ESP32 port stand-ins (boards/esp32port) against MicroPython
1.28's ports/esp32 (machine_i2c.c with the legacy driver, machine_pwm.c on the LEDC) and extmod, and
the customer interface the virtual world wires to them (esp32customer, issue 15): an SSD1306 at
0x3C and a PCA9674 keypad expander at 0x20 on the board's I2C pins, a buzzer on its PWM pin. The firmware's
own drivers (firmware/ssd1306.py, keypad.py, buzzer.py) run on them: what they draw is read back
from the emulated glass, keys the customer types arrive at their virtual time even while the
firmware idles, tones are heard at the LEDC's real frequency, every transfer costs its bus time,
and no transfer allocates."""
import json

import pytest

import mprun

USES_MICROPYTHON = True


def esp32(code, heap="256k"):
    """Run code with the stand-ins first on the path; the mptest result (the last JSON line)."""
    try:
        res = mprun.run_mpy(code, heap=heap, esp32=True, timeout=120)
    except (mprun.MpyNotFound, mprun.MpyTimeout) as e:
        pytest.fail(str(e), pytrace=False)
    if res.returncode != 0 or not res.result:
        pytest.fail("MicroPython script failed\n" + res.describe(), pytrace=False)
    return res.result


def test_i2c_arguments_and_objects_follow_the_port():
    r = esp32("""
import mptest, esp32world as W
from machine import I2C, SoftI2C, Pin
mptest.eq(repr(I2C(0)), "I2C(0, scl=18, sda=19, freq=400000, timeout=50000)", "I2C0's default pins and clock")
mptest.eq(repr(I2C(1)), "I2C(1, scl=25, sda=26, freq=400000, timeout=50000)", "I2C1's")
mptest.check(I2C(0) is I2C(0) and I2C(1) is not I2C(0), "one object per controller")
i = I2C(0, scl=Pin(22), sda=21, freq=100000, timeout=20000)
mptest.eq(repr(i), "I2C(0, scl=22, sda=21, freq=100000, timeout=20000)", "pins as Pin or number")
mptest.eq(repr(I2C(0)), repr(i), "a later I2C(0) keeps the configuration")
mptest.check(W.mode[21] == Pin.OPEN_DRAIN and W.pull[21] == Pin.PULL_UP, "pads open drain, pulled up")
e = mptest.raises(ValueError, I2C, 2)
mptest.eq(str(e), "I2C(2) doesn't exist", "two controllers")
mptest.raises(TypeError, I2C, "0")
mptest.raises(TypeError, I2C, 0, Pin(22))  # scl and sda are keyword-only
for bad in (0, 4000001):
    mptest.raises(ValueError, I2C, 0, freq=bad)
e = mptest.raises(ValueError, I2C, 0, scl=Pin(22), sda=Pin(36))
mptest.check(e is not None and "input" in str(e), "SDA on an input-only pad: %s" % e)
e = mptest.raises(ValueError, I2C, 0, scl="X")
mptest.eq(str(e), "invalid pin", "not a pin")
mptest.raises(ValueError, I2C, 0, scl=24)
for name in ("init", "start", "stop", "readinto", "write"):
    e = mptest.raises(OSError, getattr(i, name), bytearray(1))
    mptest.eq(str(e), "I2C operation not supported", "hardware I2C has no %s()" % name)
mptest.raises(ValueError, i.readfrom_mem, 0x3C, 0, 1, addrsize=12)
mptest.raises(ValueError, i.writeto_mem, 0x3C, 0, b"x", addrsize=40)
mptest.raises(TypeError, i.writevto, 0x3C, b"x")  # a tuple or list of buffers
s = I2C(-1, scl=Pin(22), sda=Pin(21))
mptest.check(isinstance(s, SoftI2C), "I2C(-1, ...) is the deprecated SoftI2C")
mptest.eq(repr(SoftI2C(Pin(22), Pin(21), freq=100000)), "SoftI2C(scl=22, sda=21, freq=100000)", "SoftI2C")
mptest.eq(repr(SoftI2C(Pin(22), Pin(21))), "SoftI2C(scl=22, sda=21, freq=500000)", "400 kHz is a 1 us delay")
mptest.raises(TypeError, SoftI2C, Pin(22))  # both pins required
mptest.raises(ValueError, SoftI2C, Pin(22), Pin(21), freq=0)
mptest.done()
""")
    assert r["ok"], r["failures"]


def test_nothing_answers_at_an_empty_address_on_other_pins_or_without_the_module():
    r = esp32("""
import mptest, esp32world as W
from machine import I2C, SoftI2C, Pin
W.setup({})
mptest.eq((W.customer.sda, W.customer.scl, W.customer.buzzer_pin), (21, 22, 25), "no board: the usual pins")
i = I2C(0, scl=Pin(22), sda=Pin(21))
mptest.eq(i.scan(), [0x20, 0x3C], "the keypad expander and the display")
mptest.eq(SoftI2C(Pin(22), Pin(21)).scan(), [0x20, 0x3C], "SoftI2C on the same wires")

def errno(fn, *args):
    try:
        fn(*args)
    except OSError as e:
        return e.errno
    return None

mptest.eq(errno(i.writeto, 0x50, b"x"), 19, "an empty address: ENODEV")
mptest.eq(errno(i.readfrom, 0x50, 1), 19, "read")
mptest.eq(errno(i.writevto, 0x51, (b"x",)), 19, "writevto")
mptest.eq(errno(i.readfrom_mem, 0x50, 0, 1), 19, "readfrom_mem")
mptest.eq(i.writeto(0x20, b"\\xff"), 1, "an answering address: bytes written")
j = I2C(1, scl=Pin(22), sda=Pin(4))
mptest.eq(errno(j.writeto, 0x3C, b"\\x00\\xaf"), 19, "SDA on a pad the display is not on: ENODEV")
mptest.eq(j.scan(), [], "nothing on that bus")
s = SoftI2C(Pin(13), Pin(14))
s.start()
mptest.eq(s.write(b"\\x78\\x00"), 0, "SoftI2C: the address NACKed")
s.stop()
W.setup({"wiring": {"sda": 4}})
mptest.eq(I2C(1).scan(), [0x20, 0x3C], "the module as built (wiring): found where it is")
mptest.eq(errno(I2C(0).writeto, 0x3C, b"\\x00"), 19, "and not where the firmware looks")
W.setup({"display": False})
mptest.eq(I2C(0).scan(), [], "no module fitted")
mptest.eq(errno(I2C(0).writeto, 0x3C, b"\\x00"), 19, "nothing at 0x3C")
rep = W.report()
mptest.eq((rep["display"]["fitted"], rep["display"]["lit"], rep["keys_pressed"]), (False, False, 0), "report")

import esp32_atm90e26 as board
W.setup({"board": "esp32-atm90e26"})
c = W.customer
want = (board.PINS.get("sda", 21), board.PINS.get("scl", 22), board.PINS.get("buzzer", 25))
mptest.eq((c.sda, c.scl, c.buzzer_pin), want, "a board: its PINS")
mptest.eq(I2C(0, scl=Pin(c.scl), sda=Pin(c.sda)).scan(), [0x20, 0x3C], "found at the board's pins")
mptest.done()
""", heap="512k")
    assert r["ok"], r["failures"]


def test_the_display_shows_what_the_firmware_drew_and_the_bus_time_passes():
    r = esp32("""
import mptest, esp32world as W, time
from machine import I2C, Pin, Timer
import ssd1306
from simhw import screentext
W.setup({"timer_quiet_ms": 0})
i = I2C(0, scl=Pin(22), sda=Pin(21), freq=400000)
d = ssd1306.SSD1306(i)
d.fb.text("CREDIT", 0, 0, 1)
d.fb.text("123.45 KES", 0, 16, 1)
t0 = time.ticks_us()
mptest.check(d.show(), "the display answered")
def bus_us(nbytes, ns):  # START, the address, 9 clocks a byte (ACK included), STOP
    return (9 * nbytes + 11) * ns // 1000
init, window, frame = len(ssd1306._INIT), len(ssd1306._WINDOW), 1 + len(d.buf)
mptest.eq(time.ticks_diff(time.ticks_us(), t0), bus_us(init, 2500) + bus_us(window, 2500) + bus_us(frame, 2500),
          "set-up, window and frame at 400 kHz, us")
lines = screentext.lines(W.customer.oled.visible())
mptest.eq(lines[:3], ["CREDIT", "", "123.45 KES"], "read back from the glass")
rep = W.report()["display"]
mptest.eq((rep["lit"], rep["text"], rep["frames"]), (True, lines, 1), "the report")
fired = []
Timer(1).init(period=10, mode=Timer.ONE_SHOT, callback=lambda t: fired.append(time.ticks_ms()))
d.fb.fill(0)
d.fb.text("TOKEN OK", 0, 0, 1)
d.show()
mptest.eq(len(fired), 1, "a timer fell due during the frame's 23 ms and ran")
mptest.eq(screentext.lines(W.customer.oled.visible())[0], "TOKEN OK", "the next frame")
mptest.eq(W.report()["display"]["frames"], 2, "two frames")
# At 100 kHz the same show takes four times as long.
I2C(0, freq=100000)
t0 = time.ticks_us()
d.show()
mptest.eq(time.ticks_diff(time.ticks_us(), t0), bus_us(window, 10000) + bus_us(frame, 10000), "at 100 kHz")
# The firmware's display on pins it is not on: show() fails, the driver counts it.
d2 = ssd1306.SSD1306(I2C(1, scl=Pin(22), sda=Pin(4)))
mptest.check(not d2.show() and d2.errors == 1, "no display there")
mptest.done()
""")
    assert r["ok"], r["failures"]


def test_keys_arrive_at_their_virtual_time_even_while_the_firmware_idles():
    r = esp32("""
import mptest, esp32world as W, time
from machine import I2C, Pin, Timer
import keypad
W.setup({"keys": [[2000, "12", 100, 100], [5000, "#", 200, 0]]})
kp = keypad.Keypad(I2C(0, scl=Pin(22), sda=Pin(21)), time.ticks_diff)
got = []
t0 = time.ticks_ms()
while time.ticks_diff(time.ticks_ms(), t0) < 7000:  # a main loop scanning every 20 ms
    time.sleep_ms(20)
    kp.scan(time.ticks_ms())
    k = kp.get()
    if k:
        got.append((chr(k), time.ticks_diff(time.ticks_ms(), t0)))
mptest.eq([k for k, _ in got], ["1", "2", "#"], "every key, once")
for (k, at), press in zip(got, (2000, 2200, 5000)):
    mptest.check(press <= at <= press + 80, "%s taken at %d, pressed at %d" % (k, at, press))
mptest.eq(W.report()["keys_pressed"], 3, "report")

# Idle: the scan runs from a 20 ms Timer while the firmware sleeps 8 s at once. Quiet spells run
# the timer once a second (timer_quiet_ms); each key edge is an outside event that brings the
# exact period back, so an 80 ms press is not skipped.
W.setup({"keys": [[3000, "7", 80, 0], [6000, "0", 80, 0]], "timer_quiet_ms": 1000, "settle_ms": 1000})
kp = keypad.Keypad(I2C(0), time.ticks_diff)
scans = []
taken = []
def tick(t):
    now = time.ticks_ms()
    scans.append(now)
    kp.scan(now)
    k = kp.get()
    if k:
        taken.append((chr(k), W.up_s * 1000 + W.up_ms))
Timer(0).init(period=20, callback=tick)
time.sleep_ms(8000)
Timer(0).deinit()
mptest.eq([k for k, _ in taken], ["7", "0"], "both presses taken while idle")
mptest.check(all(p <= at <= p + 80 for (_, at), p in zip(taken, (3000, 6000))), "in time: %r" % taken)
quiet = [s for s in scans if W.tdiff(s, scans[0]) < 2500]
mptest.check(len(quiet) <= 4, "quiet: the timer coalesced (%d runs in 2.5 s)" % len(quiet))
mptest.check(len(scans) > 90, "around the presses: every 20 ms (%d runs)" % len(scans))
mptest.done()
""")
    assert r["ok"], r["failures"]


def test_pwm_arguments_readback_and_the_ledc_frequency():
    r = esp32("""
import mptest, esp32world as W
from machine import PWM, Pin
W.setup({})
bz = W.customer.buzzer
mptest.raises(TypeError, PWM)
mptest.raises(ValueError, PWM, Pin(36))  # input-only pad
for bad in (0, 40000001):
    e = mptest.raises(ValueError, PWM, Pin(25), freq=bad)
    mptest.eq(str(e), "frequency must be from 1Hz to 40MHz", "freq=%d" % bad)
p = PWM(Pin(25))
mptest.eq((p.freq(), p.duty_u16()), (5000, 32768), "the port's default: 5 kHz at 50 %")
mptest.check(bz.sounding(), "so a PWM made without duty_u16=0 beeps")
p.deinit()
mptest.check(not bz.sounding(), "deinit: silent")
e = mptest.raises(RuntimeError, p.freq)
mptest.eq(str(e), "PWM is inactive", "after deinit")
mptest.eq(repr(p), "PWM(Pin(25))", "inactive repr")
p = PWM(Pin(25), freq=2700, duty_u16=0)
mptest.eq(repr(p), "PWM(Pin(25), freq=2700, duty_u16=0)", "as the boards make it")
mptest.check(not bz.sounding(), "silent at duty 0")
e = mptest.raises(ValueError, p.duty_u16, 65536)
mptest.eq(str(e), "duty_u16 must be from 0 to 65536", "the port's message")
mptest.raises(ValueError, p.duty_u16, -1)
e = mptest.raises(ValueError, p.duty, 1024)
mptest.eq(str(e), "duty must be from 0 to 1023", "10-bit duty")
mptest.raises(ValueError, p.freq, 0)
p.duty_u16(1001)
mptest.eq(p.duty_u16(), 1000, "2.7 kHz runs the LEDC at 14 bits: duty in steps of 4")
p.duty_u16(65535)
mptest.eq(p.duty_u16(), 65535, "full")
mptest.check(not bz.sounding(), "100 % is a steady level, no tone")
p.duty(512)
mptest.eq((p.duty(), p.duty_u16()), (512, 32768), "duty() is 10 bits")
mptest.check(bz.sounding() and bz.freq() == 2700, "sounding at 2.7 kHz")
p.freq(1200)
mptest.eq(p.freq(), 1202, "1.2 kHz: the divider's nearest is 1202 Hz")
mptest.eq(bz.freq(), 1202, "and that is what the buzzer plays")
p.freq(1000)
p.duty_ns(250000)
mptest.eq((p.duty_u16(), p.duty_ns()), (16384, 250000), "duty_ns at 1 kHz")
e = mptest.raises(ValueError, p.duty_ns, 1000001)
mptest.eq(str(e), "duty_ns must be from 0 to 1000000 ns", "a period at most")
mptest.eq(repr(p), "PWM(Pin(25), freq=998, duty_ns=250000)", "1 kHz at 16 bits: the divider gives 998 Hz")
# The port checks duty_ns against the PWM's current period before it has one.
e = mptest.raises(RuntimeError, PWM, Pin(27), freq=1000, duty_ns=1000)
mptest.eq(str(e), "PWM is inactive", "duty_ns in the constructor")

# The LEDC arithmetic in small ints against ESP-IDF's 64-bit formulas (reference in big ints).
def ref(f):
    src = 1000000 if f < 10 else 80000000
    def div(res):
        return ((src << 8) + (f << res) // 2) // (f << res)
    def log2(i):
        return len(bin(i)) - 3
    res = min(log2((src + f // 2) // f), 20)
    if div(res) <= 255 or div(res) > 0x3FFFF:
        res = min(log2(src // f), 20)
        if div(res) <= 255 or div(res) > 0x3FFFF:
            res = 0
    res = min(res, 16)
    dp = div(res)
    return ((src << 8) + (dp << res) // 2) // (dp << res), res

bad = []
f = 1
while f <= 40000000:
    for g in (f, f + 1, f * 3 // 2 + 7):
        if g <= 40000000:
            p.freq(g)
            want, res = ref(g)
            if p.freq() != want or p._res != res:
                bad.append((g, p.freq(), p._res, want, res))
    f = f * 2 + 1
mptest.eq(bad, [], "frequency and resolution as the LEDC driver sets them")
mptest.done()
""")
    assert r["ok"], r["failures"]


def test_the_buzzer_tones_are_heard_and_reported():
    r = esp32("""
import mptest, esp32world as W, time, json
from machine import PWM, Pin
import buzzer
W.setup({})
pwm = PWM(Pin(25), freq=2700, duty_u16=0)
b = buzzer.Buzzer(pwm, time)
def play(pattern, ms):
    b.play(pattern, time.ticks_ms())
    for _ in range(ms // 10):
        time.sleep_ms(10)
        b.poll(time.ticks_ms())
time.sleep_ms(1000)
play(b"\\x1b\\x03", 100)  # 2.7 kHz for 30 ms (patterns: firmware/buzzer.py)
play(b"\\x1b\\x08\\x06\\x14", 500)  # 80 ms, 60 ms pause, 200 ms
play(b"\\x0c\\x0f\\x0a\\x1e", 1000)  # 1.2 kHz: 150 ms, 100 ms pause, 300 ms
rep = json.loads(json.dumps(W.report()))
tones = rep["tones"]
mptest.eq([t[1:] for t in tones], [[30, 2700], [80, 2700], [200, 2700], [150, 1202], [300, 1202]],
          "[ms, Hz] of each tone: 1.2 kHz is 1202 Hz on the LEDC")
mptest.eq([t[0] for t in tones], [1000, 1100, 1240, 1600, 1850], "when, in ms after power-up")
mptest.eq(rep["tones_total"], 5, "count")
# A buzzer PWM on another pad is not the buzzer.
PWM(Pin(27), freq=2700, duty_u16=32768)
mptest.check(not W.customer.buzzer.sounding(), "only the buzzer's pad")
mptest.done()
""")
    assert r["ok"], r["failures"]


def test_transfers_allocate_nothing_and_the_world_keeps_its_own_heap():
    r = esp32("""
import mptest, esp32world as W, time, gc
from machine import I2C, PWM, Pin
import ssd1306, keypad, buzzer
W.setup({"keys": [[500, "123", 60, 60]]})
i = I2C(0, scl=Pin(22), sda=Pin(21))
d = ssd1306.SSD1306(i)
d.fb.text("0.00 KES", 0, 0, 1)
d.show()
kp = keypad.Keypad(i, time.ticks_diff)
one = bytearray(1)
vec = (b"\\x00", b"\\x81\\x7f")
pwm = PWM(Pin(25), freq=2700, duty_u16=0)
bz = buzzer.Buzzer(pwm, time)
tog = [0]
def tones():
    tog[0] ^= 1
    pwm.freq(1200 if tog[0] else 2700)  # a new frequency: the LEDC divider worked out again
    pwm.duty_u16(32768 if tog[0] else 0)
gc.collect()
mptest.allocates_nothing(lambda: i.writeto(0x20, one), 50, "writeto")
mptest.allocates_nothing(lambda: i.readfrom_into(0x20, one), 50, "readfrom_into")
mptest.allocates_nothing(lambda: i.writevto(0x3C, vec), 50, "writevto")
mptest.allocates_nothing(d.show, 30, "the firmware's show()")
mptest.allocates_nothing(lambda: kp.scan(time.ticks_ms()), 200, "the firmware's keypad scan, keys typed meanwhile")
mptest.allocates_nothing(tones, 50, "PWM freq and duty")
def beep():
    bz.play(buzzer.KEY, time.ticks_ms())
    time.sleep_ms(40)
    bz.poll(time.ticks_ms())
mptest.allocates_nothing(beep, 20, "the firmware's buzzer")
mptest.eq(W.report()["keys_pressed"], 3, "the keys typed under the lock were pressed")

# With a board the house runs every virtual second: its work is the world's, not the ESP32's heap.
W.setup({"board": "esp32-atm90e26"})
c = W.customer
d = ssd1306.SSD1306(I2C(0, scl=Pin(c.scl), sda=Pin(c.sda)))
s0 = W.up_s
gc.collect()
mptest.allocates_nothing(d.show, 100, "show() across whole seconds of the house")
mptest.check(W.up_s - s0 >= 2, "seconds passed under the lock")
mptest.done()
""", heap="512k")
    assert r["ok"], r["failures"]


def test_report_says_what_the_customer_saw_heard_and_did():
    r = esp32("""
import mptest, esp32world as W, time, json
from machine import I2C, PWM, Pin
import ssd1306, keypad
W.setup({"keys": [[100, "4", 50, 0]]})
i = I2C(0, scl=Pin(22), sda=Pin(21), freq=400000)
d = ssd1306.SSD1306(i)
d.fb.text("HELLO", 0, 8, 1)
d.show()
kp = keypad.Keypad(i, time.ticks_diff)
for _ in range(20):
    time.sleep_ms(20)
    kp.scan(time.ticks_ms())
rep = json.loads(json.dumps(W.report()))  # plain JSON for the harness
mptest.eq(rep["display"], {"fitted": True, "lit": True, "frames": 1, "text": ["", "HELLO", "", "", "", "", "", ""]},
          "display")
mptest.eq(rep["keys_pressed"], 1, "keys")
mptest.eq((rep["tones"], rep["tones_total"]), ([], 0), "no tones")
mptest.eq(rep["i2c"], {"nacks": 0, "hz": 400000, "over_rated": []}, "both parts rated for 400 kHz")
W.setup({})
i = I2C(0, freq=2000000)
keypad.Keypad(i, time.ticks_diff).scan(time.ticks_ms())
try:
    i.writeto(0x50, b"x")
except OSError:
    pass
mptest.eq(W.report()["i2c"], {"nacks": 1, "hz": 2000000, "over_rated": ["0x20", "0x3c"]},
          "at 2 MHz both parts are clocked beyond their ratings (PCA9674 1 MHz, SSD1306 400 kHz)")
mptest.done()
""")
    assert r["ok"], r["failures"]
