"""The real ESP32 board files boot on the host (tools/esp32_host.py): from the files `make deploy`
stages (a stock image: .mpy files on the root file system) on both MicroPython runtimes, and from
the 32-bit build with the firmware frozen in (the meter image: board.txt and secrets.json only),
on the ESP32 port stand-ins. Each one meters the virtual household and drives the relay. A staged
file set that misses a module the board needs must make the boot fail loudly."""
import pytest

import esp32_host

USES_MICROPYTHON = True
BOARDS = ("esp32-atm90e26", "esp32-atm90e32", "esp32-ade7953")
RUN_S = 1800  # half an hour of virtual time: a new meter's first credit runs out in it
MJ_PER_WH = 3600000


def meters_and_drives_the_relay(r):
    """A fresh meter (opening balance 0) closes the relay after power-up, meters what flows until
    its first credit runs out, then opens the relay for credit: the relay pin high, then low."""
    assert r["reason"] == "end", r.get("error") or r
    m = r["meter"]
    assert m["step_errors"] == 0 and m["last_error"] == "None", m
    truth_wh = r["truth_mj"] // MJ_PER_WH
    assert truth_wh > 10, r
    # Every Wh the chip counted reached the meter, but what the last tick had not read yet.
    assert truth_wh - 1 <= m["imp_wh"] <= truth_wh, (m, r["truth_mj"])
    assert r["relay_ops"] >= 2 and not r["relay_closed"], r
    assert m["reasons"] & 32, "opened for credit: %r" % m  # relay.py reason bit 32: credit
    assert r["frames"] > RUN_S * 10, "the driver polled the chip over SPI every tick"


@pytest.mark.parametrize("board", BOARDS)
def test_board_boots_from_its_staged_deploy_files(board, tmp_path):
    h = esp32_host.Esp32Host(tmp_path, board, rtc_utc=esp32_host.UTC_START)
    h.setup()
    staged = sorted(p.name for p in h.stage_dir.iterdir())
    assert "main.py" in staged and board.replace("-", "_") + ".mpy" in staged
    r = h.boot(RUN_S)
    meters_and_drives_the_relay(r)
    out = h.boots[-1].output
    assert "storage: no 'meter' partition" in out, "a stock table: /data on the root file system"


@pytest.mark.runtimes("micropython32")
@pytest.mark.parametrize("board", BOARDS)
def test_board_boots_from_the_frozen_meter_image(board, tmp_path):
    h = esp32_host.Esp32Host(tmp_path, board, frozen=True, rtc_utc=esp32_host.UTC_START)
    h.setup()
    assert sorted(p.name for p in h.stage_dir.iterdir()) == ["board.txt", "secrets.json"]
    r = h.boot(RUN_S)
    meters_and_drives_the_relay(r)
    assert "storage: no 'meter' partition" not in h.boots[-1].output, "/data on the meter partition"


@pytest.mark.parametrize("board, missing", [("esp32-atm90e32", "esp32_atm90e26.mpy"),
                                            ("esp32-ade7953", "esp32_atm90e26.mpy"),
                                            ("esp32-atm90e26", "app.mpy")])
def test_an_incomplete_staged_file_set_fails_the_boot_loudly(board, missing, tmp_path):
    h = esp32_host.Esp32Host(tmp_path, board)
    h.provision()
    (h.stage() / missing).unlink()
    h.install()
    r = h.boot(RUN_S)
    assert r["reason"] == "crash", r
    assert "ImportError" in r["error"] and missing[:-4] in r["error"], r["error"]


def test_a_board_held_in_download_mode_runs_nothing(tmp_path):
    # GPIO0 is a strapping pin: held low at reset, the ESP32 waits in its ROM bootloader instead
    # of running MicroPython. That is why no customer input is wired to it (docs/hardware.md).
    h = esp32_host.Esp32Host(tmp_path, "esp32-atm90e26")
    h.setup()
    r = h.boot(60, inputs={"0": 0})
    assert r["reason"] == "download_mode" and r["frames"] == 0, r


def test_a_customer_holding_the_button_through_a_power_up_does_not_stop_the_meter(tmp_path):
    # The reconnect button used to be GPIO0: a customer pressing it while the power came back (or
    # during a watchdog reset) left the meter in download mode, not metering, relay never driven.
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "boards"))
    import esp32_atm90e26
    button = esp32_atm90e26.PINS["button"]
    h = esp32_host.Esp32Host(tmp_path, "esp32-atm90e26", rtc_utc=esp32_host.UTC_START)
    h.setup()
    r = h.boot(RUN_S, inputs={str(button): 0})
    assert r["reason"] == "end" and r["frames"] > RUN_S * 10, r
    assert not [g for g in r["straps_used"] if g in (0, 2, 12, 15)], r["straps_used"]
