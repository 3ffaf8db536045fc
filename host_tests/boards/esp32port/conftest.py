"""The ESP32 port stand-ins (boards/esp32port) under MicroPython, with the stand-ins first on the
path (mprun esp32=True) so `import machine` gets them. Modules here set USES_MICROPYTHON, so each
test runs on the 64-bit unix port and on the 32-bit build (stand-ins frozen there)."""
import pytest

import mprun


@pytest.fixture
def esp32():
    """Callable: esp32(code, heap="256k", env=None) runs code with the stand-ins; returns the
    mptest result (the last JSON line), failing the test on a non-zero exit."""

    def run(code, heap="256k", env=None):
        try:
            res = mprun.run_mpy(code, heap=heap, env=env, esp32=True)
        except (mprun.MpyNotFound, mprun.MpyTimeout) as e:
            pytest.fail(str(e), pytrace=False)
        if res.returncode != 0 or not res.result:
            pytest.fail("MicroPython script failed\n" + res.describe(), pytrace=False)
        return res.result

    return run
