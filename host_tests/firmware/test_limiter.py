"""firmware/limiter.py under MicroPython with the fake clock: over-threshold duration, retry,
latch after too many trips in the window, cancel by customer or backend, restore after a
power cut, and a heap-locked step."""
from pathlib import Path

MPY = Path(__file__).resolve().parent / "mpy"


def test_limiter_timing_latch_and_cancel(mpy):
    res = mpy(str(MPY / "limiter_cases.py"), heap="256k")
    assert res.result["ok"], res.result["failures"]
    assert res.result["checks"] >= 30
