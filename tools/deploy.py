#!/usr/bin/env python3
"""Deploy the firmware to a board over USB serial with mpremote (see docs/deploy.md).

    python tools/deploy.py --port /dev/ttyUSB0 --board esp32-atm90e26 --meter MTR-0001

1. compiles firmware/ and boards/ with mpy-cross (tools/build.py) into build/;
2. stages what the device needs in build/deploy/<meter>/: the firmware as .mpy, main.py as
   source (MicroPython only runs a main.py), the board module, /board.txt naming it, and the
   meter's /secrets.json from the headend's provisioning (`headend provision`);
3. removes stale .py copies on the device that would shadow the new .mpy files;
4. copies with `mpremote fs cp`, which compares SHA-256 on the device and skips unchanged files;
5. resets the board.
--frozen is for a board running the frozen meter image (boards/esp32_meter): the firmware and the
boards are in flash already, so only /board.txt and /secrets.json are copied, and every firmware
or board module left on the file system by an earlier .mpy deploy is removed (the file system
comes before .frozen on sys.path: a stale app.mpy would shadow the frozen app).
--dry-run prints the mpremote command lines instead of running them; --stage-only DIR stages the
files into DIR and stops there (no board needed: tools/esp32_host.py boots them on the host).
"""
import argparse
import ast
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HOST_ONLY = {"main"}  # shipped as source instead


class DeployError(Exception):
    pass


def real_boards():
    """Board names of the ESP32 board modules (boards/esp32_*.py: the sim boards and the freeze
    manifests are not boards)."""
    return sorted(p.stem.replace("_", "-") for p in (REPO / "boards").glob("esp32_*.py"))


def device_modules():
    """Module names a deploy may have put on the device's file system: the firmware's and the
    real boards'."""
    return sorted({p.stem for p in (REPO / "firmware").glob("*.py")} |
                  {p.stem for p in (REPO / "boards").glob("esp32_*.py")})


def default_home():
    return os.environ.get("PM_HEADEND_HOME", str(Path.home() / ".pm-headend"))


def find_mpremote():
    local = Path(sys.executable).parent / "mpremote"
    if local.is_file():
        return str(local)
    found = shutil.which("mpremote")
    if not found:
        raise DeployError("mpremote not found; run `make venv`")
    return found


def check_args(a):
    if not a.port and not getattr(a, "stage_only", None):
        raise DeployError("PORT is required, e.g. make deploy PORT=/dev/ttyUSB0 BOARD=esp32-atm90e26 METER=MTR-0001")
    if a.board not in real_boards():
        raise DeployError("BOARD must be a real board (%s), got %r" % (", ".join(real_boards()), a.board))
    if not a.meter:
        raise DeployError("METER is required: the meter id given to `headend provision`")
    secrets = Path(a.home) / "deploy" / a.meter / "secrets.json"
    if not secrets.is_file():
        raise DeployError("no secrets for meter %r in %s: run `python tools/headend.py provision %s --board %s` first" % (
            a.meter, Path(a.home) / "deploy", a.meter, a.board))
    # The meter was provisioned for one board (its chip, pins, calibration): another board's
    # firmware would boot with the wrong driver and the wrong configuration.
    try:
        provisioned = (secrets.parent / "board.txt").read_text().strip()
    except OSError:
        provisioned = None
    if provisioned and provisioned != a.board:
        raise DeployError("meter %s was provisioned for BOARD=%s, not %s: deploy with BOARD=%s (or provision it "
                          "again with --force --board %s)" % (a.meter, provisioned, a.board, provisioned, a.board))
    return secrets


def board_closure(board):
    """Module names of the board's file and of every other board file it imports, in the order
    found: esp32_atm90e32 and esp32_ade7953 build on esp32_atm90e26, and a device without it
    fails at boot with an ImportError."""
    todo = [board.replace("-", "_")]
    found = []
    while todo:
        name = todo.pop(0)
        if name in found:
            continue
        found.append(name)
        tree = ast.parse((REPO / "boards" / (name + ".py")).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module]
            else:
                continue
            todo += [n for n in names if (REPO / "boards" / (n + ".py")).is_file()]
    return found


def build():
    p = subprocess.run([sys.executable, str(REPO / "tools" / "build.py")], capture_output=True, text=True)
    if p.returncode != 0:
        raise DeployError("mpy-cross build failed:\n" + p.stderr)


def stage(a, secrets, out=None):
    """Lay out the device's root file system in `out` (default build/deploy/<meter>); returns
    (stage dir, device file names). For a frozen image only the meter's two files."""
    out = Path(out) if out else REPO / "build" / "deploy" / a.meter
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    if getattr(a, "frozen", False):
        return _stage_own(a, secrets, out)
    fw = REPO / "build" / "firmware"
    mpys = sorted(p for p in fw.glob("*.mpy") if p.stem not in HOST_ONLY)
    if not mpys:
        raise DeployError("nothing compiled in %s" % fw)
    for p in mpys:
        shutil.copy2(p, out / p.name)
    for mod in board_closure(a.board):
        shutil.copy2(REPO / "build" / "boards" / (mod + ".mpy"), out / (mod + ".mpy"))
    shutil.copy2(REPO / "firmware" / "main.py", out / "main.py")
    return _stage_own(a, secrets, out)


def _stage_own(a, secrets, out):
    """The files that make this meter this meter: which board it is and its secrets."""
    (out / "board.txt").write_text(a.board + "\n")
    shutil.copy2(secrets, out / "secrets.json")
    os.chmod(out / "secrets.json", 0o600)
    return out, sorted(p.name for p in out.iterdir())


def stale_files(a, names):
    """Device files to remove before copying: .py copies that would shadow the new .mpy files, or
    for a frozen image every firmware and board module (and main.py) on the file system."""
    if getattr(a, "frozen", False):
        return sorted([m + ext for m in device_modules() for ext in (".py", ".mpy")])
    return sorted(n[:-4] + ".py" for n in names if n.endswith(".mpy"))


def commands(a, out, names):
    mp = [a.mpremote, "connect", a.port]
    stale = stale_files(a, names)
    rm_stale = ("import os\nfor f in %r:\n try:\n  os.remove(f)\n except OSError:\n  pass" % stale)
    return [
        mp + ["exec", rm_stale],
        # One cp for everything: mpremote hashes each file on the device and skips the unchanged ones.
        mp + ["fs", "cp"] + [str(out / n) for n in names] + [":"],
        mp + ["reset"],
    ]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", default="")
    ap.add_argument("--board", default="esp32-atm90e26")
    ap.add_argument("--meter", default="")
    ap.add_argument("--home", default=default_home(), help="headend home holding deploy/<meter>/secrets.json")
    ap.add_argument("--mpremote", default=None)
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--stage-only", metavar="DIR", help="stage the device's files into DIR and stop")
    ap.add_argument("--frozen", action="store_true",
                    help="the board runs the frozen meter image: copy only board.txt and secrets.json")
    a = ap.parse_args(argv)
    try:
        secrets = check_args(a)
        if a.stage_only:
            if not a.frozen:
                build()
            out, names = stage(a, secrets, a.stage_only)
            print("deploy: %d files for %s (board %s) staged in %s" % (len(names), a.meter, a.board, out))
            return 0
        a.mpremote = a.mpremote or find_mpremote()
        if not a.frozen:
            build()
        out, names = stage(a, secrets)
        cmds = commands(a, out, names)
        print("deploy: %d files for %s on %s (board %s%s), staged in %s" % (
            len(names), a.meter, a.port, a.board, ", frozen image" if a.frozen else "", os.path.relpath(out)))
        for c in cmds:
            if a.dry_run:
                print(" ".join(shlex.quote(x) for x in c))
                continue
            p = subprocess.run(c)
            if p.returncode != 0:
                raise DeployError("`%s` failed (exit %d); is the board on %s and not held by another program?" % (
                    " ".join(c[:4]), p.returncode, a.port))
        if not a.dry_run:
            print("deploy: done; `make repl PORT=%s` to watch it boot" % a.port)
        return 0
    except DeployError as e:
        print("deploy: error: %s" % e, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
