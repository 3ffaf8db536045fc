"""tools/esp32_host.py: what carries over between boots (the flash image, the RTC over a reset
but not over a power cut, the reset cause), the port's boot order, and the command line."""
import json

import esp32_host

USES_MICROPYTHON = True

# A main.py that tells what it booted with, then starves a watchdog it started.
MAIN = """import machine, time
print("boot cause=%d rtc=%r" % (machine.reset_cause(), machine.RTC().datetime()[:7]))
with open("boots.txt", "a") as f:
    f.write("x")
print("boots=%d" % len(open("boots.txt").read()))
if machine.reset_cause() != machine.WDT_RESET:
    machine.WDT(timeout=5000)
    while True:
        time.sleep_ms(1000)  # never fed
"""


def install(tmp_path, main=MAIN, files=None):
    h = esp32_host.Esp32Host(tmp_path / "board", "esp32-atm90e26", rtc_utc=esp32_host.UTC_START)
    h.install_files(dict(files or {}, **{"main.py": main}))
    return h


def test_a_watchdog_reset_boots_again_with_its_cause_and_the_rtc_kept(tmp_path):
    h = install(tmp_path)
    reports = h.run(600)
    assert [r["reason"] for r in reports] == ["wdt", "repl"], reports
    assert reports[0]["uptime_ms"] == 5000, "reset at the watchdog's timeout"
    first, second = (b.output for b in h.boots)
    assert "boot cause=1 rtc=(2026, 1, 1, 3, 0, 0, 0)" in first, first
    assert "boot cause=3 rtc=(2026, 1, 1, 3, 0, 0, 5)" in second, "WDT_RESET, the RTC ran on: " + second
    assert "boots=2" in second, "the file system outlives the reset"


def test_a_power_cut_restarts_the_rtc_at_2000(tmp_path):
    h = install(tmp_path, main="import machine\nprint('rtc=%r cause=%d' % (machine.RTC().datetime()[:7], machine.reset_cause()))\n"
                               "import time\nwhile True:\n    time.sleep_ms(1000)\n")
    r = h.boot(cut_s=7200)
    assert r["reason"] == "power_cut" and r["uptime_ms"] == 7200000
    assert r["rtc"] == esp32_host.UTC_START - esp32_host.Y2000 + 7200
    r = h.boot(run_s=10)
    assert "rtc=(2000, 1, 1, 5, 0, 0, 0) cause=1" in h.boots[-1].output, h.boots[-1].output
    assert r["rtc"] == 10 and r["utc_end"] == esp32_host.UTC_START + 7210, "the outside world's clock ran on"


def test_boot_py_runs_before_main_py_as_on_the_port(tmp_path):
    h = install(tmp_path, main="print('main', ORDER)\n",
                files={"boot.py": "import builtins\nbuiltins.ORDER = 'boot.py first'\n"})
    r = h.boot(10)
    assert r["reason"] == "repl" and "main boot.py first" in h.boots[-1].output, h.boots[-1].output


def test_command_line_boots_a_board_offline(tmp_path, capsys):
    rc = esp32_host.main(["--board", "esp32-atm90e26", "--hours", "0.25", "--dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    r = json.loads(out.strip().splitlines()[-1])
    assert r["reason"] == "end" and r["uptime_ms"] == 900000 and r["meter"]["imp_wh"] > 0, r


def test_the_harness_cuts_the_power_or_ends_the_run_when_it_chooses(tmp_path):
    h = install(tmp_path, main="import time\nwhile True:\n    time.sleep_ms(1000)\n")
    boot = h.start(run_s=30 * 86400, control=True)
    boot.cut()
    r = boot.wait()
    assert r["reason"] == "power_cut" and r["uptime_ms"] % 1000 == 0 and r["uptime_ms"] < 30 * 86400000, r
    boot = h.start(run_s=30 * 86400, control=True)
    boot.end()
    assert boot.wait()["reason"] == "end"
