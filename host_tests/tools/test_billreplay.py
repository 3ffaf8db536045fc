"""tools/billreplay.py: the firmware engine under micropython over a CSV load profile,
against bills worked out independently here."""
import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import billreplay

USES_MICROPYTHON = True  # the firmware's tariff engine runs on both runtimes (conftest)

TOOL = Path(__file__).resolve().parents[2] / "tools" / "billreplay.py"
T0 = int(datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp())


def _write(tmp_path, tariff, rows, header="timestamp,wh"):
    tp = tmp_path / "tariff.json"
    tp.write_text(json.dumps(tariff))
    cp = tmp_path / "profile.csv"
    cp.write_text("\n".join(([header] if header else []) + ["%s,%s" % r for r in rows]) + "\n")
    return tp, cp


def test_annual_tiered_year(tmp_path):
    # Residential annual blocks 2880 / 4800 kWh, +0.05 / +0.30 over 0.50 (1e-4 yuan, fen).
    tariff = {"v": 1, "kind": "block", "scale": 100, "price_per_kwh": 5000,
              "blocks": {"reset": "year", "thresholds_kwh": [2880, 4800], "adders": [0, 500, 3000]}}
    rows = []
    total = 0
    for h in range(365 * 24):
        wh = 400 + (h * 7919) % 700  # 400..1099 Wh an hour
        rows.append((T0 + 3600 * h, wh))
        total += wh
    tp, cp = _write(tmp_path, tariff, rows)
    res = billreplay.replay(tp, cp)
    b1 = min(total, 2880000)
    b2 = min(max(total - 2880000, 0), 1920000)
    b3 = max(total - 4800000, 0)
    assert res["block_wh"] == [b1, b2, b3]
    assert res["energy_wh"] == total
    assert res["charged_minor"] == (b1 * 5000 + b2 * 5500 + b3 * 8000) // 100000


def test_tou_with_iso_timestamps_and_standing_charge(tmp_path):
    # Night 22:00-07:00 local (UTC+2, fixed), 15-minute rows given with a +02:00 offset.
    tariff = {"v": 1, "kind": "tou", "scale": 10, "rates": [2500, 900], "tz": {"offset_min": 120},
              "days": [[[0, 1], [420, 0], [1320, 1]]], "weeks": [[0] * 7], "standing_per_day": 4567}
    start = datetime(2026, 6, 1, tzinfo=timezone(timedelta(hours=2)))
    rows, day_wh, night_wh = [], 0, 0
    for i in range(7 * 96):
        t = start + timedelta(minutes=15 * i)
        wh = 50 + i % 13
        rows.append((t.isoformat(timespec="seconds"), wh))
        if 7 <= t.hour < 22:
            day_wh += wh
        else:
            night_wh += wh
    tp, cp = _write(tmp_path, tariff, rows)
    res = billreplay.replay(tp, cp)
    assert res["rate_wh"] == [day_wh, night_wh]
    assert res["standing_s"] == 7 * 86400
    # One exact remainder: floor((Wh x price x 86400 + seconds x standing x 1000) / (86400 x den)).
    exact = (day_wh * 2500 + night_wh * 900) * 86400 + 7 * 86400 * 4567 * 1000
    assert res["charged_minor"] == exact // (86400 * 10000)


@pytest.mark.parametrize("rows,why", [
    ([(T0, 5), ("2026-13-01T00:00Z", 5)], "line 3: bad timestamp"),
    ([(T0, 5), (T0, 5)], "line 3: timestamps must increase"),
    ([(T0, -5)], "line 2: Wh must be"),
    ([(T0, "1.5")], "line 2: Wh must be"),
    ([], "no rows"),
])
def test_bad_profiles_are_refused_with_the_line(tmp_path, rows, why):
    tp, cp = _write(tmp_path, {"v": 1, "kind": "flat", "scale": 1, "price_per_kwh": 10}, rows)
    with pytest.raises(billreplay.ReplayError, match=why):
        billreplay.replay(tp, cp)


def test_bad_tariff_is_refused_with_its_reason(tmp_path):
    tp, cp = _write(tmp_path, {"v": 1, "kind": "flat", "scale": 1}, [(T0, 1)])
    with pytest.raises(billreplay.ReplayError, match="price_per_kwh"):
        billreplay.replay(tp, cp)


def test_cli(tmp_path):
    tp, cp = _write(tmp_path, {"v": 1, "kind": "flat", "scale": 1, "price_per_kwh": 123},
                    [(T0 + 900 * i, 1000) for i in range(4)], header=None)
    r = subprocess.run([sys.executable, str(TOOL), str(tp), str(cp)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "total charge 492 minor units (4.92)" in r.stdout
    r = subprocess.run([sys.executable, str(TOOL), str(tp), str(tmp_path / "missing.csv")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "error" in r.stderr


def test_cli_bad_inputs_give_one_line(tmp_path):
    """Issue 20: a binary CSV gave a traceback; paths relative to the caller failed."""
    tp, cp = _write(tmp_path, {"v": 1, "kind": "flat", "scale": 1, "price_per_kwh": 123}, [(T0, 1000)])
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00\x81garbage\n\x90\x91")
    for args, msg in (([str(tp), str(tmp_path / "bin.csv")], "line 1: not text"),
                      ([str(tp), str(tmp_path)], "is a directory"),
                      ([str(tmp_path / "bin.csv"), str(cp)], "tariff: not valid JSON"),
                      ([str(tp), str(tmp_path / "nope.csv")], "no such file")):
        r = subprocess.run([sys.executable, str(TOOL)] + args, capture_output=True, text=True)
        assert r.returncode == 2 and msg in r.stderr and r.stderr.count("\n") == 1, (args, r.stderr)
    # Relative to the caller's directory, not the tool's.
    r = subprocess.run([sys.executable, str(TOOL), "tariff.json", "profile.csv"], capture_output=True, text=True,
                       cwd=tmp_path)
    assert r.returncode == 0 and "total charge 123 minor units" in r.stdout, r.stderr


def test_heavy_rows_are_reported_exactly_past_the_register_rollover(tmp_path):
    # The engine's registers roll over at 10^9 Wh as on the meter; the replay's sums must not.
    rows = [(T0 + 3600 * i, 400_000_000) for i in range(5)]  # 2 * 10^9 Wh in all
    tp, cp = _write(tmp_path, {"v": 1, "kind": "flat", "scale": 1, "price_per_kwh": 1}, rows)
    res = billreplay.replay(tp, cp)
    assert res["energy_wh"] == res["rate_wh"][0] == 2_000_000_000
    assert res["charged_minor"] == 2_000_000  # 2 GWh at 1 minor unit per kWh
    tp, cp = _write(tmp_path, {"v": 1, "kind": "flat", "scale": 1, "price_per_kwh": 1}, [(T0, 10 ** 9)])
    with pytest.raises(billreplay.ReplayError, match="line 2: 1000000000 Wh in one interval"):
        billreplay.replay(tp, cp)
