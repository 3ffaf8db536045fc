"""`make demo`: a month of a simulated meter with the headend service, its reminders, the web page
and the month's bill, end to end (tools/demo.py)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.micropython
@pytest.mark.runtimes("micropython32")  # the month runs on the 32-bit build with the firmware frozen in
def test_demo_ends_with_every_check_true(tmp_path):
    p = subprocess.run([sys.executable, str(REPO / "tools" / "demo.py"), "--work", str(tmp_path)],
                       capture_output=True, text=True, cwd=REPO, timeout=3600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    r = json.loads(p.stdout.strip().splitlines()[-1])
    # The low-credit event: one notice, one e-mail, one text message; nothing else was due.
    assert r["low_credit_notices"] == 1 and r["emails"] == r["webhooks"] == r["notices"] == 1
    assert r["bills"] == 1 and r["bill_matches_meter"] is True and r["web_balance_ok"] is True
    # The three figures agree and are not trivially zero.
    c = r["bill_check"]
    assert c["bill"] == c["billreplay"] == c["meter"] > 0 and c["bill_wh"] == c["replay_wh"] == c["meter_wh"] > 0
    assert c["pdf"] is True
    assert r["uplinks_stored"] == r["meter_last_seq"] > 0 and r["forged"] == 0
    html = (tmp_path / "bill-MTR-DEMO-2026-01.html").read_text()
    assert "Amina Njoroge" in html


def test_demo_refuses_bad_arguments():
    p = subprocess.run([sys.executable, str(REPO / "tools" / "demo.py"), "--timeout", "0"],
                       capture_output=True, text=True, cwd=REPO, timeout=60)
    assert p.returncode == 2 and "timeout" in p.stderr and len(p.stderr.strip().splitlines()) == 1
