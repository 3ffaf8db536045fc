"""Pulse inputs: debouncing, unit conversion, bad configuration, persistence in the hot record."""

import pytest

import pulses


def diff(a, b):
    return a - b


def test_debounced_counting_and_units():
    p = pulses.PulseInput("water", "l", 10, 20, diff)
    t = 0
    for _ in range(5):
        # closing with bounce, stable low, opening with bounce, stable high
        for dt, level in ((0, 0), (1, 1), (2, 0), (30, 0), (100, 1), (101, 0), (103, 1), (150, 1)):
            p.sample(level, t + dt)
        t += 1000
    assert p.count == 5
    assert p.value == 50
    assert p.bounces >= 10


def test_glitch_shorter_than_debounce_is_not_a_pulse():
    p = pulses.PulseInput("gas", "m3/1000", 10, 20, diff)
    p.sample(0, 0)
    p.sample(0, 19)
    p.sample(1, 25)
    p.sample(1, 100)
    assert p.count == 0
    p.sample(0, 200)
    p.sample(0, 220)
    assert p.count == 1
    p.sample(0, 400)  # still closed: one pulse, however long
    assert p.count == 1


@pytest.mark.parametrize("per,deb", [(0, 20), (-1, 20), (1.5, 20), (10, 0), (10, 10000)])
def test_bad_configuration_is_refused(per, deb):
    with pytest.raises(ValueError):
        pulses.PulseInput("w", "l", per, deb, diff)


def test_too_many_inputs_refused():
    doc = [{"name": "a", "per_pulse": 1}] * 3
    with pytest.raises(ValueError):
        pulses.from_config(doc, diff)


def test_counts_persist_with_the_energy_registers_micropython(mpy):
    mpy("""
import mptest, record, pulses, time
class NS:
    pass
from auth import Commands
m = NS()
m.account = NS(); a = m.account
a.balance = 5; a.charged = 6; a.topped_up = 7; a.level = 0
m.topups = 1
m.tariff = NS(); m.tariff.rem = 3
mt = NS()
mt.imp_wh = 100; mt.imp_rem = 9; mt.exp_wh = 2; mt.exp_rem = 1
mt.pulses = (pulses.PulseInput("water", "l", 10, 20, time.ticks_diff),
             pulses.PulseInput("gas", "m3/1000", 10, 20, time.ticks_diff))
mt.pulses[0].count = 123456
mt.pulses[1].count = 789
m.metering = mt
m.commands = Commands("x", None)
class R:
    state = 0; reasons = 0
    def restore(self, s, r):
        self.state = s; self.reasons = r
m.relay = R()
buf = bytearray(record.SIZE)
record.pack(buf, m)
mt.pulses[0].count = 0
mt.pulses[1].count = 0
mt.imp_wh = 0
mptest.check(record.unpack(buf, m), "unpacked")
mptest.eq((mt.imp_wh, mt.pulses[0].count, mt.pulses[1].count), (100, 123456, 789), "restored")
mptest.done()
""")
