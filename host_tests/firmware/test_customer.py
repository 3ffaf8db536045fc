"""The customer interface (firmware/customer.py) on the simulated board with the emulated display,
keypad and buzzer: every screen and every token result read back from the display's pixels with
framebuf's font, keys typed at a human pace through the keypad scan, the sounds heard, and the
scan and redraw paths under heap_lock. Tokens come from tools/token_issue.py, the CPython
implementation of the format."""
import json
from pathlib import Path

import mprun
import token_issue as ti

MPY = Path(__file__).resolve().parent / "mpy"
KEY = bytes(range(32))  # simkit.TEST_KEY
OTHER = bytes(32)  # another meter's key


def _token(cid, amount, typ="credit", key=KEY):
    return ti.issue(key, "t-0001", cid, amount, typ).replace(" ", "")


def test_every_screen_banner_and_supply_state(mpy, tmp_path):
    toks = ",".join(_token(i, 1250) for i in (1, 2))
    res = mpy(str(MPY / "customer_screens.py"), str(tmp_path / "flash.img"), toks, heap=mprun.APP_HEAP, timeout=300)
    assert res.result["ok"], res.result["failures"]
    assert res.result["checks"] >= 80


def test_every_token_result_and_its_sound(mpy, tmp_path):
    good = _token(1, 1250)
    typo = good[:5] + str((int(good[5]) + 1) % 10) + good[6:]  # one digit off: the check digit sees it
    toks = {"good": good, "typo": typo, "short": good[:15], "max": _token(2, 15000000),
            "debt": _token(3, 500, "debt"), "test": _token(4, 0, "test"), "high": _token(100, 100),
            "stale": _token(20, 100), "forged1": _token(5, 100, key=OTHER), "forged2": _token(6, 100, key=OTHER),
            "forged3": _token(7, 100, key=OTHER), "good2": _token(101, 200), "good3": _token(102, 300)}
    f = tmp_path / "tokens.json"
    f.write_text(json.dumps(toks))  # a file: the unix port cannot take an argument this long
    res = mpy(str(MPY / "customer_tokens.py"), str(tmp_path / "flash.img"), str(f), heap=mprun.APP_HEAP,
              timeout=300)
    assert res.result["ok"], res.result["failures"]
    assert res.result["checks"] >= 80


def test_scan_and_redraw_allocate_nothing_and_display_faults_cost_nothing(mpy, tmp_path):
    res = mpy(str(MPY / "customer_alloc.py"), str(tmp_path / "flash.img"), heap=mprun.APP_HEAP, timeout=300)
    assert res.result["ok"], res.result["failures"]
