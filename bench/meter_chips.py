# Runs under micropython: cost of one metering poll per chip (driver + emulator, verified reads),
# SPI frames and bus time per poll at each board's clock, and a simulated household year.
# Prints one JSON line; figures are measurements, never assertions.
import gc
import json
import time

import chipkit

CLOCK_HZ = {"atm90e26": 160000, "atm90e32": 200000, "ade7953": 1000000}
N = 500
out = {}
for name in ("atm90e26", "atm90e32", "ade7953"):
    k = chipkit.Kit(name)
    k.m.start()
    k.load(1500)
    k.run(5, 1)
    times = [0] * N
    f0 = k.emu.frames
    b0 = k.emu.bus_bytes
    for i in range(N):
        k.emu.advance(1000)
        t = time.ticks_us()
        k.m.poll(1000)
        times[i] = time.ticks_diff(time.ticks_us(), t)
    times.sort()
    frames = (k.emu.frames - f0) // N
    bits = (k.emu.bus_bytes - b0) * 8 // N
    out["poll_us_" + name] = times[N // 2]
    out["frames_poll_" + name] = frames
    out["spi_us_poll_" + name] = bits * 1000000 // CLOCK_HZ[name]
    out["max_poll_ms_" + name] = k.m.max_poll_ms
    del k
    gc.collect()

from simhw.household import Household  # noqa: E402

k = chipkit.Kit("atm90e26")
k.m.start()
h = Household(3)
t = time.ticks_ms()
utc = 1767225600
for _ in range(365 * 288):
    k.emu.set_channel(0, h.power_w(utc, 300))
    k.emu.advance(300000)
    k.m.poll(300000)
    utc += 300
out["year_sim_s"] = time.ticks_diff(time.ticks_ms(), t) / 1000
out["year_wh"] = k.m.imp_wh
print(json.dumps(out))
