# The customer interface's keypad scan, key handling and redraw allocate nothing (under
# micropython.heap_lock), the display is only written when the screen changed, and a display
# that stops answering or resets itself costs the meter nothing and comes back by itself
# (host_tests/firmware/test_customer.py).
import sys
import gc
import micropython
import mptest
import uikit
from uikit import wait, run, shows, banner
import customer

flash = sys.argv[1]
b, m = uikit.meter(flash, {"opening_balance": 5000, "customer": {
    "currency": "KES", "scroll_s": 5, "quiet": [], "sequence": list(customer.SCREENS)}}, load_w=1500)
ui = m.ui
run(b, m, 30)


def locked_slices(n):
    """n keypad slices of 20 ms, the UI's part of each under heap_lock. Returns how many raised."""
    bad = 0
    for _ in range(n):
        b.advance(20)  # the emulated world moves outside the lock
        t = b.clock.ticks_ms()
        gc.collect()
        micropython.heap_lock()
        try:
            ui.poll(t)
        except MemoryError:
            bad += 1
        micropython.heap_unlock()
    return bad


# Typing: digits (entry screen redrawn per key), delete, cancel, next register, reconnect.
keys0 = ui.keys
redraws0 = ui.redraws
b.keys.type("1234567*8C", 60, 60)
mptest.eq(locked_slices(150), 0, "scan, debounce, digits, delete and cancel under heap_lock")
b.keys.type("BBBBBBBBD", 60, 60)
mptest.eq(locked_slices(120), 0, "next register and reconnect under heap_lock")
mptest.eq(ui.keys - keys0, 19, "every key was taken")
mptest.check(ui.redraws - redraws0 >= 19, "each key redrew the screen")
mptest.check(b.beeper.count >= 19, "and beeped")

# Redraw of every register, message and the entry screen under heap_lock.
def locked_refresh():
    micropython.heap_lock()
    try:
        ui.refresh(b.clock.ticks_ms())
        ok = 0
    except MemoryError:
        ok = 1
    micropython.heap_unlock()
    return ok


bad = 0
for i in range(len(ui.sequence)):
    ui.mode = customer.HOME
    ui._idx = i
    bad += locked_refresh()
mptest.eq(bad, 0, "every register redrawn without allocating")
for code in range(len(customer.MSG_TEXT)):
    ui._message(code, 1250, b.clock.ticks_ms())
    bad += locked_refresh()
mptest.eq(bad, 0, "every message redrawn without allocating")
ui.mode = customer.HOME

# The meter's whole step with the interface, low-credit warnings included, under heap_lock.
m.set_limits({"low1": 6000, "low2": 100})
m.commit()
steps = 0
bad = 0
for i in range(300):
    b.advance(1000)
    if m.relay.changed or m._uncommitted_wh + 2 >= m.commit_wh or m.clock.time() // 900 != m.log._quarter:
        m.step()
        continue
    gc.collect()
    micropython.heap_lock()
    try:
        m.step()
        steps += 1
    except MemoryError:
        bad += 1
    micropython.heap_unlock()
mptest.check(steps >= 100, "steps under heap_lock: %d" % steps)
mptest.check(bad <= 2, "steps that allocated (only uplink formatting may): %d" % bad)
mptest.check(ui.warnings >= 1, "the low-credit warning sounded")

# Only a changed screen goes to the display: with the supply off nothing moves on the screen.
ui.configure({"currency": "KES", "scroll_s": 0})
m.relay.remote_disconnect()
run(b, m, 5)
s0, d0 = b.display.shows, b.oled.data_bytes
run(b, m, 20)
mptest.eq(b.display.shows - s0, 0, "an unchanged screen is not sent")
mptest.eq(b.oled.data_bytes - d0, 0, "no bytes to the display")
m.account.debit(100)
run(b, m, 1)
mptest.eq(b.display.shows - s0, 1, "a changed balance is sent once")

# A display that stops answering: the meter goes on; it comes back with the current screen.
b.i2c.failing = True
wh0 = m.metering.imp_wh
m.relay.remote_reconnect(True)
run(b, m, 300)  # past the reconnection's random delay (docs/relay.md)
mptest.check(b.display.errors > 0, "errors counted")
mptest.check(m.metering.imp_wh > wh0, "metering went on")
b.i2c.failing = False
run(b, m, 2)
shows(b, ["CREDIT", "SUPPLY ON"], "back with the current screen")
# A display that reset itself (blank, still acknowledging) is set up again within a minute.
b.oled.reset()
run(b, m, 61)
mptest.check(b.oled.lit(), "set up again")
shows(b, ["CREDIT", "SUPPLY ON"], "and shows the screen")

# The technician's self test: the display and the keypad answer, or each is named.
import repl
mptest.eq(repl._check_customer(m), True, "self test passes")
b.i2c.failing = True
mptest.eq(repl._check_customer(m), False, "self test fails with the bus down")
b.i2c.failing = False
del b.i2c.devices[0x20]
mptest.eq(repl._check_customer(m), False, "self test fails without the keypad")
mptest.done()
