"""tools/token_issue.py (CPython): the issuer's own rules."""
import subprocess
import sys
from pathlib import Path

import pytest

import token_issue

KEY = bytes(range(32))
TOOL = Path(__file__).resolve().parents[2] / "tools" / "token_issue.py"


def test_token_shape_and_check_digit():
    tok = token_issue.issue(KEY, "m1", 77, 5000)
    assert len(tok) == 20 and tok.isdigit()
    assert token_issue.damm(tok) == 0  # a Damm-checked number checks to zero
    assert token_issue.damm(tok[:-1]) == int(tok[-1])


def test_fields_are_where_the_format_says():
    tok = token_issue.issue(KEY, "m1", 77, 5000, "debt")
    v = int(tok[:19])
    assert v >> 60 == 1
    assert (v >> 36) & 0xFFFFFF == 77
    af = (v >> 20) & 0xFFFF
    assert (af & 0x3FFF) * 10 ** (af >> 14) == 5000


def test_tokens_differ_by_meter_key_and_id():
    a = token_issue.issue(KEY, "m1", 1, 100)
    assert a != token_issue.issue(KEY, "m2", 1, 100)
    assert a != token_issue.issue(bytes(32), "m1", 1, 100)
    assert a != token_issue.issue(KEY, "m1", 2, 100)


@pytest.mark.parametrize("amount,field", [(0, 0), (16383, 16383), (16390, (1 << 14) | 1639),
                                          (16383000, (3 << 14) | 16383)])
def test_amount_encoding(amount, field):
    assert token_issue.amount_field(amount) == field


@pytest.mark.parametrize("kw", [dict(amount=16383001), dict(amount=-1), dict(cmd_id=0),
                                dict(cmd_id=1 << 31), dict(typ="gift"), dict(meter_key=b"\x00\x11"),
                                dict(meter_key=bytes(33)), dict(meter_id=""), dict(meter_id="a/b"),
                                dict(meter_id="x" * 33), dict(amount=0), dict(amount=0, typ="debt")])
def test_bad_requests_are_refused(kw):
    args = dict(meter_key=KEY, meter_id="m1", cmd_id=1, amount=100)
    args.update(kw)
    with pytest.raises(token_issue.TokenError):
        token_issue.issue(**args)


def test_cli():
    r = subprocess.run([sys.executable, str(TOOL), "--meter-id", "m1", "--key", KEY.hex(), "--id", "3",
                        "--amount", "250"], capture_output=True, text=True)
    assert r.returncode == 0
    assert r.stdout.strip().replace(" ", "") == token_issue.issue(KEY, "m1", 3, 250)
    r = subprocess.run([sys.executable, str(TOOL), "--meter-id", "m1", "--key", "zz", "--id", "3",
                        "--amount", "250"], capture_output=True, text=True)
    assert r.returncode == 2 and "error" in r.stderr


@pytest.mark.parametrize("args", [
    ["--meter-id", "m1", "--key", "0011", "--id", "1", "--amount", "100"],  # a 2-byte key
    ["--meter-id", "", "--key", KEY.hex(), "--id", "1", "--amount", "100"],
    ["--meter-id", "m1", "--key", KEY.hex(), "--id", "1", "--amount", "0"],
    ["--meter-id", "m1", "--key", "zz" * 32, "--id", "1", "--amount", "100"],
    ["--meter-id", "m1", "--key", KEY.hex(), "--id", "0", "--amount", "100"],
    ["--meter-id", "m1", "--key", KEY.hex(), "--id", "1", "--amount", "16383001"],
])
def test_cli_bad_inputs_give_one_line_and_status_2(args, capsys):
    # Issue 20: a 2-byte key, an empty meter id and an amount of 0 made tokens that cannot work.
    assert token_issue.main(args) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("token_issue: error: ") and err.count("\n") == 1, err


def test_a_test_token_may_carry_no_amount():
    assert len(token_issue.issue(KEY, "m1", 1, 0, "test")) == 20


def test_openpaygo_tokens_are_the_reference_librarys_for_the_meters_derived_key():
    import openpaygo
    from openpaygo.token_shared import OpenPAYGOTokenShared
    key = token_issue.openpaygo_key(KEY)
    start = OpenPAYGOTokenShared.generate_starting_code(key)
    count, used = 0, [0]
    c = 0
    for value in (1, 12, 995):
        c, tok = token_issue.issue_openpaygo(KEY, c, value)
        v, typ, n, upd = openpaygo.decode_token(token=tok, secret_key=key.hex(), count=count, used_counts=used,
                                                starting_code=start)
        assert (v, typ, n) == (value, openpaygo.TokenType.ADD_TIME, c)
        count, used = n, upd or used
    c, tok = token_issue.issue_openpaygo(KEY, c, kind="sync")
    assert openpaygo.decode_token(token=tok, secret_key=key.hex(), count=count, used_counts=used,
                                  starting_code=start)[1] == openpaygo.TokenType.COUNTER_SYNC
    for kw in (dict(value=0), dict(value=996), dict(count=-1), dict(kind="set"), dict(meter_key=b"\x00\x11")):
        args = dict(meter_key=KEY, count=0, value=5)
        args.update(kw)
        with pytest.raises(token_issue.TokenError):
            token_issue.issue_openpaygo(**args)


def test_openpaygo_cli_needs_a_count(capsys):
    assert token_issue.main(["--openpaygo", "--key", KEY.hex(), "--value", "5"]) == 2
    assert "--count" in capsys.readouterr().err
    assert token_issue.main(["--openpaygo", "--key", KEY.hex(), "--value", "5", "--count", "0"]) == 0
    out, err = capsys.readouterr()
    assert len(out.strip()) == 9 and out.strip().isdigit() and "--count 2" in err
