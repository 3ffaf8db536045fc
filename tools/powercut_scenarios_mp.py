# The named scenarios of the power-cut sweep (tools/powercut_mp.py), under MicroPython. Each one
# drives the real app.Meter on the sim-powercut board through the paths the world uses: signed
# commands (on_message), the customer's keypad, the technician's REPL, the passing of time. A
# scenario is its config, a script (tick -> actions) and its own invariant, checked after every
# reboot and step on top of the harness's (no acknowledged top-up lost, none applied twice,
# energy monotonic and lost within the commit bound, relay = committed intent, every ring
# readable, uplink numbers unique, no crash). Actions:
#   ("cmd", (op, members))  the backend signs and sends a command (re-sent until answered)
#   ("token", name, how, expect)  the customer types a token of the plan ("keypad") or the
#                           technician does at the REPL ("repl"), until the meter answers one of expect
#   ("link", up)            the uplink goes down / comes back (the backend reads nothing meanwhile)
#   anything else           the scenario's own act()
import os
import struct
import record
import store as store_mod
import timebase
import powercut_rings_mp as rings

UTC0 = 1767225600  # 2026-01-01 00:00 UTC
# littlefs read/prog sizes: the meter image's partition (the store's), or a stock image's root
GEOMETRIES = {"meter": (store_mod.LFS_READ, store_mod.LFS_PROG), "root": (store_mod.ROOT_READ, store_mod.ROOT_PROG)}
BASE = {
    "tariff": {"v": 1, "kind": "flat", "price_per_kwh": 50000, "scale": 100},  # 0.5 minor/Wh
    "opening_balance": 60, "telemetry_s": 120, "auto_reconnect": False,
    # Up to six relay commands within one refill period (topup_mqtt's round): a burst that lets
    # them all act, so every relay change of the scenario is swept (the limit: docs/relay.md).
    "protection": {"relay": {"cmd_burst": 6}},
}


def cmd(op, **members):
    return ("cmd", (op, members))


class Start:
    """A flash a prologue left (a meter that has been in service): its image, its clock, and
    what the harness must know of it (the record, the top-ups in it, the rings written)."""

    def __init__(self, run, image):
        self.image = image
        self.utc = timebase.to_unix(run.board.clock.time())
        self.payload = run.last_ok
        self.topped = run.m.account.topped_up
        self.energy = run.m.metering.imp_wh
        self.floors = dict(run.floors)
        self.next_id = run.backend.next_id
        b = run.backend
        self.old = [b.cmds[c][0] for c in sorted(b.acked) if b.acked[c] == "applied" and b.entries[c][0] == "topup"]
        self.amounts = dict((c, b.cmds[c][1]) for c in b.cmds)  # what the top-up journal may name
        self.last_id = run.m.commands.last_id
        self.seen = dict(b.seen)  # the uplink numbers the backend has had: the main run goes on from them

    def to_backend(self, b):
        b.next_id = self.next_id
        b.seen = dict(self.seen)


class Scenario:
    name = "?"
    ticks = 150
    tick_ms = 5000
    # 6 kW (electric heating): 8.3 Wh a step, so an energy commit (every commit_wh = 5 Wh) comes
    # at every step, as on a busy meter with a 1 s loop, and the sweep has many commits to cut.
    load_w = 6000
    utc_start = UTC0
    extra = {}  # config on top of BASE
    parts = {}  # board options on top of the harness's (keypad, cal, true_cal)
    verify = False  # the backend checks the MAC of everything the meter sends up

    def __init__(self, plan):
        cfg = dict(BASE)
        cfg.update(self.extra)
        self.config = cfg
        self.plan = plan
        self.script = {}
        self.make_script()

    def make_script(self):
        pass

    def at(self, tick, *actions):
        self.script.setdefault(tick, []).extend(actions)

    def traffic(self, first, last, every=12, amt=40):
        """The backend's everyday traffic, around what the scenario is about: a top-up (each of
        its own amount, so one applied twice shows in the totals) and a status request in turn."""
        k = 0
        for tick in range(first, last, every):
            self.at(tick, cmd("topup", amt=amt + k) if k % 2 == 0 else cmd("status"))
            k += 1

    def opening(self):
        return self.config.get("opening_balance", 0)

    def image(self):
        return None  # a blank flash

    def prologue(self, run_cls, geometry):
        return None

    def board_opts(self, meter, key, dev, lfs, start):
        opts = {"meter_id": meter, "key": key, "dev": dev, "config": self.config, "load_w": self.load_w,
                "lfs": lfs, "utc_start": start.utc if start else self.utc_start}
        opts.update(self.parts)
        return opts

    def act(self, run, action):
        kind = action[0]
        if kind == "cmd":
            run.backend.make(action[1])
        elif kind == "token":
            text, amount = self.plan["tokens"][action[1]]
            run.tokens.add(text, amount, action[2], action[3])
        elif kind == "link":
            run.data["link"] = action[1]
        else:
            self.custom(run, action)

    def custom(self, run, action):
        raise ValueError("unknown action %r" % (action,))

    # -- the scenario's own checks (hooks) ------------------------------------------------
    def on_boot(self, run, m):
        pass

    def after_step(self, run, m):
        pass

    def on_reply(self, run, cid, res, doc):
        pass

    def before_finish(self, run):
        pass

    def at_end(self, run, m):
        pass

    def dry_facts(self, run):
        """What the clean run shows the scenario did (tools/powercut.py checks it did)."""
        return {}

    def uplink_gaps(self, run):
        """Uplink numbers the backend never got. With power cuts only (no I/O errors, which may
        send the outbox to RAM) every number must arrive: a cut loses no queued message."""
        if run.mode not in ("dry", "cut"):
            return []
        seen = run.backend.seen
        top = max(seen) if seen else 0
        return [s for s in range(self.first_kept(run), top + 1) if s not in seen]

    def first_kept(self, run):
        return 1


def quiet_repl():
    """The technician's REPL kit (firmware/repl.py), its printing kept off the harness's output."""
    import repl
    repl._out = lambda msg: None
    return repl


def invariant(run, what):
    run.fail("invariant", what)


# -- 1. top-ups over the command path ---------------------------------------------------------------
class TopupMqtt(Scenario):
    """Consumption, top-ups, remote disconnects and reconnects (direct, and armed for the
    customer's button), status requests, credit running out: the sweep's original scenario,
    twice over (the second round with other amounts)."""
    name = "topup_mqtt"
    ticks = 300
    ROUND = ((3, "topup", 41), (9, "disconnect", None), (14, "reconnect", True), (22, "topup", 67),
             (30, "status", None), (38, "topup", 23), (47, "disconnect", None), (52, "topup", 89),
             (58, "reconnect", False), (70, "topup", 31), (84, "topup", 57), (95, "disconnect", None),
             (101, "reconnect", True), (112, "topup", 73), (126, "topup", 19), (138, "status", None))

    def make_script(self):
        for start, more in ((0, 0), (150, 100)):
            for tick, op, arg in self.ROUND:
                if op == "topup":
                    c = cmd(op, amt=arg + more)
                elif op == "reconnect":
                    c = cmd(op, direct=arg)
                else:
                    c = cmd(op)
                self.at(start + tick, c)


# -- 2. tokens typed on the keypad and at the REPL ---------------------------------------------------
class TokenLocal(Scenario):
    """20-digit tokens and OpenPAYGO codes typed on the keypad, one at the technician's REPL, one
    typed again (used), a wrong one and a typo; token ids out of order. A token counts as
    acknowledged once the meter answered it applied (or used) on the screen; the customer types
    it again after a cut or a store_fault, and it must apply exactly once."""
    name = "token_local"
    ticks = 180
    extra = {"tokens": ["pm", "openpaygo"]}
    parts = {"keypad": True}

    def make_script(self):
        ok = ("applied", "used")
        for tick, name, how, expect in (
                (4, "pm1", "keypad", ok), (18, "opg1", "keypad", ok), (30, "pm2", "keypad", ok),
                (44, "wrong_meter", "keypad", ("bad_mac",)), (52, "pm3", "repl", ok),
                (64, "pm1_again", "keypad", ("used",)), (76, "typo", "keypad", ("check_digit",)),
                (88, "opg2", "keypad", ok), (100, "pm4", "keypad", ok), (112, "pm6", "keypad", ok),
                (124, "pm5", "keypad", ok), (134, "opg3", "repl", ok)):
            self.at(tick, ("token", name, how, expect))
        self.traffic(9, 175, 5)

    def at_end(self, run, m):
        # Every token answered as the customer expects it (applied once, the rest refused).
        t = run.tokens
        for i in range(len(t.all)):
            if i not in t.acked:
                invariant(run, "token %d never got %r (got %r)" % (i, t.all[i][3], t.results.get(i)))

    def dry_facts(self, run):
        t = run.tokens
        keyed = sum(len(t.results.get(i, ())) for i in range(len(t.all)) if t.all[i][2] == "keypad")
        return {"tokens_answered": len(t.acked), "tokens_keyed": keyed}


# -- 3. a tariff pushed for later, then in force ----------------------------------------------------
class TariffPush(Scenario):
    """Two tariffs pushed with a future activation time: the first becomes active while the
    meter runs, then the second is pushed and becomes active later. At every step the tariff in
    force is the one the committed pushes make it at that time (the board's before any), and the
    one waiting is the last pushed; never a mix, never one that was acknowledged forgotten."""
    name = "tariff_push"
    ticks = 160
    PRICES = (50000, 75000, 40000)  # the board's, the first push's, the second's

    def make_script(self):
        self.at(5, self._push(1, UTC0 + 120))
        self.at(12, cmd("topup", amt=200))
        self.at(60, self._push(2, UTC0 + 600))
        self.at(90, cmd("topup", amt=300))
        self.traffic(16, 155, 5)

    def _push(self, k, at):
        return cmd("tariff", tariff={"v": 1, "kind": "flat", "price_per_kwh": self.PRICES[k], "scale": 100,
                                     "activate_at": at})

    def _pushes(self, run):
        """(price, activate_at) of every push made, in order, and how many were acknowledged."""
        b = run.backend
        out = []
        acked = 0
        for c in sorted(b.cmds):
            op, mem = b.entries[c]
            if op == "tariff":
                out.append((mem["tariff"]["price_per_kwh"], mem["tariff"]["activate_at"]))
                if b.acked.get(c) == "applied":
                    acked = len(out)
        return out, acked

    def after_step(self, run, m):
        # A step's energy is priced at its last second (app.py): a tariff activating at `at` is in
        # force once a step has ended after `at`.
        now = timebase.to_unix(m.timesrc.bill_time(m.clock.time())) - 1
        pushes, acked = self._pushes(run)
        allowed = []
        for j in range(acked, len(pushes) + 1):
            force = self.PRICES[0]
            wait = None
            for price, at in pushes[:j]:
                if at <= now:
                    force = price
                else:
                    wait = price
            allowed.append((force, wait))
        t = m.tariff
        got = (t.t.price[0], t.passive.price[0] if t.passive is not None else None)
        if got not in allowed:
            invariant(run, "tariff in force/waiting %r at %d, committed pushes allow %r" % (got, now, allowed))


# -- 4. key rotation ----------------------------------------------------------------------------------
class KeyRotation(Scenario):
    """Three key rotations among top-ups and relay commands. After every cut the backend must
    still talk to the meter: the key in force is the last rotation answered (or the one after it),
    a rotation sent again under the old key gets its original answer, commands under the key in
    force are taken, and everything the meter sends up is signed under it."""
    name = "key_rotation"
    ticks = 180
    verify = True

    def make_script(self):
        for tick, c in ((5, cmd("topup", amt=41)), (15, cmd("rotkey", kid=1)), (25, cmd("topup", amt=67)),
                        (40, cmd("status")), (55, cmd("rotkey", kid=2)), (65, cmd("topup", amt=23)),
                        (80, cmd("disconnect")), (90, cmd("reconnect", direct=True)), (100, cmd("rotkey", kid=3)),
                        (110, cmd("topup", amt=89)), (130, cmd("topup", amt=31))):
            self.at(tick, c)
        self.traffic(20, 175, 5)

    def on_boot(self, run, m):
        acked, made = run.backend.ops_acked("rotkey")
        kid = m.sync.kid
        if not acked <= kid <= made:
            invariant(run, "key %d in force, %d rotations answered of %d sent" % (kid, acked, made))
        key = run.backend.keys.get(kid)
        if key is None or m.remote._key != key:
            invariant(run, "the key in force is not the one kid %d names" % kid)

    def at_end(self, run, m):
        if m.sync.kid != 3 or run.backend.kid != 3:
            invariant(run, "after three rotations the meter holds kid %d, the backend %d" % (m.sync.kid, run.backend.kid))


# -- 5. credit rules ----------------------------------------------------------------------------------
_SHORT = {"low1": "low1", "low2": "low2", "hyst": "hysteresis", "maxb": "max_balance", "rth": "reconnect_threshold"}


class CreditRuleChange(Scenario):
    """Credit rules changed five times (short members and "credit" objects) while credit runs
    out and top-ups arrive. After every reboot and step the rules in force are those of the
    answered commands, or of the one after them: never a mix, never the board's defaults again."""
    name = "credit_rule_change"
    ticks = 160

    def make_script(self):
        for tick, c in ((10, cmd("limits", low1=400, low2=150)),
                        (30, cmd("limits", credit={"ec_limit": 200, "ec_threshold": 100})),
                        (50, cmd("limits", maxb=5000, rth=50)), (70, cmd("topup", amt=300)),
                        (85, cmd("limits", credit={"overdraft": 40, "debt_per_day": 5})),
                        (100, cmd("topup", amt=80)), (120, cmd("limits", hyst=30, low1=350))):
            self.at(tick, c)
        self.traffic(16, 155, 5)

    def _states(self, run):
        """The rules after each limits command made, in order (the board's first), and how many
        of them were answered."""
        b = run.backend
        import esp32_atm90e26 as real  # the sim-powercut board's defaults
        rules = dict(real.CONFIG.get("credit") or {})
        rules.update(self.config.get("credit") or {})
        states = [dict(rules)]
        acked = 0
        for c in sorted(b.cmds):
            op, mem = b.entries[c]
            if op != "limits":
                continue
            for k in mem:
                if k == "credit":
                    rules.update(mem[k])
                else:
                    rules[_SHORT[k]] = mem[k]
            states.append(dict(rules))
            if b.acked.get(c) == "applied":
                acked = len(states) - 1
        return states, acked

    def _check(self, run, m):
        states, acked = self._states(run)
        keys = {}
        for s in states:
            keys.update(s)
        got = dict((k, m._credit_cfg.get(k)) for k in keys)
        for s in states[acked:]:
            if all(got[k] == s.get(k) for k in keys) and self._applied(m.account, s):
                return
        invariant(run, "credit rules %r in force; the answered commands allow %r" % (got, states[acked:]))

    def _applied(self, a, s):
        # What the account does follows the saved rules, not just the copy kept with them.
        for k in s:
            if getattr(a, "hyst" if k == "hysteresis" else k) != s[k]:
                return False
        return True

    def on_boot(self, run, m):
        self._check(run, m)

    def after_step(self, run, m):
        self._check(run, m)


# -- 6. calibration from the REPL ---------------------------------------------------------------------
class CalibrationWrite(Scenario):
    """A technician calibrates voltage and current and saves, later the power gain and saves
    again, at the REPL against a reference meter. After every reboot the calibration in force is
    the board's, or one that was saved (the last saved once the technician saw it saved): never a
    torn or foreign record (cal_state "invalid"). A procedure cut short is done again."""
    name = "calibration_write"
    ticks = 160
    parts = {"cal": True, "true_cal": {"ugain": 0x6A00, "igain": 0x7800, "pgain": 0x1E00}}

    def make_script(self):
        # The reference meter reads the emulated supply: 230 V, the load's current and power.
        load = float(self.load_w)
        self.at(20, ("calibrate", (("voltage", 230.0), ("current", load / 230.0), ("save",))))
        self.at(100, ("calibrate", (("power", load), ("save",))))
        self.traffic(3, 155, 5, 60)  # credit enough to keep the load on: the procedures need it

    def custom(self, run, action):
        run.data.setdefault("todo", []).append(action[1])

    def after_step(self, run, m):
        todo = run.data.get("todo")
        if todo:
            self._procedure(run, m, todo[0])

    def _procedure(self, run, m, steps):
        repl = quiet_repl()
        saves = run.data.setdefault("saves", [])  # [regs, acked]
        for s in steps:
            if s[0] == "save":
                saves.append([dict(m.metering.chip.cal), False])
                run.mark("cal_save")
            res = run.repl(repl.calibrate, *s)
            if run.dead or res is None:
                return  # cut short (or refused): the technician starts the procedure again
            if s[0] == "save":
                saves[-1][1] = True
        run.data["todo"].pop(0)

    def on_boot(self, run, m):
        chip = m.metering.chip
        saves = run.data.get("saves", [])
        last = -1
        for i in range(len(saves)):
            if saves[i][1]:
                last = i
        allowed = [s[0] for s in saves[last if last >= 0 else 0:]]
        if last < 0:
            allowed.append(run.data.setdefault("board_cal", dict(chip.cal)))
        if chip.cal_state == "invalid" or dict(chip.cal) not in allowed:
            invariant(run, "calibration %s after reboot is not one saved (%d saves, last seen saved %d)" % (
                chip.cal_state, len(saves), last))

    def dry_facts(self, run):
        saves = run.data.get("saves", [])
        return {"calibrations_saved": sum(1 for s in saves if s[1])}


# -- 7. day and month billing snapshots ----------------------------------------------------------------
class Snapshots(Scenario):
    """From 23:57 on 30 January across midnight (a daily snapshot), the backend's time command to
    23:57:30 on 31 January, across midnight (a day and the month of January), then to 23:58 on 28
    February (the jump closes 1 February) and across midnight (the day and February). Each day and
    month closed has one snapshot, readable after every reboot; none twice."""
    name = "snapshots"
    ticks = 160
    utc_start = 1769817420  # 2026-01-30 23:57:00 UTC
    DAYS = [(2026, 1, 30), (2026, 1, 31), (2026, 2, 1), (2026, 2, 28)]
    MONTHS = [(2026, 1), (2026, 2)]

    def make_script(self):
        self.at(20, cmd("topup", amt=150))
        self.at(60, cmd("time", utc=1769903850))
        self.at(100, cmd("time", utc=1772323080))
        self.at(120, cmd("topup", amt=90))
        self.traffic(26, 155, 5)

    def at_end(self, run, m):
        # A day or month frozen twice is always wrong; one missing only where the flash refused
        # writes (I/O errors, a full disk): a power cut alone must not lose one.
        complete = run.mode in ("dry", "cut")
        days, months = self._frozen(m)
        for got, want, what in ((sorted(days), self.DAYS, "daily"), (sorted(months), self.MONTHS, "monthly")):
            twice = [d for i, d in enumerate(got) if d in got[:i]]
            if twice or (complete and got != want):
                invariant(run, "%s snapshots %r, expected each of %r once" % (what, got, want))

    def _frozen(self, m):
        days, months = [], []
        b = m.billing
        buf = bytearray(len(b._buf))
        for ring, out in ((b.daily, days), (b.monthly, months)):
            for seq in range(ring.first_seq, ring.next_seq):
                if ring.read(seq, buf):
                    kind, y, mo, d = rings.snapshot_date(buf)
                    out.append((y, mo, d) if kind == 1 else (y, mo))
        return days, months

    def dry_facts(self, run):
        days, months = self._frozen(run.m)
        return {"daily_snapshots": len(days), "monthly_snapshots": len(months)}


# -- 8. rings rotating ---------------------------------------------------------------------------------
_SMALL_RINGS = {"events": 8, "topups": 4, "outbox": 20, "profile_days": 1, "daily": 1, "monthly": 1}


class _Aging(Scenario):
    """Prologue of ring_rotation: two days of service at long loop periods, so the load profile
    is four records short of rotating when the sweep starts."""
    name = "ring_rotation/prologue"
    ticks = 358
    utc_start = UTC0 - 1800  # 31 December 23:30: two midnights (and a month) behind it
    tick_ms = 450000  # under the chip's max_poll_ms (533 s at the board's maximum power)
    extra = {"storage": _SMALL_RINGS, "telemetry_s": 900}

    def make_script(self):
        for k in range(8):
            self.at(20 + 40 * k, cmd("topup", amt=500 + k))


class RingRotation(Scenario):
    """Every ring wraps while the power is cut: small rings (events 8, top-ups 4, outbox 20, load
    profile one day, snapshots one) on a meter two days in service, two and a half hours at
    one-minute loop periods across midnight, with top-ups and relay commands. Every ring must read back after every
    reboot, none go back past what was written, each hold its capacity."""
    name = "ring_rotation"
    ticks = 150
    tick_ms = 60000
    extra = {"storage": _SMALL_RINGS}
    WRAPS = ("events", "profile", "outbox", "topups", "daily")

    def make_script(self):
        # A one-minute step at 6 kW costs 50 minor: top-ups big enough to keep the supply on a while.
        for tick, c in ((4, cmd("topup", amt=1041)), (12, cmd("disconnect")), (20, cmd("reconnect", direct=True)),
                        (30, cmd("topup", amt=867)), (45, cmd("topup", amt=723)), (60, cmd("status")),
                        (70, cmd("topup", amt=989)), (85, cmd("disconnect")), (92, cmd("reconnect", direct=True)),
                        (100, cmd("topup", amt=831)), (110, cmd("topup", amt=757))):
            self.at(tick, c)

    def prologue(self, run_cls, geometry):
        start = age(run_cls, geometry, _Aging(self.plan))
        # Powered up again at 22:30 on 2 January (the prologue ends a little before, by how long
        # its last commands took): the sweep's two and a half hours cross the third midnight.
        start.utc = max(start.utc, UTC0 + 2 * 86400 - 5400)
        return start

    def dry_facts(self, run):
        have = rings.live(run.m)
        wrapped = [k for k in have if have[k].first_seq > 0]
        return {"rings_wrapped": sorted(wrapped)}


def age(run_cls, geometry, pscen):
    """Run a prologue scenario cleanly and keep the flash it leaves (it ends with a commit and a
    clean power-cycle): the start of the sweep's runs."""
    r = run_cls(pscen, "dry", 0, geometry)
    r.run()
    if r.fails:
        raise RuntimeError("the prologue %s fails its own checks: %r" % (pscen.name, r.fails[:3]))
    return Start(r, bytes(r.board.flash.mem))


# -- 9. outbox overflow and backfill ------------------------------------------------------------------
class OutboxOverflow(Scenario):
    """The link is down for 100 steps with telemetry every 20 s: the 10-message outbox overflows
    and drops its oldest. Then the backend drains it, sees the gap, and asks for a backfill from
    the first number it misses: the meter sends again everything it still holds from there. No
    number may name two messages, and every number from the backfill's "from" on must arrive."""
    name = "outbox_overflow"
    ticks = 170
    extra = {"storage": {"outbox": 10}, "telemetry_s": 20}

    def make_script(self):
        self.at(5, cmd("topup", amt=41))
        self.at(10, ("link", False))
        self.at(40, cmd("topup", amt=67))  # sent while the link is down: delivered once it is up
        self.at(110, ("link", True))
        self.at(114, ("backfill",))
        self.at(130, cmd("status"))
        self.traffic(120, 165, 5)

    def custom(self, run, action):
        seen = run.backend.seen
        top = max(seen) if seen else 0
        gap = [s for s in range(1, top + 1) if s not in seen]
        run.data["asked"] = gap[0] if gap else 1
        run.data["top"] = top  # the meter's newest number then: the link is up and drained
        run.backend.make(("backfill", {"from": run.data["asked"]}))

    def on_reply(self, run, cid, res, doc):
        # The numbered reply says what is sent again (an answer to a repeat does not).
        if run.backend.entries[cid][0] == "backfill" and "from" in doc:
            run.data["backfill"] = (doc["from"], doc["to"])

    def before_finish(self, run):
        run.data["link"] = True

    def first_kept(self, run):
        """The first number the backfill must bring: its reply's "from"; when only an answer to
        a repeat came (a cut took the numbered reply: a repeat carries no "from"), what the
        outbox must still hold of what was asked."""
        bf = run.data.get("backfill")
        if bf is not None:
            return bf[0] or 1
        if "asked" not in run.data:
            return 1
        return max(run.data["asked"], run.data["top"] - self.config["storage"]["outbox"] + 1)

    def at_end(self, run, m):
        bf = run.data.get("backfill")
        if bf is None:
            run.count("backfill_by_repeat")
            return
        first, to = bf
        cap = self.config["storage"]["outbox"]
        # A full disk lets rings rotate early (docs/storage.md): only then may the meter hold less.
        if first > max(run.data["asked"], to - cap + 1) and not run.full_hit:
            invariant(run, "backfill from %d asked for %d: the meter holds fewer than %d messages" % (
                first, run.data["asked"], cap))

    def dry_facts(self, run):
        return {"outbox_dropped": run.data.get("dropped", 0), "backfill": run.data.get("backfill")}

    def after_step(self, run, m):
        d = m.sync.outbox.dropped
        if d > run.data.get("dropped", 0):
            run.data["dropped"] = d


# -- 10. first boot ------------------------------------------------------------------------------------
class FirstBoot(Scenario):
    """A new meter's blank flash: formatted, the opening balance committed, the rings created,
    then the first top-ups and relay commands. A cut anywhere in the format starts it again."""
    name = "first_boot"
    ticks = 110

    def make_script(self):
        for tick, c in ((3, cmd("topup", amt=41)), (10, cmd("status")), (16, cmd("disconnect")),
                        (22, cmd("reconnect", direct=True)), (30, cmd("topup", amt=67))):
            self.at(tick, c)
        self.traffic(36, 105, 5)


class FirstBootGarbage(FirstBoot):
    """A flash holding garbage (never a littlefs, or one destroyed): reformatted as the last
    resort, so the meter starts with its state unknown (relay open for safety, no opening
    balance, every command refused replay_lost until the backend's resync). That must hold until
    the resync is applied, whatever the power does: a meter must never forget that it lost its
    replay window and start again as a new one."""
    name = "first_boot_garbage"

    def opening(self):
        return 0  # a meter whose state is unknown grants nothing

    def image(self):
        img = getattr(self, "_img", None)
        if img is None:  # made once per process: the same garbage for every run
            from simhw.household import Lcg
            g = Lcg(4711)
            img = bytearray(96 * 4096)
            for i in range(0, len(img), 2):
                v = g.next(65536)
                img[i] = v & 0xFF
                img[i + 1] = v >> 8
            self._img = img
        return img

    def after_step(self, run, m):
        # Once the backend has re-established replay protection, the technician on site clears the
        # safety hold (docs/relay.md: m.relay.clear_reason(1) at the REPL); the customer confirms.
        if m.relay.reasons & 1 and run.backend.ops_acked("resync")[0]:
            run.repl(m.relay.clear_reason, 1)

    def on_boot(self, run, m):
        # An unknown state stays unknown until a resync is applied (sent, at least).
        if m.commands.lost:
            run.data["lost"] = True
        elif run.data.get("lost") and not run.backend.ops_acked("resync")[1]:
            invariant(run, "the meter forgot its replay window was lost (boot %d, no resync sent)" % run.reboots)

    def dry_facts(self, run):
        return {"resyncs": run.backend.ops_acked("resync")[0]}


# -- 11. a record written by an older firmware ----------------------------------------------------------
HEAD_V1 = "<HHiiiIIIIIIIBBBB"  # the layouts as version 1 wrote them (docs/storage.md, "Record versions")
HEAD_V2 = "<HHiqqIIQIQIIBBBB"
BILL_V1 = "<iiiiiiiiiBBHii"
BILL_V2 = "<iiiiqiiqiBBHiii"
_WINDOW_TAIL = 5 * 8 + 8  # the replay window (8 ids, 8 results) and the relay/protection tail
_V1_SIZE = 248


def to_v1(payload):
    """The hot record as the firmware before layout versions wrote it: 32-bit lifetime totals,
    no time floor, no token ids, no OpenPAYGO counts (248 bytes)."""
    h = list(struct.unpack_from(HEAD_V2, payload, 0))
    h[1] = 1
    o = struct.calcsize(HEAD_V2)
    out = bytearray(struct.pack(HEAD_V1, *h))
    out += payload[o:o + _WINDOW_TAIL]
    o += _WINDOW_TAIL
    bill = struct.unpack_from(BILL_V2, payload, o)
    out += struct.pack(BILL_V1, *bill[:14])
    o += struct.calcsize(BILL_V2)
    out += payload[o:o + _V1_SIZE - len(out)]
    return out


class _OldService(TopupMqtt):
    """Prologue of record_migration: the meter in service under the firmware before (its top-ups
    and relay commands); its record is then written back in version 1's layout."""
    name = "record_migration/prologue"
    ticks = 60


class RecordMigration(Scenario):
    """The new firmware boots on a version-1 record (the old firmware's): balance, energy, the
    replay window and the relay intent carry over, the first commit writes version 4 into the
    other slot, a cut in between boots on the old record and migrates again. A command the old
    firmware applied, sent again, is not applied again."""
    name = "record_migration"
    ticks = 130

    def make_script(self):
        self.at(3, ("replay_old",))
        for tick, c in ((8, cmd("topup", amt=41)), (20, cmd("status")), (30, cmd("topup", amt=67)),
                        (40, cmd("disconnect")), (48, cmd("reconnect", direct=True))):
            self.at(tick, c)
        self.at(52, ("replay_old",))
        self.traffic(58, 125, 5)

    def prologue(self, run_cls, geometry):
        start = age(run_cls, geometry, _OldService(self.plan))
        start.image, start.payload = self._downgrade(start.image, geometry)
        return start

    def _downgrade(self, image, geometry):
        """Rewrite the record on `image` as version 1 in one slot (the other one removed); returns
        the image and the payload as the harness's RecordStore reads it."""
        from simhw.cutdev import CutBlockDevice
        dev = CutBlockDevice(96, image=image)
        store_mod.mount(dev, "/flash", *GEOMETRIES[geometry])
        st = store_mod.RecordStore("/flash/state.a", "/flash/state.b", record.SIZE)
        st.load()
        old = to_v1(bytes(st.payload))
        for p in ("/flash/state.a", "/flash/state.b"):
            os.remove(p)
        v1 = store_mod.RecordStore("/flash/state.a", "/flash/state.b", _V1_SIZE)
        v1.payload[:] = old
        v1.seq = st.seq
        v1.commit()
        st = store_mod.RecordStore("/flash/state.a", "/flash/state.b", record.SIZE)
        st.load()
        payload = bytes(st.payload)
        os.umount("/flash")
        return bytes(dev.mem), payload

    def custom(self, run, action):
        # A command the old firmware applied, captured and sent again (the same bytes).
        run.call(run.m.on_message, b"pm/v1/%s/cmd" % run.backend.meter.encode(), run.start.old[-1])

    def on_boot(self, run, m):
        if m.commands.lost:
            # Only a flash that refuses reads may hide the old record (the meter is then safe:
            # replay window lost, relay open); a power cut must never.
            if run.mode in ("dry", "cut"):
                invariant(run, "the old record was not read (damaged slots %d)" % m.store.damaged)
        elif m.commands.last_id < run.start.last_id:
            invariant(run, "the replay window went back: last id %d < %d" % (m.commands.last_id, run.start.last_id))

    def at_end(self, run, m):
        if record.version(m.store.payload, m.store.length) != record.VERSION:
            invariant(run, "the record was never migrated to version %d" % record.VERSION)

    def dry_facts(self, run):
        return {"from_version": 1, "to_version": record.version(run.m.store.payload, run.m.store.length)}


SCENARIOS = (TopupMqtt, TokenLocal, TariffPush, KeyRotation, CreditRuleChange, CalibrationWrite, Snapshots,
             RingRotation, OutboxOverflow, FirstBoot, FirstBootGarbage, RecordMigration)


def get(name, plan):
    for s in SCENARIOS:
        if s.name == name:
            return s(plan)
    raise ValueError("no scenario %r (%s)" % (name, ", ".join(s.name for s in SCENARIOS)))
