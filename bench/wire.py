"""Bytes on the wire per meter per day at the default configuration (docs/protocol.md).

    .venv/bin/python bench/wire.py [--days N] [--seed S]

Runs the firmware under micropython on the simulated board for N simulated days (no broker:
the outbox is drained into counters) and prints what each topic costs, as MQTT 3.1.1 bytes
(PUBLISH QoS1 + PUBACK), plus keepalive pings. TCP/IP and TLS overheads are estimated.
"""
import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import mprun  # noqa: E402

METER = r'''
import sys, json
import sim_atm90e26, app as app_mod
days, seed, flash = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
b = sim_atm90e26.build({"meter_id": "pm-00000001", "key": bytes(32), "seed": seed, "flash": flash,
                        "broker": None, "config": {"opening_balance": 10000000}})
m = app_mod.Meter(b)
m.boot()
tick = b.config.get("tick_ms", 1000)
per = {}
o = m.sync.outbox
tx = []  # meter ms of each step that sent something: the link pings only in the silences between
for n in range(days * 86400000 // tick):
    b.advance(tick)
    m.step()
    if o.count:
        tx.append(n * tick)
    while o.count:
        k, p = o.peek()
        o.pop()
        p = m.sync.signed(p)  # as it goes out: signed when sent (sync.poll)
        t = m.sync.topics[k]
        n, by, pb = per.get(t.decode(), (0, 0, 0))
        rl = 2 + len(t) + 2 + len(p)
        per[t.decode()] = (n + 1, by + 1 + (1 if rl < 128 else 2) + rl + 4, pb + len(p))
half = b.config["keepalive_s"] * 500
pings = sum((tx[k + 1] - tx[k] - 1) // half for k in range(len(tx) - 1))
print(json.dumps({"per": per, "pings": pings, "keepalive_s": b.config["keepalive_s"], "telemetry_s": b.config["telemetry_s"],
                  "lp_s": b.config.get("lp_s", 900), "birth": len(m.sync.birth()[1]),
                  "status_topic": len(m.sync.status_topic)}))
'''


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--days", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        r = mprun.run_mpy(METER, args=[a.days, a.seed, str(Path(tmp) / "flash.img")], heap=mprun.APP_HEAP, timeout=600)
    if r.returncode or not r.result:
        print(r.describe())
        return 1
    res = r.result
    days = a.days
    print("simulated %d day(s), seed %d, telemetry_s=%d lp_s=%d keepalive_s=%d" % (
        days, a.seed, res["telemetry_s"], res["lp_s"], res["keepalive_s"]))
    print("%-28s %8s %12s %12s" % ("topic", "msgs/day", "payload B/d", "MQTT B/day"))
    total = 0
    msgs = 0
    for t, (n, by, pb) in sorted(res["per"].items()):
        print("%-28s %8.1f %12d %12d" % (t, n / days, pb // days, by // days))
        total += by // days
        msgs += n / days
    # The link pings after keepalive/2 without sending (firmware/link.py): counted in the
    # silences between the sends of the run (PINGREQ 2 B + PINGRESP 2 B).
    pings = res["pings"] // days
    birth = 1 + 1 + 2 + res["status_topic"] + 2 + res["birth"] + 4
    print("%-28s %8d %12s %12d" % ("keepalive pings", pings, "-", 4 * pings))
    print("%-28s %8d %12s %12d" % ("birth on connect (each)", 1, "-", birth))
    total += 4 * pings + birth
    print("MQTT total: %d bytes/day (%.1f kB/day, %.2f MB/month)" % (total, total / 1000, total * 30 / 1e6))
    # TLS 1.2 AES-GCM adds 29 B per record; TCP/IP (no options) ~40 B per segment, ACKs ignored.
    packets = msgs * 2 + 2 * pings + 2
    tls = total + packets * (29 + 40)
    print("with TLS records and TCP/IP headers: ~%d bytes/day" % tls)
    payload = sum(pb for _, _, pb in res["per"].values()) // days
    print(json.dumps({"wire_bytes_per_day": total, "payload_bytes_per_day": payload,
                      "wire_bytes_per_day_tls_tcp": int(tls), "messages_per_day": round(msgs, 1),
                      "keepalive_s": res["keepalive_s"], "pings_per_day": pings}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
