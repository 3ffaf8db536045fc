"""firmware/timebase.py: the meter epoch. Conversions under micropython, and a static check
(CPython) that Unix time appears in the firmware only at its edges."""
import ast
import sys
from pathlib import Path

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware"

CONVERT = r'''
import timebase, localtime, mptest
from billtest import utc, days
E = timebase.EPOCH
mptest.eq(E, utc(2025, 1, 1), "the epoch is 2025-01-01 00:00 UTC")
mptest.eq(timebase.EPOCH_DAYS, days(2025, 1, 1), "its day number since 1970")
mptest.eq(localtime.days_from_civil(2025, 1, 1), timebase.EPOCH_DAYS, "localtime agrees")
for u in (utc(2026, 11, 27, 10, 30), utc(2045, 6, 1), utc(1999, 12, 31, 23, 59, 59), timebase.MIN_UNIX,
          timebase.MAX_UNIX):
    t = timebase.from_unix(u)
    mptest.check(-(1 << 30) < t < 1 << 30, "meter seconds are a small int on the ESP32: %d" % t)
    mptest.eq(timebase.to_unix(t), u, "round trip %d" % u)
mptest.eq(timebase.from_unix(utc(2026, 1, 1)), 365 * 86400, "a year after the epoch")
mptest.check(timebase.MAX_UNIX >= utc(2059, 1, 1), "lasts beyond a meter's 20-year life (2059)")
for bad in (timebase.MIN_UNIX - 1, timebase.MAX_UNIX + 1, 0, 1 << 40, -5, 1.7e9, "1767225600", None, True):
    mptest.raises(ValueError, timebase.from_unix, bad)
mptest.done()
'''


def test_conversions(mpy):
    res = mpy(CONVERT)
    assert res.result["ok"] and res.result["checks"] > 10


# Where the firmware may turn meter seconds into Unix seconds or back: the edges where wall time
# leaves or enters the meter. Each entry: module -> functions (None: module level).
EDGES = {
    "timebase.py": None,  # the conversion itself
    "sync.py": {"birth", "telemetry", "load_profile", "forward_events", "_answer"},  # MQTT payloads
    "billing.py": {"to_json", "entries"},  # the snapshot's uplink form, the journal for the REPL
    "remote.py": {"_time"},  # the set-time command and its reply
    "auth.py": {"check"},  # the command's "exp"
    "tariff.py": {"__init__"},  # Tables: the document's "activate_at"
    "record.py": {"unpack"},  # a record written by the firmware that kept Unix seconds
    "localtime.py": {"_transition", "update"},  # day numbers since 1970 <-> meter seconds
    "repl.py": {"utc_text", "_epoch_offset", "set_time"},  # the technician's display and input
    "app.py": {"_raise_clock", "_set_wall"},  # the board's set_time takes Unix seconds, as the time command gives them
}
_NAMES = {"to_unix", "from_unix", "EPOCH", "EPOCH_DAYS", "MIN_UNIX", "MAX_UNIX"}
# Integer literals that look like Unix seconds (2008..2099): only validators at the edges.
_UNIX_BAND = (1200000000, 4100000000)
_UNIX_LITERALS = {"timebase.py": None, "remote.py": {None}, "repl.py": {"set_time"}}


def _uses(tree):
    """(function name or None, node) for every node, with the innermost enclosing function."""
    out = []

    def walk(node, fn):
        for child in ast.iter_child_nodes(node):
            name = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else fn
            out.append((name, child))
            walk(child, name)

    walk(tree, None)
    return out


def test_unix_time_only_at_the_edges():
    bad = []
    for path in sorted(FIRMWARE.glob("*.py")):
        mod = path.name
        for fn, node in _uses(ast.parse(path.read_text())):
            ref = (node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute)
                   else node.name if isinstance(node, ast.alias) else None)
            if ref in _NAMES and not isinstance(node, ast.alias):
                allowed = EDGES.get(mod, set())
                if allowed is not None and fn not in allowed:
                    bad.append("%s:%d %s in %s()" % (mod, node.lineno, ref, fn))
            if (isinstance(node, ast.Constant) and type(node.value) is int
                    and _UNIX_BAND[0] <= node.value <= _UNIX_BAND[1]):
                allowed = _UNIX_LITERALS.get(mod, set())
                if allowed is not None and fn not in allowed:
                    bad.append("%s:%d Unix-time literal %d in %s()" % (mod, node.lineno, node.value, fn))
    assert not bad, "wall time in Unix seconds away from the edges:\n" + "\n".join(bad)


def test_the_static_check_can_fail(tmp_path, monkeypatch):
    # The same check on a module that adds Unix seconds on the step path must complain.
    (tmp_path / "app.py").write_text("from timebase import to_unix\n"
                                     "def step(c):\n    return to_unix(c.time()) - 1767225600\n")
    monkeypatch.setattr(sys.modules[__name__], "FIRMWARE", tmp_path)
    try:
        test_unix_time_only_at_the_edges()
    except AssertionError as e:
        assert "app.py:3 to_unix in step()" in str(e) and "1767225600" in str(e)
    else:
        raise AssertionError("the static check accepted Unix time on the step path")
