# The hot state record: everything that must survive a power cut, committed as one unit
# (credit, energy, tariff remainder, replay window, relay intent) so they can never disagree.
import struct
from auth import WINDOW
from tariff import MAX_RATES, MAX_BLOCKS
from timebase import EPOCH

VERSION = 1
# magic, version, balance, charged, topped_up, topups, tariff_rem,
# imp_wh, imp_rem, exp_wh, exp_rem, last_cmd_id, relay_state, reasons, credit_level, pad
_HEAD = "<HHiiiIIIIIIIBBBB"
_HEAD_SIZE = struct.calcsize(_HEAD)
_WIN_END = _HEAD_SIZE + 4 * WINDOW + WINDOW
# Relay and protection tail: relay flags (confirm owed, keep-power), limiter latched,
# tamper flags, relay driver fault, lifetime load-limit trips.
_TAIL = "<BBBBI"
_TAIL_OFF = _WIN_END
# Billing tail (issue 4): tariff remainders, block counter and lifetime money, credit-rule state,
# token lockout, billing day, then the energy registers per rate and per block.
# srem, sms, bwh, bkey, charged_minor, standing_s, debt, recovered, last_day,
# ec_active, token_bad, pad, token_lock_until (meter seconds), bill_day
_BILL = "<iiiiiiiiiBBHii"
_BILL_OFF = _TAIL_OFF + struct.calcsize(_TAIL)
_BILL_SIZE = struct.calcsize(_BILL)
_NREGS = MAX_RATES + MAX_BLOCKS
SIZE = _BILL_OFF + _BILL_SIZE + 4 * _NREGS
# Metering tail (issue 3): pulse-input counts (pulses.MAX_INPUTS), then per-channel import/export
# Wh and remainders of multi-channel chips (up to 3 channels: 6 registers).
_PULSES = "<II6I6H"
_PULSES_AT = SIZE
SIZE = _PULSES_AT + struct.calcsize(_PULSES)
_MAGIC = 0x4D50  # "PM"


def pack(buf, m):
    """Pack the meter's durable state from the app `m` into buf (SIZE bytes)."""
    a = m.account
    mt = m.metering
    c = m.commands
    struct.pack_into(
        _HEAD, buf, 0, _MAGIC, VERSION, a.balance, a.charged, a.topped_up, m.topups,
        m.tariff.rem, mt.imp_wh, mt.imp_rem, mt.exp_wh, mt.exp_rem, c.last_id,
        m.relay.state, m.relay.reasons, a.level, 0)
    o = _HEAD_SIZE
    for i in range(WINDOW):
        struct.pack_into("<I", buf, o + 4 * i, c.ids[i])
        buf[o + 4 * WINDOW + i] = c.results[i]
    p = m.protection
    struct.pack_into(_TAIL, buf, _TAIL_OFF, m.relay.flags(), 1 if p.limiter.latched() else 0,
                     p.tamper.flags, p.driver.fault, p.limiter.trips_total)
    t = m.tariff
    tok = m.tokens
    bill = m.billing
    struct.pack_into(
        _BILL, buf, _BILL_OFF, t.srem, t.sms, t.bwh, t.bkey, t.charged_minor, t.standing_s,
        a.debt, a.recovered, a.last_day, a.ec_active, tok.bad, 0, tok.lock_until,
        bill.day if bill else 0)
    o = _BILL_OFF + _BILL_SIZE
    for i in range(MAX_RATES):
        struct.pack_into("<i", buf, o + 4 * i, t.rate_wh[i])
    o += 4 * MAX_RATES
    for i in range(MAX_BLOCKS):
        struct.pack_into("<i", buf, o + 4 * i, t.block_wh[i])
    pl = mt.pulses
    struct.pack_into("<II", buf, _PULSES_AT, pl[0].count if len(pl) > 0 else 0,
                     pl[1].count if len(pl) > 1 else 0)
    for k in range(len(mt.ch_wh)):
        struct.pack_into("<I", buf, _PULSES_AT + 8 + 4 * k, mt.ch_wh[k])
        struct.pack_into("<H", buf, _PULSES_AT + 32 + 2 * k, mt.ch_rem[k])


def unpack(buf, m):
    """Restore the app's durable state; returns False if the record is not ours."""
    h = struct.unpack_from(_HEAD, buf, 0)
    if h[0] != _MAGIC or h[1] != VERSION:
        return False
    a = m.account
    mt = m.metering
    c = m.commands
    (_, _, a.balance, a.charged, a.topped_up, m.topups, m.tariff.rem,
     mt.imp_wh, mt.imp_rem, mt.exp_wh, mt.exp_rem, c.last_id, state, reasons, a.level, _) = h
    o = _HEAD_SIZE
    for i in range(WINDOW):
        c.ids[i] = struct.unpack_from("<I", buf, o + 4 * i)[0]
        c.results[i] = buf[o + 4 * WINDOW + i]
    t = m.tariff
    tok = m.tokens
    (t.srem, t.sms, t.bwh, t.bkey, t.charged_minor, t.standing_s, a.debt, a.recovered, a.last_day,
     a.ec_active, tok.bad, _, tok.lock_until, bill_day) = struct.unpack_from(_BILL, buf, _BILL_OFF)
    if tok.lock_until >= EPOCH:
        tok.lock_until -= EPOCH  # written by a firmware that kept Unix seconds (meter time is 2080 then)
    if m.billing:
        m.billing.restore_day(bill_day, t.t.tz)
    o = _BILL_OFF + _BILL_SIZE
    for i in range(MAX_RATES):
        t.rate_wh[i] = struct.unpack_from("<i", buf, o + 4 * i)[0]
    o += 4 * MAX_RATES
    for i in range(MAX_BLOCKS):
        t.block_wh[i] = struct.unpack_from("<i", buf, o + 4 * i)[0]
    flags, latched, tamper, fault, trips = struct.unpack_from(_TAIL, buf, _TAIL_OFF)
    m.relay.restore(state, reasons, flags)
    m.protection.restore(latched, tamper, fault, trips)
    mtail = struct.unpack_from(_PULSES, buf, _PULSES_AT)
    for i in range(len(mt.pulses)):
        mt.pulses[i].count = mtail[i]
    for k in range(len(mt.ch_wh)):
        mt.ch_wh[k] = mtail[2 + k]
        mt.ch_rem[k] = mtail[8 + k]
    return True
