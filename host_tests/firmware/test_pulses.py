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
    # The whole app on the sim board: pulses counted, committed with the energy, restored at boot.
    mpy("""
import mptest, simkit, app, os
FLASH = simkit.fresh_flash("/tmp/pm-pulses.img")
b = simkit.board(FLASH)
m = app.Meter(b)
m.boot()
mptest.eq(len(m.metering.pulses), 1, "the board's water input")
for _ in range(9 * 3600 // 60):   # midnight to 9:00; 6-9 at 10 ml/s: 108 pulses of 10 l
    b.advance(60000)
    m.step()
m.commit()
water = m.metering.pulses[0]
mptest.eq(water.count, b.pulses_truth[0], "every pulse counted once despite contact bounce")
mptest.check(water.count > 0, "some water flowed")
counts, wh = water.count, m.metering.imp_wh
m.sync.telemetry(m, 0)
while m.sync.outbox.count:
    kind, payload = m.sync.outbox.peek()
    m.sync.outbox.pop()
mptest.check(b'"u":{"water":%d}' % water.value in payload, "telemetry carries the volume: %r" % payload)
b2 = simkit.board(FLASH)
m2 = app.Meter(b2)
m2.boot()
mptest.eq((m2.metering.pulses[0].count, m2.metering.imp_wh), (counts, wh), "restored with the energy")
os.remove(FLASH)
mptest.done(count=counts)
""", heap="256k")
