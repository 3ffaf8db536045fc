"""`make sim` end to end: MicroPython meter + Mosquitto + backend stand-in, and its input checks."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

import mpbroker

USES_MICROPYTHON = True  # runs the firmware under both runtimes (conftest)

REPO = Path(__file__).resolve().parents[2]
SIM = [sys.executable, str(REPO / "tools" / "sim.py")]


def run_sim(*args):
    return subprocess.run(SIM + list(args), capture_output=True, text=True, cwd=REPO, timeout=300)


def test_sim_full_cycle_with_a_real_broker(tmp_path):
    screens = tmp_path / "screens"
    p = run_sim("--hours", "48", "--seed", "1", "--screens", str(screens))  # reaches the first exhaustion
    assert p.returncode == 0, p.stdout + p.stderr
    lines = p.stdout.strip().splitlines()
    s = json.loads(lines[-1])
    hourly = [ln for ln in lines if ln.startswith("hour ")]
    assert len(hourly) == 48
    for key in ("board", "sim_hours", "energy_wh", "truth_wh", "charged_minor", "balance_minor",
                "topups_applied", "relay", "disconnects", "mqtt_out", "heap_peak"):
        assert key in s, key
    assert s["invariants_ok"] is True
    # Independent re-check of the energy: the metered total is the truth floored to whole chip counts.
    lsb_mj = 3600000000 // (s["meter_constant"] * 10)
    metered_mj = s["energy_wh"] * 3600000 + s["energy_rem_counts"] * 3600000 // s["meter_constant"]
    assert 0 <= s["truth_mj"] - metered_mj < lsb_mj
    # The customer typed the token the backend sent when the supply went off, and confirmed the
    # reconnection on the keypad; later top-ups came over MQTT.
    assert s["tokens_keyed"] == s["tokens_accepted"] == s["tokens_sent"] >= 1
    assert s["topups_acked"] >= 1 and s["topups_applied"] == s["topups_acked"] + s["tokens_accepted"]
    assert s["disconnects"] >= 1 and s["reconnects"] >= 1
    assert s["mqtt_out"] > 30
    assert s["balance_minor"] == s["topped_up_minor"] - s["charged_minor"]  # opening balance counts as credited
    # SCREENS: each distinct screen the customer saw, as PNG, and a contact sheet of them.
    index = [json.loads(x) for x in (screens / "screens.jsonl").read_text().splitlines()]
    assert len(index) == s["screens_written"] and 10 <= len(index) <= 120
    assert len(list(screens.glob("screen-*.png"))) == len(index)
    assert (screens / "contact-sheet.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    seen = "\n".join("\n".join(x["text"]) for x in index)
    for what in ("ENTER TOKEN", "ACCEPTED", "No credit", "Press D/button", "SUPPLY RESTORED", "CREDIT"):
        assert what in seen, what


def test_sim_unknown_board_is_one_clear_line():
    p = run_sim("--board", "sim-nope")
    assert p.returncode == 2
    assert p.stderr.strip().count("\n") == 0
    assert "unknown board 'sim-nope'" in p.stderr
    assert "Traceback" not in p.stderr + p.stdout


def test_sim_bad_hours_is_one_clear_line():
    for bad in ("abc", "0", "-3", "1.5", "99999"):
        p = run_sim("--hours", bad)
        assert p.returncode == 2, bad
        assert "hours must be a whole number" in p.stderr
        assert "Traceback" not in p.stderr + p.stdout


def test_sim_bad_broker_is_one_clear_line():
    p = run_sim("--broker", "nohostport")
    assert p.returncode == 2
    assert "BROKER must be host:port" in p.stderr


@pytest.mark.parametrize("args,msg", [
    (("--broker", "127.0.0.1:%d" % mpbroker.free_port()), "cannot reach the broker"),  # nothing listens
    (("--broker", "127.0.0.1:99999"), "BROKER must be host:port (port 1..65535)"),
    (("--board", "sim-powercut"), "unknown board 'sim-powercut'"),  # the power-cut harness's board
    (("--seed", "x"), "seed must be a whole number"),
])
def test_sim_bad_inputs_are_one_clear_line(args, msg):
    # Issue 20: an unreachable broker gave a traceback, and the sim's own error message offered
    # sim-powercut, a board only the power-cut harness can run.
    p = run_sim(*args)
    assert p.returncode == 2 and msg in p.stderr, p.stderr
    assert p.stderr.strip().count("\n") == 0 and "Traceback" not in p.stderr + p.stdout
    if args[0] == "--board":
        assert "sim-powercut" not in p.stderr.split("simulated boards:")[1]
