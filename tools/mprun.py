"""Run code under the MicroPython unix port, the way host tests need it.

    from mprun import run_mpy
    r = run_mpy("host_tests/x/check_foo.py", args=["--fast"])
    r.returncode, r.stdout, r.stderr, r.result   # result: last JSON line or None

Two runtimes, chosen by $PM_RUNTIME (the test suite sets it per test):
    micropython     the 64-bit unix port from PyPI (the venv's `micropython`); modules are
                    compiled from source into the heap. Search path (first entry wins):
                    firmware : boards : .deps/mplib : host_tests/mpy_lib : .frozen
    micropython32   the 32-bit build with the firmware frozen in (tools/build_mp32.py): the
                    ESP32's small-int range and object layout, bytecode outside the heap.
                    Search path: .frozen first, then the same folders (test helpers).
The working directory is the repository root.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional

REPO = Path(__file__).resolve().parent.parent
MICROPYPATH_DIRS = ("firmware", "boards", ".deps/mplib", "host_tests/mpy_lib")
RUNTIMES = ("micropython", "micropython32")
MP32 = REPO / ".deps" / "mp32" / "micropython"  # made by tools/build_mp32.py (make mp32)
# The ESP32 port stand-ins (machine, network, esp32, time): on a run's path only when it asks.
ESP32PORT = {"micropython": str(REPO / "boards" / "esp32port"), "micropython32": ".frozen/esp32port"}


class MpyNotFound(RuntimeError):
    pass


class MpyTimeout(RuntimeError):
    pass


@dataclass
class MpyResult:
    cmd: List[str]
    returncode: int
    stdout: str
    stderr: str
    result: Optional[Any] = field(default=None)

    @property
    def ok(self):
        return self.returncode == 0

    def describe(self):
        """Human-readable dump for failure messages."""
        return "command: %s\nexit status: %s\n--- stdout ---\n%s\n--- stderr ---\n%s" % (
            " ".join(self.cmd), self.returncode, self.stdout.rstrip(), self.stderr.rstrip())


# Heap for running the whole app on a sim board under the 64-bit unix port: module bytecode
# (frozen into flash on a device) and 8-byte object slots make it far larger than on the ESP32;
# bench/minheap.py measures the real minimum.
APP_HEAP = "512k"


def runtime():
    """The runtime in force: $PM_RUNTIME, default micropython (64-bit)."""
    rt = os.environ.get("PM_RUNTIME") or "micropython"
    if rt not in RUNTIMES:
        raise MpyNotFound("PM_RUNTIME=%r: expected one of %s" % (rt, ", ".join(RUNTIMES)))
    return rt


def mpy_path(rt=None):
    """Path of the `micropython` binary of runtime rt (default: runtime()). 64-bit: $MICROPYTHON,
    this venv, the repo .venv, then PATH; 32-bit: .deps/mp32/micropython."""
    if (rt or runtime()) == "micropython32":
        if MP32.is_file():
            return str(MP32)
        raise MpyNotFound("%s not found: run `make mp32` (tools/build_mp32.py)" % MP32.relative_to(REPO))
    candidates = [
        os.environ.get("MICROPYTHON"),
        str(Path(sys.executable).parent / "micropython"),
        str(REPO / ".venv" / "bin" / "micropython"),
        shutil.which("micropython"),
    ]
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    raise MpyNotFound(
        "micropython not found (looked in $MICROPYTHON, the venv and PATH); run `make venv`"
    )


def micropypath(rt=None, esp32=False):
    """MICROPYPATH for runtime rt; esp32=True puts the ESP32 port stand-ins first."""
    rt = rt or runtime()
    dirs = [str(REPO / d) for d in MICROPYPATH_DIRS]
    path = [".frozen"] + dirs if rt == "micropython32" else dirs + [".frozen"]
    return ":".join(([ESP32PORT[rt]] if esp32 else []) + path)


def parse_result(stdout):
    """The JSON object on the last stdout line that starts with '{', or None."""
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def _is_path(script):
    if isinstance(script, Path):
        return True
    return "\n" not in script and script.strip().endswith(".py")


def run_mpy(script, args=(), heap="64k", timeout=60, env=None, stdin=None, esp32=False):
    """Run `script` (a Path, a '*.py' path string, or source code) under MicroPython.

    Relative paths are taken from the repository root. Source code is written to a
    temporary file first, so tracebacks carry line numbers. `stdin` may be str or
    bytes; by default stdin is empty. Raises MpyTimeout after `timeout` seconds.
    """
    with tempfile.TemporaryDirectory(prefix="mprun-") as tmp:
        if _is_path(script):
            path = Path(script)
            if not path.is_absolute():
                path = REPO / path
            if not path.is_file():
                raise FileNotFoundError("MicroPython script not found: %s" % path)
        else:
            path = Path(tmp) / "snippet.py"
            path.write_text(script)
        cmd = [mpy_path(), "-X", "heapsize=%s" % heap, str(path)] + [str(a) for a in args]
        full_env = dict(os.environ)
        full_env["MICROPYPATH"] = micropypath(esp32=esp32)
        full_env.update(env or {})
        if isinstance(stdin, str):
            stdin = stdin.encode()
        try:
            proc = subprocess.run(
                cmd,
                cwd=REPO,
                env=full_env,
                input=stdin if stdin is not None else b"",
                capture_output=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as e:
            out = (e.stdout or b"").decode(errors="replace")
            err = (e.stderr or b"").decode(errors="replace")
            raise MpyTimeout(
                "MicroPython timed out after %ss: %s\n--- stdout ---\n%s\n--- stderr ---\n%s"
                % (timeout, " ".join(cmd), out, err)
            ) from None
    stdout = proc.stdout.decode(errors="replace")
    return MpyResult(cmd, proc.returncode, stdout, proc.stderr.decode(errors="replace"),
                     parse_result(stdout))
