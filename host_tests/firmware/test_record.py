"""The metering tail of the hot record, through the whole app on sim boards: pulse counts and
per-channel energy are committed with the total energy and restored at boot, and reported."""
import mprun



def test_counts_persist_with_the_energy_registers_micropython(mpy):
    # The whole app on the sim board: pulses counted, committed with the energy, restored at boot.
    mpy("""
import mptest, simkit, app, os
FLASH = simkit.fresh_flash("/tmp/pm-pulses.img")
b = simkit.board(FLASH)
m = app.Meter(b)
m.boot()
mptest.eq(len(m.metering.pulses), 1, "the board's water input")
for _ in range(9 * 3600 // 60):   # midnight to 9:00; 6-9 at 10 ml/s: 108 pulses of 10 l
    b.advance(60000)
    m.step()
m.commit()
water = m.metering.pulses[0]
mptest.eq(water.count, b.pulses_truth[0], "every pulse counted once despite contact bounce")
mptest.check(water.count > 0, "some water flowed")
counts, wh = water.count, m.metering.imp_wh
m.sync.telemetry(m, 0)
while m.sync.outbox.count:
    kind, payload = m.sync.outbox.peek()
    m.sync.outbox.pop()
mptest.check(b'"u":{"water":%d}' % water.value in payload, "telemetry carries the volume: %r" % payload)
b2 = simkit.board(FLASH)
m2 = app.Meter(b2)
m2.boot()
mptest.eq((m2.metering.pulses[0].count, m2.metering.imp_wh), (counts, wh), "restored with the energy")
os.remove(FLASH)
mptest.done(count=counts)
""", heap=mprun.APP_HEAP)  # the whole app: see tools/mprun.py


def test_per_phase_energy_persists_and_is_reported_micropython(mpy):
    # The three-phase board: per-phase lifetime registers go into the record tail with the total.
    mpy("""
import mptest, os, app, sim_atm90e32
FLASH = "/tmp/pm-phases.img"
try:
    os.remove(FLASH)
except OSError:
    pass
def board():
    try:
        os.umount("/flash")
    except OSError:
        pass
    return sim_atm90e32.build({"meter_id": "t-3", "key": bytes(32), "flash": FLASH, "seed": 2,
                               "config": {"opening_balance": 100000}})
b = board()
m = app.Meter(b)
m.boot()
for _ in range(8 * 60):
    b.advance(60000)
    m.step()
m.commit()
mt = m.metering
ph = list(mt.ch_wh)
rem = list(mt.ch_rem)
mptest.check(min(ph[0::2]) > 0, "every phase metered: %r" % ph)
mptest.check(abs(sum(ph[0::2]) - mt.imp_wh) <= 3, "phases add up to the total: %r vs %d" % (ph, mt.imp_wh))
m.sync.telemetry(m, 0)
while m.sync.outbox.count:
    kind, payload = m.sync.outbox.peek()
    m.sync.outbox.pop()
mptest.check(b'"ce":[%d,%d,%d]' % (ph[0], ph[2], ph[4]) in payload, "per-phase Wh in telemetry: %r" % payload)
mptest.check(b'"cx":[%d,%d,%d]' % (ph[1], ph[3], ph[5]) in payload, "per-phase export Wh: %r" % payload)
import json
doc = json.loads(payload)
chip = mt._chip
mptest.eq((doc["cv"], doc["ci"], doc["cp"]), (list(chip.v_cv), list(chip.i_ma), list(chip.p_w)), "per-phase readings")
mptest.check(min(doc["cv"]) > 20000, "every phase has its voltage: %r" % doc["cv"])
mptest.eq(sum(doc["cp"]), doc["p"], "phase powers add up to the total")
b2 = board()
m2 = app.Meter(b2)
m2.boot()
mptest.eq((list(m2.metering.ch_wh), list(m2.metering.ch_rem)), (ph, rem), "restored at boot")
os.remove(FLASH)
mptest.done()
""", heap=mprun.APP_HEAP)  # the whole app: see tools/mprun.py


def test_token_lockout_in_meter_seconds_and_from_an_older_record_micropython(mpy):
    # The lockout is a wall time: kept in meter seconds (small on the ESP32). A record written by a
    # firmware that kept Unix seconds holds a Unix lockout: it is read back as the same instant.
    mpy("""
import mptest, simkit, app, record, struct
from billtest import EPOCH_S
FLASH = simkit.fresh_flash("/tmp/pm-lockout.img")
b = simkit.board(FLASH)
m = app.Meter(b)
m.boot()
now = m.clock.time()
for lock, want, what in ((now + 600, now + 600, "meter seconds kept"), (now - 5, now - 5, "an unset clock"),
                         (EPOCH_S + now + 900, now + 900, "a Unix lockout from an older record")):
    m.tokens.lock_until = lock
    buf = bytearray(record.SIZE)
    record.pack(buf, m)
    m.tokens.lock_until = 0
    mptest.check(record.unpack(buf, m), "record read")
    mptest.eq(m.tokens.lock_until, want, what)
mptest.check(m.tokens.locked(now + 899) and not m.tokens.locked(now + 900), "the lockout ends on time")
mptest.done()
""", heap=mprun.APP_HEAP)
