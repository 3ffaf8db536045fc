"""The meter image's OTA variant boots a real board on the host (tools/esp32_host.py, ota=True):
8 MiB flash, partitions-ota.csv, the app image esptool would write into ota_0 with blank OTA data.
The bootloader stand-in (esp32ota) starts it and the report says which slot runs what version; an
update that cannot start is rolled back by the bootloader at the reset that follows."""
import pytest

import esp32_host

USES_MICROPYTHON = True
RUN_S = 600


@pytest.mark.runtimes("micropython32")  # the meter image: firmware frozen in (32-bit build only)
def test_the_ota_image_boots_ota_0_and_reports_slot_and_version(tmp_path):
    h = esp32_host.Esp32Host(tmp_path, "esp32-atm90e26", frozen=True, ota=True, rtc_utc=esp32_host.UTC_START)
    assert h.partitions == str(esp32_host.OTA_CSV) and h.flash_size == 0x800000
    h.setup()
    assert h.slot_image("ota_0")["version"] == esp32_host.firmware_version()
    r = h.boot(RUN_S)
    assert r["reason"] == "end", r.get("error") or r
    ota = r["ota"]
    assert (ota["running"], ota["version"], ota["rolled_back"]) == ("ota_0", esp32_host.firmware_version(), False), ota
    assert ota["state"] == "VALID" and ota["boot_state"] == "VALID", "first boot: the bootloader records ota_0 valid"
    assert r["meter"]["step_errors"] == 0 and r["frames"] > RUN_S * 10, "metering from the slot's image"
    assert "storage: no 'meter' partition" not in h.boots[-1].output, "/data on the meter partition"


@pytest.mark.runtimes("micropython32")
def test_an_update_that_cannot_start_is_rolled_back(tmp_path):
    h = esp32_host.Esp32Host(tmp_path, "esp32-atm90e26", frozen=True, ota=True, rtc_utc=esp32_host.UTC_START)
    h.setup()
    assert h.boot(60)["reason"] == "end"
    # What the firmware's update path leaves: a verified image in the other slot, selected.
    h.write_image("ota_1", h.image("99.0.0", fault="crash"))
    h.set_boot("ota_1")
    reports = h.run(RUN_S)
    assert len(reports) == 2, [(r["reason"], r["ota"]) for r in reports]
    first, second = reports
    assert (first["ota"]["running"], first["ota"]["version"]) == ("ota_1", "99.0.0"), first["ota"]
    assert first["ota"]["state"] == "PENDING_VERIFY", "on trial"
    # main.trial_failed: an image on trial that cannot start resets at once (not after the watchdog)
    assert first["reason"] == "hard_reset" and first["uptime_ms"] < 1000, first
    assert "this image does not start; resetting into the previous one" in h.boots[1].output
    assert (second["ota"]["running"], second["ota"]["rolled_back"]) == ("ota_0", True), second["ota"]
    assert second["reason"] == "end" and second["ota"]["version"] == esp32_host.firmware_version(), second
    assert second["meter"]["step_errors"] == 0 and second["frames"] > 0, "the old image meters again"
    assert [e["state"] for e in h.otadata()] == ["VALID", "ABORTED"], h.otadata()
