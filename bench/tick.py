# Runs under micropython: cost of one meter step on the sim board (no broker), steady state.
# Prints one JSON line: tick_us_median, tick_us_p99, spi_frames_per_tick, spi_us_per_tick,
# alloc_bytes_per_tick, alloc_ticks, boot_ms.
import gc
import json
import os
import sys
import time
import micropython

N = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
times = [0] * N  # allocated first, while the heap is empty; sorted in place later
FLASH = "/tmp/pm-bench-tick.img"
try:
    os.remove(FLASH)
except OSError:
    pass

import sim_atm90e26  # noqa: E402

t0 = time.ticks_us()
b = sim_atm90e26.build({"meter_id": "bench", "key": bytes(32), "flash": FLASH, "config": {"opening_balance": 10000000}})
import app  # noqa: E402

m = app.Meter(b)
m.boot()
boot_ms = time.ticks_diff(time.ticks_us(), t0) // 1000

TICK_MS = b.config["tick_ms"]


def advance():
    b.emu.set_load(1500)
    b.emu.advance(TICK_MS)
    b.clock.advance(TICK_MS)


# Warm up past the first commit and telemetry so caches and buffers exist.
for _ in range(2000):
    advance()
    m.step()

# 1. Time per step (the emulator's work happens outside the timed region, except its SPI replies).
f0 = b.emu.frames
for i in range(N):
    advance()
    t = time.ticks_us()
    m.step()
    times[i] = time.ticks_diff(time.ticks_us(), t)
frames = (b.emu.frames - f0) / N
times.sort()

# 2. Allocation per step in steady state: count heap growth with the collector off, and
#    prove the common step allocates nothing at all with heap_lock.
def measure_alloc():
    # A function, so the bench's own variables are locals and never grow a dict.
    gc.collect()
    gc.disable()
    alloc_total = 0  # every step
    alloc_plain = 0  # steps that neither commit nor queue telemetry
    plain = 0
    alloc_ticks = 0
    locked_ok = 0
    for i in range(N):
        advance()
        a = gc.mem_alloc()
        # Steps that commit or send telemetry allocate (file I/O, formatting) and are counted apart.
        seq0 = m.store.seq
        out0 = m.sync.seq
        due = m.relay.changed or m._uncommitted_wh + 1 >= m.commit_wh
        if not due and i % 2:
            micropython.heap_lock()
            try:
                m.step()
                locked_ok += 1
            except MemoryError:
                micropython.heap_unlock()
                print(json.dumps({"error": "step allocated under heap_lock"}))
                sys.exit(1)
            micropython.heap_unlock()
        else:
            m.step()
        d = gc.mem_alloc() - a
        if d > 0:
            alloc_total += d
            alloc_ticks += 1
        if m.store.seq == seq0 and m.sync.seq == out0:
            plain += 1
            alloc_plain += d
            if d > 0 and "-v" in sys.argv:
                print("plain tick", i, "allocated", d)
        if gc.mem_free() < 20000:
            gc.enable()
            gc.collect()
            gc.disable()
    return alloc_total, alloc_plain, plain, alloc_ticks, locked_ok


alloc_total, alloc_plain, plain, alloc_ticks, locked_ok = measure_alloc()
gc.enable()

# SPI time on the device: 24 clocks per frame at the board's SPI clock, plus ~10 us of CS set-up and hold.
import esp32_atm90e26  # noqa: E402

baud = esp32_atm90e26.SPI_BAUD
spi_us = frames * (24 * 1000000 // baud + 10)
print(json.dumps({
    "tick_us_median": times[N // 2], "tick_us_p99": times[N * 99 // 100], "tick_us_max": times[-1],
    "spi_frames_per_tick": frames, "spi_us_per_tick": int(spi_us), "spi_baud": baud,
    "alloc_bytes_per_tick": alloc_plain / plain, "alloc_bytes_per_tick_with_commits": alloc_total / N,
    "alloc_ticks": alloc_ticks, "plain_ticks": plain, "heap_locked_steps": locked_ok,
    "steps": N, "boot_ms": boot_ms,
}))
