"""The whole app on the sim board under MicroPython: the thin slice of the walking skeleton."""
import mprun

# The app plus the emulated board (chip emulator, littlefs on a file) needs more than the
# 64 KiB the unit tests get; on the 64-bit unix port objects are also about twice their ESP32 size.
HEAP = mprun.APP_HEAP


def test_app_meters_charges_disconnects_tops_up_and_reconnects(mpy):
    r = mpy("host_tests/firmware/check_app.py", heap=HEAP)
    assert r.result["ok"], r.result["failures"]
    assert r.result["checks"] >= 40
    assert r.result["energy_wh"] > 2000
