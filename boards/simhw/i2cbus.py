# An I2C bus with emulated devices on it, behind the machine.I2C calls the firmware uses
# (writeto, writevto, readfrom_into). As on the ESP32 port, a transfer to an address nobody
# acknowledges raises OSError(ENODEV). No call allocates, so the firmware's display and keypad
# paths can be proved allocation-free against it.
_ENODEV = 19


class SimI2C:
    def __init__(self, devices=None):
        self.devices = devices if devices is not None else {}  # address -> device
        self.transfers = 0
        self.failing = False  # True: every transfer raises, as a bus with SDA held low

    def _dev(self, addr):
        d = self.devices.get(addr)
        if d is None or self.failing:
            raise OSError(_ENODEV)
        self.transfers += 1
        return d

    def writeto(self, addr, buf, stop=True):
        d = self._dev(addr)
        d.i2c_start()
        for b in buf:
            d.i2c_byte(b)
        return len(buf)

    def writevto(self, addr, vector, stop=True):
        d = self._dev(addr)
        d.i2c_start()
        n = 0
        for v in vector:
            for b in v:
                d.i2c_byte(b)
            n += len(v)
        return n

    def readfrom_into(self, addr, buf, stop=True):
        d = self._dev(addr)
        for i in range(len(buf)):
            buf[i] = d.i2c_read()

    def scan(self):
        return sorted(self.devices)
