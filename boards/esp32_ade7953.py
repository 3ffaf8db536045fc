# Board: ESP32 + ADE7953 on SPI (two current channels, e.g. two circuits of one supply; the
# wiring of the EnergyMe-Home / Shelly Pro class boards mapped to plain ESP32 VSPI pins),
# monostable load relay, reconnect button. Plain data at the top; hardware only inside Board().
import esp32_atm90e26 as _base

NAME = "esp32-ade7953"
CHIP = "ade7953"
RELAY = "monostable"

# VSPI pins; the ADE7953 shifts MISO out on the falling edge: SPI mode 0, 1 MHz.
# RESET on GPIO 21 (held high), IRQ on GPIO 37 is not used by this firmware.
PINS = dict(_base.PINS)  # relay, button, tamper switches and pulse inputs as on the base board
PINS.update({"sck": 18, "mosi": 23, "miso": 19, "cs": 5, "reset": 21})
SPI_ID = 2
SPI_BAUD = 1000000

CAL = {}  # unity gains until the REPL calibration has run

CONFIG = dict(_base.CONFIG)
CONFIG.update({
    "meter_constant": 23716,  # energy-register counts per Wh (154 counts per W, squared)
    "max_power_w": 27600,  # 2 channels x 60 A at 230 V: plausibility bound and poll interval
    "tick_ms": 1000,  # the 24-bit energy registers would take 46 s to overflow at max power
})


class Board(_base.Board):
    def _make_chip(self, machine, spi_cls, pin_cls):
        import time
        import ade7953

        pin_cls(PINS["reset"], pin_cls.OUT, value=1)
        spi = spi_cls(SPI_ID, baudrate=SPI_BAUD, polarity=0, phase=0, sck=pin_cls(PINS["sck"]),
                      mosi=pin_cls(PINS["mosi"]), miso=pin_cls(PINS["miso"]))
        return ade7953.ADE7953(spi, pin_cls(PINS["cs"], pin_cls.OUT, value=1), CAL, time.sleep_ms)


def build(opts=None):
    return Board(CONFIG, NAME)
