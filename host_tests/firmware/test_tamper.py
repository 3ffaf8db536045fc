"""firmware/tamper.py under MicroPython: debounce, latch, events, optional disconnect, clear."""
from pathlib import Path

MPY = Path(__file__).resolve().parent / "mpy"


def test_tamper_inputs(mpy):
    res = mpy(str(MPY / "tamper_cases.py"), heap="256k")
    assert res.result["ok"], res.result["failures"]
    assert res.result["checks"] >= 15
