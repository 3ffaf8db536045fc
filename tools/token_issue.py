"""Issue 20-digit offline top-up tokens for one meter (docs/tokens.md).

    tools/token_issue.py --meter-id M --key HEX --id N --amount MINOR [--type credit|debt|test]

Prints the token in groups of four digits. The id comes from the meter's token counter (apart
from its command ids since protocol revision 4; docs/tokens.md): one token, one id, never reused.
This is an independent CPython implementation of the format the firmware (firmware/token.py)
verifies, so each side checks the other in the tests.
"""
import argparse
import hashlib
import hmac
import re
import struct
import sys

TYPES = {"credit": 0, "debt": 1, "test": 2}
MANT_MAX = (1 << 14) - 1
ID_BITS = 24
MAC_BITS = 20

# Damm's totally anti-symmetric quasigroup of order 10.
DAMM = [
    [0, 3, 1, 7, 5, 9, 8, 6, 4, 2], [7, 0, 9, 2, 1, 5, 4, 8, 6, 3],
    [4, 2, 0, 6, 8, 7, 1, 3, 5, 9], [1, 7, 5, 0, 9, 8, 3, 4, 2, 6],
    [6, 1, 2, 3, 0, 4, 5, 9, 7, 8], [3, 6, 7, 4, 2, 0, 9, 5, 8, 1],
    [5, 8, 6, 9, 7, 2, 0, 1, 3, 4], [8, 9, 4, 5, 3, 6, 2, 0, 1, 7],
    [9, 4, 3, 8, 6, 1, 7, 2, 0, 5], [2, 5, 8, 1, 4, 3, 6, 7, 9, 0],
]


KEY_LEN = 32  # a meter key (docs/protocol.md 2)
METER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")


class TokenError(ValueError):
    pass


def damm(digits):
    c = 0
    for ch in digits:
        c = DAMM[c][int(ch)]
    return c


def amount_field(amount):
    """Smallest exponent e with amount = m * 10^e, m < 2^14; refuses amounts it cannot carry exactly."""
    if not isinstance(amount, int) or amount < 0:
        raise TokenError("amount must be a non-negative integer (minor units)")
    for e in range(4):
        if amount % 10 ** e == 0 and amount // 10 ** e <= MANT_MAX:
            return (e << 14) | (amount // 10 ** e)
    raise TokenError("amount %d cannot be carried exactly (14-bit mantissa x 10^0..3)" % amount)


def token_key(meter_key):
    return hmac.new(meter_key, b"pm-token-key-v1", hashlib.sha256).digest()


def issue(meter_key, meter_id, cmd_id, amount, typ="credit"):
    """The 20-digit token string (no spaces)."""
    if typ not in TYPES:
        raise TokenError("type must be one of %s" % ", ".join(TYPES))
    if not isinstance(cmd_id, int) or not 0 < cmd_id < 1 << 31:
        raise TokenError("id must be an integer in 1..2^31-1")
    if not isinstance(meter_key, bytes) or len(meter_key) != KEY_LEN:
        raise TokenError("the meter key is %d bytes (%d hex digits), got %d" % (
            KEY_LEN, 2 * KEY_LEN, len(meter_key) if isinstance(meter_key, bytes) else 0))
    if not isinstance(meter_id, str) or not METER_ID.match(meter_id):
        raise TokenError("meter id: 1 to 32 letters, digits, - or _ (the id it was provisioned with), got %r" % (
            meter_id,))
    if typ != "test" and amount == 0:
        raise TokenError("a %s token of 0 adds nothing: give an amount above 0 (minor units)" % typ)
    t = TYPES[typ]
    af = amount_field(amount)
    msg = b"pm-token-v1" + meter_id.encode() + struct.pack("<BIH", t, cmd_id, af)
    d = hmac.new(token_key(meter_key), msg, hashlib.sha256).digest()
    mac = int.from_bytes(d[:3], "big") >> (24 - MAC_BITS)
    v = (t << 60) | ((cmd_id & ((1 << ID_BITS) - 1)) << 36) | (af << 20) | mac
    data = "%019d" % v
    return data + str(damm(data))


# -- OpenPAYGO Token (docs/tokens.md), through the reference library --------------------------
PAYGO_KINDS = ("add", "sync")


def openpaygo_key(meter_key):
    """The meter's OpenPAYGO secret key: derived from its meter key (firmware/app.py)."""
    return hmac.new(meter_key, b"pm-openpaygo-key-v1", hashlib.sha256).digest()[:16]


def issue_openpaygo(meter_key, count, value=0, kind="add"):
    """(new count, 9-digit token): the next OpenPAYGO Add-Time token worth `value` units (or a
    Counter-Sync token) after the last one issued at `count`."""
    try:
        import openpaygo
        from openpaygo.token_shared import OpenPAYGOTokenShared
    except ImportError as e:
        raise TokenError("OpenPAYGO tokens need the reference library (requirements.txt): %s" % e)
    if not isinstance(meter_key, bytes) or len(meter_key) != KEY_LEN:
        raise TokenError("the meter key is %d bytes (%d hex digits)" % (KEY_LEN, 2 * KEY_LEN))
    if kind not in PAYGO_KINDS:
        raise TokenError("kind must be one of %s" % ", ".join(PAYGO_KINDS))
    if not isinstance(count, int) or not 0 <= count < 1 << 31:
        raise TokenError("count: the last count issued, 0 or more")
    if kind == "add" and (not isinstance(value, int) or not 1 <= value <= 995):
        raise TokenError("an OpenPAYGO Add-Time value is 1 to 995 units")
    key = openpaygo_key(meter_key)
    start = OpenPAYGOTokenShared.generate_starting_code(key)
    if kind == "sync":
        return openpaygo.generate_token(secret_key=key.hex(), count=count, token_type=openpaygo.TokenType.COUNTER_SYNC,
                                        starting_code=start)
    return openpaygo.generate_token(secret_key=key.hex(), count=count, value=value,
                                    token_type=openpaygo.TokenType.ADD_TIME, starting_code=start)


def grouped(tok):
    return " ".join(tok[i:i + 4] for i in range(0, 20, 4))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--meter-id")
    p.add_argument("--key", required=True, help="the meter key, hex")
    p.add_argument("--id", type=int, help="token id from the meter's token counter")
    p.add_argument("--amount", type=int, help="minor units")
    p.add_argument("--type", default="credit", choices=sorted(TYPES))
    p.add_argument("--openpaygo", action="store_true", help="an OpenPAYGO Token instead (docs/tokens.md)")
    p.add_argument("--count", type=int, help="OpenPAYGO: the last count issued for this meter (0 at first)")
    p.add_argument("--value", type=int, default=0, help="OpenPAYGO: units to add (1..995)")
    p.add_argument("--kind", default="add", choices=PAYGO_KINDS, help="OpenPAYGO: add (Add-Time) or sync")
    a = p.parse_args(argv)
    try:
        key = bytes.fromhex(a.key)
        if a.openpaygo:
            if a.count is None:
                raise TokenError("--openpaygo needs --count, the last count issued for this meter")
            count, tok = issue_openpaygo(key, a.count, a.value, a.kind)
            print(tok)
            print("(count %d: give --count %d for the next one)" % (count, count), file=sys.stderr)
            return 0
        if a.meter_id is None or a.id is None or a.amount is None:
            raise TokenError("--meter-id, --id and --amount are required (or --openpaygo)")
        print(grouped(issue(key, a.meter_id, a.id, a.amount, a.type)))
    except ValueError as e:
        print("token_issue: error: %s" % e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
