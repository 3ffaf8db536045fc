"""The technician's REPL on a simulated meter (`make repl-sim`): the kit of `make repl`, on a host.

    tools/repl_sim.py [--board sim-atm90e26] [--flash build/repl-sim/flash.img] [--speed 1] [--load-w 2300] [--fresh]

Runs the real firmware on a simulated board under micropython and leaves you at its REPL with
the kit imported (status(), selftest(), token(), config(), cal_read(), calibrate(...), log(),
resume(); help_() lists them), as on a meter on the bench. The meter's time runs `--speed`
times the wall clock's, so resume() meters until Ctrl-C and calibrate() waits the chip's
averaging as a device does; reference() reads the reference meter you would calibrate against
and set_load(W, pf) changes the load. The flash file (and the meter's key beside it, for
`tools/token_issue.py --key ...`) persist between runs, like a meter's; --fresh starts over.
"""
import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mprun  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def sim_boards():
    return sorted(p.stem.replace("_", "-") for p in (ROOT / "boards").glob("sim_*.py")
                  if "\nSTANDALONE = False" not in p.read_text())


def command(a):
    """The micropython command line and environment for these options (creates the key file)."""
    flash = Path(a.flash).resolve()
    flash.parent.mkdir(parents=True, exist_ok=True)
    key_file = flash.with_suffix(".key")
    if a.fresh:
        for p in (flash, key_file):
            p.unlink(missing_ok=True)
    if not key_file.exists():
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(os.urandom(32).hex() + "\n")  # one per simulated meter: no default key
    key = key_file.read_text().strip()
    cmd = [mprun.mpy_path(), "-X", "heapsize=" + mprun.APP_HEAP, "-i", str(ROOT / "tools" / "repl_sim_mp.py"),
           a.board, str(flash), str(a.speed), str(a.load_w), key]
    return cmd, dict(os.environ, MICROPYPATH=mprun.micropypath())


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--board", default="sim-atm90e26", choices=sim_boards())
    p.add_argument("--flash", default=str(ROOT / "build" / "repl-sim" / "flash.img"))
    p.add_argument("--speed", type=int, default=1, help="meter ms per wall-clock ms (0: as fast as it goes)")
    p.add_argument("--load-w", type=int, default=2300, help="the steady load, W")
    p.add_argument("--fresh", action="store_true", help="a new meter: delete the flash file and its key")
    a = p.parse_args(argv)
    if not 0 <= a.speed <= 10000:
        p.error("--speed must be 0 to 10000")
    if not 0 <= a.load_w <= 20000:
        p.error("--load-w must be 0 to 20000")
    return a


def main(argv=None):
    a = parse_args(argv)
    try:
        cmd, env = command(a)
    except mprun.MpyNotFound as e:
        print("repl_sim: error: %s" % e, file=sys.stderr)
        return 2
    os.chdir(ROOT)
    os.execve(cmd[0], cmd, env)  # the REPL takes over this terminal


if __name__ == "__main__":
    sys.exit(main())
