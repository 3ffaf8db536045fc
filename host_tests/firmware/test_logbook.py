"""logbook: calendar arithmetic (CPython and MicroPython) and record layouts."""

import calendar
import importlib.util
import sys
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _load_logbook():
    # logbook imports micropython.const and journal; give CPython a stand-in for the first.
    sys.modules.setdefault("micropython", types.SimpleNamespace(const=lambda x: x))
    sys.path.insert(0, str(REPO / "firmware"))
    try:
        spec = importlib.util.spec_from_file_location("logbook_cpy", REPO / "firmware" / "logbook.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.pop(0)


def test_month_index_matches_the_calendar():
    lb = _load_logbook()
    for year in (1970, 1999, 2000, 2024, 2026, 2100):
        for month in range(1, 13):
            first = calendar.timegm((year, month, 1, 0, 0, 0))
            last_day = calendar.monthrange(year, month)[1]
            end = calendar.timegm((year, month, last_day, 23, 59, 59))
            expect = (year - 1970) * 12 + month - 1
            assert lb.month_index(first) == expect
            assert lb.month_index(end) == expect


def test_month_index_under_micropython(mpy):
    res = mpy("""
import mptest
from logbook import month_index
mptest.eq(month_index(1767225600), (2026 - 1970) * 12, "2026-01-01")
mptest.eq(month_index(1767225600 - 1), (2026 - 1970) * 12 - 1, "2025-12-31 23:59:59")
mptest.eq(month_index(1772323200), (2026 - 1970) * 12 + 2, "2026-03-01")
mptest.done()
""")
    assert res.result["ok"]
