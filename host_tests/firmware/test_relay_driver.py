"""firmware/relay_driver.py under MicroPython with the fake clock and SimRelay: dwell,
delays, minimum actuation voltage, welded/bypass and no-close feedback, re-drive at
60/120/180 s then fault, and a heap-locked step."""
from pathlib import Path

MPY = Path(__file__).resolve().parent / "mpy"


def test_driver_feedback_redrive_and_no_alloc(mpy):
    res = mpy(str(MPY / "relay_driver_cases.py"), heap="256k")
    assert res.result["ok"], res.result["failures"]
    assert res.result["checks"] >= 30
