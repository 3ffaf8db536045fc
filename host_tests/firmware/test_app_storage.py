"""The app's storage paths: boot with damaged storage, logs wired, no allocation on the hot path.
Runs the real app.Meter on the sim-powercut board under MicroPython."""

PRELUDE = """
import os, mptest, micropython
import app, events, relay, store
from simhw.cutdev import CutBlockDevice
from simhw.household import Lcg
import sim_powercut
# No randomised reconnect delay after power-up (docs/relay.md): the relay closes at the first step,
# so the runs below meter from the start and the heap-locked window has no relay change in it.
CFG = {"opening_balance": 500, "tariff": {"v": 1, "kind": "flat", "price_per_kwh": 300000, "scale": 100},
       "protection": {"relay": {"reconnect_delay_s": 0}}}
def boot(dev, before=None, load_w=1200, cfg=CFG):
    if before is not None:
        os.umount("/flash")
    b = sim_powercut.Board({"meter_id": "t-1", "key": b"k" * 32, "dev": dev, "config": cfg,
                            "load_w": load_w}, before)
    b.rand = Lcg(7).next  # a repeatable reconnect delay after boot (the port's RNG is not seeded)
    m = app.Meter(b)
    m.boot()
    return b, m
def run(b, m, ticks, ms=1000):
    for _ in range(ticks):
        b.advance(ms)
        m.step()
def codes(m):
    return [m.events.get(s)[0] for s in range(m.events.oldest_seq(), m.events.seq)]
"""


def test_fresh_meter_then_reboot_restores(mpy):
    res = mpy(PRELUDE + """
dev = CutBlockDevice(64)
b, m = boot(dev)
mptest.eq(b.fs_state, store.FORMATTED_BLANK, "new flash")
mptest.eq((m.account.balance, m.relay.state), (500, relay.CONNECTED), "opening balance, relay closed")
run(b, m, 120)
m.commit()
bal, wh = m.account.balance, m.metering.imp_wh
mptest.check(wh > 0, "metered")
b, m = boot(dev, b)
mptest.eq((m.account.balance, m.metering.imp_wh), (bal, wh), "restored after reboot")
mptest.check(events.STORE_FAULT not in codes(m), "no fault on a clean boot")
mptest.done()
""", heap="2m")
    assert res.result["ok"]


def test_newest_record_damaged_falls_back(mpy):
    res = mpy(PRELUDE + """
dev = CutBlockDevice(64)
b, m = boot(dev)
run(b, m, 60)
m.commit()
older = (m.account.balance, m.metering.imp_wh)
m.account.balance -= 7  # any change, committed as the newest record
m.commit()
newest = "/flash/state.a" if m.store.seq % 2 == 0 else "/flash/state.b"
with open(newest, "r+b") as f:
    f.seek(4)
    f.write(b"\\x99\\x99")
b, m = boot(dev, b)
mptest.eq((m.account.balance, m.metering.imp_wh), older, "the last good record")
mptest.check(events.STORE_FAULT in codes(m), "and a store_fault event")
mptest.eq(m.relay.state, relay.CONNECTED, "a good record keeps its relay intent")
mptest.done()
""", heap="2m")
    assert res.result["ok"]


def test_no_readable_record_is_safe_and_keeps_metering(mpy):
    res = mpy(PRELUDE + """
dev = CutBlockDevice(64)
b, m = boot(dev)
run(b, m, 30)
m.commit()
for p in ("/flash/state.a", "/flash/state.b"):
    with open(p, "wb") as f:
        f.write(b"garbage" * 20)
b, m = boot(dev, b)
mptest.eq(m.relay.state, relay.DISCONNECTED, "relay open")
mptest.check(m.relay.reasons & relay.SAFETY, "for safety")
mptest.check(events.STORE_FAULT in codes(m), "store_fault raised")
mptest.eq(m.account.topped_up, 0, "no opening balance for a meter that lost its record")
run(b, m, 30)  # keeps running: metering polls, no exception, no boot loop
mptest.check(m.metering.ok, "metering running")
mptest.eq(m.relay.state, relay.DISCONNECTED, "still safe")
mptest.done()
""", heap="2m")
    assert res.result["ok"]


def test_unmountable_flash_is_reformatted_and_reported(mpy):
    res = mpy(PRELUDE + """
dev = CutBlockDevice(64)
b, m = boot(dev)
run(b, m, 30)
m.commit()
os.umount("/flash")
for blk in (0, 1):
    for i in range(0, 4096, 64):
        dev.mem[blk * 4096 + i] = 0x00
b2 = sim_powercut.Board({"meter_id": "t-1", "key": b"k" * 32, "dev": dev, "config": CFG}, b)
m = app.Meter(b2)
m.boot()
mptest.eq(b2.fs_state, store.REFORMATTED, "reformatted as a last resort")
mptest.check(events.STORE_REFORMATTED in codes(m), "said so in an event")
mptest.eq(m.relay.state, relay.DISCONNECTED, "relay safe")
run(b2, m, 10)
mptest.done()
""", heap="2m")
    assert res.result["ok"]


def test_logs_are_written(mpy):
    res = mpy(PRELUDE + """
import logbook, struct
dev = CutBlockDevice(64)
b, m = boot(dev)
run(b, m, 3 * 900 // 10, 10000)  # 45 minutes
lp = m.log.profile
mptest.eq(lp.next_seq - lp.first_seq, 4, "one load-profile record at power-up, then one per quarter hour")
buf = bytearray(logbook.LP_SIZE)
mptest.check(lp.read(lp.next_seq - 1, buf), "readable")
utc, imp, exp, bal, state, flags = struct.unpack(logbook.LP_FMT, buf)
mptest.eq(utc % 900, 0, "stamped at the boundary")
mptest.check(0 < imp <= m.metering.imp_wh, "cumulative import register")
mptest.check(m.log.events.next_seq >= 1, "events persisted")
boots = m.log.last_of_type(events.BOOT)
mptest.eq(len(boots), 1, "last events of a type")
mptest.done()
""", heap="2m")
    assert res.result["ok"]


def test_per_type_logs_of_an_older_firmware_are_given_back(mpy):
    # Firmware before the shared per-type directory kept log/t<code>/<seg>: a directory and blocks
    # per event type. The first boot of this one removes them (the main event log keeps those
    # events), and the per-type history goes on in log/t.
    res = mpy(PRELUDE + """
dev = CutBlockDevice(64)
b, m = boot(dev)
run(b, m, 3)
for code in (1, 12, 51):
    d = "/flash/log/t%d" % code
    os.mkdir(d)
    for seg in (0, 1):
        with open(d + "/%d" % seg, "wb") as f:
            f.write(b"x" * 180)
os.mkdir("/flash/log/tx")  # not an event-type directory: left alone
b, m = boot(dev, b)
run(b, m, 3)  # events reach the logs once per step
names = sorted(e[0] for e in os.ilistdir("/flash/log"))
mptest.check(not [n for n in names if n[0] == "t" and n[1:].isdigit()], "old directories gone: %r" % names)
mptest.check("tx" in names and "t" in names, "the shared directory, and what is not ours, stay")
mptest.eq(m.log.faults, 0, "no fault")
mptest.eq(len(m.log.last_of_type(events.BOOT)), 2, "boots of this firmware are kept per type")
mptest.done()
""", heap="2m")
    assert res.result["ok"]


def test_step_allocates_nothing_between_commits(mpy):
    res = mpy(PRELUDE + """
cfg = dict(CFG)
cfg["commit_wh"] = 100000  # no energy commit in this window; time commits are every 900 s
dev = CutBlockDevice(64)
b, m = boot(dev, cfg=cfg)
run(b, m, 90)  # past the early telemetry report the load's start causes (report_min_s 60)
commits = m.store.commits
seq = m.log.profile.next_seq
err = None
_ = 0  # the loop variable is a module global: bind it now, or the globals dict may grow under the lock
# The lock covers the firmware's step; the simulated world (households, emulator truth) counts
# in big ints on a 32-bit build and stands for hardware, so it advances outside the lock.
for _ in range(200):
    b.advance(1000)
    micropython.heap_lock()
    try:
        m.step()
    except MemoryError as e:
        err = e
    micropython.heap_unlock()
    if err is not None:
        break
mptest.eq(err, None, "no allocation in step()")
mptest.eq(m.store.commits, commits, "window had no commit")
mptest.check(m.metering.imp_wh > 0, "energy was metered")
mptest.done()
""", heap="2m")
    assert res.result["ok"]
