"""Lets firmware modules and emulators import under CPython: a stand-in `micropython` module
and the MicroPython search path (firmware, boards, host_tests/mpy_lib)."""
import sys
import types
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def install():
    if "micropython" not in sys.modules:
        m = types.ModuleType("micropython")
        m.const = lambda x: x
        sys.modules["micropython"] = m
    for d in ("firmware", "boards", "host_tests/mpy_lib"):
        p = str(REPO / d)
        if p not in sys.path:
            sys.path.insert(0, p)
