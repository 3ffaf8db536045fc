"""Backend side of the meter protocol (docs/protocol.md), for CPython tools and tests.

Commands are signed per meter: payload = hex(HMAC-SHA256(key, body)) + b" " + body,
with body a compact JSON object carrying m (meter id), id (monotonic), exp (UTC expiry) and op.
"""
import hashlib
import hmac
import json

PREFIX = "pm/v1/"


def topic(meter_id, kind):
    return "%s%s/%s" % (PREFIX, meter_id, kind)


def body(meter_id, cmd_id, exp, op, **args):
    doc = {"m": meter_id, "id": cmd_id, "exp": exp, "op": op}
    doc.update(args)
    return json.dumps(doc, separators=(",", ":")).encode()


def sign(key, body_bytes):
    return hmac.new(key, body_bytes, hashlib.sha256).hexdigest().encode() + b" " + body_bytes


def command(key, meter_id, cmd_id, exp, op, **args):
    return sign(key, body(meter_id, cmd_id, exp, op, **args))
