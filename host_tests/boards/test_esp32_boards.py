"""Real board definitions (plain data, importable without hardware): one GPIO per function,
SPI mode per the chip's datasheet notes, and a poll tick inside the derived overflow bound."""

import pytest

import esp32_ade7953
import esp32_atm90e26
import esp32_atm90e32

BOARDS = [esp32_atm90e26, esp32_atm90e32, esp32_ade7953]


@pytest.mark.parametrize("board", BOARDS, ids=lambda b: b.NAME)
def test_pins_are_distinct(board):
    pins = list(board.PINS.values())
    assert len(pins) == len(set(pins)), board.PINS


@pytest.mark.parametrize("board", BOARDS, ids=lambda b: b.NAME)
def test_board_data(board):
    cfg = board.CONFIG
    assert cfg["max_power_w"] > 0 and cfg["tick_ms"] <= 1000
    for p in cfg.get("pulses", ()):
        assert p["unit"] in ("l", "m3/1000") and isinstance(p["per_pulse"], int)
    # the sim boards of the same name use these very definitions
    assert board.NAME.startswith("esp32-") and board.CHIP in board.NAME
