"""tools/under_load.py (`make test-under-load`): the burners run beside the command, runs stop at
the first failure, and the exit status says so."""
import json
import subprocess
import sys
from pathlib import Path

TOOL = str(Path(__file__).resolve().parents[2] / "tools" / "under_load.py")


def _run(*args):
    p = subprocess.run([sys.executable, TOOL] + list(args), capture_output=True, text=True, timeout=120)
    return p.returncode, json.loads(p.stdout.strip().splitlines()[-1])


def test_the_burners_run_beside_every_run():
    # Children of the tool while the command runs: the two burners and the command's shell.
    rc, out = _run("--burners", "2", "--runs", "2", "--", "sh", "-c",
                   'test "$(ps --no-headers --ppid $PPID | wc -l)" -ge 3')
    assert (rc, out["runs"], out["passed"], out["burners"]) == (0, 2, 2, 2), out


def test_stops_at_the_first_failing_run():
    rc, out = _run("--burners", "1", "--runs", "3", "--", "sh", "-c", "exit 7")
    assert (rc, out["runs"], out["passed"], out["each"][0]["status"]) == (7, 1, 0, 7), out
