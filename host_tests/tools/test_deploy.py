"""tools/deploy.py with a stand-in mpremote that records what it is asked to do (no board needed)."""
import json
import stat
import subprocess
import sys
from pathlib import Path

import deploy
import headend

REPO = Path(__file__).resolve().parents[2]


def fake_mpremote(tmp_path, rc=0):
    log = tmp_path / "calls.jsonl"
    exe = tmp_path / "mpremote"
    exe.write_text("#!%s\nimport json, sys\nopen(%r, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\nsys.exit(%d)\n" % (
        sys.executable, str(log), rc))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return exe, log


def provision(home, meter="MTR-1", board="esp32-atm90e26"):
    assert headend.main(["--home", str(home), "--broker", "127.0.0.1:1883", "provision", meter,
                         "--board", board, "--wifi-ssid", "w", "--wifi-password", "p"]) == 0


def test_deploy_stages_compiled_firmware_secrets_and_board(tmp_path, capsys):
    provision(tmp_path)
    exe, log = fake_mpremote(tmp_path)
    rc = deploy.main(["--port", "/dev/ttyUSB9", "--board", "esp32-atm90e26", "--meter", "MTR-1",
                      "--home", str(tmp_path), "--mpremote", str(exe)])
    assert rc == 0, capsys.readouterr().err
    calls = [json.loads(x) for x in log.read_text().splitlines()]
    assert [c[:3] for c in calls] == [[ "connect", "/dev/ttyUSB9", "exec"], ["connect", "/dev/ttyUSB9", "fs"],
                                      ["connect", "/dev/ttyUSB9", "reset"]]
    cp = calls[1]
    assert cp[3] == "cp" and cp[-1] == ":" and "--force" not in cp  # mpremote skips unchanged files by hash
    names = sorted(Path(p).name for p in cp[4:-1])
    fw = sorted(p.stem for p in (REPO / "firmware").glob("*.py") if p.stem != "main")
    assert names == sorted([n + ".mpy" for n in fw] + ["esp32_atm90e26.mpy", "main.py", "board.txt", "secrets.json"])
    assert not any("sim" in n for n in names)
    staged = Path(cp[4]).parent
    secrets = json.loads((staged / "secrets.json").read_text())
    assert secrets == json.loads((tmp_path / "deploy" / "MTR-1" / "secrets.json").read_text())
    assert secrets["wifi_ssid"] == "w" and len(secrets["key"]) == 64
    assert oct((staged / "secrets.json").stat().st_mode & 0o777) == "0o600"
    assert (staged / "board.txt").read_text().strip() == "esp32-atm90e26"
    assert (staged / "app.mpy").read_bytes()[:1] == b"M"  # an .mpy file, compiled by mpy-cross
    # Stale sources that would shadow the new .mpy files are removed first.
    assert "app.py" in calls[0][3] and "esp32_atm90e26.py" in calls[0][3] and "'main.py'" not in calls[0][3]


def test_deploy_bad_arguments_are_clear(tmp_path, capsys):
    provision(tmp_path)
    for args, msg in (([], "PORT is required"),
                      (["--port", "/dev/x", "--board", "sim-atm90e26", "--meter", "MTR-1"], "BOARD must be a real board"),
                      (["--port", "/dev/x", "--board", "esp32-atm90e26"], "METER is required"),
                      (["--port", "/dev/x", "--board", "esp32-atm90e26", "--meter", "NOPE"], "run `python tools/headend.py provision NOPE"),
                      # Issue 20: a board other than the one the meter was provisioned with.
                      (["--port", "/dev/x", "--board", "esp32-atm90e32", "--meter", "MTR-1"],
                       "provisioned for BOARD=esp32-atm90e26, not esp32-atm90e32")):
        assert deploy.main(args + ["--home", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1, (args, err)
    assert not (REPO / "build" / "deploy" / "NOPE").exists()


def test_deploy_reports_a_failing_mpremote(tmp_path, capsys):
    provision(tmp_path)
    exe, log = fake_mpremote(tmp_path, rc=1)
    rc = deploy.main(["--port", "/dev/ttyUSB9", "--meter", "MTR-1", "--home", str(tmp_path), "--mpremote", str(exe)])
    assert rc == 2 and "not held by another program" in capsys.readouterr().err
    assert len(log.read_text().splitlines()) == 1  # stopped at the first failure


def test_make_deploy_dry_run(tmp_path):
    provision(tmp_path)
    p = subprocess.run(["make", "-s", "-o", ".venv/.stamp", "deploy", "PORT=/dev/ttyUSB9", "BOARD=esp32-atm90e26",
                        "METER=MTR-1", "HEADEND_HOME=%s" % tmp_path, "DRY_RUN=1"],
                       cwd=REPO, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "mpremote connect /dev/ttyUSB9 reset" in p.stdout


def test_make_repl_needs_a_port():
    p = subprocess.run(["make", "-s", "-o", ".venv/.stamp", "repl"], cwd=REPO, capture_output=True, text=True)
    assert p.returncode != 0 and "PORT is required" in p.stderr


def test_stage_only_stages_the_boards_whole_import_closure(tmp_path, capsys):
    """esp32_atm90e32 and esp32_ade7953 build on esp32_atm90e26: a device given only its own board
    module fails at boot with an ImportError, so the base board is staged with it."""
    assert deploy.board_closure("esp32-atm90e26") == ["esp32_atm90e26"]
    for board in ("esp32-atm90e32", "esp32-ade7953"):
        provision(tmp_path, "M-" + board, board)
        out = tmp_path / board
        rc = deploy.main(["--board", board, "--meter", "M-" + board, "--home", str(tmp_path), "--stage-only", str(out)])
        assert rc == 0, capsys.readouterr().err
        names = sorted(p.name for p in out.iterdir())
        assert board.replace("-", "_") + ".mpy" in names and "esp32_atm90e26.mpy" in names, names
        assert not any(n.startswith(("sim_", "esp32port", "manifest")) for n in names), names
        assert (out / "board.txt").read_text().strip() == board


def test_real_boards_are_the_esp32_board_modules():
    """The freeze manifests and sim boards live in boards/ too; neither is something to deploy."""
    assert deploy.real_boards() == ["esp32-ade7953", "esp32-atm90e26", "esp32-atm90e32"]


def test_frozen_deploy_copies_only_the_meters_own_files_and_clears_shadowing_modules(tmp_path, capsys):
    """On the frozen meter image the firmware is in flash; a firmware module left on the file system
    by an earlier .mpy deploy would come first on sys.path and shadow the frozen one."""
    provision(tmp_path)
    exe, log = fake_mpremote(tmp_path)
    rc = deploy.main(["--port", "/dev/ttyUSB9", "--board", "esp32-atm90e26", "--meter", "MTR-1",
                      "--home", str(tmp_path), "--mpremote", str(exe), "--frozen"])
    assert rc == 0, capsys.readouterr().err
    calls = [json.loads(x) for x in log.read_text().splitlines()]
    assert [c[2] for c in calls] == ["exec", "fs", "reset"]
    assert sorted(Path(p).name for p in calls[1][4:-1]) == ["board.txt", "secrets.json"]
    removed = calls[0][3]
    for name in ("app.mpy", "app.py", "main.py", "tariff.mpy", "esp32_atm90e26.mpy", "esp32_ade7953.py"):
        assert "'%s'" % name in removed, name
    assert "secrets.json" not in removed and "board.txt" not in removed


def test_make_deploy_frozen_dry_run(tmp_path):
    provision(tmp_path)
    p = subprocess.run(["make", "-s", "-o", ".venv/.stamp", "deploy", "PORT=/dev/ttyUSB9", "BOARD=esp32-atm90e26",
                        "METER=MTR-1", "HEADEND_HOME=%s" % tmp_path, "DRY_RUN=1", "FROZEN=1"],
                       cwd=REPO, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    cp = [line for line in p.stdout.splitlines() if " fs cp " in line]
    assert len(cp) == 1 and cp[0].count("/") and "app.mpy" not in cp[0] and "secrets.json" in cp[0], p.stdout
    assert "frozen image" in p.stdout
