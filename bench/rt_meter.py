# Runs under micropython: one sim-board meter in real time (1 s ticks, link serviced between
# ticks by firmware/runner.py), for latency benchmarks. Args: meter_id key_hex host:port flash seconds
import sys
import time
import json
from binascii import unhexlify
import sim_atm90e26
import runner

meter_id, key, broker, flash, seconds = sys.argv[1:6]
host, _, port = broker.partition(":")
b = sim_atm90e26.build({"meter_id": meter_id, "key": unhexlify(key), "flash": flash, "broker": (host, int(port)),
                        "config": {"opening_balance": 1000, "tick_ms": 1000}})


def wait_ms(ms):
    t = time.ticks_ms()
    r.meter.sync.wait(ms)  # the firmware's own idle: blocks on the MQTT socket
    b.advance(time.ticks_diff(time.ticks_ms(), t))  # simulated board time follows real time


r = runner.Runner(b, wait_ms)
r.start()
print("ready", flush=True) if hasattr(print, "flush") else print("ready")
r.run(ticks=int(seconds))
m = r.meter
print(json.dumps({"meter": meter_id, "topups": m.topups, "balance": m.account.balance, "errors": r.step_errors}))
