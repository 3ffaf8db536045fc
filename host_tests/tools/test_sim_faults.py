"""tools/sim.py on every simulated board with chip faults injected: the energy invariant
(truth - metered - lost in chip within register resolution) holds, and the summary reports
the injected faults and what the firmware detected."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

USES_MICROPYTHON = True  # runs the firmware under both runtimes (conftest)

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("board", ["sim-atm90e26", "sim-atm90e32", "sim-ade7953"])
def test_sim_with_faults_keeps_energy_invariant(board):
    r = subprocess.run([sys.executable, str(REPO / "tools" / "sim.py"), "--board", board, "--hours", "4",
                        "--seed", "3", "--faults", "resets=2,bus=10,absent=1,stuck=1"],
                       capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    s = json.loads(r.stdout.strip().splitlines()[-1])
    assert s["invariants_ok"]
    expect = {"resets": 2, "flip": 5, "drop": 5, "absent": 1, "stuck": 1, "upset": 0}
    assert s["faults_injected"] == expect
    assert s["chip_resets"] == 2
    assert s["chip_faults"] >= 2 and s["chip_bus_errors"] >= 10
    assert s["truth_mj"] > 0 and s["energy_wh"] > 0


def test_bad_fault_spec_is_refused():
    r = subprocess.run([sys.executable, str(REPO / "tools" / "sim.py"), "--board", "sim-atm90e26",
                        "--hours", "1", "--faults", "meteor=1"], capture_output=True, text=True,
                       timeout=120, cwd=REPO)
    assert r.returncode != 0
    assert "--faults" in r.stdout + r.stderr


@pytest.mark.parametrize("board", ["sim-atm90e26", "sim-atm90e32", "sim-ade7953"])
def test_sim_configuration_upsets_are_caught_by_the_chips_own_check(board):
    # Each upset flips one configuration bit; the chip's own digest (ATM90E26 CS1/CS2 read-back,
    # ATM90E32 CRC status, ADE7953 CRC register) gives it away, the driver reports UPSET,
    # Metering re-initialises (chip_upset, not chip_reset) and the energy invariant holds:
    # whatever the chip mis-counted before the next poll is in lost_in_chip_mj.
    r = subprocess.run([sys.executable, str(REPO / "tools" / "sim.py"), "--board", board, "--hours", "4",
                        "--seed", "5", "--faults", "upset=6,resets=1,bus=4"],
                       capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    s = json.loads(r.stdout.strip().splitlines()[-1])
    assert s["invariants_ok"]
    assert s["faults_injected"]["upset"] == 6 and s["faults_injected"]["resets"] == 1
    assert s["chip_upsets"] == 6
    assert s["chip_resets"] == 1
    assert s["energy_wh"] > 0
