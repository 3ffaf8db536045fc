"""tools/powercut.py: the power-cut / I/O-error / full-disk sweep (MicroPython under a CPython driver)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import mprun

USES_MICROPYTHON = True  # runs the firmware under both runtimes (conftest)

REPO = Path(__file__).resolve().parents[2]


def test_quick_sweep_passes():
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "powercut.py"), "--quick", "--jobs", "2"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert out["ok"] is True
    assert out["cut_points"] >= 50
    assert out["erases_cut"] >= 1
    assert out["io_error_runs"] >= 10
    assert out["full_runs"] >= 1
    assert out["log_records_checked"] > 0
    for k in ("lost", "applied_twice", "unreadable", "relay_mismatch", "record_mismatch", "crashes",
              "log_damaged"):
        assert out[k] == 0, k
    assert "power cut at program/erase N" in proc.stdout


def test_quick_sweep_passes_on_a_stock_image_root_file_system():
    """The ESP32 board's fallback without a "meter" partition: /data on the root file system with
    littlefs' default 32-byte sizes, where the record is not inline and every commit allocates a
    block. Nothing acknowledged may be lost there either."""
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "powercut.py"), "--quick", "--jobs", "2",
                           "--geometry", "root"], cwd=REPO, capture_output=True, text=True, timeout=300)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert out["ok"] is True and out["geometry"] == "root"
    assert out["cut_points"] >= 50 and out["erases_cut"] >= 1 and out["full_runs"] >= 1
    for k in ("lost", "applied_twice", "unreadable", "relay_mismatch", "record_mismatch", "crashes",
              "log_damaged"):
        assert out[k] == 0, k


def test_sweep_catches_an_ack_before_commit(tmp_path, mpy):
    """The harness must be able to fail: a firmware that acknowledges a top-up before committing
    it loses acknowledged top-ups when the power goes during that commit."""
    fw = tmp_path / "firmware"
    shutil.copytree(REPO / "firmware", fw)
    app = (fw / "app.py").read_text()
    needle = "        committed = self.commit()\n"  # on_message: the MQTT top-up path
    assert app.count(needle) == 1
    (fw / "app.py").write_text(app.replace(needle, "        self.sync.reply(cid, RESULTS[result], self)\n" + needle))
    path = ":".join([str(fw)] + [str(REPO / d) for d in mprun.MICROPYPATH_DIRS[1:]] + [".frozen"])
    res = mpy("tools/powercut_mp.py", "cut", 1, 1500, 11, heap="8m", check=False, env={"MICROPYPATH": path})
    assert res.result is not None, res.describe()
    assert res.result["lost"] > 0, res.stdout[-2000:]
    assert res.returncode == 0  # the MicroPython side reports; tools/powercut.py turns it into the exit status


def test_scenario_is_repeatable(mpy):
    """Every run of the scenario is the same (seeded reconnect delays), so a cut point N names
    the same write in the dry run and in the sweep, and a failure can be replayed."""
    runs = [mpy("tools/powercut_mp.py", "dry", 0, 0, 1, heap="8m").result for _ in range(3)]
    for r in runs:
        assert r["failed_runs"] == 0
    keys = ("writes", "ops", "energy_wh", "bytes_programmed", "topped_up")
    assert len({tuple(r[k] for k in keys) for r in runs}) == 1, runs
