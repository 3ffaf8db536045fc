# The hot state record: everything that must survive a power cut, committed as one unit
# (credit, energy, tariff remainder, replay window, relay intent) so they can never disagree.
import struct
from auth import WINDOW
from tariff import MAX_RATES, MAX_BLOCKS
from timebase import EPOCH

# Layouts by version. A new firmware reads every older layout (the balance and everything else
# carry over, the next commit writes the new one); a record of a newer version than this firmware
# knows is never overwritten (unpack returns FOREIGN).
VERSION = 4
# magic, version, balance, charged, topped_up, topups, tariff_rem,
# imp_wh, imp_rem, exp_wh, exp_rem, last_cmd_id, relay_state, reasons, credit_level, state flags
# v1 kept lifetime money in signed 32 bits and lifetime Wh in 32 bits: at the tariff's largest
# price (1 000 000 minor units per kWh) one MWh of money passes 2^31, and a 41.4 kW meter passes
# 2^32 Wh in 12 years. v2 keeps those totals in 64 bits (docs/storage.md, "Counter widths");
# later versions only append sections, so v1's formats and v2's are all there are.
_HEADS = ("<HHiiiIIIIIIIBBBB", "<HHiqqIIQIQIIBBBB")
# srem, sms, bwh, bkey, charged_minor, standing_s, debt, recovered, last_day,
# ec_active, token_bad, pad, token_lock_until (meter seconds), bill_day [, time_floor (v2)]
_BILLS = ("<iiiiiiiiiBBHii", "<iiiiqiiqiBBHiii")
_TAIL = "<BBBBI"  # relay flags, limiter latched, tamper flags, relay driver fault, lifetime load-limit trips
_PULSES = "<II6I6H"  # pulse-input counts, then per-channel import/export Wh and remainders (3 channels)
# v3: offline tokens got ids of their own (tokenids.py): the newest applied, the floor of spent
# ids, the bitmap below the newest. Up to v2 they shared the command window: a v2 record carries
# over with every id up to the last applied command id spent.
_TOKENS = "<II8s"
# v4: OpenPAYGO Token's count and used counts (openpaygo_token.py); 0 from an older record.
_PAYGO = "<II"
_NREGS = MAX_RATES + MAX_BLOCKS  # energy per rate and per block, "<i" each
_MAGIC = 0x4D50  # "PM"
FOREIGN = -1  # unpack(): a record of a newer firmware (or not ours at all)
FLAG_REPLAY_LOST = 1  # state flags: the replay window was lost with the record (auth.py resync)


class _Layout:
    def __init__(self, v):
        self.head = _HEADS[1 if v > 1 else 0]
        self.head_size = struct.calcsize(self.head)
        self.tail = self.head_size + 5 * WINDOW  # the replay window: WINDOW ids (u32), WINDOW results (u8)
        self.bill = self.tail + struct.calcsize(_TAIL)
        self.bill_fmt = _BILLS[1 if v > 1 else 0]
        self.regs = self.bill + struct.calcsize(self.bill_fmt)
        self.pulses = self.regs + 4 * _NREGS
        self.tokens = self.pulses + struct.calcsize(_PULSES)
        self.paygo = self.tokens + (struct.calcsize(_TOKENS) if v >= 3 else 0)
        self.size = self.paygo + (struct.calcsize(_PAYGO) if v >= 4 else 0)


_LAYOUTS = tuple(_Layout(v) for v in range(1, VERSION + 1))  # version v at v - 1
_L = _LAYOUTS[VERSION - 1]
SIZE = _L.size
HEAD = _L.head  # this version's head format (tools/powercut_mp.py reads balance and relay from it)
SIZE_V1 = _LAYOUTS[0].size
SIZE_V2 = _LAYOUTS[1].size


def pack(buf, m):
    """Pack the meter's durable state from the app `m` into buf (SIZE bytes)."""
    a = m.account
    mt = m.metering
    c = m.commands
    L = _L
    struct.pack_into(
        L.head, buf, 0, _MAGIC, VERSION, a.balance, a.charged, a.topped_up, m.topups,
        m.tariff.rem, mt.imp_wh, mt.imp_rem, mt.exp_wh, mt.exp_rem, c.last_id,
        m.relay.state, m.relay.reasons, a.level, FLAG_REPLAY_LOST if c.lost else 0)
    o = L.head_size
    for i in range(WINDOW):
        struct.pack_into("<I", buf, o + 4 * i, c.ids[i])
        buf[o + 4 * WINDOW + i] = c.results[i]
    p = m.protection
    struct.pack_into(_TAIL, buf, L.tail, m.relay.flags(), 1 if p.limiter.latched() else 0,
                     p.tamper.flags, p.driver.fault, p.limiter.trips_total)
    t = m.tariff
    tok = m.tokens
    bill = m.billing
    struct.pack_into(
        L.bill_fmt, buf, L.bill, t.srem, t.sms, t.bwh, t.bkey, t.charged_minor, t.standing_s,
        a.debt, a.recovered, a.last_day, a.ec_active, tok.bad, 0, tok.lock_until,
        bill.day if bill else 0, m.time_floor)
    o = L.regs
    for i in range(MAX_RATES):
        struct.pack_into("<i", buf, o + 4 * i, t.rate_wh[i])
    o += 4 * MAX_RATES
    for i in range(MAX_BLOCKS):
        struct.pack_into("<i", buf, o + 4 * i, t.block_wh[i])
    pl = mt.pulses
    struct.pack_into("<II", buf, L.pulses, pl[0].count if len(pl) > 0 else 0,
                     pl[1].count if len(pl) > 1 else 0)
    for k in range(len(mt.ch_wh)):
        struct.pack_into("<I", buf, L.pulses + 8 + 4 * k, mt.ch_wh[k])
        struct.pack_into("<H", buf, L.pulses + 32 + 2 * k, mt.ch_rem[k])
    ti = m.tokens.ids
    struct.pack_into(_TOKENS, buf, L.tokens, ti.top, ti.floor, ti.bits)
    struct.pack_into(_PAYGO, buf, L.paygo, m.paygo_count, m.paygo_used)


def version(buf, length=None):
    """The record's layout version, or FOREIGN when it is not ours or newer than this firmware
    (length: the payload bytes the store read; None: buf holds a record of this version)."""
    if length is None:
        length = SIZE
    if length < 4:
        return FOREIGN
    magic, v = struct.unpack_from("<HH", buf, 0)
    if magic != _MAGIC or not 1 <= v <= VERSION or length < _LAYOUTS[v - 1].size:
        return FOREIGN
    return v


def written_version(buf):
    """The version field as written, whatever wrote it (a newer firmware's, for its event)."""
    return struct.unpack_from("<H", buf, 2)[0]


def unpack(buf, m, length=None):
    """Restore the app's durable state from a record of any known version; returns False if the
    record is not ours or is newer than this firmware (nothing is changed then)."""
    v = version(buf, length)
    if v == FOREIGN:
        return False
    L = _LAYOUTS[v - 1]
    h = struct.unpack_from(L.head, buf, 0)
    a = m.account
    mt = m.metering
    c = m.commands
    (_, _, a.balance, a.charged, a.topped_up, m.topups, m.tariff.rem,
     mt.imp_wh, mt.imp_rem, mt.exp_wh, mt.exp_rem, c.last_id, state, reasons, a.level, flags) = h
    c.lost = v > 1 and bool(flags & FLAG_REPLAY_LOST)  # v1 had no flags (its pad byte was 0)
    o = L.head_size
    for i in range(WINDOW):
        c.ids[i] = struct.unpack_from("<I", buf, o + 4 * i)[0]
        c.results[i] = buf[o + 4 * WINDOW + i]
    t = m.tariff
    tok = m.tokens
    b = struct.unpack_from(L.bill_fmt, buf, L.bill)
    (t.srem, t.sms, t.bwh, t.bkey, t.charged_minor, t.standing_s, a.debt, a.recovered, a.last_day,
     a.ec_active, tok.bad, _, tok.lock_until, bill_day) = b[:14]
    m.time_floor = b[14] if v > 1 else 0
    if tok.lock_until >= EPOCH:
        tok.lock_until -= EPOCH  # written by a firmware that kept Unix seconds (meter time is 2080 then)
    if m.billing:
        m.billing.restore_day(bill_day, t.t.tz)
    o = L.regs
    for i in range(MAX_RATES):
        t.rate_wh[i] = struct.unpack_from("<i", buf, o + 4 * i)[0]
    o += 4 * MAX_RATES
    for i in range(MAX_BLOCKS):
        t.block_wh[i] = struct.unpack_from("<i", buf, o + 4 * i)[0]
    flags, latched, tamper, fault, trips = struct.unpack_from(_TAIL, buf, L.tail)
    m.relay.restore(state, reasons, flags)
    m.protection.restore(latched, tamper, fault, trips)
    mtail = struct.unpack_from(_PULSES, buf, L.pulses)
    for i in range(len(mt.pulses)):
        mt.pulses[i].count = mtail[i]
    for k in range(len(mt.ch_wh)):
        mt.ch_wh[k] = mtail[2 + k]
        mt.ch_rem[k] = mtail[8 + k]
    ti = tok.ids
    if v >= 3:
        ti.top, ti.floor, bits = struct.unpack_from(_TOKENS, buf, L.tokens)
        ti.bits[:] = bits
    else:
        # Tokens were numbered with commands, and ids that left the 8-id window were forgotten:
        # every id up to the last applied one counts as spent (as it did), later ones are new.
        ti.reset(c.last_id)
        for i in range(WINDOW):
            if 0 < c.ids[i] <= c.last_id:
                ti.remember(c.ids[i])  # applied (a command or a token): answers "used"
    m.paygo_count, m.paygo_used = struct.unpack_from(_PAYGO, buf, L.paygo) if v >= 4 else (0, 0)
    return True
