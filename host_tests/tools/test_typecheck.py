"""firmware/*.py and boards/esp32_*.py against the ESP32 port's API (tools/typecheck.py: mypy with
micropython-esp32-stubs as the only view of machine, network, esp32, time, micropython, os...).
Known findings that are right on MicroPython are listed in tools/typecheck_known.txt."""
import pytest

import typecheck


def test_firmware_and_boards_use_the_esp32_api_correctly():
    findings = typecheck.run()
    unlisted, stale = typecheck.compare(findings, typecheck.load_known())
    assert not (unlisted or stale), "\n" + typecheck.report(unlisted, stale)


# Misuse the checker must report: (file name, code, error code, words of the message).
MISUSE = [
    ("timer_without_id.py", "import machine\nt = machine.Timer()\n", "call-overload", "Timer"),
    ("ticks_ms_argument.py", "import time\nt = time.ticks_ms(1)\n", "call-arg", "ticks_ms"),
    ("sleep_ms_str.py", 'import time\ntime.sleep_ms("5")\n', "arg-type", "sleep_ms"),
    ("wdt_timeout_str.py", 'from machine import WDT\nWDT(timeout="30")\n', "arg-type", "WDT"),
    ("pin_mode_name.py", "from machine import Pin\nPin(2, Pin.OUTPUT)\n", "attr-defined", "OUTPUT"),
    # CPython's time module is not the view: perf_counter does not exist on the ESP32
    ("cpython_time.py", "import time\ntime.perf_counter()\n", "attr-defined", "perf_counter"),
    ("deprecated_umount.py", 'import os\nos.umount("/f")\n', "deprecated", "vfs.umount"),
    # nothing installed in the venv is visible to the firmware
    ("host_package.py", "import pytest\n", "import-not-found", "pytest"),
]

# The API as the boards and the firmware use it: no finding (the stubs resolve machine, network,
# esp32, ssl, time, micropython.const and the frozen umqtt.simple).
CORRECT = """\
import esp32
import machine
import network
import ssl
import time
import vfs
from machine import Pin, SPI, WDT, Timer
from micropython import const
from umqtt.simple import MQTTClient

_N = const(3)
spi = SPI(2, baudrate=160000, polarity=1, phase=1, sck=Pin(18), mosi=Pin(23), miso=Pin(19))
cs = Pin(5, Pin.OUT, value=1)
pressed = Pin(0, Pin.IN, Pin.PULL_UP).value() == 0
t = Timer(0)
t.init(period=5, mode=Timer.PERIODIC, callback=lambda _t: None)
t.deinit()
WDT(timeout=30000).feed()
uid = machine.unique_id()
machine.RTC().datetime((2026, 1, 2, 4, 10, 0, 0, 0))
wlan = network.WLAN(network.STA_IF)
wlan.active(True)
if not wlan.isconnected():
    wlan.connect("ssid", "password")
now = time.ticks_ms()
late = time.ticks_diff(time.ticks_add(now, 5), time.ticks_ms()) > 0
time.sleep_ms(1)
year = time.gmtime(0)[0]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations(cadata=b"")
c = MQTTClient("pm-1", "broker", 1883, None, None, 240)
c.connect(True)
c.publish(b"t", b"m", True, 1)
nvs = esp32.NVS("meter")
vfs.umount("/data")
"""


def test_checker_reports_esp32_api_misuse(tmp_path):
    for name, code, _, _ in MISUSE:
        (tmp_path / name).write_text(code)
    (tmp_path / "correct.py").write_text(CORRECT)
    findings = typecheck.run(sorted(p.name for p in tmp_path.glob("*.py")), cwd=tmp_path)
    by_file = {}
    for f in findings:
        by_file.setdefault(f.path, []).append(f)
    assert "correct.py" not in by_file, by_file.get("correct.py")
    for name, _, error_code, word in MISUSE:
        got = by_file.get(name, [])
        assert any(f.code == error_code and word in f.message for f in got), (name, got)


def _f(path, scope, code, message, line=1):
    return typecheck.Finding(path, line, scope, code, message)


def test_every_entry_accounts_for_one_finding_and_stale_entries_are_reported(tmp_path):
    known = tmp_path / "known.txt"
    known.write_text(
        "# comment\n"
        "\n"
        'a.py:f: [attr-defined] Module has no attribute "x"  # set at run time\n'
        'a.py:f: [attr-defined] Module has no attribute "x"  # set at run time\n'
        'b.py:<module>: [import-not-found] Cannot find "c"  # only on the device\n'
    )
    entries = typecheck.load_known(known)
    x = _f("a.py", "f", "attr-defined", 'Module has no attribute "x"')
    assert typecheck.compare([x, x], entries) == ([], [entries[2]])
    extra = _f("a.py", "g", "attr-defined", 'Module has no attribute "x"', line=9)  # another scope
    unlisted, stale = typecheck.compare([x, x, x, extra], entries)
    assert unlisted == [x, extra] and stale == [entries[2]]
    report = typecheck.report(unlisted, stale, known)
    assert "a.py:9  a.py:g: [attr-defined]" in report and "line 5: b.py:<module>" in report


@pytest.mark.parametrize("line", [
    'a.py:f: [attr-defined] Module has no attribute "x"',  # no reason
    'a.py:f: [attr-defined] Module has no attribute "x"  #  ',
    'a.py:f: attr-defined Module has no attribute "x"  # why',
    'a.py [attr-defined] Module has no attribute "x"  # why',
])
def test_an_entry_needs_scope_code_message_and_reason(tmp_path, line):
    known = tmp_path / "known.txt"
    known.write_text(line + "\n")
    with pytest.raises(typecheck.CheckerError):
        typecheck.load_known(known)
