# Tiny test helper for scripts that run under the MicroPython unix port.
#
#   import mptest
#   mptest.eq(add(1, 1), 2, "add")
#   mptest.check(x > 0, "x positive")
#   mptest.done(extra_value=42)   # last stdout line: {"ok": ..., "checks": ..., "failures": [...], ...}
#
# done() exits with status 1 if any check failed, so the pytest side sees a failure
# even without looking at the JSON.

import json
import sys

_checks = 0
_failures = []


def check(cond, msg=""):
    global _checks
    _checks += 1
    if not cond:
        _failures.append(str(msg) if msg else "check #%d failed" % _checks)
    return bool(cond)


def eq(a, b, msg=""):
    detail = "%r != %r" % (a, b)
    return check(a == b, "%s: %s" % (msg, detail) if msg else detail)


def raises(exc, fn, *args, **kwargs):
    """Check that fn(*args, **kwargs) raises `exc`; return the exception or None."""
    try:
        fn(*args, **kwargs)
    except exc as e:
        check(True)
        return e
    check(False, "%s did not raise %s" % (getattr(fn, "__name__", fn), exc.__name__))
    return None


def allocates_nothing(fn, n, msg=""):
    """Check that calling fn() n times under micropython.heap_lock() allocates nothing."""
    import micropython
    ok = True
    micropython.heap_lock()
    try:
        for _ in range(n):
            fn()
    except MemoryError:
        ok = False
    micropython.heap_unlock()
    return check(ok, msg or "allocates nothing")


def done(**extra):
    out = dict(extra)
    out["ok"] = not _failures
    out["checks"] = _checks
    out["failures"] = _failures
    print(json.dumps(out))
    if _failures:
        sys.exit(1)
