"""The whole meter step allocates nothing in steady state on every chip, with ticks up to 5 s
apart (a loop delayed by the network or a technician), on both runtimes. On the 32-bit build
small ints end at 2^30 as on the ESP32, so a product or sum that passes it (a big int) fails
here even though the 64-bit port would not notice. bench/alloc.py measures the same figure."""

import pytest

import mprun

CHIPS = ("atm90e26", "atm90e32", "ade7953")

SCRIPT = r"""
import gc, io, os, sys, micropython, mptest, app
board = __import__("sim_" + sys.argv[1])
flash = sys.argv[2]
b = board.build({"meter_id": "alloc", "key": bytes(32), "flash": flash, "customer": len(sys.argv) > 3,
                 "config": {"opening_balance": 10000000}})
m = app.Meter(b)
m.boot()
for _ in range(600):
    b.advance(1000)
    m.step()
# Steps that send a message or commit may allocate (formatting, file I/O): a MemoryError raised
# on their way does not count. Anywhere else it is a hot-path allocation.
UPLINK = ("in telemetry", "in load_profile", "in forward_events", "in commit", "in _append", "in snapshot")
GAPS = (5000, 1000, 4000, 5000, 2000, 3000, 5000)
locked = 0
where = []
for i in range(400):
    b.advance(GAPS[i % len(GAPS)])
    # a commit or a load-profile record (every quarter hour) is due: not a plain step
    if m.relay.changed or m._uncommitted_wh + 2 >= m.commit_wh or m.clock.time() // 900 != m.log._quarter:
        m.step()
        continue
    gc.collect()
    err = None
    micropython.heap_lock()
    try:
        m.step()
        locked += 1
    except MemoryError as e:
        err = e
    micropython.heap_unlock()
    if err is not None:
        s = io.StringIO()
        sys.print_exception(err, s)
        tb = s.getvalue()
        if not any(u in tb for u in UPLINK):
            where.append(tb.strip().splitlines()[-2].strip())
mptest.eq(where, [], "steps that allocated outside the uplink/commit path")
mptest.check(locked >= 200, "enough steps ran under heap_lock: %d" % locked)
mptest.check(m.metering.imp_wh > 0, "it metered")
mptest.done(locked=locked, redraws=m.ui.redraws if m.ui else 0)
"""


@pytest.mark.parametrize("chip", CHIPS)
def test_step_allocates_nothing_with_ticks_up_to_5s_apart(mpy, chip, tmp_path):
    res = mpy(SCRIPT, chip, tmp_path / "flash.img", heap=mprun.APP_HEAP, timeout=300)
    assert res.result["locked"] >= 200


def test_step_with_the_customer_display_allocates_nothing(mpy, tmp_path):
    # The display redraws whenever the power shown or the screen changes: inside the step.
    res = mpy(SCRIPT, "atm90e26", tmp_path / "flash.img", "customer", heap=mprun.APP_HEAP, timeout=300)
    assert res.result["locked"] >= 200
    assert res.result["redraws"] >= 100
