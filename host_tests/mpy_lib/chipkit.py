# Test kit: a metering chip driver wired to its register-level emulator, plus a Metering layer
# that records its events. Runs under MicroPython and CPython.
# Drivers and emulators are imported on demand: a 64 KiB test heap holds one chip's worth.
from metering import Metering

MAX_W = {"atm90e26": 13800, "atm90e32": 41400, "ade7953": 27600}


def make(name, cal=None, true_cal=None, max_power_w=None):
    if name == "atm90e26":
        import atm90e26
        from simhw.atm90e26_emu import Atm90e26Emu

        emu = Atm90e26Emu(3200, true_cal)
        chip = atm90e26.ATM90E26(emu, emu.cs, cal, 3200, emu.sleep_ms)
    elif name == "atm90e32":
        import atm90e32
        from simhw.atm90e32_emu import Atm90e32Emu

        emu = Atm90e32Emu(3200, true_cal)
        chip = atm90e32.ATM90E32(emu, emu.cs, cal, 3200, emu.sleep_ms)
    else:
        import ade7953
        from simhw.ade7953_emu import Ade7953Emu

        emu = Ade7953Emu(true_cal)
        chip = ade7953.ADE7953(emu, emu.cs, cal, emu.sleep_ms)
    return emu, chip


class Kit:
    def __init__(self, name, cal=None, true_cal=None, max_power_w=None):
        self.name = name
        self.emu, self.chip = make(name, cal, true_cal)
        self.events = []
        self.m = Metering(self.chip, max_power_w or MAX_W[name], self._emit)

    def _emit(self, code, arg):
        self.events.append((code, arg))

    def codes(self):
        return [c for c, _ in self.events]

    def load(self, p_w, pf_milli=1000):
        for ch in range(self.emu.n):
            self.emu.set_channel(ch, p_w, 23000, pf_milli)

    def run(self, seconds, tick_s=1):
        for _ in range(seconds // tick_s):
            self.emu.advance(tick_s * 1000)
            self.m.poll(tick_s * 1000)

    def metered_mj(self):
        m = self.m
        return m.imp_wh * 3600000 + m.imp_rem * 3600000 // m._den

    def balance_ok(self):
        """truth - metered - lost within the billing registers' resolution (+2 mJ rounding)."""
        d = self.emu.truth_mj - self.metered_mj() - self.emu.lost_in_chip_mj
        return 0 <= d <= self.emu.lsb_mj + 2, d
