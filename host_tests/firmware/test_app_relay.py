"""The relay through firmware/app.py on the simulated board (MicroPython): a power cut at
every step returns to the last committed intent; relay command ops and their rate limit.
Plus a source check that nothing in the firmware reboots the board (e.g. on network loss)."""
import re
from pathlib import Path

MPY = Path(__file__).resolve().parent / "mpy"
REPO = Path(__file__).resolve().parents[2]


def test_power_cut_at_every_step(mpy, tmp_path):
    res = mpy(str(MPY / "app_relay_powercut.py"), str(tmp_path / "flash.img"), heap="512k", timeout=120)
    assert res.result["ok"], res.result["failures"]
    assert res.result["steps"] == 23
    assert res.result["trips"] >= 5  # the overload steps really tripped


def test_firmware_never_reboots_the_board():
    bad = []
    for p in sorted((REPO / "firmware").glob("*.py")):
        for n, line in enumerate(p.read_text().splitlines(), 1):
            if re.search(r"machine\.(soft_)?reset\s*\(|import\s.*\breset\b|deepsleep\s*\(", line):
                bad.append("%s:%d: %s" % (p.name, n, line.strip()))
    assert not bad, bad
