# Storage benchmark (MicroPython): flash wear and energy at risk of the firmware's storage.
#   make bench-storage      (or: MICROPYPATH=firmware:boards micropython -X heapsize=8m bench/storage.py [hours])
# Every figure is measured on the littlefs geometry the ESP32 really mounts:
#   device   the meter image: /data on its "meter" partition (size from
#            boards/esp32_meter/partitions.csv), mounted by the board with the store's read/prog size
#   stock    the fallback on a stock image without that partition: /data on the root file system,
#            the 2 MiB "vfs" partition the port's _boot.py mounts with VfsLfs2's defaults (32/32)
# 1. Hot record: A/B slots vs temporary file + rename, bytes programmed and blocks erased per commit.
# 2. Footprint of the logs at full size.
# 3. The real app (sim-powercut board on a RAM flash of that geometry) for a simulated day per load
#    profile and commit bound, with the link up (outbox drained and checkpointed): commits, bytes
#    programmed and blocks erased per day, projected erase cycles per block over 20 years, and the
#    energy a power cut can lose (measured worst case: energy metered but not yet committed just
#    before a commit, and the bound from the commit rule).
# Prints figures; asserts nothing.
import sys
import os
import gc
import json
import time
import vfs

import app as app_mod
import record
import store
from simhw.cutdev import CutBlockDevice
from simhw.household import Household
import sim_powercut
import esp32_atm90e26 as esp32_board

YEARS = 20
RATED = 100000  # erase cycles the flash is rated for
TICK_MS = 1000  # the real board's loop period
MAX_POWER_W = 13800
BLOCK = 4096
STOCK_VFS = 0x200000  # ESP32_GENERIC's 4 MiB layout: the root file system from 0x200000 to the end
PARTITIONS = "boards/esp32_meter/partitions.csv"  # the meter image's table (run from the repository root)


def partition_size(label):
    """Size in bytes of partition `label` in the meter image's partition table (ESP-IDF CSV)."""
    with open(PARTITIONS) as f:
        for line in f:
            cols = [c.strip() for c in line.split("#")[0].split(",")]
            if len(cols) >= 5 and cols[0] == label:
                return int(cols[4], 0)
    raise ValueError("no partition %r in %s" % (label, PARTITIONS))


# name -> (what, blocks, read size, prog size)
GEOMETRIES = {
    "device": ("meter image, /data on the \"meter\" partition", partition_size("meter") // BLOCK,
               store.LFS_READ, store.LFS_PROG),
    "stock": ("stock image fallback, /data on the root file system", STOCK_VFS // BLOCK,
              store.ROOT_READ, store.ROOT_PROG),
}


def describe(geom):
    what, blocks, rs, ps = GEOMETRIES[geom]
    return "%s: %d blocks (%d KiB), littlefs read/prog %d/%d, inline limit %d bytes" % (
        what, blocks, blocks * BLOCK // 1024, rs, ps, 4 * max(rs, ps))


def hot_record(geom, methods, commits=2000):
    size = record.SIZE
    what, blocks, rs, ps = GEOMETRIES[geom]
    print("== hot record (%d + 8 bytes), %d commits, %s" % (size, commits, describe(geom)))
    res = {}
    for method in methods:
        dev = blank_device(blocks)
        store.mount(dev, "/b", rs, ps)
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
        vfs.umount("/b")
        r = {"bytes_per_commit": (dev.bytes_programmed - b0) // commits,
             "programs_per_commit_x100": (dev.programs - p0) * 100 // commits,
             "erases_per_1000_commits": (dev.erases - e0) * 1000 // commits, "host_ms": ms}
        res[method] = r
        print("  %-10s %5d bytes programmed/commit, %d.%02d programs/commit, %4d erases per 1000 commits"
              % (method, r["bytes_per_commit"], r["programs_per_commit_x100"] // 100,
                 r["programs_per_commit_x100"] % 100, r["erases_per_1000_commits"]))
    return res


def footprint(geom):
    """Fill every ring of the default layout past its capacity; report the blocks in use."""
    import logbook
    import events
    import billing
    from outbox import Outbox, CAPACITY

    what, blocks, rs, ps = GEOMETRIES[geom]
    cap = esp32_board.FALLBACK_OUTBOX if geom == "stock" else CAPACITY  # as the board sets it there
    dev = blank_device(blocks)
    store.mount(dev, "/b", rs, ps)
    s = store.RecordStore("/b/state.a", "/b/state.b", record.SIZE)
    s.commit()
    s.commit()
    lb = logbook.Logbook("/b")
    ob = Outbox(cap, "/b/outbox")
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
    for _ in range(cap + cap // 4):
        ob.put(0, msg)
    ms = time.ticks_diff(time.ticks_ms(), t0)
    st = os.statvfs("/b")
    used = st[2] - st[3]
    faults = lb.faults + ob.faults  # flash errors (a full file system), not ring rotation
    vfs.umount("/b")
    print("== footprint with every ring full (default sizes), %s: %d of %d blocks (%d KiB of %d KiB, %d%%)%s"
          % (describe(geom), used, blocks, used * BLOCK // 1024, blocks * BLOCK // 1024, used * 100 // blocks,
             ", %d flash errors (full)" % faults if faults else ""))
    print("   load profile %d days (%d records), events %d + last 10 per type, daily %d, monthly %d, "
          "top-ups %d, outbox %d messages; filled in %d ms on the host" % (
              c["profile_days"], c["profile_days"] * 96, c["events"], c["daily"], c["monthly"], c["topups"],
              cap, ms))
    return {"blocks_used": used, "blocks": blocks, "flash_errors": faults}


class ConstLoad:
    def __init__(self, w):
        self.w = w

    def power_w(self, utc, dt_s):
        return self.w


_DEV = []


def blank_device(blocks):
    """One RAM flash of the largest geometry, erased again for each case and cut to `blocks` (a new
    one each time would fragment the heap)."""
    if not _DEV:
        _DEV.append(CutBlockDevice(max(g[1] for g in GEOMETRIES.values())))
    dev = _DEV[0]
    blank = b"\xff" * dev.bs
    for blk in range(len(dev.mem) // dev.bs):
        dev._mv[blk * dev.bs:(blk + 1) * dev.bs] = blank
    dev.n = blocks  # what littlefs sees (ioctl 4)
    dev.programs = dev.erases = dev.bytes_programmed = dev.reads = dev.writes = dev.ops = 0
    return dev


def day(geom, profile, load, commit_wh, hours):
    gc.collect()
    what, blocks, rs, ps = GEOMETRIES[geom]
    dev = blank_device(blocks)
    cfg = {"commit_wh": commit_wh, "opening_balance": 100000000 // 100}
    if geom == "stock":
        cfg = esp32_board.fallback_config(cfg)  # the smaller outbox the board sets there
    b = sim_powercut.Board({"meter_id": "bench-1", "key": b"b" * 32, "dev": dev, "config": cfg, "lfs": (rs, ps)})
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
    r = {"geometry": geom, "blocks": blocks, "profile": profile, "commit_wh": commit_wh,
         "kwh_per_day": m.metering.imp_wh * scale // 1000,
         "commits_per_day": (st.commits - c0) * scale,
         "kib_programmed_per_day": (dev.bytes_programmed - b0) * scale // 1024,
         "erases_per_day": (dev.erases - e0) * scale,
         "energy_at_risk_wh_measured": risk,
         "energy_at_risk_wh_bound": commit_wh + (MAX_POWER_W * TICK_MS + 3599999) // 3600000}
    r["erases_per_1000_commits"] = r["erases_per_day"] * 1000 // max(1, r["commits_per_day"])
    r["cycles_20y_per_block"] = r["erases_per_day"] * 365 * YEARS // blocks
    r["cycles_20y_half_partition"] = r["erases_per_day"] * 365 * YEARS // (blocks // 2)
    vfs.umount("/flash")
    print("  %-6s %-22s commit %2d Wh: %4d kWh/day, %6d commits/day, %6d KiB/day programmed, %5d erases/day "
          "(%4d per 1000 commits), 20 y: %6d cycles/block (%6d if only half the partition rotates; rated %d), "
          "energy at risk: measured %d Wh, bound %d Wh" % (
              geom, profile, commit_wh, r["kwh_per_day"], r["commits_per_day"], r["kib_programmed_per_day"],
              r["erases_per_day"], r["erases_per_1000_commits"], r["cycles_20y_per_block"],
              r["cycles_20y_half_partition"], RATED, r["energy_at_risk_wh_measured"], r["energy_at_risk_wh_bound"]))
    return r


def main():
    hours = int(sys.argv[1]) if len(sys.argv) > 1 else 24
    out = {"geometries": {}}
    for g in ("device", "stock"):
        what, blocks, rs, ps = GEOMETRIES[g]
        out["geometries"][g] = {"what": what, "blocks": blocks, "readsize": rs, "progsize": ps}
    out["hot_record"] = {"device": hot_record("device", ("ab", "tmp_rename")), "stock": hot_record("stock", ("ab",))}
    out["footprint"] = footprint("device")
    out["footprint_stock"] = footprint("stock")
    runs = []
    for geom, cases in (("device", (("household (seed 1)", lambda: Household(1), (5, 6, 10)),
                                    ("constant 5 kW", lambda: ConstLoad(5000), (5, 10)),
                                    ("constant 13.8 kW (max)", lambda: ConstLoad(MAX_POWER_W), (5,)))),
                        ("stock", (("household (seed 1)", lambda: Household(1), (5,)),
                                   ("constant 5 kW", lambda: ConstLoad(5000), (5,))))):
        print("== the app for %d simulated hour(s) per case (1 s loop), link up, %s" % (hours, describe(geom)))
        for profile, load, bounds in cases:
            for commit_wh in bounds:
                runs.append(day(geom, profile, load(), commit_wh, hours))  # the same day for every bound
    out["days"] = runs
    print("(cycles assume littlefs' dynamic wear levelling spreads erases over the partition; the bound on "
          "energy at risk is commit_wh + one loop period at maximum power, plus < 1 Wh of remainder)")
    print(json.dumps(out))


main()
