"""The keypad scan (firmware/keypad.py) against the key matrix and expander emulator: debounced
presses at a 20 ms scan, bounces and ghosts ignored, a missing expander counted, bounded queue."""
import keypad
from simhw.i2cbus import SimI2C
from simhw.keypad_emu import KeypadEmu


def ticks_add(a, d):  # the ESP32's tick arithmetic: wraps at 2^30
    return (a + d) & ((1 << 30) - 1)


def ticks_diff(a, b):
    return ((a - b + (1 << 29)) & ((1 << 30) - 1)) - (1 << 29)


class Clock:
    def __init__(self):
        self.t = (1 << 30) - 500  # every test crosses a tick wrap
    ticks_add = staticmethod(ticks_add)
    ticks_diff = staticmethod(ticks_diff)

    def ticks_ms(self):
        return self.t


def rig():
    c = Clock()
    emu = KeypadEmu(c)
    bus = SimI2C({keypad.ADDR: emu})
    return c, emu, bus, keypad.Keypad(bus, ticks_diff)


def scan_for(c, kp, ms):
    keys = []
    for _ in range(ms // 20):
        c.t = ticks_add(c.t, 20)
        kp.scan(c.t)
        k = kp.get()
        while k:
            keys.append(chr(k))
            k = kp.get()
    return keys


def test_every_key_of_the_matrix():
    c, emu, bus, kp = rig()
    emu.type("123A456B789C*0#D", 60, 60)
    assert "".join(scan_for(c, kp, 3000)) == "123A456B789C*0#D"


def test_a_bounce_is_not_a_key_and_a_held_key_is_one():
    c, emu, bus, kp = rig()
    emu.press("5", 10)  # shorter than two scans: contact bounce
    assert scan_for(c, kp, 200) == []
    emu.press("5", 2000)
    assert scan_for(c, kp, 3000) == ["5"]


class GhostBus:
    """Two keys of one row down (1 and 2): both columns read low while row 0 is driven."""

    def __init__(self):
        self.out = 0xFF

    def writeto(self, addr, buf):
        self.out = buf[0]

    def readfrom_into(self, addr, buf):
        buf[0] = self.out & (0xCF if not self.out & 1 else 0xFF)


def test_two_keys_at_once_are_ignored():
    kp = keypad.Keypad(GhostBus(), ticks_diff)
    for t in range(0, 200, 20):
        kp.scan(t)
    assert kp.get() == 0 and kp.ghosts == 1


def test_missing_expander_is_counted_not_raised():
    c, emu, bus, kp = rig()
    bus.devices.clear()
    assert scan_for(c, kp, 100) == []
    assert kp.errors == 5


def test_queue_is_bounded():
    c, emu, bus, kp = rig()
    emu.type("1234567890", 60, 60)
    for _ in range(100):
        c.t = ticks_add(c.t, 20)
        kp.scan(c.t)  # nobody takes the keys
    got = []
    k = kp.get()
    while k:
        got.append(chr(k))
        k = kp.get()
    assert got == list("12345678")


def test_idle_stays_idle_past_half_the_tick_period():
    # A stamp of the last key read after 2^29 ms would be "in the future" (ticks_diff < 0): the
    # keypad would look busy for days and the loop would scan at its fast rate.
    c, emu, bus, kp = rig()
    emu.press("7", 100)
    assert scan_for(c, kp, 300) == ["7"] and kp.busy(c.t)
    scan_for(c, kp, 2500)
    assert not kp.busy(c.t)
    c.t = ticks_add(c.t, (1 << 29) + 1000)
    kp.scan(c.t)
    assert not kp.busy(c.t)
