# Wall time inside the meter counts seconds from EPOCH, not from 1970: Unix seconds are past 2^30,
# a heap-allocated big int on the ESP32, while meter seconds stay small-int until 2059.
# Values leave and enter the meter (MQTT, documents, REPL) as Unix seconds, converted here.
from micropython import const

EPOCH = const(1735689600)  # 2025-01-01T00:00:00Z, a UTC midnight (so days and quarters align)
EPOCH_DAYS = const(20089)  # days from 1970-01-01 to EPOCH
_SPAN = const(0x3FFFFFFF)  # the small-int range on the ESP32: 1990 .. 2059 in Unix time
SET_MIN = const(-31622400)  # 2024-01-01 in meter seconds: a clock below it was never set (or lost power)
MAX_T = _SPAN  # the latest meter second (2059): a clock beyond it is no time at all
MIN_UNIX = EPOCH - _SPAN
MAX_UNIX = EPOCH + _SPAN


def to_unix(t):
    """Unix seconds of meter second `t` (a big int on the ESP32: only at the edges)."""
    return t + EPOCH


def from_unix(u):
    """Meter seconds of Unix second `u`; ValueError (nothing else happens) outside 1990..2059."""
    if type(u) is not int or not MIN_UNIX <= u <= MAX_UNIX:
        raise ValueError("unix time must be an integer in %d..%d" % (MIN_UNIX, MAX_UNIX))
    return u - EPOCH
