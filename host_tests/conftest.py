"""Shared fixtures for host tests.

mpy     run a script under MicroPython; fails the test on non-zero exit
        unless check=False. Tests using it are marked `micropython`.
broker  a private Mosquitto broker (fresh per test). Never skipped: a missing
        mosquitto is a test failure.
"""

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))

import mpbroker  # noqa: E402
import mprun  # noqa: E402


@pytest.fixture
def mpy():
    """Callable: mpy(script_or_code, *args, check=True, heap="64k", timeout=60, env=None, stdin=None)."""

    def run(script, *args, check=True, heap="64k", timeout=60, env=None, stdin=None):
        try:
            res = mprun.run_mpy(script, args=args, heap=heap, timeout=timeout, env=env, stdin=stdin)
        except (mprun.MpyNotFound, mprun.MpyTimeout, FileNotFoundError) as e:
            pytest.fail(str(e), pytrace=False)
        if check and res.returncode != 0:
            pytest.fail("MicroPython script failed\n" + res.describe(), pytrace=False)
        return res

    return run


@pytest.fixture
def broker():
    """A running mpbroker.Broker on a free 127.0.0.1 port; closed after the test."""
    try:
        b = mpbroker.Broker()
    except (mpbroker.MosquittoNotFound, mpbroker.BrokerError) as e:
        pytest.fail(str(e), pytrace=False)
    try:
        yield b
    finally:
        b.close()


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "mpy" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.micropython)


def pytest_terminal_summary(terminalreporter):
    counts = {"micropython": 0, "cpython": 0}
    for reports in terminalreporter.stats.values():
        for rep in reports:
            if getattr(rep, "when", None) == "call":
                counts["micropython" if "micropython" in rep.keywords else "cpython"] += 1
    terminalreporter.write_line(
        "runtime counts: micropython=%(micropython)d cpython=%(cpython)d" % counts
    )
