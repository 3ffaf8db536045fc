# How much heap the technician REPL kit takes once imported next to a running sim meter.
#   MICROPYPATH=firmware:boards:.deps/mplib:host_tests/mpy_lib micropython -X heapsize=256k bench/repl_mem.py
# Figures are for the unix port (64-bit objects); a 32-bit ESP32 needs roughly half.
import gc
import sys
import os
import simkit
import main

path = "/tmp/pm-bench-repl.img"
try:
    os.remove(path)
except OSError:
    pass
m = main.start(simkit.board(path, config={"opening_balance": 1000}))
main.loop(m, 100)
gc.collect()
a0 = gc.mem_alloc()
import repl  # noqa: E402
gc.collect()
print("repl kit: %d bytes of heap on %s (meter alone: %d bytes)" % (gc.mem_alloc() - a0, sys.platform, a0))
