"""The real boards' customer interface on the ESP32 stand-ins (tools/esp32_host.py): the board file
builds machine.I2C and machine.PWM, the world puts the OLED, the keypad's expander and the buzzer on
those pins, and a prepaid cycle is done at the meter: the credit runs out (the display says so),
the customer types the token the utility issued (tools/token_issue.py) and confirms the
reconnection with key D. What is checked is what the customer sees on the glass (read back from the
pixels), hears, and the relay."""
from binascii import unhexlify

import pytest

import esp32_host
import token_issue

USES_MICROPYTHON = True
BOARDS = ("esp32-atm90e26", "esp32-atm90e32", "esp32-ade7953")
RELAY_ARMED, RELAY_CLOSED, TOPUP_APPLIED = 8, 7, 9  # firmware/events.py
MANUAL = 128  # relay.py: closed by the customer's confirmation


def prepaid_cycle(h):
    key = unhexlify(h.provision()["key"])
    h.stage()
    h.install()
    r = h.boot(1800)  # a new meter's first credit runs out within half an hour
    assert r["reason"] == "end", r.get("error") or r
    d = r["display"]
    assert d["lit"] and d["text"][0].strip() == "NO CREDIT", d
    assert "SUPPLY OFF" in d["text"] and "No credit" in d["text"], d
    assert not r["relay_closed"]
    h.after(r)
    tok = token_issue.issue(key, h.meter_id, 1, 2000).replace(" ", "")
    r = h.boot(600, keys=[[60000, tok + "#"], [300000, "D"]])
    assert r["reason"] == "end", r.get("error") or r
    m = r["meter"]
    assert r["keys_pressed"] == 22 and m["topups"] == 1, r
    ev = [e for e in m["events"] if e[0] in (TOPUP_APPLIED, RELAY_ARMED, RELAY_CLOSED)]
    assert ev == [[TOPUP_APPLIED, 2000], [RELAY_ARMED, 32], [RELAY_CLOSED, MANUAL]], m["events"]
    assert r["relay_closed"] and m["relay"] == 0
    assert "SUPPLY ON" in r["display"]["text"][6], r["display"]
    tones = r["tones"]
    assert [t for t in tones if t[2] == 2700 and t[1] >= 190], "the accept tone: %r" % tones
    assert step_errors(m) == 0
    assert r["i2c"]["over_rated"] == [] and r["i2c"]["nacks"] == 0, r["i2c"]
    return r


def step_errors(m):
    assert m["last_error"] == "None", m
    return m["step_errors"]


@pytest.mark.runtimes("micropython32")
@pytest.mark.parametrize("board", BOARDS)
def test_prepaid_cycle_on_the_keypad_frozen_meter_image(board, tmp_path):
    prepaid_cycle(esp32_host.Esp32Host(tmp_path, board, frozen=True, rtc_utc=esp32_host.UTC_START))


def test_prepaid_cycle_on_the_keypad_stock_image(tmp_path):
    prepaid_cycle(esp32_host.Esp32Host(tmp_path, "esp32-atm90e26", rtc_utc=esp32_host.UTC_START))


def test_a_board_without_the_display_meters_on(tmp_path):
    # The interface's parts are not fitted (nothing answers at 0x3C or 0x20): the drivers count
    # their errors, the meter meters, bills and opens for credit as ever.
    h = esp32_host.Esp32Host(tmp_path, "esp32-atm90e26", rtc_utc=esp32_host.UTC_START)
    h.setup()
    r = h.boot(1800, display=False)
    assert r["reason"] == "end", r.get("error") or r
    m = r["meter"]
    assert not r["display"]["fitted"] and m["imp_wh"] > 10 and m["reasons"] & 32, r
    assert step_errors(m) == 0
