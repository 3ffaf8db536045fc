"""Pulse inputs: debouncing, unit conversion, bad configuration."""

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
