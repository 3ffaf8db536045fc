# A simulated meter under micropython, driven line by line from a test over stdin/stdout.
#   micropython meterrig_mpy.py --flash PATH --meter-id ID [--key HEX] [--broker H:P] [--config JSON]
# Each stdin line is a JSON request; each answer is one JSON line starting with '{'.
#   {"do":"run","ms":R,"adv":A,"sleep":S}  step for R real ms, A simulated ms per step
#   {"do":"steps","n":N,"adv":A}            N steps as fast as possible
#   {"do":"msg","hex":H,"retain":0}         hand a command straight to the app (no broker)
#   {"do":"pid","v":N}                      set umqtt's packet id (to test the wrap)
#   {"do":"state"} / {"do":"quit"}
import sys
import json
import time
from binascii import unhexlify, hexlify
import record
from billtest import EPOCH_S  # the rig reports Unix time, like the wire


def arg(name, default=""):
    a = sys.argv
    for i in range(len(a) - 1):
        if a[i] == "--" + name:
            return a[i + 1]
    return default


broker = arg("broker")
bhp = None
if broker:
    h, _, p = broker.partition(":")
    bhp = (h, int(p))
key = unhexlify(arg("key")) if arg("key") else None
import sim_atm90e26
board = sim_atm90e26.build({"meter_id": arg("meter-id", "rig-0001"), "key": key, "seed": 3,
                            "flash": arg("flash"), "broker": bhp,
                            "config": json.loads(arg("config", "{}"))})
import app as app_mod
m = app_mod.Meter(board)
m.boot()
_rec = bytearray(record.SIZE)
max_step_ms = 0
steps = 0
drops_at = []  # real ms since the start of the current run at which the link dropped


def state():
    record.pack(_rec, m)
    link = m.sync.link
    ob = m.sync.outbox
    ev = m.events
    names = {}
    for s in range(ev.oldest_seq(), ev.seq):
        e = ev.get(s)
        n = app_mod.events.name(e[0])
        names[n] = names.get(n, 0) + 1
    return {"balance": m.account.balance, "charged": m.account.charged, "topups": m.topups, "relay": m.relay.state,
            "reasons": m.relay.reasons, "imp_wh": m.metering.imp_wh, "seq": ob.seq,
            "outbox": ob.count, "dropped": ob.dropped, "refused": m.commands.refused,
            "last_id": m.commands.last_id, "kid": m.sync.kid, "utc": m.clock.time() + EPOCH_S,
            "link": link.state if link else -1, "connects": link.connects if link else 0,
            "drops": link.drops if link else 0, "sent": link.sent if link else 0,
            "received": link.received if link else 0, "oversized": link.oversized if link else 0,
            "overflow": getattr(link, "overflow", 0) if link else 0,
            "pid": link._client.pid if link and link._client else -1,
            "published": m.sync.published, "record": hexlify(_rec).decode(),
            "events": names, "ev_total": ev.seq, "max_step_ms": max_step_ms, "steps": steps,
            "drops_at": drops_at, "low1": m.account.low1, "maxb": m.account.max_balance,
            "price": getattr(m.tariff, "price", -1), "exceptions": m.reporter.exceptions}


def step(adv):
    global max_step_ms, steps
    t = time.ticks_ms()
    board.advance(adv)
    m.step()
    d = time.ticks_diff(time.ticks_ms(), t)
    if d > max_step_ms:
        max_step_ms = d
    steps += 1


def serve():
    global drops_at, max_step_ms
    while True:
        line = sys.stdin.readline()
        if not line:
            return
        req = json.loads(line)
        do = req["do"]
        if do == "run":
            drops_at = []
            max_step_ms = 0
            t0 = time.ticks_ms()
            link = m.sync.link
            drops = link.drops if link else 0
            while time.ticks_diff(time.ticks_ms(), t0) < req["ms"]:
                step(req.get("adv", 1000))
                if link and link.drops != drops:
                    drops = link.drops
                    drops_at.append(time.ticks_diff(time.ticks_ms(), t0))
                time.sleep_ms(req.get("sleep", 5))
        elif do == "steps":
            for _ in range(req["n"]):
                step(req.get("adv", 1000))
        elif do == "msg":
            if m.sync.link is not None:
                m.sync.link.retained = req.get("retain", 0)
            m.on_message(m.sync.cmd_topic, unhexlify(req["hex"]))
        elif do == "pid":
            m.sync.link._client.pid = req["v"]
        elif do == "quit":
            m.commit()
            if m.sync.link:
                m.sync.link.close()
            print(json.dumps({"bye": 1}))
            return
        print(json.dumps(state()))


serve()
