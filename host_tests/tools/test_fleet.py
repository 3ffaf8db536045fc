"""tools/fleet.py: a small fleet end to end, and the invariant checks on made-up outcomes."""
import pytest
import json
import subprocess
import sys
import types
from pathlib import Path

import fleet

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.micropython  # runs on both runtimes (conftest)
def test_small_fleet_keeps_every_invariant_through_a_broker_restart():
    p = subprocess.run([sys.executable, str(REPO / "tools" / "fleet.py"), "--meters", "3", "--hours", "6",
                        "--pace-ms", "20", "--seed", "3"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    r = json.loads(p.stdout.strip().splitlines()[-1])
    for k in ("meters", "topups_sent", "topups_acked", "applied_exactly_once", "telemetry_gaps",
              "ledger_mismatches", "broker_restarts", "peak_connects_per_s"):
        assert k in r, k
    assert r["meters"] == 3 and r["broker_restarts"] == 1
    assert r["topups_sent"] > 0 and r["topups_acked"] == r["topups_sent"]
    assert r["applied_exactly_once"] is True and r["telemetry_gaps"] == 0 and r["ledger_mismatches"] == 0
    assert r["broker_crashes"] == 1 and r["backfill_lost"] == 0
    for k in ("broker", "nodes", "node_kills", "real_s", "cpu_s_per_meter_day", "topup_ms_p99"):
        assert k in r, k
    assert r["uplink_messages"] > 3 * 6 * 3  # at least the telemetry of 6 simulated hours per meter
    assert r["peak_connects_per_s"] >= 1


def test_small_fleet_on_a_rabbitmq_cluster_rides_out_a_node_kill():
    """The same fleet on three RabbitMQ nodes behind a TCP front; the busiest node is restarted,
    then killed: its meters reconnect to the survivors, AMQP workers share the uplink."""
    import os
    env = dict(os.environ, PM_RUNTIME="micropython32")
    p = subprocess.run([sys.executable, str(REPO / "tools" / "fleet.py"), "--broker", "rabbitmq", "--meters", "4",
                        "--hours", "8", "--pace-ms", "40", "--seed", "5", "--cuts", "0.25"],
                       capture_output=True, text=True, cwd=REPO, timeout=900, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["broker"] == "rabbitmq" and r["nodes"] == 3 and r["node_kills"] == 1 and r["broker_restarts"] == 1
    assert r["topups_sent"] > 0 and r["topups_acked"] == r["topups_sent"] and r["applied_exactly_once"] is True
    assert r["telemetry_gaps"] == 0 and r["ledger_mismatches"] == 0 and r["meter_power_cuts"] == 1
    assert r["invariants_ok"] is True


def _outcome(tmp_path, summary, acked_result="applied", seqs=None):
    b = fleet.MeterBook("fl-0001", b"k" * 32)
    b.sent = {1: ("topup", 500)}
    b.acked = {1: acked_result}
    for s in (seqs if seqs is not None else range(1, 11)):
        b.fill.add(s)
    (tmp_path / "fl-0001.out").write_text("hour 1\n" + json.dumps(summary) + "\n")
    procs = {"fl-0001": types.SimpleNamespace(returncode=0)}
    a = types.SimpleNamespace(meters=1, hours=24)
    backend = types.SimpleNamespace(retries=0, duplicates_sent=0, topup_ms=[40.0])
    faults = {"broker": "mosquitto", "nodes": 1, "node_kills": 0, "broker_restarts": 1, "broker_crashes": 1,
              "meter_power_cuts": 0, "workers": 1, "cpu_s": 2.0, "peak_connects_per_s": 1}
    return fleet.report(a, {"fl-0001": b}, procs, tmp_path, backend, faults, 1.0)


GOOD = {"uplink_seq": 10, "topups_applied": 1, "topped_up_minor": fleet.OPENING + 500, "balance_minor": 700,
        "charged_minor": 100}


def test_report_passes_a_consistent_outcome(tmp_path, capsys):
    assert _outcome(tmp_path, GOOD) == 0
    r = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert r["applied_exactly_once"] is True and r["invariants_ok"] is True


def test_report_fails_a_double_applied_topup(tmp_path, capsys):
    bad = dict(GOOD, topups_applied=2, topped_up_minor=fleet.OPENING + 1000, balance_minor=1200)
    assert _outcome(tmp_path, bad) == 1
    r = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert r["applied_exactly_once"] is False and r["ledger_mismatches"] == 1


def test_report_counts_telemetry_gaps(tmp_path, capsys):
    assert _outcome(tmp_path, GOOD, seqs=[1, 2, 3, 5, 6, 7, 8, 9]) == 1
    out = capsys.readouterr().out
    assert json.loads(out.splitlines()[-1])["telemetry_gaps"] == 2  # 4 and 10 never arrived
    assert "INVARIANT BROKEN: fl-0001: 2 uplink message(s)" in out


def test_peak_connects_per_second_from_the_broker_log():
    log = ("100: New client connected from 127.0.0.1:1 as a\n100: New client connected from 127.0.0.1:2 as b\n"
           "101: New client connected from 127.0.0.1:3 as c\n101: Client c disconnected.\n")
    assert fleet.peak_connects_per_s(log) == 2
    assert fleet.peak_connects_per_s("") == 0


@pytest.mark.parametrize("args,msg", [
    (["--meters", "0"], "--meters must be 1..1000"), (["--meters", "1001"], "--meters must be 1..1000"),
    (["--cuts", "2"], "--cuts a fraction"), (["--crash-at", "1"], "--crash-at is a fraction"),
    (["--workers", "0"], "--workers must be 1..16"),
    (["--hours", "0"], "--hours 1..744"), (["--tick-s", "0"], "--tick-s 1..3600"),
    (["--pace-ms", "-1"], "--pace-ms >= 0"), (["--restart-at", "1.5"], "--restart-at is a fraction"),
    (["--restart-at", "nan"], "--restart-at is a fraction"), (["--meters", "x"], "invalid int value"),
])
def test_bad_inputs_give_one_line_and_status_2(args, msg, capsys):
    with pytest.raises(SystemExit) as e:
        fleet.main(args)
    err = capsys.readouterr().err
    assert e.value.code == 2 and msg in err and "Traceback" not in err, err
    assert [ln for ln in err.splitlines() if ln.startswith("fleet.py: error:") or "error:" in ln][0]
