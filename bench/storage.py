# Storage benchmark (MicroPython): flash wear and energy at risk of the firmware's storage.
#   make bench-storage      (or: MICROPYPATH=firmware:boards micropython -X heapsize=8m bench/storage.py [hours])
# 1. Hot record: A/B slots vs temporary file + rename, bytes programmed and blocks erased per commit.
# 2. The real app (sim-powercut board, 2 MiB RAM flash) for a simulated day per load profile and
#    commit bound, with the link up (outbox drained and checkpointed): commits, bytes programmed
#    and blocks erased per day, projected erase cycles per block over 20 years, and the energy a
#    power cut can lose (measured worst case: energy metered but not yet committed just before a
#    commit, and the bound from the commit rule).
# Prints figures; asserts nothing.
import sys
import os
import gc
import json
import time

import app as app_mod
import store
from simhw.cutdev import CutBlockDevice
from simhw.household import Household
import sim_powercut

BLOCKS = 512  # a 2 MiB littlefs data partition (the vfs partition of a 4 MiB ESP32 flash)
YEARS = 20
RATED = 100000  # erase cycles the flash is rated for
TICK_MS = 1000  # the real board's loop period
MAX_POWER_W = 13800


def hot_record_methods(commits=2000, size=96):
    print("== hot record: %d commits of a %d-byte record on a %d-block littlefs" % (commits, size, BLOCKS))
    res = {}
    for method in ("ab", "tmp_rename"):
        dev = blank_device()
        store.mount(dev, "/b")
        rec = bytearray(size)
        p0, b0, e0 = dev.programs, dev.bytes_programmed, dev.erases
        t0 = time.ticks_ms()
        if method == "ab":
            s = store.RecordStore("/b/a", "/b/b", size)
            for i in range(commits):
                s.payload[0] = i & 0xFF
                s.commit()
        else:
            for i in range(commits):
                rec[0] = i & 0xFF
                with open("/b/state.tmp", "wb") as f:
                    f.write(rec)
                os.rename("/b/state.tmp", "/b/state")
        ms = time.ticks_diff(time.ticks_ms(), t0)
        os.umount("/b")
        r = {"bytes_per_commit": (dev.bytes_programmed - b0) // commits,
             "programs_per_commit_x100": (dev.programs - p0) * 100 // commits,
             "erases_per_1000_commits": (dev.erases - e0) * 1000 // commits, "host_ms": ms}
        res[method] = r
        print("  %-10s %5d bytes programmed/commit, %d.%02d programs/commit, %4d erases per 1000 commits"
              % (method, r["bytes_per_commit"], r["programs_per_commit_x100"] // 100,
                 r["programs_per_commit_x100"] % 100, r["erases_per_1000_commits"]))
    return res


def footprint():
    """Fill every ring of the default layout past its capacity; report the blocks in use."""
    import logbook
    import events
    import billing
    from outbox import Outbox, CAPACITY

    dev = blank_device()
    store.mount(dev, "/b")
    s = store.RecordStore("/b/state.a", "/b/state.b", 88)
    s.commit()
    s.commit()
    lb = logbook.Logbook("/b")
    ob = Outbox(CAPACITY, "/b/outbox")
    c = logbook.DEFAULTS
    t0 = time.ticks_ms()
    daily = lb.ring("daily", billing.SNAP_SIZE)
    monthly = lb.ring("monthly", billing.SNAP_SIZE)
    topups = lb.ring("topups", billing.TOPUP_SIZE)
    for ring, n in ((lb.events, c["events"]), (lb.profile, c["profile_days"] * 96), (daily, c["daily"]),
                    (monthly, c["monthly"]), (topups, c["topups"])):
        rec = bytes(ring.rec_size)
        for _ in range(n + n // 4):
            ring.append(rec)
    for code in range(1, len(events.NAMES)):  # every event type has its last-10 ring
        for _ in range(12):
            lb.event(code, 0, 1767225600)
    msg = b"x" * 200
    for _ in range(CAPACITY + CAPACITY // 4):
        ob.put(0, msg)
    ms = time.ticks_diff(time.ticks_ms(), t0)
    st = os.statvfs("/b")
    used = st[2] - st[3]
    os.umount("/b")
    print("== footprint with every ring full (default sizes): %d of %d blocks (%d KiB of %d KiB, %d%%)"
          % (used, BLOCKS, used * 4, BLOCKS * 4, used * 100 // BLOCKS))
    print("   load profile %d days (%d records), events %d + last 10 per type, daily %d, monthly %d, "
          "top-ups %d, outbox %d messages; filled in %d ms on the host" % (
              c["profile_days"], c["profile_days"] * 96, c["events"], c["daily"], c["monthly"], c["topups"],
              CAPACITY, ms))
    return {"blocks_used": used, "blocks": BLOCKS}


class ConstLoad:
    def __init__(self, w):
        self.w = w

    def power_w(self, utc, dt_s):
        return self.w


_DEV = []


def blank_device():
    """One 2 MiB RAM flash, erased again for each case (a new one each time would fragment the heap)."""
    if not _DEV:
        _DEV.append(CutBlockDevice(BLOCKS))
    dev = _DEV[0]
    blank = b"\xff" * dev.bs
    for blk in range(dev.n):
        dev._mv[blk * dev.bs:(blk + 1) * dev.bs] = blank
    dev.programs = dev.erases = dev.bytes_programmed = dev.reads = dev.writes = dev.ops = 0
    return dev


def day(profile, load, commit_wh, hours):
    gc.collect()
    dev = blank_device()
    cfg = {"commit_wh": commit_wh, "opening_balance": 100000000 // 100}
    b = sim_powercut.Board({"meter_id": "bench-1", "key": b"b" * 32, "dev": dev, "config": cfg})
    m = app_mod.Meter(b)
    committed = [0]
    st = m.store
    orig = st.commit

    def commit():
        orig()
        committed[0] = m.metering.imp_wh

    st.commit = commit
    m.boot()
    p0, b0, e0, c0 = dev.programs, dev.bytes_programmed, dev.erases, st.commits
    risk = 0
    ob = m.sync.outbox
    for _ in range(hours * 3600 * 1000 // TICK_MS):
        b.load_w = load.power_w(b.clock.time(), TICK_MS // 1000)
        before = committed[0]
        b.advance(TICK_MS)
        m.step()
        # a cut just before this step's commit loses what was metered since the last commit
        r = m.metering.imp_wh - before
        if r > risk:
            risk = r
        while ob.count:  # the link is up: everything queued is sent
            ob.peek()
            ob.pop()
    scale = 24 // hours if hours < 24 else 1
    r = {"profile": profile, "commit_wh": commit_wh, "kwh_per_day": m.metering.imp_wh * scale // 1000,
         "commits_per_day": (st.commits - c0) * scale,
         "kib_programmed_per_day": (dev.bytes_programmed - b0) * scale // 1024,
         "erases_per_day": (dev.erases - e0) * scale,
         "energy_at_risk_wh_measured": risk,
         "energy_at_risk_wh_bound": commit_wh + (MAX_POWER_W * TICK_MS + 3599999) // 3600000}
    r["cycles_20y_per_block"] = r["erases_per_day"] * 365 * YEARS // BLOCKS
    r["cycles_20y_half_partition"] = r["erases_per_day"] * 365 * YEARS // (BLOCKS // 2)
    os.umount("/flash")
    print("  %-22s commit %2d Wh: %4d kWh/day, %6d commits/day, %6d KiB/day programmed, %5d erases/day, "
          "20 y: %5d cycles/block (%5d if only half the partition rotates; rated %d), "
          "energy at risk: measured %d Wh, bound %d Wh" % (
              profile, commit_wh, r["kwh_per_day"], r["commits_per_day"], r["kib_programmed_per_day"],
              r["erases_per_day"], r["cycles_20y_per_block"], r["cycles_20y_half_partition"], RATED,
              r["energy_at_risk_wh_measured"], r["energy_at_risk_wh_bound"]))
    return r


def main():
    hours = int(sys.argv[1]) if len(sys.argv) > 1 else 24
    out = {"hot_record": hot_record_methods(), "footprint": footprint()}
    print("== the app for %d simulated hour(s) per case (1 s loop), link up, on a %d-block partition"
          % (hours, BLOCKS))
    runs = []
    for profile, load, bounds in (("household (seed 1)", lambda: Household(1), (5, 6, 10)),
                                  ("constant 5 kW", lambda: ConstLoad(5000), (5, 10)),
                                  ("constant 13.8 kW (max)", lambda: ConstLoad(MAX_POWER_W), (5,))):
        for commit_wh in bounds:
            runs.append(day(profile, load(), commit_wh, hours))  # the same day for every bound
    out["days"] = runs
    print("(cycles assume littlefs' dynamic wear levelling spreads erases over the partition; the bound on "
          "energy at risk is commit_wh + one loop period at maximum power, plus < 1 Wh of remainder)")
    print(json.dumps(out))


main()
