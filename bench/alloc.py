# Runs under micropython (bench/run.py runs it on the 32-bit build, where small ints end at
# 2^30 as on the ESP32): heap allocated by one steady-state meter step on each sim board, with
# ticks 1 to 5 s apart (a loop delayed by the network or the REPL must not start allocating).
# Prints one JSON line: alloc_bytes_per_tick_<chip>, locked steps and failures per chip, and
# alloc_bytes_per_tick (the worst chip).
import gc
import io
import json
import os
import sys
import micropython

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1500
# A locked step that turns out to send a message or commit may allocate (formatting, file I/O):
# recognised by where the MemoryError came from. Anywhere else is a hot-path allocation.
UPLINK = ("in telemetry", "in load_profile", "in forward_events", "in commit", "in _append", "in snapshot")
hot_path_failures = []
GAPS_MS = (1000, 2000, 5000, 1000, 3000, 5000, 4000)
BOARDS = ("sim_atm90e26", "sim_atm90e32", "sim_ade7953")
FLASH = "/tmp/pm-bench-alloc.img"


def measure(m, b):
    # A function, so the bench's own variables are locals and never grow a dict.
    alloc = 0  # bytes allocated by plain steps (neither commit nor uplink message)
    plain = 0
    locked = 0
    failed = 0
    worst = 0
    g = 0
    for i in range(N):
        gap = GAPS_MS[g]
        g = g + 1 if g + 1 < len(GAPS_MS) else 0
        b.advance(gap)  # the households and the emulator: not part of the step
        seq0 = m.store.seq
        out0 = m.sync.seq
        # a commit or a load-profile record (every quarter hour) is due: not a plain step
        due = m.relay.changed or m._uncommitted_wh + 2 >= m.commit_wh or m.clock.time() // 900 != m.log._quarter
        gc.collect()
        gc.disable()
        a = gc.mem_alloc()
        err = None
        if not due and i % 2:
            # Proof, not just a count: any allocation in this step raises MemoryError.
            micropython.heap_lock()
            try:
                m.step()
                locked += 1
            except MemoryError as e:
                err = e
            micropython.heap_unlock()
        else:
            m.step()
        d = gc.mem_alloc() - a
        gc.enable()
        if err is not None:
            # An uplink or commit step in disguise is not a plain step; anything else is a
            # hot-path allocation.
            buf = io.StringIO()
            sys.print_exception(err, buf)
            tb = buf.getvalue()
            if not any(u in tb for u in UPLINK):
                failed += 1
                hot_path_failures.append(tb.strip().splitlines()[-2].strip())
        elif m.store.seq == seq0 and m.sync.seq == out0:
            plain += 1
            alloc += d
            if d > worst:
                worst = d
            if d and "-v" in sys.argv:
                print("plain step", i, "gap", gap, "allocated", d)
    return alloc, plain, locked, failed, worst


def chip(board_mod):
    try:
        os.remove(FLASH)
    except OSError:
        pass
    mod = __import__(board_mod)
    import app
    b = mod.build({"meter_id": "bench", "key": bytes(32), "flash": FLASH,
                   "config": {"opening_balance": 10000000}})
    m = app.Meter(b)
    m.boot()
    for _ in range(1500):  # past the first commits and telemetry: caches and buffers exist
        b.advance(1000)
        m.step()
    alloc, plain, locked, failed, worst = measure(m, b)
    os.umount(b.root)  # the next board mounts its own flash there
    return mod.CHIP, alloc, plain, locked, failed, worst


out = {"alloc_steps": N, "alloc_gaps_ms": list(GAPS_MS), "alloc_word_bits": 32 if sys.maxsize < (1 << 32) else 64}
worst_per_tick = 0
for name in BOARDS:
    c, alloc, plain, locked, failed, worst = chip(name)
    per = alloc / plain if plain else -1
    out["alloc_bytes_per_tick_" + c] = per
    out["alloc_worst_step_" + c] = worst
    out["alloc_locked_steps_" + c] = locked
    out["alloc_locked_failures_" + c] = failed
    if per > worst_per_tick or per < 0:
        worst_per_tick = per
    gc.collect()
out["alloc_bytes_per_tick"] = worst_per_tick
if hot_path_failures:
    out["alloc_hot_path_failures_at"] = sorted(set(hot_path_failures))
print(json.dumps(out))
