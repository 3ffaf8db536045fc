"""firmware/protection.py under MicroPython with the fake clock: voltage trip and stable
restore timing, and the combined per-tick protection step under heap_lock."""
from pathlib import Path

MPY = Path(__file__).resolve().parent / "mpy"


def test_voltage_and_combined_step(mpy):
    res = mpy(str(MPY / "protection_cases.py"), heap="256k")
    assert res.result["ok"], res.result["failures"]
    assert res.result["checks"] >= 25
