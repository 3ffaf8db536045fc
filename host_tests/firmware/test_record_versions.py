"""The hot record across firmware versions and over a meter's life (issue 14, docs/storage.md):
a new firmware boots on the record an older one wrote and keeps everything; a record of a newer
firmware is never written over; lifetime money and energy totals come back exactly past 2^31; the
bad-token count saturates instead of wrapping (which would end the lockout escalation).

The v1 layout is written here from its own formats (as the firmware before layout versioning
wrote it), not from record.py, so a change to the reader cannot hide behind the same code."""
import json

import mprun

KEY_BYTES = bytes(range(32))  # simkit.TEST_KEY, the simulated board's key

PRELUDE = r"""
import os, struct, mptest, simkit, app, record, relay, events, store, auth
from simkit import sign, TEST_KEY as KEY
FLASH = simkit.fresh_flash("/tmp/pm-versions.img")
# The layouts as written: head, the replay window (8 ids u32, 8 results u8), relay/protection tail
# (8 bytes), the billing block, then registers and pulses, identical in both versions.
H1, H2 = "<HHiiiIIIIIIIBBBB", "<HHiqqIIQIQIIBBBB"
B1, B2 = "<iiiiiiiiiBBHii", "<iiiiqiiqiBBHiii"
MID = 5 * 8 + 8


def to_v2(buf):
    # v3 appended the token ids (16 bytes) to the v2 layout.
    out = bytearray(buf[:record.SIZE_V2])
    struct.pack_into("<H", out, 2, 2)
    return out


def to_v1(buf):
    buf = to_v2(buf)
    h = list(struct.unpack_from(H2, buf, 0))
    h[1] = 1
    o2 = struct.calcsize(H2)
    b = struct.unpack_from(B2, buf, o2 + MID)
    out = bytearray(struct.pack(H1, *h))
    out += buf[o2:o2 + MID]
    out += struct.pack(B1, *b[:14])
    out += buf[o2 + MID + struct.calcsize(B2):]
    return out


def write_slots(payload):
    # What the other firmware left on flash: its record in one slot, the other slot empty.
    for p in ("/flash/state.a", "/flash/state.b"):
        try:
            os.remove(p)
        except OSError:
            pass
    s = store.RecordStore("/flash/state.a", "/flash/state.b", len(payload))
    s.payload[:] = payload
    s.commit()


def slots():
    out = []
    for p in ("/flash/state.a", "/flash/state.b"):
        try:
            with open(p, "rb") as f:
                out.append(f.read())
        except OSError:
            out.append(None)
    return out


def boot(cfg=None):
    return simkit.meter(FLASH, config=cfg or {"opening_balance": 100000})


run = simkit.run


def codes(m):
    return [list(m.events.get(s)[:2]) for s in range(m.events.oldest_seq(), m.events.seq)]


def state(m):
    a, t = m.account, m.tariff
    return (a.balance, a.charged, a.topped_up, m.topups, m.metering.imp_wh, m.metering.imp_rem,
            t.rem, t.charged_minor, m.commands.last_id, list(m.commands.ids), list(m.commands.results),
            m.relay.state, m.relay.reasons, m.tokens.bad, m.tokens.lock_until, list(t.rate_wh))
"""


def test_new_firmware_boots_on_a_v1_record_and_keeps_everything(mpy):
    res = mpy(PRELUDE + r"""
b, m = boot()
run(b, m, 90)
out = simkit.Replies(m)
now = simkit.unix_now(b)
p5 = sign(KEY, {"m": "t-0001", "id": 5, "exp": now + 600, "op": "topup", "amt": 2500})
m.on_message(b"cmd", p5)
mptest.eq([r["res"] for r in out.replies()], ["applied"], "top-up applied")
m.tokens.bad, m.tokens.lock_until = 4, m.clock.time() + 3600
m.commit()
before = state(m)
mptest.check(before[4] > 0 and before[0] != 100000, "energy metered and billed")
v1 = to_v1(m.store.payload)
mptest.eq(len(v1), record.SIZE_V1, "the v1 layout as the old firmware wrote it")
write_slots(v1)

# The new firmware on the old record: everything carried over, nothing reported damaged.
b, m = boot()
mptest.eq(m.store.length, record.SIZE_V1, "a v1 record was read")
mptest.eq(state(m), before, "balance, energy, replay window, relay, lockout: all kept")
bad = [c for c in codes(m) if c[0] in (events.STORE_FAULT, events.STORE_NEWER, events.REPLAY_LOST)]
mptest.eq(bad, [], "no fault raised")
out = simkit.Replies(m)
m.on_message(b"cmd", p5)
rep = out.replies()
mptest.eq((rep[0]["res"], rep[0]["rep"]), ("applied", 1), "the replay window came over: a repeat, not applied")
mptest.eq(m.account.balance, before[0], "not applied twice")
# The next commit writes the new layout, and the meter reads it back.
m.commit()
mptest.eq(sorted(len(s) - 8 for s in slots() if s), [record.SIZE_V1, record.SIZE], "v3 written next to the v1 slot")
b, m = boot()
mptest.eq((m.store.length, state(m)), (record.SIZE, before), "read back from v3")
mptest.done()
""", heap=mprun.APP_HEAP, timeout=300)
    assert res.result["checks"] >= 8


def test_a_v2_record_keeps_paper_tokens_issued_after_its_last_id(mpy):
    # Up to v2 tokens were numbered with commands; v3 gives them ids of their own. A v2 meter's
    # token ids up to its last applied id are spent (as they were), later ones still good, and a
    # later command no longer makes them stale.
    import token_issue
    res = mpy(PRELUDE + r"""
import sys, json
T = json.loads(sys.stdin.read())
b, m = boot()
out = simkit.Replies(m)
now = simkit.unix_now(b)
mptest.eq(m.enter_token(T["t5"]), "applied", "token 5 applied")
m.commands.remember(5, 0)  # where a v2 firmware kept it: the shared command window
m.on_message(b"cmd", sign(KEY, {"m": "t-0001", "id": 7, "exp": now + 600, "op": "topup", "amt": 100}))
m.commit()
write_slots(to_v2(m.store.payload))
b, m = boot()
mptest.eq(m.store.length, record.SIZE_V2, "a v2 record was read")
mptest.eq(m.tokens.ids.top, 7, "token ids: the last applied id of the shared counter")
bal = m.account.balance
mptest.eq(m.enter_token(T["t5"]), "used", "token 5: still used")
mptest.eq(m.enter_token(T["t6"]), "stale_id", "token 6 (never typed, below the last id): spent as before")
out = simkit.Replies(m)
m.on_message(b"cmd", sign(KEY, {"m": "t-0001", "id": 9, "exp": now + 600, "op": "status"}))
mptest.eq(m.enter_token(T["t8"]), "applied", "token 8, issued before the upgrade, after a later command")
mptest.eq(m.account.balance, bal + 800, "credited once")
b, m = boot()
mptest.eq((m.store.length, m.enter_token(T["t8"])), (record.SIZE, "used"), "v3 written; token 8 used")
mptest.done()
""", stdin=json.dumps({k: token_issue.issue(KEY_BYTES, "t-0001", i, a) for k, i, a in
                       (("t5", 5, 500), ("t6", 6, 600), ("t8", 8, 800))}), heap=mprun.APP_HEAP, timeout=300)
    assert res.result["ok"] and res.result["checks"] >= 7


def test_a_newer_firmwares_record_is_never_written_over(mpy):
    res = mpy(PRELUDE + r"""
b, m = boot()
run(b, m, 30)
m.commit()
for extra, what in ((16, "a longer record"), (0, "the same length")):
    rec = bytearray(m.store.payload) + bytes(extra)
    struct.pack_into("<H", rec, 2, record.VERSION + 1)  # a firmware that was installed, then rolled back
    write_slots(rec)
    kept = slots()
    b2, m2 = boot()
    mptest.check([events.STORE_NEWER, record.VERSION + 1] in codes(m2), "%s: store_newer raised with its version" % what)
    mptest.eq((m2.relay.state, bool(m2.relay.reasons & relay.SAFETY)), (relay.DISCONNECTED, True),
              "%s: relay open, the balance is unknown to this firmware" % what)
    run(b2, m2, 30)
    mptest.eq(m2.commit(), False, "%s: no commit" % what)
    mptest.eq(slots(), kept, "%s: both slots exactly as the newer firmware left them" % what)
    mptest.eq(m2.relay.state, relay.DISCONNECTED, "%s: still safe" % what)
mptest.done()
""", heap=mprun.APP_HEAP, timeout=300)
    assert res.result["checks"] >= 10


def test_lifetime_totals_past_2_31_reload_exactly(mpy):
    # At the tariff's largest price (1 000 000 minor units per kWh) lifetime money passes 2^31
    # after about 2 MWh, and a 40 kW meter's Wh pass 2^32 within its life.
    res = mpy(PRELUDE + r"""
b, m = boot()
a, mt, t = m.account, m.metering, m.tariff
a.charged, a.topped_up = (1 << 31) + 12345, (1 << 33) + 7
a.balance = 12345  # bounded by the credit limits; the lifetime totals are not
a.recovered, t.charged_minor = (1 << 31) + 1, (1 << 32) + 3
mt.imp_wh, mt.exp_wh = (1 << 32) + 99, (1 << 31) + 5
want = (a.charged, a.topped_up, a.balance, a.recovered, t.charged_minor, mt.imp_wh, mt.exp_wh)
m.commit()
b, m = boot()
a, mt, t = m.account, m.metering, m.tariff
mptest.eq((a.charged, a.topped_up, a.balance, a.recovered, t.charged_minor, mt.imp_wh, mt.exp_wh), want,
          "exact after a reboot")
mptest.done()
""", heap=mprun.APP_HEAP, timeout=300)
    assert res.result["ok"]


def test_bad_token_count_saturates_and_the_lockout_stays_at_its_longest(mpy):
    res = mpy(PRELUDE + r"""
b, m = boot()
import token as tk
BAD = "1234567890123456789"
BAD += str(tk.damm(BAD))  # a well-formed token under another key: its MAC is wrong
m.tokens.bad, m.tokens.lock_until = 255, 0
mptest.eq(m.enter_token(BAD), "bad_mac", "a wrong token")
mptest.eq(m.tokens.bad, 255, "the count stays at 255 (a byte on flash)")
lock = m.tokens.lock_until - m.clock.time()
mptest.check(lock > 0, "locked out: %d s" % lock)
b, m = boot()
mptest.eq(m.tokens.bad, 255, "and comes back as 255, not 0")
m.tokens.lock_until = 0  # the lockout served
mptest.eq(m.enter_token(BAD), "bad_mac", "another wrong token")
mptest.eq(m.tokens.lock_until - m.clock.time(), lock, "locked out again for the longest time at once")
mptest.done()
""", heap=mprun.APP_HEAP, timeout=300)
    assert res.result["ok"]


def test_energy_registers_roll_over_at_10_9_wh_with_an_event(mpy):
    # Per-rate, per-block and per-channel registers would pass 2^31 within a 41.4 kW meter's life
    # (and 2^30, a big int on the ESP32, sooner): they roll over at 10^9 Wh, counted and reported.
    res = mpy(PRELUDE + r"""
import tariff
def boot3():
    return simkit.meter(FLASH, config={"opening_balance": 10 ** 6}, name="sim-atm90e32")
b, m = boot3()
run(b, m, 30)
t, mt = m.tariff, m.metering
mptest.check(t.rate_wh[0] > 0 and mt.ch_wh[0] > 0, "energy metered on rate 0 and channel 1")
near = tariff.REG_MOD - 1
t.rate_wh[0], t.block_wh[0], mt.ch_wh[0] = near, near, near
charged = t.charged_minor
run(b, m, 30)
mptest.check(0 <= t.rate_wh[0] < 1000 and 0 <= t.block_wh[0] < 1000, "rate and block registers rolled over")
mptest.check(0 <= mt.ch_wh[0] < 1000, "channel register rolled over")
mptest.check(t.charged_minor > charged, "billing goes on")
rolled = [c[1] for c in codes(m) if c[0] == events.REGISTER_ROLLOVER]
mptest.eq(sum(rolled), 3, "register_rollover raised for each of the three")
mptest.eq((t.rolled, mt.rolled), (0, 0), "and cleared")
m.commit()
want = (t.rate_wh[0], t.block_wh[0], mt.ch_wh[0])
b, m = boot3()
mptest.eq((m.tariff.rate_wh[0], m.tariff.block_wh[0], m.metering.ch_wh[0]), want, "kept over a reboot")
mptest.done()
""", heap=mprun.APP_HEAP, timeout=300)
    assert res.result["ok"]
