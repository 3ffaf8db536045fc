# Benchmark (MicroPython): cost of the per-tick protection step and the RAM the relay and
# protection objects take. Prints figures only; nothing here is asserted.
#   MICROPYPATH=firmware:boards:host_tests/mpy_lib .venv/bin/micropython bench/relay_protection.py
import gc
import json
import time
import micropython
import events
import relay as R
import protection as P
from simhw.clock import SimClock
from simhw.parts import SimRelay, SimSwitch


class Mt:
    ok = True
    v_cv = 23000
    i_ma = 2000
    p_w = 460


ck = SimClock(1767225600)
ring = events.EventRing(32)


def emit(code, arg):
    ring.raise_(code, arg, ck.time())


gc.collect()
before = gc.mem_alloc()
rc = R.RelayControl(None, emit, rand=lambda n: 0)
hw = SimRelay()
mt = Mt()
prot = P.Protection(rc, hw, mt, ck, emit, {"limiter": {"power_w": 3000}}, cover=SimSwitch(), magnet=SimSwitch())
rc.restore(R.CONNECTED, 0)
rc.power_up()
gc.collect()
ram = gc.mem_alloc() - before

N = 20000
ck.advance(1000)
prot.step(ck.ticks_ms())
t0 = dt = 0  # globals exist before the heap is locked
micropython.heap_lock()
t0 = time.ticks_us()
for _ in range(N):
    ck.advance(1000)
    prot.step(ck.ticks_ms())
dt = time.ticks_diff(time.ticks_us(), t0)
micropython.heap_unlock()

# Transitions: open and close through the state machine (events included).
t0 = time.ticks_us()
for _ in range(1000):
    rc.set_reason(R.CREDIT)
    rc.clear_reason(R.CREDIT)
    rc.confirm_local()
tt = time.ticks_diff(time.ticks_us(), t0)
print(json.dumps({"bench": "relay_protection", "step_us": dt / N, "steps": N,
                  "open_ready_close_us": tt / 1000, "objects_ram_bytes": ram,
                  "runtime": "MicroPython unix port on the build host, not an ESP32"}))
