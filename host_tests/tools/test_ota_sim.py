"""tools/ota_sim.py (`make ota-sim`): firmware updates with a power cut at every flash write, forged
and old releases, and the harness's ability to fail (firmware mutated three ways)."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import mprun

USES_MICROPYTHON = True  # runs the firmware under both runtimes (conftest)

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))


def test_quick_sweep_updates_rolls_back_and_refuses():
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "ota_sim.py"), "--quick", "--jobs", "2"],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list(out)[:8] == ["updates_ok", "cut_points", "bricked", "state_lost", "rolled_back", "forged_accepted",
                             "downgrade_accepted", "verify_ms"]
    assert out["ok"] is True
    assert out["bricked"] == out["state_lost"] == out["forged_accepted"] == out["downgrade_accepted"] == 0
    assert out["cut_points"] >= 60 and out["updates_ok"] >= 30
    assert out["rolled_back"] >= 30  # every broken-image run, and good ones cut during their trial
    assert out["ops_good"] >= 80 and out["ops_broken"] > out["ops_good"]  # the broken one boots twice more
    assert 0 < out["verify_ms"] < 1000
    assert "truncated=12" in proc.stdout and "forged=bad_signature" in proc.stdout


def _mutated(tmp_path, module, old, new):
    fw = tmp_path / "firmware"
    shutil.copytree(REPO / "firmware", fw)
    src = (fw / module).read_text()
    assert src.count(old) == 1, old
    (fw / module).write_text(src.replace(old, new))
    rt = mprun.runtime()
    return ":".join([str(fw), mprun.ESP32PORT[rt]] + [str(REPO / d) for d in mprun.MICROPYPATH_DIRS[1:]]
                    + [".frozen"])


def _plan(tmp_path):
    import ota_sim
    work = tmp_path / "work"
    work.mkdir()
    return ota_sim.make_plan(work)[0]


def test_sweep_catches_an_image_kept_without_its_trial(tmp_path, mpy):
    """A firmware that marks a new image valid without watching it keeps the broken image."""
    path = _mutated(tmp_path, "ota.py", "        ok = (not m.foreign", "        ok = True or (not m.foreign")
    res = mpy("tools/ota_sweep_mp.py", _plan(tmp_path), "dry", "broken", 0, 0, 1, heap="4m", check=False,
              timeout=600, env={"MICROPYPATH": path})
    assert res.result is not None, res.describe()
    assert res.result["failed_runs"] == 1, res.stdout[-3000:]
    assert "outcome ota_done, expected ota_rolled_back" in res.stdout  # the broken image was kept


def test_sweep_catches_an_outcome_reported_after_the_job_is_cleared(tmp_path, mpy):
    """A firmware that forgets the job before its ota_done event is on flash loses the outcome when
    the power goes in between: the sweep must see it."""
    path = _mutated(tmp_path, "ota.py", "        m.emit(code, arg)\n        m.sync.forward_events(m.events)\n",
                    "        m.emit(code, arg)\n")
    plan = _plan(tmp_path)
    dry = mpy("tools/ota_sweep_mp.py", plan, "dry", "good", 0, 0, 1, heap="4m", timeout=600,
              env={"MICROPYPATH": path}).result
    # The window where it shows: the last flash operations of the update (its final commits).
    res = mpy("tools/ota_sweep_mp.py", plan, "cut", "good", dry["ops"] - 30, dry["ops"], 1, heap="4m",
              check=False, timeout=900, env={"MICROPYPATH": path})
    assert res.result is not None, res.describe()
    assert res.result["failed_runs"] >= 1, res.stdout[-3000:]


def test_checks_catch_a_verifier_that_takes_anything(tmp_path, mpy):
    path = _mutated(tmp_path, "rsaverify.py", "    return diff == 0\n", "    return True\n")
    res = mpy("tools/ota_sweep_mp.py", _plan(tmp_path), "checks", "good", 0, 0, 1, heap="4m", check=False,
              timeout=600, env={"MICROPYPATH": path})
    assert res.result is not None, res.describe()
    # The tampered manifest is taken and booted; the rogue key's is still refused by its key id.
    assert res.result["forged_accepted"] >= 1, res.stdout[-3000:]
    assert "tampered: the meter switched to it" in res.stdout
