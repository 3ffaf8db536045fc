"""Why the meter started, as events (issue 14): the real esp32-atm90e26 board on the ESP32
stand-ins reports machine.reset_cause() at every boot, and a brownout, which the port reports as
a power-on reset, told apart by the RTC that kept counting through it."""
import pytest

import esp32_host

USES_MICROPYTHON = True
RESET, BROWNOUT = 51, 52  # firmware/events.py
Y2000 = 0  # the world's RTC value (seconds since 2000) after a power cut


def boot_events(tmp_path, cause, rtc_set):
    h = esp32_host.Esp32Host(tmp_path, "esp32-atm90e26", rtc_utc=esp32_host.UTC_START if rtc_set else None)
    h.setup()
    if not rtc_set:
        h.rtc = Y2000
    h.reset_cause = cause
    r = h.boot(60)
    assert r["reason"] == "end", r.get("error") or r
    return [e for e in r["meter"]["events"] if e[0] in (RESET, BROWNOUT)]


@pytest.mark.parametrize("cause, rtc_set, expected", [
    (1, False, [[RESET, 1]]),  # power-on after a power cut: the RTC is back at 2000
    (3, True, [[RESET, 3]]),  # the watchdog: the RTC kept
    (2, True, [[RESET, 2]]),  # machine.reset() or a panic
    (1, True, [[RESET, 1], [BROWNOUT, 0]]),  # "power-on" with the RTC still counting: a brownout
])
def test_every_boot_says_why_it_started(tmp_path, cause, rtc_set, expected):
    assert boot_events(tmp_path, cause, rtc_set) == expected
