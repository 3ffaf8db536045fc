# Runs under micropython (bench/run.py runs it on the 32-bit build with the firmware frozen, as
# the meter image has it): what the customer interface costs. Prints one JSON line:
#   customer_heap_bytes       live heap the interface adds to a booted meter: its modules' tables,
#                             the Customer object, the display's frame buffer, the keypad (the
#                             drivers on a bus with nothing on it: the emulators are not counted)
#   customer_redraws_per_1000 display frames sent in 1 000 one-second household steps
#   customer_frame_bytes      bytes one frame puts on the I2C bus (control byte, window, data)
import gc
import json
import simkit

FLASH = "/tmp/pm-bench-customer.img"


class NoBus:
    """An I2C bus where every part acknowledges and nothing is kept (the drivers' cost only)."""
    sent = 0

    def writeto(self, addr, buf, stop=True):
        NoBus.sent += len(buf)
        return len(buf)

    def writevto(self, addr, vector, stop=True):
        n = 0
        for v in vector:
            n += len(v)
        NoBus.sent += n
        return n

    def readfrom_into(self, addr, buf, stop=True):
        for i in range(len(buf)):
            buf[i] = 0xFF  # no key down


class NoPwm:
    def freq(self, f=None):
        return 2700

    def duty_u16(self, d=None):
        return 0


def main():
    b, m = simkit.meter(simkit.fresh_flash(FLASH))  # no customer parts
    for _ in range(60):
        b.advance(1000)
        m.step()
    gc.collect()
    before = gc.mem_alloc()
    import ssd1306
    import keypad
    import customer
    bus = NoBus()
    m.ui = customer.Customer(m, ssd1306.SSD1306(bus), keypad.Keypad(bus, b.clock.ticks_diff), NoPwm(),
                             m.board.config.get("customer"))
    gc.collect()
    heap = gc.mem_alloc() - before
    r0 = m.ui.redraws
    NoBus.sent = 0
    for _ in range(1000):
        b.advance(1000)
        m.step()
    redraws = m.ui.redraws - r0
    NoBus.sent = 0
    m.ui.screen.forget()
    m.ui.refresh(b.clock.ticks_ms())
    print(json.dumps({"customer_heap_bytes": heap, "customer_redraws_per_1000": redraws,
                      "customer_frame_bytes": NoBus.sent}))


main()
