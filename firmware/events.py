# Event codes and an in-RAM ring of recent events.
# Codes are small ints so raising an event on the hot path allocates nothing;
# names are only looked up when an event is formatted for MQTT or the REPL.
from micropython import const
from array import array

BOOT = const(1)
LOW_CREDIT_1 = const(2)
LOW_CREDIT_2 = const(3)
CREDIT_EXHAUSTED = const(4)
CREDIT_RESTORED = const(5)
RELAY_OPEN = const(6)
RELAY_CLOSED = const(7)
RELAY_ARMED = const(8)  # ready for reconnection, waiting for local confirm
TOPUP_APPLIED = const(9)
CMD_REFUSED = const(10)
CHIP_RESET = const(11)
CHIP_FAULT = const(12)
STORE_FAULT = const(13)
REVERSE_ENERGY = const(14)
NO_KEY = const(15)
RETAINED_CMD = const(16)
TAMPER_LN = const(17)  # live and neutral currents disagree (meter bypass)
CAL_INVALID = const(18)  # stored calibration failed its CRC or belongs to another board/chip

NAMES = (
    None, "boot", "low_credit_1", "low_credit_2", "credit_exhausted", "credit_restored",
    "relay_open", "relay_closed", "relay_armed", "topup_applied", "cmd_refused",
    "chip_reset", "chip_fault", "store_fault", "reverse_energy", "no_key", "retained_cmd",
    "tamper_ln", "cal_invalid",
)


def name(code):
    return NAMES[code] if 0 < code < len(NAMES) else "event_%d" % code


class EventRing:
    """Fixed-capacity ring of (seq, code, arg, utc). The oldest entry is overwritten
    when full; `seq` lets the sync layer know which events it has already sent."""

    def __init__(self, capacity=32):
        self._n = capacity
        self._code = array("H", bytes(2 * capacity))
        self._arg = array("i", bytes(4 * capacity))
        self._utc = array("I", bytes(4 * capacity))
        self.seq = 0  # total events ever raised since boot; entry k lives at k % capacity

    def raise_(self, code, arg, utc):
        i = self.seq % self._n
        self._code[i] = code
        self._arg[i] = arg
        self._utc[i] = utc
        self.seq += 1

    def oldest_seq(self):
        return self.seq - self._n if self.seq > self._n else 0

    def get(self, seq):
        """(code, arg, utc) of event number `seq`, or None once it has been overwritten."""
        if seq < self.oldest_seq() or seq >= self.seq:
            return None
        i = seq % self._n
        return self._code[i], self._arg[i], self._utc[i]
