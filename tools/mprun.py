"""Run code under the MicroPython unix port, the way host tests need it.

    from mprun import run_mpy
    r = run_mpy("host_tests/x/check_foo.py", args=["--fast"])
    r.returncode, r.stdout, r.stderr, r.result   # result: last JSON line or None

The module search path is fixed (first entry wins):
    firmware : boards : .deps/mplib : host_tests/mpy_lib : .frozen
and the working directory is the repository root.
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
APP_HEAP = "448k"


def mpy_path():
    """Path of the `micropython` binary: $MICROPYTHON, this venv, the repo .venv, then PATH."""
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


def micropypath():
    return ":".join([str(REPO / d) for d in MICROPYPATH_DIRS] + [".frozen"])


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


def run_mpy(script, args=(), heap="64k", timeout=60, env=None, stdin=None):
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
        full_env["MICROPYPATH"] = micropypath()
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
