# Board: ESP32 + ATM90E32 three-phase front end (CircuitSetup wiring: VSPI, CS on GPIO5),
# three CTs and three voltage inputs, monostable contactor coil, reconnect button.
# Plain data at the top so the simulated board can reuse it; hardware only inside Board().
import esp32_atm90e26 as _base

NAME = "esp32-atm90e32"
CHIP = "atm90e32"
RELAY = "monostable"

# VSPI IO-MUX pins (SCLK 18, MISO 19, MOSI 23, CS 5); the ATM90E32 samples on the rising edge:
# SPI mode 3 at 200 kHz (the datasheet timing allows about 2.2 MHz).
PINS = dict(_base.PINS)  # relay, button, tamper switches and pulse inputs as on the base board
PINS.update({"sck": 18, "mosi": 23, "miso": 19, "cs": 5})
SPI_ID = 2
SPI_BAUD = 200000

# Calibration defaults (unity gains, 50 Hz, all three phases summed arithmetically);
# PLconst is derived from the meter constant by the driver.
CAL = {"mmode0": 0x0087}

CONFIG = dict(_base.CONFIG)
CONFIG.update({
    "meter_constant": 3200,  # pulses per kWh
    "max_power_w": 41400,  # 3 x 60 A at 230 V: bounds a plausible read and fixes the poll interval
    "tick_ms": 1000,  # well under the 17.8 s after which the total energy register could wrap
})


class Board(_base.Board):
    def _make_chip(self, machine, spi_cls, pin_cls):
        import time
        import atm90e32

        spi = spi_cls(SPI_ID, baudrate=SPI_BAUD, polarity=1, phase=1, sck=pin_cls(PINS["sck"]),
                      mosi=pin_cls(PINS["mosi"]), miso=pin_cls(PINS["miso"]))
        return atm90e32.ATM90E32(spi, pin_cls(PINS["cs"], pin_cls.OUT, value=1), CAL,
                                 CONFIG["meter_constant"], time.sleep_ms)


def build(opts=None):
    return Board(CONFIG, NAME)
