"""The ESP32 boards' pin maps against the chip's rules (docs/hardware.md).

ESP32 (ESP32-D0WD, WROOM-32/WROVER modules): GPIO0, 2, 5, 12 and 15 are sampled at reset
(strapping); 6-11 carry the module's SPI flash; 34-39 are inputs without pull resistors. A
customer can hold or short what is wired to a customer input at any moment, including a
power-up or a watchdog reset, so none may sit on a strapping pin: GPIO0 held low starts the ROM
download mode (the meter does not run), GPIO12 high selects a 1.8 V flash supply (the module does
not boot)."""
import importlib
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "boards"))

STRAPPING = {0, 2, 5, 12, 15}
FLASH = set(range(6, 12))
INPUT_ONLY = set(range(34, 40))
VALID = set(range(0, 40)) - {20, 24, 28, 29, 30, 31}  # the pads the ESP32 has
# Roles of the PINS keys: what a customer (or the world outside the meter) drives, what the
# firmware drives, and what the chip drives.
CUSTOMER_INPUTS = {"button", "cover", "magnet", "pulse1", "pulse2"}
PULLED_UP_INPUTS = {"button"}  # Pin.PULL_UP in the board: needs a pad with internal resistors
# The I2C lines are open-drain outputs too (the keypad sits behind the expander on that bus, so
# no key is wired to a pad).
OUTPUTS = {"relay", "led", "cs", "sck", "mosi", "reset", "sda", "scl", "buzzer"}
CHIP_INPUTS = {"miso"}
BOARDS = ["esp32_atm90e26", "esp32_atm90e32", "esp32_ade7953"]


def problems(pins):
    out = []
    for role, g in pins.items():
        if role not in CUSTOMER_INPUTS | OUTPUTS | CHIP_INPUTS:
            out.append("%s: unknown role (add it to this test's roles)" % role)
        if g not in VALID:
            out.append("%s on GPIO%d: no such pad" % (role, g))
        if g in FLASH:
            out.append("%s on GPIO%d: the module's flash" % (role, g))
        if g == 12:
            out.append("%s on GPIO12 (MTDI): high at reset selects a 1.8 V flash" % role)
        if role in CUSTOMER_INPUTS and g in STRAPPING:
            out.append("%s on GPIO%d: a customer input on a strapping pin" % (role, g))
        if role in OUTPUTS and g in INPUT_ONLY:
            out.append("%s on GPIO%d: an output on an input-only pin" % (role, g))
        if role in PULLED_UP_INPUTS and g in INPUT_ONLY:
            out.append("%s on GPIO%d: no internal pull-up there" % (role, g))
    used = {}
    for role, g in pins.items():
        used.setdefault(g, []).append(role)
    out += ["GPIO%d used twice: %s" % (g, ", ".join(r)) for g, r in used.items() if len(r) > 1]
    return out


@pytest.mark.parametrize("name", BOARDS)
def test_board_pin_map_keeps_customer_inputs_off_strapping_pins(name):
    mod = importlib.import_module(name)
    assert problems(mod.PINS) == [], mod.PINS


def test_the_rules_catch_the_old_map():
    old = {"sck": 18, "mosi": 23, "miso": 19, "cs": 5, "relay": 26, "button": 0, "led": 2,
           "cover": 34, "magnet": 35, "pulse1": 36, "pulse2": 39}
    assert problems(old) == ["button on GPIO0: a customer input on a strapping pin"]
    assert "relay on GPIO34: an output on an input-only pin" in problems(dict(old, button=32, relay=34))
    assert "GPIO26 used twice: relay, button" in problems(dict(old, button=26))
    assert "button on GPIO36: no internal pull-up there" in problems(dict(old, button=36, pulse1=33))
    assert any("flash" in p for p in problems(dict(old, button=32, led=7)))
    assert "sda on GPIO39: an output on an input-only pin" in problems(dict(old, button=32, pulse2=33, sda=39))


def test_pin_map_is_documented():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "hardware.md").read_text()
    for name in BOARDS:
        for role, g in importlib.import_module(name).PINS.items():
            assert "| %s | GPIO%d |" % (role, g) in doc, (name, role, g)
