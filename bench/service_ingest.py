#!/usr/bin/env python3
"""The headend service's storage rate (`make bench-service`): uplink messages stored per second by
service_db.Db.store_uplink (one transaction each, as the service stores them before acknowledging),
on SQLite (WAL, synchronous=FULL) and on a throw-away PostgreSQL, for a fleet of meters sending
telemetry and a share of events. Prints one JSON line: msgs_per_s and ms_p99 per engine, and how
many meters at 15-minute telemetry that rate carries (96 messages per meter-day)."""
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import pgtemp  # noqa: E402
import service_db  # noqa: E402

METERS = 50
PER_METER = int(sys.argv[1]) if len(sys.argv) > 1 else 40


def run(db):
    for i in range(METERS):
        db.put_meter({"meter_id": "B%03d" % i, "key": "00" * 32}, email="c%d@example.net" % i)
    lat = []
    t0 = time.perf_counter()
    for seq in range(1, PER_METER + 1):
        for i in range(METERS):
            doc = {"seq": seq, "t": 1767225600 + 900 * seq, "e": 100 * seq, "b": 5000 - seq, "p": 400}
            kind = "tele"
            if seq % 10 == 0:
                kind, doc = "evt", {"seq": seq, "t": doc["t"], "ev": "low_credit_1", "a": 190}
            a = time.perf_counter()
            db.store_uplink("B%03d" % i, kind, doc)
            lat.append(time.perf_counter() - a)
    total = time.perf_counter() - t0
    lat.sort()
    rate = len(lat) / total
    return {"msgs_per_s": round(rate), "ms_p50": round(lat[len(lat) // 2] * 1000, 2),
            "ms_p99": round(lat[len(lat) * 99 // 100] * 1000, 2), "meters_at_15min": int(rate * 86400 / 96),
            "msgs": len(lat)}


def main():
    out = {"meters": METERS, "per_meter": PER_METER}
    with tempfile.TemporaryDirectory() as d:
        out["sqlite"] = run(service_db.Db(os.path.join(d, "bench.db")))
    if pgtemp.bindir():
        with pgtemp.PgTemp() as pg:
            out["postgresql"] = run(service_db.Db(pg.url))
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
