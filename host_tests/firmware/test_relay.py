"""firmware/relay.py under MicroPython: the full transition table, reason priorities,
overrides, reconnect delays, restore from the record, and the remote-command rate limit."""
from pathlib import Path

MPY = Path(__file__).resolve().parent / "mpy"


def test_transition_table_priorities_and_rate_limit(mpy):
    res = mpy(str(MPY / "relay_table.py"), heap="256k")
    assert res.result["ok"], res.result["failures"]
    # 19 triggers x 3 states, plus 7 reason round trips.
    assert res.result["cells"] == 19 * 3 + 7


def test_event_names_cover_every_code(mpy):
    res = mpy(
        "import events, mptest\n"
        "codes = [v for k, v in events.__dict__.items() if k.isupper() and isinstance(v, int)]\n"
        "mptest.eq(len(events.NAMES), max(codes) + 1, 'one name per code')\n"
        "mptest.eq(len(set(codes)), len(codes), 'codes unique')\n"
        "mptest.eq(events.name(events.LIMIT_TRIP), 'limit_trip', 'name lookup')\n"
        "mptest.done()\n")
    assert res.result["ok"], res.result["failures"]
