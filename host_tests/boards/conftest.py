"""Firmware modules and emulators are importable from CPython tests here (see cpython_shim)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cpython_shim import install  # noqa: E402

install()
