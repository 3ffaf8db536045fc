"""tools/powercut.py: the power-cut / I/O-error / full-disk sweep of every named scenario
(MicroPython under a CPython driver), and the harness's ability to fail: firmware mutated so that
each kind of check has something to catch."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import mprun

USES_MICROPYTHON = True  # runs the firmware under both runtimes (conftest)

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))
import powercut  # noqa: E402

_SWEEPS = {}


def _sweep(*args):
    key = (mprun.runtime(),) + args
    if key not in _SWEEPS:
        proc = subprocess.run([sys.executable, str(REPO / "tools" / "powercut.py"), "--quick", "--jobs", "2"]
                              + list(args), cwd=REPO, capture_output=True, text=True, timeout=1200)
        _SWEEPS[key] = (proc, json.loads(proc.stdout.strip().splitlines()[-1]))
    return _SWEEPS[key]


def _check_scenario(out, name):
    fig = out["scenarios"][name]
    assert fig["cut_points"] >= 20, fig
    if name != powercut.OTA:
        assert fig["erases_cut"] >= 1 and fig["io_error_runs"] >= 4 and fig["full_runs"] >= 1, fig
        assert fig["log_records_checked"] > 0
    failing = {k for k in powercut.FAIL_KEYS if fig[k]}
    assert not failing, "%s fails %s: %s" % (name, sorted(failing), fig["problems"])
    assert not fig["problems"], fig["problems"]


def test_quick_sweep_covers_every_scenario():
    proc, out = _sweep()
    assert set(out["scenarios"]) == set(powercut.ALL)
    assert out["cut_points"] >= 500 and out["erases_cut"] >= 12 and out["full_runs"] >= 12
    for line in ("power cut at program/erase N", "I/O error from operation N on", "file system full from tick N"):
        assert line in proc.stdout
    for k in ("lost", "applied_twice", "unreadable", "relay_mismatch", "record_mismatch", "log_damaged"):
        assert out[k] == sum(f[k] for f in out["scenarios"].values()), k
    assert (proc.returncode, out["ok"]) == (0, True), proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.mark.parametrize("name", powercut.ALL)
def test_quick_sweep_scenario(name):
    """Every scenario, strided: its cut points (some on erases), I/O errors and a full disk, and
    no failure but the known ones."""
    _check_scenario(_sweep()[1], name)


@pytest.mark.parametrize("name", ("topup_mqtt", "key_rotation", "record_migration"))
def test_quick_sweep_on_a_stock_image_root_file_system(name):
    """The ESP32 board's fallback without a "meter" partition: /data on the root file system with
    littlefs' default 32-byte sizes, where the record is not inline and every commit allocates a
    block. Nothing acknowledged may be lost there either."""
    proc, out = _sweep("--geometry", "root", "--scenario", "topup_mqtt", "--scenario", "key_rotation",
                       "--scenario", "record_migration")
    assert out["geometry"] == "root", proc.stdout[-2000:] + proc.stderr[-2000:]
    _check_scenario(out, name)


def _plan(tmp_path):
    return powercut.make_plan(tmp_path / "plan.json")


def _mutant(tmp_path, module, old, new):
    """MICROPYPATH with a copy of the firmware in which `old` is replaced by `new` in `module`."""
    fw = tmp_path / "firmware"
    shutil.copytree(REPO / "firmware", fw)
    src = (fw / module).read_text()
    assert src.count(old) == 1, old
    (fw / module).write_text(src.replace(old, new))
    return ":".join([str(fw)] + [str(REPO / d) for d in mprun.MICROPYPATH_DIRS[1:]] + [".frozen"])


def _run(mpy, path, plan, *args):
    res = mpy("tools/powercut_mp.py", *(args + (plan,)), heap="16m", check=False, timeout=900,
              env={"MICROPYPATH": path})
    assert res.result is not None, res.describe()
    assert res.returncode == 0  # the MicroPython side reports; tools/powercut.py turns it into the exit status
    return res


def _cut_after(mpy, tmp_path, path, scenario, what, span, first=1, count=1):
    """Cut at each of the `span` programs/erases after the clean run's marks of `what` (a command
    delivered, a token typed, a calibration saved): the counters summed over those runs."""
    plan = _plan(tmp_path)
    dry = _run(mpy, path, plan, "dry", 0, 0, 1, "meter", scenario).result
    marks = [w for op, w in dry["marks"] if op == what][first - 1:first - 1 + count]
    assert marks, dry["marks"]
    total, out = {}, ""
    for w in marks:
        res = _run(mpy, path, plan, "cut", w + 1, w + span, 1, "meter", scenario)
        out += res.stdout[-1000:]
        for k, v in res.result.items():
            if isinstance(v, int):
                total[k] = total.get(k, 0) + v
    return total, out


def test_sweep_catches_an_ack_before_commit(tmp_path, mpy):
    """A firmware that acknowledges a top-up before committing it loses acknowledged top-ups when
    the power goes during that commit."""
    needle = "            committed = self.commit()\n"  # on_message: the MQTT top-up path
    path = _mutant(tmp_path, "app.py", needle, "            self.sync.reply(cid, RESULTS[result], self)\n" + needle)
    total, out = _cut_after(mpy, tmp_path, path, "topup_mqtt", "topup", 16, count=2)
    assert total["lost"] > 0, out


def test_sweep_catches_a_top_up_journalled_twice(tmp_path, mpy):
    """The top-up journal must name each top-up once: a firmware that writes its entry twice is
    caught when the rings are read back after a reboot."""
    line = "            self._journal(cid, billing_mod.SRC_MQTT, token_mod.CREDIT, RESULTS[result], amt)\n"
    path = _mutant(tmp_path, "app.py", line, line + line)
    res = _run(mpy, path, _plan(tmp_path), "cut", 200, 600, 200, "meter", "topup_mqtt")
    assert res.result["log_damaged"] > 0, res.stdout[-2000:]


def test_sweep_catches_energy_not_committed(tmp_path, mpy):
    """A firmware that commits energy only on its time schedule (not every commit_wh) loses more
    at a cut than docs/storage.md promises."""
    path = _mutant(tmp_path, "app.py", "self._uncommitted_wh >= self.commit_wh", "self._uncommitted_wh >= 100000")
    res = _run(mpy, path, _plan(tmp_path), "cut", 100, 700, 41, "meter", "topup_mqtt")
    assert res.result["energy_lost"] > 0 and res.result["energy_lost_max_wh"] > 20, res.stdout[-2000:]


def test_sweep_catches_a_key_rotation_not_completed_at_boot(tmp_path, mpy):
    """A firmware that does not repair a rotation cut between the key store and the record (the
    new key in force, the rotating command not in the replay window) leaves the backend unable to
    get its retry answered: the meter refuses it under the old key."""
    path = _mutant(tmp_path, "remote.py", "        if ks.rot_id > c.last_id:", "        if False:")
    total, out = _cut_after(mpy, tmp_path, path, "key_rotation", "rotkey", 24)
    assert total["key_mismatch"] > 0, out


def test_sweep_catches_a_torn_calibration(tmp_path, mpy):
    """A firmware that writes the calibration straight into its file (not aside and renamed): a
    new file is visible (empty) from its open, so a cut before the close leaves a record that does
    not decode, and the meter boots on an invalid calibration."""
    path = _mutant(tmp_path, "calibration.py", "        tmp = self.path + \".new\"\n", "        tmp = self.path\n")
    src = Path(path.split(":")[0]) / "calibration.py"
    src.write_text(src.read_text().replace("        os.rename(tmp, self.path)\n", ""))
    total, out = _cut_after(mpy, tmp_path, path, "calibration_write", "cal_save", 16)
    assert total["invariant"] > 0, out


def test_sweep_catches_credit_rules_not_saved(tmp_path, mpy):
    """Credit rules applied and acknowledged but never saved: the next boot is back on the old
    rules, which the scenario's own check (the rules of the answered commands) must see."""
    path = _mutant(tmp_path, "app.py", "        os.rename(tmp, self._credit_path)\n", "        os.remove(tmp)\n")
    total, out = _cut_after(mpy, tmp_path, path, "credit_rule_change", "limits", 8, first=2)
    assert total["invariant"] > 0, out


@pytest.mark.parametrize("name", [n for n in powercut.SCENARIOS])
def test_scenario_is_repeatable(mpy, tmp_path, name):
    """Every run of a scenario is the same (seeded reconnect delays), so a cut point N names the
    same write in the dry run and in the sweep, and a failure can be replayed."""
    plan = _plan(tmp_path)
    runs = [mpy("tools/powercut_mp.py", "dry", 0, 0, 1, "meter", name, plan, heap="16m", timeout=300).result
            for _ in range(2)]
    for r in runs:
        assert r["failed_runs"] == 0, r
    keys = ("writes", "ops", "energy_wh", "bytes_programmed", "topped_up")
    assert len({tuple(r[k] for k in keys) for r in runs}) == 1, runs


def test_sweep_catches_a_tariff_in_force_not_kept(tmp_path, mpy):
    """A firmware that keeps only the scheduled tariff on flash boots on the board's tariff once a
    second one is scheduled after the first activated: the scenario's check of the tariff in force
    sees it."""
    path = _mutant(tmp_path, "app.py", "        for path in (self._active_path, self._tariff_path):\n",
                   "        for path in (self._tariff_path,):\n")
    total, out = _cut_after(mpy, tmp_path, path, "tariff_push", "tariff", 12, first=2)
    assert total["invariant"] > 0, out


def test_sweep_catches_a_rotation_retry_refused_after_a_reboot(tmp_path, mpy):
    """A firmware that, at boot, keeps the provisioned key as the one before the stored key: the
    retry of a second rotation (signed with the first rotation's key) is refused bad_mac."""
    path = _mutant(tmp_path, "remote.py", "m.commands.set_key(ks.key, ks.prev)", "m.commands.set_key(ks.key)")
    total, out = _cut_after(mpy, tmp_path, path, "key_rotation", "rotkey", 16, first=2)
    assert total["key_mismatch"] > 0, out


def test_sweep_catches_a_reformat_taken_for_a_new_meter(tmp_path, mpy):
    """A firmware that does not mark a reformat until the unknown state is committed: a cut in
    between boots an empty file system as a new meter (opening balance granted again)."""
    path = _mutant(tmp_path, "store.py",
                   "            return REFORMATTED if fsmark.pending(path, lambda: _blank(dev)) else MOUNTED\n",
                   "            return MOUNTED\n")
    res = _run(mpy, path, _plan(tmp_path), "cut", 2, 20, 3, "meter", "first_boot_garbage")
    assert res.result["applied_twice"] + res.result["invariant"] > 0, res.stdout[-2000:]
