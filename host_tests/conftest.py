"""Shared fixtures for host tests.

mpy     run a script under MicroPython; fails the test on non-zero exit
        unless check=False. Tests using it are marked `micropython`.

Every test that runs MicroPython (through `mpy`, the meter rig, a module that sets
USES_MICROPYTHON = True, or a test marked `micropython`) runs twice: on the 64-bit unix port (`micropython`) and on the
32-bit build with the firmware frozen in (`micropython32`, tools/build_mp32.py). The runtime
reaches mprun, and any tool the test starts, through $PM_RUNTIME.
broker  a private Mosquitto broker (fresh per test). Never skipped: a missing
        mosquitto is a test failure.
"""

import itertools
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))

import mpbroker  # noqa: E402
import mprun  # noqa: E402

RUNTIME_IDS = {"micropython": "mp64", "micropython32": "mp32"}


def _runs_micropython(metafunc):
    if "mpy" in metafunc.fixturenames or metafunc.definition.get_closest_marker("micropython"):
        return True
    mod = metafunc.module
    return bool(getattr(mod, "USES_MICROPYTHON", False) or getattr(mod, "Rig", None))


def pytest_generate_tests(metafunc):
    if _runs_micropython(metafunc):
        only = metafunc.definition.get_closest_marker("runtimes")
        runtimes = only.args if only else getattr(metafunc.module, "RUNTIMES", mprun.RUNTIMES)
        metafunc.fixturenames.append("mp_runtime")
        metafunc.parametrize("mp_runtime", runtimes, ids=[RUNTIME_IDS[r] for r in runtimes], indirect=True)


@pytest.fixture(scope="session")
def mp32_binary():
    """The 32-bit build, brought up to date once per session: its firmware is frozen in, so a
    stale binary would test yesterday's code (a no-op when nothing changed)."""
    import build_mp32
    try:
        build_mp32.build()
    except build_mp32.BuildError as e:
        pytest.fail("32-bit MicroPython: %s" % e, pytrace=False)
    return build_mp32.BINARY


@pytest.fixture
def mp_runtime(request):
    """The MicroPython runtime of this test run (also exported as $PM_RUNTIME)."""
    return request.param


@pytest.fixture(autouse=True)
def _runtime_env(request, monkeypatch):
    # Autouse, so the runtime is exported whether or not the test names mp_runtime: a fixture
    # only appended to the parametrisation is not set up by pytest.
    callspec = getattr(request.node, "callspec", None)
    rt = callspec.params.get("mp_runtime") if callspec else None
    if rt == "micropython32":
        request.getfixturevalue("mp32_binary")
    if rt:
        monkeypatch.setenv("PM_RUNTIME", rt)


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


@pytest.fixture(scope="session")
def pg_server():
    """One throw-away PostgreSQL server for the session (tools/pgtemp.py); .ci/run installs it."""
    import pgtemp

    try:
        pg = pgtemp.PgTemp().start()
    except pgtemp.PgError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        yield pg
    finally:
        pg.stop()


@pytest.fixture
def pg_url(pg_server):
    """The URL of a new, empty PostgreSQL database on the session's server."""
    import psycopg

    name = "t%d" % next(_pg_names)
    with psycopg.connect(pg_server.url, autocommit=True) as c:
        c.execute("CREATE DATABASE %s" % name)
    return pg_server.url.rsplit("/", 1)[0] + "/" + name


_pg_names = itertools.count(1)


def pytest_collection_modifyitems(config, items):
    for item in items:
        callspec = getattr(item, "callspec", None)
        rt = callspec.params.get("mp_runtime") if callspec else None
        if rt or "mpy" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.micropython)
        item.user_properties.append(("runtime", rt or ("micropython" if "mpy" in item.fixturenames else "cpython")))


def pytest_terminal_summary(terminalreporter):
    counts = {"micropython": 0, "micropython32": 0, "cpython": 0}
    for reports in terminalreporter.stats.values():
        for rep in reports:
            if getattr(rep, "when", None) == "call":
                counts[dict(rep.user_properties).get("runtime", "cpython")] += 1
    terminalreporter.write_line(
        "runtime counts: micropython=%(micropython)d micropython32=%(micropython32)d cpython=%(cpython)d" % counts
    )
