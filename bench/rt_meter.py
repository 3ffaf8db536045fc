# Runs under micropython: one sim-board meter in real time (1 s ticks, link serviced between
# ticks by firmware/main.py's loop), for latency benchmarks. Args: meter_id key_hex host:port flash seconds
import sys
import time
import json
from binascii import unhexlify
import sim_atm90e26
import main

meter_id, key, broker, flash, seconds = sys.argv[1:6]
host, _, port = broker.partition(":")
b = sim_atm90e26.build({"meter_id": meter_id, "key": unhexlify(key), "flash": flash, "broker": (host, int(port)),
                        "config": {"opening_balance": 1000, "tick_ms": 1000}})


def wait_ms(ms):
    t = time.ticks_ms()
    m.sync.wait(ms)  # the firmware's own idle: blocks on the MQTT socket
    b.advance(time.ticks_diff(time.ticks_ms(), t))  # simulated board time follows real time


m = main.start(b)

main.loop(m, int(seconds), wait_ms)
print(json.dumps({"meter": meter_id, "topups": m.topups, "balance": m.account.balance, "errors": m.step_errors}))
