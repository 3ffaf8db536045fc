"""tools/meterplot.py (headend plot): what a reader needs on the chart, checked on what was drawn."""
import struct
from datetime import timezone

import meterplot

T0 = 1767225600  # 2026-01-01 00:00 UTC


def _data(days=3):
    rows = [(T0 + 900 * (k + 1), 900, 50 + (k % 96), (50 + (k % 96)) * 4) for k in range(96 * days)]
    balance = [(T0 + 3600 * h, 10000 - 37 * h) for h in range(24 * days)]
    events = [(T0 + 20 * 3600, "relay_open"), (T0 + 21 * 3600, "topup_applied"), (T0 + 21 * 3600 + 60, "relay_closed"),
              (T0 + 50 * 3600, "topup_applied"), (T0 + 51 * 3600, "low_credit_1")]
    return rows, balance, events


def test_panels_share_time_round_ticks_day_ticks_units_and_marks(tmp_path):
    rows, balance, events = _data()
    out = tmp_path / "p.png"
    d = meterplot.plot(out, "m-1", rows, balance, events, decimals=2, currency="KES", width=800, height=500)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", data[16:24]) == (800, 500)
    assert d["xlim"][0] == d["xlim"][1], "both panels on one time axis"
    for ticks in d["yticks"]:
        steps = {round(b - a, 9) for a, b in zip(ticks, ticks[1:])}
        assert len(steps) == 1, ticks
        step = steps.pop()
        mant = step / 10 ** __import__("math").floor(__import__("math").log10(step))
        assert round(mant, 6) in (1, 2, 2.5, 5), ("round ticks", ticks)
    days = [t for t in d["xticks"] if t.tzinfo is not None and t.astimezone(timezone.utc).hour == 0]
    assert len(days) >= 3 and all(t.minute == 0 for t in days), d["xticks"]
    assert d["ylabels"] == ("mean power (W)", "balance (KES)")
    assert d["marks"] == {"relay_open": 1, "topup_applied": 2, "relay_closed": 1}, "low credit is not marked"


def test_a_long_span_keeps_the_day_ticks_readable(tmp_path):
    rows, balance, _ = _data(days=40)
    d = meterplot.plot(tmp_path / "p.png", "m-1", rows, balance, [], width=900, height=560)
    assert 4 <= len(d["xticks"]) <= 12, len(d["xticks"])
    assert d["ylabels"][1] == "balance (currency units)" and d["marks"] == {}
