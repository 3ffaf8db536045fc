# Power-cut and I/O-error sweep of the real firmware (app.Meter on the sim-powercut board), run
# under micropython by tools/powercut.py:
#   micropython tools/powercut_mp.py MODE FIRST LAST STRIDE [GEOMETRY [SCENARIO [PLAN]]]
# MODE: dry (one clean run, prints its write/op counts), cut (power lost at the N-th program or
# erase), once / sticky (the N-th block operation fails, once or from then on), full (the file
# system is filled up at tick N). For each N the scenario (tools/powercut_scenarios_mp.py; default
# topup_mqtt) runs on a fresh flash, or on the flash its prologue left; after a power cut the
# firmware boots again from the bytes that survived, the backend re-delivers every unanswered
# command, the customer types again what the meter did not answer, and the run goes on.
# GEOMETRY: littlefs read/prog sizes, "meter" (the store's, as on the meter image's partition;
# the default) or "root" (a stock image's root file system, the board's fallback).
# PLAN: a JSON file from tools/powercut.py with what only CPython can make (tokens).
# Prints one line per failed check and a JSON summary as the last line.
import sys
import gc
import os
import json
import struct

import commit_watch
import app as app_mod
import record
import relay as relay_mod
import store as store_mod
import billing
from simhw.cutdev import CutBlockDevice
from simhw.household import Lcg
import sim_powercut
import powercut_rings_mp as rings
from powercut_backend_mp import Backend, REDELIVER_TICKS
import powercut_scenarios_mp as scenarios

METER = "pc-0001"
KEY = b"powercut-sweep-test-key-only-32b"  # test key for this harness only
BLOCKS = 96
_POLL_MS = 25  # how often the loop scans the keypad while the customer types (main.loop: 20-50 ms)
# The hot record's head as each layout version wrote it (written out here, not taken from
# record.py, so the harness reads what is on flash by its own account): magic, version, balance,
# charged, topped_up, topups, tariff rem, import Wh, rem, export Wh, rem, last command id, relay
# state, reasons, credit level, flags.
HEAD_V1 = "<HHiiiIIIIIIIBBBB"
HEAD_V2 = "<HHiqqIIQIQIIBBBB"
_TOPPED, _IMP_WH, _RELAY = 4, 7, 12
_APPLIED = billing.result_code("applied")
_FINISH_TICKS = 60  # at most, with healthy storage, for every command and token to go through


class Flashes:
    """The RAM flashes of a process: three buffers allocated once and used in turn (the flash
    that died and the one it powers up as are never the same). Allocating 384 KiB per boot
    instead splits MicroPython's non-moving heap until no flash finds room in one piece."""

    def __init__(self, n=3):
        self.bufs = [bytearray(BLOCKS * 4096) for _ in range(n)]
        self.i = 0
        self._blank = b"\xff" * 4096

    def device(self, image=None):
        """A powered-up CutBlockDevice holding `image` (None: erased), no faults armed."""
        buf = self.bufs[self.i]
        self.i = (self.i + 1) % len(self.bufs)
        if image is None:
            mv = memoryview(buf)
            for o in range(0, len(buf), 4096):
                mv[o:o + 4096] = self._blank
        else:
            buf[:] = image
        dev = CutBlockDevice(1)  # its counters and fault switches; the memory is the pool's
        dev.n = BLOCKS
        dev.mem = buf
        dev._mv = memoryview(buf)
        return dev


FLASHES = None


def survivor(dev):
    """The flash as it powers up again, holding what was on `dev` (no cut, no faults armed)."""
    return FLASHES.device(dev.mem)


def head(payload):
    """The record's head fields, by the version it was written with."""
    v = struct.unpack_from("<H", payload, 2)[0]
    return struct.unpack_from(HEAD_V1 if v == 1 else HEAD_V2, payload, 0)


class Tokens:
    """The customer (keypad) and the technician (REPL) typing tokens: each is typed until the
    meter answers it one of the results expected (applied or used for a good one: what the
    customer sees), again after a power cut or a store_fault. It is then acknowledged; before
    that it may or may not have been applied."""

    def __init__(self):
        self.all = []  # (text, amount, how, expect); how: "keypad" or "repl"
        self.todo = []  # indexes into `all` not acknowledged yet, in typing order
        self.started = {}  # indexes typed at least once (each may have been applied)
        self.acked = {}  # index -> result
        self.results = {}  # index -> every result the meter gave
        self.typing = -1  # index being typed now

    def add(self, text, amount, how, expect):
        self.all.append((text, amount, how, expect))
        self.todo.append(len(self.all) - 1)

    def begin(self, i):
        self.typing = i
        self.started[i] = 1

    def answered(self, text, res):
        i = self.typing
        if i < 0 or self.all[i][0] != text:
            return  # not what the customer is typing (the scenario types nothing else)
        self.typing = -1
        self.results.setdefault(i, []).append(res)
        if res in self.all[i][3]:
            self.acked[i] = res
            self.todo.remove(i)

    def acked_sum(self):
        """Top-ups the meter has answered: applied now, or used (applied before)."""
        return sum(self.all[i][1] for i in self.acked)

    def started_sum(self):
        return sum(self.all[i][1] for i in self.started)

    def total(self):
        return sum(t[1] for t in self.all)


class JournalCheck:
    """The top-up journal names each applied top-up once, with the amount it added: a command of
    the backend's (by its id) or a token typed at the meter (by its id or count)."""

    def __init__(self, run):
        b = run.backend
        self.amounts = dict(run.start.amounts) if run.start else {}
        for c in b.cmds:
            self.amounts[c] = b.cmds[c][1]
        self.tokens = [t[1] for t in run.tokens.all]
        self.seen = {}
        self.bad = 0
        self.note = ""

    def read(self, name, seq, buf):
        if name != "topups":
            return
        _, cid, src, _, res, amt = struct.unpack_from(billing.TOPUP_FMT, buf)
        if res != _APPLIED:
            return  # e.g. a store_fault entry: the command was delivered again later
        key = (src, cid, amt)
        known = self.amounts.get(cid) == amt if src == billing.SRC_MQTT else amt in self.tokens
        if key in self.seen or not known:
            self.bad += 1
            self.note = "entry %d (source %d, id %d, amount %d) is a duplicate or unknown" % (seq, src, cid, amt)
        self.seen[key] = 1


class Run:
    def __init__(self, scen, mode, n, geometry, start=None):
        self.scen = scen
        self.mode = mode
        self.n = n
        self.geometry = geometry
        self.start = start  # scenarios.Start: the flash a prologue left, and what it holds
        self.fails = []
        self.cut = False
        self.cut_kind = 0
        self.c = {}  # counters: FAIL_KEYS and INFO_KEYS
        self.energy_lost_max = 0
        self.reboots = 0
        self.full = False
        self.full_hit = False
        self.backend = Backend(METER, KEY, start.topped if start else scen.opening(), None)
        if start is not None:
            start.to_backend(self.backend)
        self.backend.verify = scen.verify
        self.tokens = Tokens()
        self.last_ok = start.payload if start else None  # the last commit that returned
        self.attempts = []  # payloads of commits tried since (they may have landed)
        self.energy_floor = start.energy if start else 0
        self.floors = dict(start.floors) if start else {}  # ring -> next_seq written before a cut
        self.ever_formatted = False  # the flash held something before the first boot
        self.board = None
        self.m = None
        self.tick = 0
        self.steps_since_boot = 0
        self.max_gap_ms = scen.tick_ms
        self.last_step = None
        self.data = {}  # the scenario's own bookkeeping

    def count(self, what, n=1):
        self.c[what] = self.c.get(what, 0) + n

    def fail(self, kind, what):
        """A failed check: the run counts once under `kind` (lost, applied_twice, unreadable, ...)."""
        if kind not in self.c:
            self.count(kind)
        self.fails.append(what)
        if len(self.fails) == 1:  # the first failure of a run (the summary counts the rest)
            print("FAIL %s %s n=%d: %s" % (self.scen.name, self.mode, self.n, what))

    @property
    def dead(self):
        return self.board.flash.dead

    # -- firmware lifecycle ---------------------------------------------------------
    def boot(self, dev):
        gc.collect()
        before = self.board
        if before is not None:
            try:
                os.umount("/flash")
            except OSError:
                pass
        self.board = sim_powercut.Board(self.scen.board_opts(METER, KEY, dev, scenarios.GEOMETRIES[self.geometry],
                                                             self.start), before)
        self.backend.clock = self.board.clock
        # The randomised reconnect delay after boot, seeded by the boot's number: without it the
        # port's RNG makes every run different and unrepeatable, and with a seed of its own per
        # run a run would leave the dry run's path before its cut, so N would not name the dry
        # run's N-th write.
        self.board.rand = Lcg(1 + 131 * self.reboots).next
        if self.board.fs_state == store_mod.UNMOUNTED and dev.dead:
            return self.died()  # the cut came while formatting the new flash
        if before is not None and self.board.fs_state == store_mod.FORMATTED_BLANK:
            self.count("formats_redone")  # the cut tore the factory format: nothing was lost
        if before is not None and self.board.fs_state >= store_mod.REFORMATTED and self.held_data():
            self.fail("unreadable", "flash unreadable after reboot: reformatted")
        found = None
        if before is not None:
            found = self._check_record()
            self._check_rings()
        m = app_mod.Meter(self.board)
        commit_watch.watch(m.store, self)
        self._watch_tokens(m)
        m.boot()
        self.m = m
        app_mod.current = m  # the technician's REPL works on the running meter
        self.steps_since_boot = 0
        if found is not None:
            self._check_relay(m, found)
        self.scen.on_boot(self, m)
        self.backend.birth(json.loads(m.sync.birth()[1]))  # retained at every connect
        # At connect the meter's queue flows first (what it held on flash through the cut), then
        # the backend sends again whatever is still unanswered.
        self.replies()
        self.redeliver(True)

    def held_data(self):
        """Whether the flash held anything the meter had committed (a reformat then loses it)."""
        return self.last_ok is not None or self.start is not None and self.start.payload is not None

    def _watch_tokens(self, m):
        """What the meter answers a typed token is what the customer sees: note it."""
        enter = m.enter_token
        tokens = self.tokens

        def watched(text):
            res = enter(text)
            tokens.answered(text, res)
            return res

        m.enter_token = watched

    def _check_relay(self, m, found):
        # The intent must be the committed one. The contacts may only be closed when that intent
        # is "connected"; even then they stay open for the randomised reconnect delay after boot.
        state = head(found)[_RELAY]
        if m.relay.state != state or (self.board.relay.closed and m.relay.state != relay_mod.CONNECTED):
            self.fail("relay_mismatch", "relay %d (closed=%s) after boot, record says %d" % (
                m.relay.state, self.board.relay.closed, state))

    def _check_rings(self):
        chk = rings.Check()
        journal = JournalCheck(self)
        rings.check("/flash", self.scen.config.get("storage"), self.floors, self.full_hit, chk, journal.read)
        self.count("log_records_checked", chk.records)
        for kind, n in (("log_damaged", chk.damaged), ("log_went_back", chk.went_back), ("log_short", chk.short)):
            if n:
                self.fail(kind, "rings: " + "; ".join(chk.notes))
        if journal.bad:
            self.fail("log_damaged", "top-up journal: " + journal.note)

    def _check_record(self):
        """What survived must be the last committed record, or one whose commit was under way."""
        st = store_mod.RecordStore("/flash/state.a", "/flash/state.b", record.SIZE)
        found = bytes(st.payload) if st.load() else None
        allowed = [self.last_ok] + self.attempts
        if found not in allowed:
            self.fail("record_mismatch", "record after reboot is neither the last committed one nor an attempted one")
        b = self.backend
        if found is None:
            if b.acked_topup_sum() > b.opening or self.tokens.acked:
                self.fail("lost", "no record, but top-ups were acknowledged")
            return None
        h = head(found)
        topped, imp_wh, state = h[_TOPPED], h[_IMP_WH], h[_RELAY]
        acked = b.acked_topup_sum() + self.tokens.acked_sum()
        if topped < acked:
            self.fail("lost", "acknowledged top-up lost: topped_up %d < acked %d" % (topped, acked))
        if topped > b.total_topups() + self.tokens.started_sum():
            self.fail("applied_twice", "topped_up %d exceeds every top-up sent" % topped)
        if imp_wh < self.energy_floor:
            self.fail("energy_back", "energy went backwards: %d < %d" % (imp_wh, self.energy_floor))
        self.energy_floor = imp_wh
        if self.last_ok is not None:
            intents = [head(s)[_RELAY] for s in allowed if s is not None]
            if state not in intents:
                self.fail("relay_mismatch", "relay intent %d is not a committed one" % state)
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
        if self.tokens.typing >= 0:
            self.tokens.typing = -1  # the customer types it again
        self.boot(survivor(dev))
        lost = ram_wh - self.m.metering.imp_wh
        if lost > self.energy_lost_max:
            self.energy_lost_max = lost
        if self.mode == "cut" and lost > self.energy_bound():
            self.fail("energy_lost", "%d Wh lost at the cut, the bound is %d" % (lost, self.energy_bound()))

    def energy_bound(self):
        """docs/storage.md: less than commit_wh, plus one loop period at the load, plus the sub-Wh
        remainder. The loop period is the longest this run had between two steps."""
        cfg = self.board.config
        return cfg["commit_wh"] + (self.scen.load_w * self.max_gap_ms + 3599999) // 3600000 + 1

    # -- the world --------------------------------------------------------------------
    def call(self, fn, *args):
        try:
            return fn(*args)
        except Exception as e:
            if not self.board.flash.dead:
                if "crashes" not in self.c:
                    sys.print_exception(e)
                self.fail("crashes", "uncaught %r" % (e,))
        return None

    def repl(self, fn, *args):
        """A REPL command: an exception there is what the technician sees at the prompt (the
        meter's loop is paused), not a crash of the meter; the command was not done."""
        try:
            return fn(*args)
        except Exception:
            self.count("repl_errors")
        return None

    def mark(self, what):
        """In the clean run: note how many programs/erases came before `what` (the dry run's
        "marks": where to cut to hit it, for tests and for replaying a failure)."""
        if self.mode == "dry":
            self.data.setdefault("marks", []).append((what, self.dev0.writes))

    def deliver(self, cid):
        self.mark(self.backend.entries[cid][0])
        self.backend.last_try[cid] = self.tick
        self.call(self.m.on_message, b"pm/v1/%s/cmd" % METER, self.backend.cmds[cid][0])

    def redeliver(self, now=False):
        """Send the oldest unanswered command: first time, after a reboot, or on a timeout."""
        b = self.backend
        while b.pending and not self.dead and self.link_up():
            cid = b.pending[0]
            last = b.last_try.get(cid)
            if not (now or last is None or self.tick - last >= REDELIVER_TICKS):
                return
            self.deliver(cid)
            now = False
            if self.dead:
                return  # the power went while the meter took it: nothing more comes out of it
            self.replies()
            if b.pending and b.pending[0] == cid:
                return  # not answered yet: try again later

    def link_up(self):
        return self.data.get("link", True)

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
        if not self.link_up() or self.dead:
            return
        b = self.backend
        for kind, payload in self._uplink():
            b.uplink(payload)
            if b.verify:
                b.check_mac(self.m.sync.signed(payload))
            if kind != 2:
                if b'"replay_lost"' in payload:
                    b.nonce = json.loads(payload)["a"]
                continue
            d = json.loads(payload)
            nonce = 0
            if d["res"] == "replay_lost":
                birth = json.loads(self.m.sync.birth()[1])
                nonce = birth.get("rl", 0)
            res = b.reply(d, nonce)
            if res is not None:
                self.scen.on_reply(self, d["id"], res, d)
            elif d["res"] == "store_fault" and self.full:
                self.count("refused_full")

    def button(self):
        """The customer holds the button to reconnect once the relay is ready for it."""
        if self.m.relay.state == relay_mod.READY:
            self.ready += 1
            if self.ready == 3:
                self.board.button.hold(3000 + 2 * self.scen.tick_ms)
        else:
            self.ready = 0

    def type_next(self):
        """The customer types the next token on the keypad (or the technician at the REPL)."""
        t = self.tokens
        if t.typing >= 0 and not self.board.keys.busy():
            t.typing = -1  # every key went down and the meter answered nothing: type it again
        if t.typing >= 0 or not t.todo:
            return
        i = t.todo[0]
        text, _, how, _ = t.all[i]
        self.mark("token")
        if how == "repl":
            repl = scenarios.quiet_repl()
            t.begin(i)
            self.repl(repl.token, text)
            t.typing = -1
        elif not self.board.keys.busy():
            t.begin(i)
            self.board.keys.type(text + "#", 75, 75)

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
        """One loop period: the keypad scanned while the customer types, then a step."""
        ui = self.m.ui
        ms = self.scen.tick_ms
        if ui is not None and self.board.keys.busy():
            clock = self.board.clock
            while ms > 0 and not self.dead:
                self.board.advance(_POLL_MS)
                ms -= _POLL_MS
                self.call(ui.poll, clock.ticks_ms())
        else:
            self.board.advance(ms)
        if not self.dead:
            self.call(self.m.step)
            self.steps_since_boot += 1
            self._gap()
        if not self.dead:
            self.button()

    def _gap(self):
        """The longest time between two of the harness's steps (a REPL session in between makes
        it longer): the loop period of the energy bound."""
        now = self.board.clock.ticks_ms()
        if self.last_step is not None:
            gap = self.board.clock.ticks_diff(now, self.last_step)
            if gap > self.max_gap_ms:
                self.max_gap_ms = gap
        self.last_step = now

    def settled(self):
        """After a whole step: what the firmware had written is what a cut may not take back."""
        self.floors = rings.written(self.m)
        self.scen.after_step(self, self.m)
        if self.m.account.exhausted():
            self.count("ticks_exhausted")
        if self.board.relay.closed:
            self.count("ticks_supplied")

    def step_world(self):
        """One tick of the scenario: its actions, the loop, the backend, the customer."""
        for action in self.scen.script.get(self.tick, ()):
            if not self.dead:
                self.scen.act(self, action)
        if not self.dead:
            self.type_next()
        if not self.dead:
            self.one_tick()
        if not self.dead:
            self.redeliver()
        if not self.dead:
            self.replies()
        if not self.dead:
            self.settled()
        if self.dead:
            self.died()

    def run(self):
        self.tick = 0
        self.ready = 0
        self.full = False
        dev = FLASHES.device(self.start.image if self.start else self.scen.image())
        self.dev0 = dev
        if self.mode == "cut":
            dev.cut_at = self.n
        elif self.mode in ("once", "sticky"):
            dev.fail_at = self.n
            dev.sticky = self.mode == "sticky"
        self.boot(dev)
        while self.tick < self.scen.ticks:
            self.tick += 1
            if self.mode == "full" and self.tick == self.n:
                self.fill()
            self.step_world()
        self.finish()
        try:
            os.umount("/flash")
        except OSError:
            pass
        return dev

    def finish(self):
        """Storage healthy again: power-cycle, let every command and token through, power-cycle,
        check the totals."""
        self.main_writes = self.dev0.writes  # the scenario's own: the cut points of the sweep
        self.main_ops = self.dev0.ops
        if self.full:
            self.unfill()
        self.scen.before_finish(self)
        dev = self.board.flash
        dev.fail_at = 0
        self.reboots += 1
        self.boot(survivor(dev))
        end = self.tick + _FINISH_TICKS
        quiet = 0
        while self.tick < end and quiet < REDELIVER_TICKS + 2:
            self.tick += 1
            self.step_world()
            busy = self.backend.pending or self.tokens.todo
            quiet = 0 if busy else quiet + 1
        self.m.commit()
        self.boot(survivor(self.board.flash))
        self._check_totals()
        self.scen.at_end(self, self.m)
        self.facts = self.scen.dry_facts(self)  # while the flash is still mounted

    def _check_totals(self):
        b = self.backend
        if b.pending:
            self.fail("unanswered", "commands never answered: %r" % b.pending)
        if self.tokens.todo:
            self.fail("unanswered", "tokens never answered: %r" % self.tokens.todo)
        want = b.total_topups() + self.tokens.total()
        topped = self.m.account.topped_up
        if topped < want:
            self.fail("lost", "top-ups lost: topped_up %d < sent %d" % (topped, want))
        elif topped > want:
            self.fail("applied_twice", "top-up applied twice: topped_up %d > sent %d" % (topped, want))
        if b.reused:
            self.fail("uplink_reused", "%d uplink numbers named two different messages" % b.reused)
        if b.restarts:
            # The flash refused the outbox (it went on in RAM) and a later boot numbers from what
            # is on flash again; its birth says so (protocol.md 5.1).
            self.count("uplink_restarts", b.restarts)
        if b.remade_after_fault:
            self.fail("invariant", "%d store_fault answers used up their command id" % b.remade_after_fault)
        if b.bad_key:
            self.fail("key_mismatch", "%d commands refused for their key: %s" % (b.bad_key, b.key_note))
        if b.bad_mac:
            self.fail("key_mismatch", "%d uplink messages not signed under the expected key" % b.bad_mac)
        missing = self.scen.uplink_gaps(self)
        if missing:
            self.fail("uplink_lost", "uplink numbers never received: %r" % missing[:8])


# What a run reports, summed over runs. FAIL_KEYS: any non-zero one fails the sweep.
FAIL_KEYS = ("lost", "applied_twice", "unreadable", "relay_mismatch", "record_mismatch", "crashes",
             "log_damaged", "log_went_back", "log_short", "energy_back", "energy_lost", "unanswered",
             "uplink_reused", "uplink_lost", "key_mismatch", "invariant")
INFO_KEYS = ("formats_redone", "log_records_checked", "refused_full", "uplink_restarts",
             "repl_errors", "backfill_by_repeat")


def summary(mode):
    out = {"mode": mode, "runs": 0, "cut_points": 0, "erases_cut": 0, "energy_lost_max_wh": 0, "reboots": 0,
           "failed_runs": 0, "io_errors": 0, "io_error_runs": 0, "full_runs": 0, "writes": 0, "ops": 0}
    for k in FAIL_KEYS + INFO_KEYS:
        out[k] = 0
    return out


def add_run(out, r):
    out["runs"] += 1
    if r.cut:
        out["cut_points"] += 1
        if r.cut_kind == 2:
            out["erases_cut"] += 1
    for k in r.c:
        out[k] = out.get(k, 0) + r.c[k]
    out["reboots"] += r.reboots
    if r.dev0.failures:
        out["io_error_runs"] += 1
        out["io_errors"] += r.dev0.failures
    if r.full_hit:
        out["full_runs"] += 1
    if r.energy_lost_max > out["energy_lost_max_wh"]:
        out["energy_lost_max_wh"] = r.energy_lost_max
    if r.fails:
        out["failed_runs"] += 1


def preload():
    """Compile every module a run may import before the first flash is allocated: bytecode lives
    as long as the process, and compiled between two runs' 384 KiB flashes it would split the
    heap so that the next flash no longer finds room in one piece."""
    import customer, keypad, paygo, openpaygo_token, calibration, repl  # noqa: F401
    import simhw.i2cbus, simhw.keypad_emu  # noqa: F401
    gc.collect()


def main():
    global FLASHES
    preload()
    FLASHES = Flashes()
    mode = sys.argv[1]
    first, last, stride = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    geometry = sys.argv[5] if len(sys.argv) > 5 else "meter"
    name = sys.argv[6] if len(sys.argv) > 6 else "topup_mqtt"
    plan = {}
    if len(sys.argv) > 7:
        with open(sys.argv[7]) as f:
            plan = json.load(f)
    scen = scenarios.get(name, plan)
    start = scen.prologue(Run, geometry)
    out = summary(mode)
    out["scenario"] = name
    if mode == "dry":
        r = Run(scen, "dry", 0, geometry, start)
        dev = r.run()
        add_run(out, r)
        out.update(writes=r.main_writes, ops=r.main_ops, programs=dev.programs, erases=dev.erases,
                   bytes_programmed=dev.bytes_programmed, energy_wh=r.m.metering.imp_wh,
                   topped_up=r.m.account.topped_up, ticks=scen.ticks)
        out.update(r.facts)
        out["ticks_exhausted"] = r.c.get("ticks_exhausted", 0)
        out["ticks_supplied"] = r.c.get("ticks_supplied", 0)
        out["marks"] = r.data.get("marks", [])
        print(json.dumps(out))
        return
    for n in range(first, last + 1, stride):
        r = Run(scen, mode, n, geometry, start)
        r.run()
        add_run(out, r)
    print(json.dumps(out))


main()
