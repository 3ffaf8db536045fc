# Power-cut and I/O-error sweep of the real firmware (app.Meter on the sim-powercut board), run
# under micropython by tools/powercut.py:
#   micropython tools/powercut_mp.py MODE FIRST LAST STRIDE [GEOMETRY]
# MODE: dry (one clean run, prints its write/op counts), cut (power lost at the N-th program or
# erase), once / sticky (the N-th block operation fails, once or from then on), full (the file
# system is filled up at tick N). For each N the scenario of consumption, top-ups, commands and
# relay changes runs on a fresh flash; after a power cut the firmware boots again from the bytes
# that survived, the backend re-delivers every unacknowledged command, and the run goes on.
# GEOMETRY: littlefs read/prog sizes, "meter" (the store's, as on the meter image's partition;
# the default) or "root" (a stock image's root file system, the board's fallback).
# Prints one line per failed check and a JSON summary as the last line.
import sys
import commit_watch
import gc
import os
import json
import struct
from binascii import hexlify

import app as app_mod
import record
import relay as relay_mod
import store as store_mod
import logbook
import billing
from journal import Ring
from hmac256 import HmacSha256
from simhw.cutdev import CutBlockDevice
from simhw.household import Lcg
import sim_powercut

METER = "pc-0001"
KEY = b"powercut-sweep-test-key-only-32b"  # test key for this harness only
TICK_MS = 5000
TICKS = 150
BLOCKS = 96
# littlefs read/prog sizes: the meter image's partition (the store's), or a stock image's root
GEOMETRIES = {"meter": (store_mod.LFS_READ, store_mod.LFS_PROG), "root": (store_mod.ROOT_READ, store_mod.ROOT_PROG)}
GEOMETRY = GEOMETRIES["meter"]
# tick -> command; amounts are distinct so a double credit shows in the totals
SCRIPT = {
    3: ("topup", 41), 9: ("disconnect",), 14: ("reconnect", True), 22: ("topup", 67),
    30: ("status",), 38: ("topup", 23), 47: ("disconnect",), 52: ("topup", 89),
    58: ("reconnect", False), 70: ("topup", 31), 84: ("topup", 57), 95: ("disconnect",),
    101: ("reconnect", True), 112: ("topup", 73), 126: ("topup", 19), 138: ("status",),
}
CONFIG = {
    "tariff": {"v": 1, "kind": "flat", "price_per_kwh": 300000, "scale": 100},  # 3 minor/Wh
    "opening_balance": 60, "telemetry_s": 120, "auto_reconnect": False,
    # All six relay commands of SCRIPT come within one refill period: a burst that lets them
    # all act, so every relay change of the scenario is swept (the limit itself: docs/relay.md).
    "protection": {"relay": {"cmd_burst": 6}},
}
_HEAD = record.HEAD
_REDELIVER_TICKS = 6
_EXP = 1767225600 + 10 * 86400


class Backend:
    """Signs commands and re-delivers each one until the meter acknowledges it."""

    def __init__(self):
        self.mac = HmacSha256(KEY)
        self.cmds = {}  # id -> (payload, amount)
        self.acked = {}  # id -> result
        self.pending = []  # ids not acknowledged yet, in order: ids are monotonic, so the
        # backend sends the next command only once the one before is acknowledged
        self.next_id = 1000
        self.last_try = {}
        self.entries = {}  # id -> the SCRIPT entry it was made from (to issue it again)
        self.nonce = 0  # of the meter's last replay_lost event

    def lost_window(self, cid):
        """The meter refused `cid` with replay_lost: nothing it was sent before is applied any
        more. Send a resync first, then every unanswered command again under a new id (the
        resync makes the old ids stale), as docs/protocol.md 6.2 asks of a backend."""
        again = sorted(c for c in set(self.pending) | {cid} if self.entries[c][0] != "resync")
        self.pending = []
        for c in again:
            del self.cmds[c]
        self.make(("resync",))
        for c in again:
            self.make(self.entries.pop(c))

    def make(self, entry):
        cid = self.next_id
        self.next_id += 1
        op = entry[0]
        amt = 0
        if op == "topup":
            amt = entry[1]
            body = '{"m":"%s","id":%d,"exp":%d,"op":"topup","amt":%d}' % (METER, cid, _EXP, amt)
        elif op == "resync":  # every id issued so far becomes stale at the meter
            body = '{"m":"%s","id":%d,"exp":%d,"op":"resync","last":%d,"nonce":%d}' % (
                METER, cid, _EXP, cid - 1, self.nonce)
        elif op == "reconnect":
            body = '{"m":"%s","id":%d,"exp":%d,"op":"reconnect","direct":%s}' % (
                METER, cid, _EXP, "true" if entry[1] else "false")
        else:
            body = '{"m":"%s","id":%d,"exp":%d,"op":"%s"}' % (METER, cid, _EXP, op)
        body = body.encode()
        self.cmds[cid] = (hexlify(self.mac.digest(body)) + b" " + body, amt)
        self.entries[cid] = entry
        self.pending.append(cid)
        return cid

    def acked_topup_sum(self):
        return CONFIG["opening_balance"] + sum(self.cmds[c][1] for c in self.acked)

    def total_topups(self):
        return CONFIG["opening_balance"] + sum(a for _, a in self.cmds.values())


class Run:
    def __init__(self, mode, n):
        self.mode = mode
        self.n = n
        self.fails = []
        self.cut = False
        self.cut_kind = 0
        self.unreadable = 0
        self.lost = 0
        self.twice = 0
        self.relay_mismatch = 0
        self.record_mismatch = 0
        self.crashes = 0
        self.energy_lost_max = 0
        self.reboots = 0
        self.refused_full = 0
        self.full = False
        self.full_hit = False
        self.formats_redone = 0
        self.log_damaged = 0
        self.log_checked = 0
        self.backend = Backend()
        self.last_ok = None  # payload bytes of the last commit that reported success
        self.attempts = []  # payloads of commits tried since (they may have landed)
        self.energy_floor = 0
        self.board = None
        self.m = None

    def fail(self, what):
        self.fails.append(what)
        if len(self.fails) <= 3:
            print("FAIL %s n=%d: %s" % (self.mode, self.n, what))

    # -- firmware lifecycle ---------------------------------------------------------
    def _track(self, m):
        commit_watch.watch(m.store, self)

    def boot(self, dev):
        gc.collect()
        before = self.board
        if before is not None:
            try:
                os.umount("/flash")
            except OSError:
                pass
        self.board = sim_powercut.Board({"meter_id": METER, "key": KEY, "dev": dev, "config": CONFIG,
                                          "load_w": 1200, "lfs": GEOMETRY}, before)
        # The randomised reconnect delay after boot, seeded per run and boot: without it the
        # port's RNG makes every run (and the dry run's write count) different and unrepeatable.
        self.board.rand = Lcg(self.n * 131 + self.reboots).next
        if self.board.fs_state == store_mod.UNMOUNTED and dev.dead:
            return self.died()  # the cut came while formatting the new flash
        if before is not None and self.board.fs_state == store_mod.FORMATTED_BLANK:
            self.formats_redone += 1  # the cut tore the factory format: nothing was lost
        if before is not None and self.board.fs_state >= store_mod.REFORMATTED:
            self.unreadable += 1
            self.fail("flash unreadable after reboot: reformatted")
        found = None
        if before is not None:
            found = self._check_record()
            self._check_logs()
        m = app_mod.Meter(self.board)
        self._track(m)
        m.boot()
        self.m = m
        if found is not None:
            h = struct.unpack_from(_HEAD, found)
            # The intent must be the committed one. The contacts may only be closed when that intent
            # is "connected"; even then they stay open for the randomised reconnect delay after boot.
            if m.relay.state != h[12] or (self.board.relay.closed and m.relay.state != relay_mod.CONNECTED):
                self.relay_mismatch += 1
                self.fail("relay %d (closed=%s) after boot, record says %d" % (
                    m.relay.state, self.board.relay.closed, h[12]))
        self.redeliver(True)

    def _check_logs(self):
        """Every record a ring claims must read back whole; the top-up journal names each top-up
        once, with the amount the backend sent."""
        buf = bytearray(billing.SNAP_SIZE)
        c = logbook.DEFAULTS
        for name, size, cap in (("ev", logbook.EV_SIZE, c["events"]), ("lp", logbook.LP_SIZE, c["profile_days"] * 96),
                                ("topups", billing.TOPUP_SIZE, c["topups"])):
            try:
                r = Ring("/flash/log/" + name, size, cap)  # the firmware's geometry
            except OSError:
                continue  # not created yet
            seen = {}
            for seq in range(r.first_seq, r.next_seq):
                self.log_checked += 1
                if not r.read(seq, buf):
                    self.log_damaged += 1
                    self.fail("log %s record %d unreadable" % (name, seq))
                elif name == "topups":
                    _, cid, _, _, res, amt = struct.unpack_from(billing.TOPUP_FMT, buf)
                    if res != billing.result_code("applied"):
                        continue  # e.g. a store_fault entry: the command was redelivered later
                    sent = self.backend.cmds.get(cid)
                    if cid in seen or sent is None or sent[1] != amt:
                        self.log_damaged += 1
                        self.fail("top-up journal entry %d/%d is a duplicate or unknown" % (cid, amt))
                    seen[cid] = 1

    def _check_record(self):
        """What survived must be the last committed record, or one whose commit was under way."""
        st = store_mod.RecordStore("/flash/state.a", "/flash/state.b", record.SIZE)
        found = bytes(st.payload) if st.load() else None
        allowed = [self.last_ok] + self.attempts
        if found not in allowed:
            self.record_mismatch += 1
            self.fail("record after reboot is neither the last committed one nor an attempted one")
        if found is None:
            if self.backend.acked:
                self.lost += 1
                self.fail("no record, but top-ups were acknowledged")
            return None
        h = struct.unpack_from(_HEAD, found)
        topped, imp_wh, state = h[4], h[7], h[12]
        if topped < self.backend.acked_topup_sum():
            self.lost += 1
            self.fail("acknowledged top-up lost: topped_up %d < acked %d" % (
                topped, self.backend.acked_topup_sum()))
        if topped > self.backend.total_topups():
            self.twice += 1
            self.fail("topped_up %d exceeds every top-up sent" % topped)
        if imp_wh < self.energy_floor:
            self.fail("energy went backwards: %d < %d" % (imp_wh, self.energy_floor))
        self.energy_floor = imp_wh
        if self.last_ok is not None:
            intents = [struct.unpack_from(_HEAD, s)[12] for s in allowed if s is not None]
            if state not in intents:
                self.relay_mismatch += 1
                self.fail("relay intent %d is not a committed one" % state)
        self.last_ok = found
        self.attempts = []
        return found

    def died(self):
        self.cut = True
        self.cut_kind = self.board.flash.cut_kind
        self.power_cut(self.board.flash)
        self.replies()

    def power_cut(self, dev):
        """The device died: reboot the firmware on what survived."""
        self.reboots += 1
        ram_wh = self.m.metering.imp_wh if self.m else 0
        self.boot(dev.survivor())
        lost = ram_wh - self.m.metering.imp_wh
        if lost > self.energy_lost_max:
            self.energy_lost_max = lost

    # -- the world --------------------------------------------------------------------
    def call(self, fn, *args):
        try:
            fn(*args)
        except Exception as e:
            if not self.board.flash.dead:
                self.crashes += 1
                self.fail("uncaught %r" % (e,))

    def deliver(self, cid):
        self.backend.last_try[cid] = self.tick
        self.call(self.m.on_message, b"pm/v1/%s/cmd" % METER, self.backend.cmds[cid][0])

    def redeliver(self, now=False):
        """Send the oldest unacknowledged command: first time, after a reboot, or on a timeout."""
        b = self.backend
        while b.pending and not self.board.flash.dead:
            cid = b.pending[0]
            last = b.last_try.get(cid)
            if not (now or last is None or self.tick - last >= _REDELIVER_TICKS):
                return
            self.deliver(cid)
            now = False
            self.replies()
            if b.pending and b.pending[0] == cid:
                return  # not acknowledged yet: try again later

    def _uplink(self):
        """What the meter has for the backend: its outbox, then the unnumbered answers (to
        refused and repeated commands, protocol.md 6.4) it holds in RAM. (kind, payload)."""
        ob = self.m.sync.outbox
        while ob.count:
            try:
                kind, payload = ob.peek()
            except (IndexError, OSError):
                break
            ob.pop()
            yield kind, payload
        a = self.m.sync.answers
        while a:
            yield 2, a.pop(0)

    def replies(self):
        for kind, payload in self._uplink():
            if kind != 2:
                if b'"replay_lost"' in payload:
                    self.backend.nonce = json.loads(payload)["a"]
                continue
            d = json.loads(payload)
            cid = d["id"]
            if d["res"] == "replay_lost" and cid in self.backend.cmds:
                birth = json.loads(self.m.sync.birth()[1])  # retained at every connect
                if "rl" in birth:
                    self.backend.nonce = birth["rl"]
                self.backend.lost_window(cid)
                continue
            # Every answer but store_fault is final (a refusal such as rate_limited is remembered
            # with its id: the backend would send a new command, not retry this one).
            if cid in self.backend.cmds and d["res"] != "store_fault":
                if d["res"] == "applied":
                    self.backend.acked[cid] = d["res"]
                if cid in self.backend.pending:
                    self.backend.pending.remove(cid)
            elif d["res"] == "store_fault" and self.full:
                self.refused_full += 1

    def customer(self):
        if self.m.relay.state == relay_mod.READY:
            self.ready += 1
            if self.ready == 3:
                self.board.button.hold(3000 + 2 * TICK_MS)
        else:
            self.ready = 0

    def fill(self):
        """Fill the file system to the last block."""
        chunk = b"\xa5" * 1024
        try:
            with open("/flash/filler", "wb") as f:
                while True:
                    f.write(chunk)
                    f.flush()
        except OSError:
            pass
        self.full = True
        self.full_hit = True

    def unfill(self):
        try:
            os.remove("/flash/filler")
        except OSError:
            pass
        self.full = False

    def one_tick(self):
        self.board.advance(TICK_MS)
        self.call(self.m.step)
        self.customer()

    def run(self):
        self.tick = 0
        self.ready = 0
        self.full = False
        dev = CutBlockDevice(BLOCKS)
        self.dev0 = dev
        if self.mode == "cut":
            dev.cut_at = self.n
        elif self.mode in ("once", "sticky"):
            dev.fail_at = self.n
            dev.sticky = self.mode == "sticky"
        self.boot(dev)
        while self.tick < TICKS:
            self.tick += 1
            if self.mode == "full" and self.tick == self.n:
                self.fill()
            if self.tick in SCRIPT:
                self.backend.make(SCRIPT[self.tick])
            if not self.board.flash.dead:
                self.one_tick()
            if not self.board.flash.dead:
                self.redeliver()
            if not self.board.flash.dead:
                self.replies()
            if self.board.flash.dead:
                self.died()
        # Storage healthy again: power-cycle, let every command through, power-cycle, check totals.
        if self.full:
            self.unfill()
        dev = self.board.flash
        dev.fail_at = 0
        self.reboots += 1
        self.boot(dev.survivor())
        for _ in range(3 * _REDELIVER_TICKS):
            self.tick += 1
            self.one_tick()
            self.redeliver()
            self.replies()
        self.m.commit()
        self.boot(self.board.flash.survivor())
        b = self.backend
        if b.pending:
            self.fail("commands never acknowledged: %r" % b.pending)
        topped = self.m.account.topped_up
        if topped < b.total_topups():
            self.lost += 1
            self.fail("top-ups lost: topped_up %d < sent %d" % (topped, b.total_topups()))
        elif topped > b.total_topups():
            self.twice += 1
            self.fail("top-up applied twice: topped_up %d > sent %d" % (topped, b.total_topups()))
        try:
            os.umount("/flash")
        except OSError:
            pass
        return dev


def main():
    global GEOMETRY
    mode = sys.argv[1]
    first, last, stride = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    GEOMETRY = GEOMETRIES[sys.argv[5] if len(sys.argv) > 5 else "meter"]
    out = {"mode": mode, "runs": 0, "cut_points": 0, "erases_cut": 0, "lost": 0, "applied_twice": 0,
           "unreadable": 0, "relay_mismatch": 0, "record_mismatch": 0, "crashes": 0,
           "energy_lost_max_wh": 0, "reboots": 0, "failed_runs": 0, "refused_full": 0,
           "io_errors": 0, "io_error_runs": 0, "full_runs": 0, "formats_redone": 0, "log_damaged": 0, "log_records_checked": 0, "writes": 0, "ops": 0}
    if mode == "dry":
        r = Run("dry", 0)
        dev = r.run()
        out.update(runs=1, writes=dev.writes, ops=dev.ops, programs=dev.programs, erases=dev.erases,
                   bytes_programmed=dev.bytes_programmed, failed_runs=1 if r.fails else 0,
                   energy_wh=r.m.metering.imp_wh, topped_up=r.m.account.topped_up)
        print(json.dumps(out))
        return
    for n in range(first, last + 1, stride):
        r = Run(mode, n)
        dev = r.run()
        out["runs"] += 1
        if r.cut:
            out["cut_points"] += 1
            if r.cut_kind == 2:
                out["erases_cut"] += 1
        out["lost"] += r.lost
        out["applied_twice"] += r.twice
        out["unreadable"] += r.unreadable
        out["relay_mismatch"] += r.relay_mismatch
        out["record_mismatch"] += r.record_mismatch
        out["crashes"] += r.crashes
        out["reboots"] += r.reboots
        out["refused_full"] += r.refused_full
        out["formats_redone"] += r.formats_redone
        out["log_damaged"] += r.log_damaged
        out["log_records_checked"] += r.log_checked
        if r.dev0.failures:
            out["io_error_runs"] += 1
            out["io_errors"] += r.dev0.failures
        if r.full_hit:
            out["full_runs"] += 1
        if r.energy_lost_max > out["energy_lost_max_wh"]:
            out["energy_lost_max_wh"] = r.energy_lost_max
        if r.fails:
            out["failed_runs"] += 1
    print(json.dumps(out))


main()
