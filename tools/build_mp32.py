#!/usr/bin/env python3
"""Build the host's 32-bit MicroPython with the firmware frozen in (`make mp32`).

    python tools/build_mp32.py            # -> .deps/mp32/micropython (rebuilt only when an input changed)
    python tools/build_mp32.py --print    # just print the binary's path (no build)

The unix port of MicroPython v1.28.0 is built with the variant in tools/mp32/: 32-bit
(MICROPY_FORCE_32BIT: 31-bit small ints and 4-byte object slots as on the ESP32), single-
precision floats, and tools/mp32/manifest.py frozen in (the firmware and real boards exactly as
the ESP32 image freezes them, umqtt.simple, the sim boards with their emulators and the ESP32
port stand-ins). Frozen bytecode runs from the binary, not from the heap, as it runs from an
ESP32's flash.

The MicroPython source is MICROPY_SRC: a v1.28.0 source tree or a tarball of one. Default: the
subset shipped beside this repository, ../shared/micropython/micropython-1.28.0-subset.tar.gz
(checked against its sha256). Elsewhere, point MICROPY_SRC at a checkout of the public v1.28.0
tag. gcc-multilib is installed with apt-get when it is missing and we are root.

Inputs (the source, the variant, every frozen file, the compiler) are hashed into
.deps/mp32/inputs.sha256; a build whose inputs are unchanged is skipped.
"""
import argparse
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VARIANT = REPO / "tools" / "mp32"
OUT = REPO / ".deps" / "mp32"
BINARY = OUT / "micropython"
STAMP = OUT / "inputs.sha256"
DEFAULT_SRC = REPO.parent / "shared" / "micropython" / "micropython-1.28.0-subset.tar.gz"
SUBSET_SHA256 = "85809609cfa78a0f45b4547e57692592c58eeca08f603d55d5f171c85ecd3aa4"
VERSION = "1.28.0"
# Frozen sources: what tools/mp32/manifest.py and boards/manifest_firmware.py name.
FROZEN_GLOBS = ("firmware/*.py", "boards/*.py", "boards/simhw/*.py", "boards/esp32port/*.py",
                ".deps/mplib/umqtt/simple.py", "tools/mp32/*")


class BuildError(Exception):
    pass


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def source_setting():
    return Path(os.environ.get("MICROPY_SRC") or DEFAULT_SRC)


def unpack(src):
    """The source tree to build in: src itself if it is a tree, else the tarball unpacked under .deps."""
    if src.is_dir():
        if not (src / "ports" / "unix" / "Makefile").is_file():
            raise BuildError("MICROPY_SRC=%s is not a MicroPython source tree (no ports/unix/Makefile)" % src)
        return src
    if not src.is_file():
        raise BuildError(
            "MicroPython %s source not found at %s. Set MICROPY_SRC to a v%s source tree (the public "
            "repository's v%s tag) or to a tarball of one." % (VERSION, src, VERSION, VERSION))
    digest = _sha256(src)
    if src.resolve() == DEFAULT_SRC.resolve() and digest != SUBSET_SHA256:
        raise BuildError("%s: sha256 %s, expected %s" % (src, digest, SUBSET_SHA256))
    tree = REPO / ".deps" / ("micropython-src-" + digest[:12])
    if (tree / "ports" / "unix" / "Makefile").is_file():
        return tree
    tmp = Path(tempfile.mkdtemp(prefix="mpsrc-", dir=REPO / ".deps"))
    try:
        with tarfile.open(src) as tf:
            tf.extractall(tmp, filter="data") if hasattr(tarfile, "data_filter") else tf.extractall(tmp)
        tops = [p for p in tmp.iterdir() if p.is_dir()]
        root = tops[0] if len(tops) == 1 and not (tmp / "py").is_dir() else tmp
        if not (root / "ports" / "unix" / "Makefile").is_file():
            raise BuildError("%s holds no MicroPython source tree" % src)
        root.rename(tree)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return tree


def ensure_multilib():
    """gcc must link 32-bit programs; install gcc-multilib when it cannot and we may."""
    def works():
        with tempfile.TemporaryDirectory() as d:
            c = Path(d) / "t.c"
            c.write_text("#include <stdio.h>\nint main(void){return sizeof(void*)==4?0:1;}\n")
            p = subprocess.run(["gcc", "-m32", str(c), "-lm", "-o", str(Path(d) / "t")], capture_output=True)
            return p.returncode == 0 and subprocess.run([str(Path(d) / "t")]).returncode == 0

    if shutil.which("gcc") and works():
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise BuildError("gcc cannot build 32-bit programs: install gcc-multilib (sudo apt-get install gcc-multilib)")
    print("mp32: installing gcc-multilib", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
    p = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "gcc", "gcc-multilib", "make"],
                       env=env, capture_output=True, text=True)
    if p.returncode != 0 or not works():
        raise BuildError("installing gcc-multilib failed:\n" + p.stdout[-2000:] + p.stderr[-2000:])


def inputs_digest(src):
    h = hashlib.sha256()
    h.update(str(src.resolve()).encode())
    if src.is_file():
        h.update(_sha256(src).encode())
    files = sorted({p for g in FROZEN_GLOBS for p in REPO.glob(g) if p.is_file()})
    for p in files:
        h.update(p.relative_to(REPO).as_posix().encode() + b"\0")
        h.update(p.read_bytes())
    h.update(subprocess.run(["gcc", "--version"], capture_output=True).stdout)
    return h.hexdigest()


def build(force=False):
    """Bring the binary up to date; one build at a time (parallel test sessions share .deps)."""
    (REPO / ".deps").mkdir(exist_ok=True)
    with open(REPO / ".deps" / "mp32.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build(force)


def _build(force):
    umqtt = REPO / ".deps" / "mplib" / "umqtt" / "simple.py"
    if not umqtt.is_file():
        raise BuildError("%s missing: run `make deps` (tools/fetch_umqtt.py) first" % umqtt.relative_to(REPO))
    src = source_setting()
    if not src.exists():
        unpack(src)  # raises the clear error
    ensure_multilib()
    digest = inputs_digest(src)
    if not force and BINARY.is_file() and STAMP.is_file() and STAMP.read_text().strip() == digest:
        return False
    tree = unpack(src)
    OUT.mkdir(parents=True, exist_ok=True)
    jobs = "-j%d" % max(1, os.cpu_count() or 1)
    print("mp32: building the 32-bit unix port with the firmware frozen (about 30 s the first time)", flush=True)
    # mpy-cross first, on its own: variables given to the port's make would leak into its sub-make.
    for cmd in (["make", "-C", str(tree / "mpy-cross"), jobs],
                ["make", "-C", str(tree / "ports" / "unix"), jobs, "VARIANT_DIR=%s" % VARIANT]):
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            raise BuildError("%s failed (%d):\n%s\n%s" % (" ".join(cmd[:3]), p.returncode, p.stdout[-4000:],
                                                          p.stderr[-6000:]))
    tmp = BINARY.with_suffix(".tmp")
    # The port names its build folder after the variant folder (build-mp32) and puts PROG in it.
    shutil.copy2(tree / "ports" / "unix" / ("build-" + VARIANT.name) / "micropython", tmp)
    os.replace(tmp, BINARY)
    STAMP.write_text(digest + "\n")
    return True


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--print", action="store_true", help="print the binary's path and exit")
    ap.add_argument("--force", action="store_true", help="rebuild even when the inputs are unchanged")
    a = ap.parse_args(argv)
    if a.print:
        print(BINARY)
        return 0
    try:
        built = build(a.force)
    except BuildError as e:
        print("mp32: error: %s" % e, file=sys.stderr)
        return 2
    print("mp32: %s %s" % ("built" if built else "up to date:", os.path.relpath(BINARY, REPO)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
