"""tools/build_mp32.py: the 32-bit MicroPython is what the device is (31-bit small ints,
single-precision floats, the firmware frozen out of the heap), it is rebuilt only when an input
changes, and a missing MicroPython source is one clear error."""
import json
import os
import subprocess
import sys
from pathlib import Path

import build_mp32
import mprun

REPO = Path(__file__).resolve().parents[2]

PROBE = r"""
import gc, sys, json
import app, umqtt.simple, esp32_atm90e26, simhw.clock


def cost(x):  # locals only: what the addition itself allocates
    gc.collect()
    a = gc.mem_alloc()
    y = x + 1
    return gc.mem_alloc() - a


small = cost((1 << 30) - 2)  # gives 2^30 - 1, the largest small int on a 32-bit port
big = cost((1 << 30) - 1)  # gives 2^30: a big int there
print(json.dumps({"maxsize": sys.maxsize, "small_alloc": small, "big_alloc": big,
                  "float": repr(1 / 3), "app": app.__file__, "umqtt": umqtt.simple.__file__}))
"""


def _probe(rt):
    env = dict(os.environ, MICROPYPATH=mprun.micropypath(rt))
    p = subprocess.run([mprun.mpy_path(rt), "-c", PROBE], capture_output=True, text=True, env=env, cwd=REPO)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_the_32bit_build_is_device_like_and_runs_frozen_firmware(mp32_binary):
    r = _probe("micropython32")
    assert r["maxsize"] == 2 ** 31 - 1
    assert r["small_alloc"] == 0 and r["big_alloc"] > 0  # small ints end at 2^30 as on the ESP32
    assert r["float"] == "0.33333334"  # single precision, as the ESP32 port (double: 0.3333333333333333)
    # frozen: the module names carry no host path (bytecode in the binary, not compiled into the heap)
    assert r["app"] == "app.py" and r["umqtt"] == "umqtt/simple.py"


def test_the_64bit_port_is_not(mp32_binary):
    r = _probe("micropython")
    assert r["maxsize"] > 2 ** 31 and r["big_alloc"] == 0  # why the 32-bit leg exists
    assert r["app"].endswith("firmware/app.py")


def test_an_unchanged_tree_is_not_rebuilt(mp32_binary):
    build_mp32.build()  # up to date now (a source may have been edited since the session began)
    before = mp32_binary.stat().st_mtime_ns
    assert build_mp32.build() is False
    assert mp32_binary.stat().st_mtime_ns == before


def test_the_inputs_digest_covers_every_frozen_source():
    src = build_mp32.source_setting()
    d0 = build_mp32.inputs_digest(src)
    files = sorted({p for g in build_mp32.FROZEN_GLOBS for p in REPO.glob(g) if p.is_file()})
    names = {p.relative_to(REPO).as_posix() for p in files}
    assert {"firmware/app.py", "boards/esp32_atm90e26.py", "boards/simhw/clock.py",
            ".deps/mplib/umqtt/simple.py", "tools/mp32/manifest.py"} <= names
    assert build_mp32.inputs_digest(src) == d0  # deterministic


def test_missing_source_is_one_clear_error(tmp_path):
    env = dict(os.environ, MICROPY_SRC=str(tmp_path / "nowhere"))
    p = subprocess.run([sys.executable, str(REPO / "tools" / "build_mp32.py")], capture_output=True, text=True,
                       env=env)
    assert p.returncode == 2
    assert p.stderr.startswith("mp32: error: MicroPython 1.28.0 source not found at ")
    assert "MICROPY_SRC" in p.stderr and "Traceback" not in p.stderr


def test_a_folder_that_is_not_a_source_tree_is_refused(tmp_path):
    env = dict(os.environ, MICROPY_SRC=str(tmp_path))
    p = subprocess.run([sys.executable, str(REPO / "tools" / "build_mp32.py")], capture_output=True, text=True,
                       env=env)
    assert p.returncode == 2 and "is not a MicroPython source tree" in p.stderr
