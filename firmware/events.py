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
REASON_SET = const(17)  # a disconnect reason was added (arg: reason bit)
REASON_CLEARED = const(18)  # a disconnect reason was lifted (arg: reason bit)
CONFIRM_REFUSED = const(19)  # local confirm while a reason still holds the relay open (arg: top reason)
RELAY_DELAYED = const(20)  # automatic close waits a randomised delay (arg: seconds)
RELAY_CMD_LIMITED = const(21)  # remote relay command refused by the rate limit
RELAY_POSTPONED = const(22)  # actuation postponed: supply too low (arg: centivolts)
RELAY_MISMATCH = const(23)  # contacts not where driven (arg: 1 welded/bypass, 2 no close)
RELAY_REDRIVE = const(24)  # mismatch re-driven (arg: attempt)
RELAY_FAULT = const(25)  # re-drives used up (arg: as RELAY_MISMATCH)
RELAY_RECOVERED = const(26)  # contacts now where driven
LIMIT_TRIP = const(27)  # load limiter opened the relay (arg: trips in window)
LIMIT_RETRY = const(28)  # load limiter retry: LOAD reason lifted (arg: retries)
LIMIT_LATCHED = const(29)  # too many trips: open until cleared (arg: trips in window)
LIMIT_CANCELLED = const(30)  # retry cycle or latch cancelled (customer or backend)
VOLT_OVER = const(31)  # over-voltage trip (arg: centivolts)
VOLT_UNDER = const(32)  # under-voltage trip (arg: centivolts)
VOLT_RESTORED = const(33)  # voltage stable again (arg: centivolts)
TAMPER = const(34)  # tamper detected (arg: kind bit)
TAMPER_CLEARED = const(35)  # tamper flags cleared (arg: old flags)
KEEP_POWER = const(36)  # keep-power override on/off (arg 1/0)
FRIENDLY = const(37)  # friendly period on/off (arg 1/0)
# Billing and credit (issue 4).
CREDIT_ZERO = const(38)
EC_INVOKED = const(39)
EC_REPAID = const(40)
DEBT_RECOVERED = const(41)
DEBT_CLEARED = const(42)
TOPUP_REFUSED = const(43)
TOKEN_LOCKOUT = const(44)
TARIFF_ACTIVATED = const(45)
STORE_REFORMATTED = const(46)  # storage could not be mounted and was formatted
# Metering (issue 3).
TAMPER_LN = const(47)  # live and neutral currents disagree (meter bypass)
CAL_INVALID = const(48)  # stored calibration failed its CRC or belongs to another board/chip
CHIP_UPSET = const(49)  # chip configuration changed without a reset (CRC check): re-initialised (arg: count)
# Storage on the root file system of a stock image (no "meter" partition): about one flash erase
# per commit, several times the wear of the meter image (docs/storage.md). Raised at every boot.
STORE_FALLBACK = const(50)
# Why the meter started (arg: machine.reset_cause() numbering: 1 power-on, 2 hard reset or panic,
# 3 watchdog, 4 deep sleep, 5 soft reset), raised at every boot of a real board.
RESET = const(51)
BROWNOUT = const(52)  # the supply dipped below the brownout level and the ESP32 restarted
# The hot record is of a newer layout than this firmware reads (arg: its version): the meter keeps
# it untouched (no commit), relay open for safety, until the newer firmware is back.
STORE_NEWER = const(53)
# The replay window was lost with the record: money and relay commands are refused until the
# backend answers with a signed "resync" echoing this boot's nonce (arg: the nonce).
REPLAY_LOST = const(54)
# The clock's trust changed (arg: timesource state, 0 uncertain .. 3 trusted; docs/time.md), and a
# time server's answer that was not taken (it would have moved the clock back: arg 0).
TIME_SET = const(55)
TIME_REFUSED = const(56)
# An energy register (per rate, per block, per channel) passed 10^9 Wh and rolled over to 0, as a
# register with six kWh digits does (arg: how many rolled in this step; docs/storage.md).
REGISTER_ROLLOVER = const(57)
# Refused commands (and repeats of applied ones) counted in RAM since the first of an interval
# (arg: how many; the uplink message says how many by reason): one per interval whatever arrives.
CMD_REFUSALS = const(58)
# The broker dropped the meter's session soon after each of several connects in a row (another
# client with its client id, or an access list that refuses it): the meter backs off (arg: count).
LINK_UNSTABLE = const(59)
# Firmware update over the air (ota.py, docs/ota.md). Versions as MAJOR<<16 | MINOR<<8 | PATCH.
OTA_STARTED = const(60)  # a signed manifest was accepted: the image is being fetched (arg: version)
OTA_DONE = const(61)  # the new image passed its trial and is kept (arg: version)
OTA_FAILED = const(62)  # the job ended without switching, or the trial failed (arg: ota_manifest.REASONS index + 1)
OTA_ROLLED_BACK = const(63)  # the bootloader went back to this image: the new one failed (arg: its version)

NAMES = (
    None, "boot", "low_credit_1", "low_credit_2", "credit_exhausted", "credit_restored",
    "relay_open", "relay_closed", "relay_armed", "topup_applied", "cmd_refused",
    "chip_reset", "chip_fault", "store_fault", "reverse_energy", "no_key", "retained_cmd",
    # relay and protection
    "reason_set", "reason_cleared", "confirm_refused", "relay_delayed", "relay_cmd_limited",
    "relay_postponed", "relay_mismatch", "relay_redrive", "relay_fault", "relay_recovered", "limit_trip",
    "limit_retry", "limit_latched", "limit_cancelled", "volt_over", "volt_under", "volt_restored", "tamper",
    "tamper_cleared", "keep_power", "friendly",
    "credit_zero", "ec_invoked", "ec_repaid", "debt_recovered", "debt_cleared",
    "topup_refused", "token_lockout", "tariff_activated",
    "store_reformatted",
    "tamper_ln", "cal_invalid", "chip_upset",
    "store_fallback",
    "reset", "brownout",
    "store_newer", "replay_lost",
    "time_set", "time_refused",
    "register_rollover",
    "cmd_refusals", "link_unstable",
    "ota_started", "ota_done", "ota_failed", "ota_rolled_back",
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
        self._utc = array("i", bytes(4 * capacity))  # meter seconds: negative while the clock is unset
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
