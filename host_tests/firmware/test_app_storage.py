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


def test_cut_before_the_first_commit_after_a_reformat_is_not_a_new_meter(mpy):
    """Flash of garbage: reformatted, state unknown. A power cut before that unknown state is
    committed (here: anywhere between the format and the boot's commit, or even between the format
    and its mark) must not boot the clean, empty file system as a new meter with its opening
    balance, relay closed and an empty replay window that is not lost."""
    res = mpy(PRELUDE + """
import vfs
def garbage():
    dev = CutBlockDevice(64)
    for i in range(len(dev.mem)):
        dev.mem[i] = (i * 7 + 3) & 0xFF
    return dev
def unknown(b, m, what):
    mptest.eq(b.fs_state, store.REFORMATTED, what + ": reformatted")
    mptest.eq((m.account.topped_up, m.relay.state), (0, relay.DISCONNECTED), what + ": no opening balance, relay open")
    mptest.check(m.commands.lost, what + ": replay window lost")
# 1. Cut after the format and the app's first writes (its rings), before boot() committed.
dev = garbage()
b = sim_powercut.Board({"meter_id": "t-1", "key": b"k" * 32, "dev": dev, "config": CFG})
mptest.eq(b.fs_state, store.REFORMATTED, "garbage is reformatted")
app.Meter(b)  # creates its log rings: writes, then the power goes
b, m = boot(dev, b)
unknown(b, m, "cut before the first commit")
# That boot committed the unknown state: from then on the record says so, without the mark.
b, m = boot(dev, b)
mptest.eq(b.fs_state, store.MOUNTED, "mark removed once committed")
mptest.eq(m.relay.state, relay.DISCONNECTED, "still safe")
mptest.check(m.commands.lost, "still lost until a resync")
# 2. Cut between the format and its mark: an empty file system over old data.
os.umount("/flash")
dev = garbage()
vfs.VfsLfs2.mkfs(dev, readsize=store.LFS_READ, progsize=store.LFS_PROG)
b, m = boot(dev)
unknown(b, m, "cut before the mark")
# 3. A new meter's blank flash formatted, cut before anything else: still a new meter.
os.umount("/flash")
dev = CutBlockDevice(64)
vfs.VfsLfs2.mkfs(dev, readsize=store.LFS_READ, progsize=store.LFS_PROG)
b, m = boot(dev)
mptest.eq((b.fs_state, m.account.topped_up, m.relay.state), (store.MOUNTED, 500, relay.CONNECTED),
          "blank flash: a new meter")
mptest.check(not m.commands.lost, "with its replay window")
mptest.done()
""", heap="2m")
    assert res.result["ok"]


def test_the_tariff_in_force_survives_a_reboot_after_the_next_is_scheduled(mpy):
    """Tariff 1 pushed and activated, tariff 2 pushed for later: a reboot keeps tariff 1 in force
    (not the board's) and tariff 2 waiting."""
    res = mpy(PRELUDE + """
import timebase
def doc(price, after_s):
    return {"v": 1, "kind": "flat", "price_per_kwh": price, "scale": 100,
            "activate_at": timebase.to_unix(m.clock.time()) + after_s}
b, m = boot(CutBlockDevice(64))
mptest.eq(m.set_tariff(doc(700000, 30)), 0, "tariff 1 scheduled")
run(b, m, 40)
mptest.eq((m.tariff.price, m.tariff.passive), (700000, None), "tariff 1 in force")
mptest.eq(m.set_tariff(doc(400000, 3600)), 0, "tariff 2 scheduled")
b, m = boot(b.flash, b)
mptest.eq(m.tariff.price, 700000, "after the reboot: tariff 1, not the board's 300000")
mptest.check(m.tariff.passive is not None and m.tariff.passive.price[0] == 400000, "tariff 2 still waiting")
run(b, m, 3)
mptest.eq(m.tariff.price, 700000, "and billing on it")
mptest.done()
""", heap="2m")
    assert res.result["ok"]


def test_a_change_of_credit_rules_keeps_the_ones_saved_before(mpy):
    """Rules saved by earlier commands are merged from what boot read, so a read error of
    credit.json at the time of a change cannot make the file hold the new rules alone."""
    res = mpy(PRELUDE + """
b, m = boot(CutBlockDevice(64))
mptest.check(m.set_limits({"max_balance": 5000}), "first change")
b, m = boot(b.flash, b)
mptest.eq(m.account.max_balance, 5000, "saved")
real_open = open
def failing_open(path, *a):
    if path.endswith("credit.json"):
        raise OSError(5)
    return real_open(path, *a)
import builtins
builtins.open = failing_open
try:
    mptest.check(m.set_limits({"low1": 350}), "second change, credit.json unreadable now")
finally:
    builtins.open = real_open
b, m = boot(b.flash, b)
mptest.eq((m.account.max_balance, m.account.low1), (5000, 350), "both after a reboot")
mptest.done()
""", heap="2m")
    assert res.result["ok"]


def test_an_op_that_cannot_save_does_not_use_up_its_command_id(mpy):
    """A tariff whose file cannot be written is answered store_fault and changes nothing; the
    backend's retry of the same bytes (protocol.md 6.2) is applied, not answered "rep":1
    store_fault for ever."""
    res = mpy(PRELUDE + """
import json, simkit
b, m = boot(CutBlockDevice(64))
replies = simkit.Replies(m)
replies.drain()
doc = {"m": "t-1", "id": 7, "exp": simkit.unix_now(b) + 600, "op": "tariff",
       "tariff": {"v": 1, "kind": "flat", "price_per_kwh": 400000, "scale": 100, "activate_at": simkit.unix_now(b) + 3600}}
cmd = simkit.sign(b"k" * 32, doc)
os.mkdir("/flash/tariff_passive.json")  # the file cannot be written
m.on_message(m.sync.cmd_topic, cmd)
got = [d for k, d in replies.drain() if d.get("id") == 7]
mptest.eq([(d["res"], d.get("rep", 0)) for d in got], [("store_fault", 0)], "store_fault")
mptest.check(m.tariff.passive is None, "nothing scheduled")
os.rmdir("/flash/tariff_passive.json")
m.on_message(m.sync.cmd_topic, cmd)
got = [d for k, d in replies.drain() if d.get("id") == 7]
mptest.eq([(d["res"], d.get("rep", 0)) for d in got], [("applied", 0)], "the same bytes again: applied")
mptest.check(m.tariff.passive is not None, "scheduled")
mptest.done()
""", heap="2m")
    assert res.result["ok"]
