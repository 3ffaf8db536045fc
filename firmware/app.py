# The meter application: one cooperative loop, wired to hardware by a board object.
# step() runs metering -> billing -> credit rules -> relay -> durability -> sync, in that order,
# and never waits on the network. Time comes from the board's clock, so a simulation can
# run days in seconds and tests can jump the clock.
from micropython import const
import events
import account
import relay as relay_mod
import protection as protection_mod
import auth
import record
import json
import os
from binascii import unhexlify
import timebase
import timesource
import tariff as tariff_mod
import token as token_mod
import billing as billing_mod
import logbook
from metering import Metering
import store as store_mod
from store import RecordStore
from sync import Sync
import outbox as outbox_mod
from report import Reporter
from remote import Remote

_BUTTON_HOLD_MS = const(3000)  # the customer holds the button this long to reconnect
_READ_TRIES = const(3)
_ENOENT = const(2)

RESULTS = ("applied", "refused_max_balance", "bad_amount", "unknown_op", "bad_args", "store_fault",
           "rate_limited", "used", "token_refused", "ota_refused")
_APPLIED = const(0)
_REFUSED_MAX = const(1)
_BAD_AMOUNT = const(2)
_BAD_ARGS = const(4)
_STORE_FAULT = const(5)
_RATE_LIMITED = const(6)
_TOKEN_REFUSED = const(8)  # a relayed token refused for a reason not in RESULTS (bad_mac, ...)
_OTA_REFUSED = const(9)  # an update refused: the reply's "why" says why (ota_manifest.REASONS)


class Meter:
    def __init__(self, board):
        self.board = board
        cfg = board.config
        self.clock = board.clock
        self.events = events.EventRing(32)
        emit = self.emit
        self.metering = Metering(board.chip, cfg["max_power_w"], emit, getattr(board, "pulses", ()))
        self.tariff = tariff_mod.from_doc(cfg["tariff"])
        # Credit rules: the board's defaults, overlaid by what the backend last set (credit.json).
        self._credit_path = board.root + "/credit.json"
        credit = dict(cfg.get("credit", {}))
        # What credit.json holds (None: unreadable), kept so a change merges into it without
        # reading the file again: a read error then must not make the change save only itself.
        self._credit_saved = self._read_credit()
        if self._credit_saved:
            credit.update(self._credit_saved)
        self._credit_cfg = credit
        self.account = account.Account(emit)
        self.account.configure(credit)
        self.relay, self.protection, self.relay_cmds = protection_mod.build(board, self.metering, emit)
        self.commands = auth.Commands(board.meter_id, board.key)
        self.tokens = token_mod.Tokens(board.meter_id, board.key, self.commands)
        # OpenPAYGO Token's count and used counts: kept (and committed) whether or not the
        # utility has the system switched on, so switching it on again cannot make old tokens new.
        self.paygo_count = 0
        self.paygo_used = 0
        self.paygo = None  # OpenPAYGO Token entry (paygo.py), when config "tokens" lists it
        if "openpaygo" in cfg.get("tokens", ("pm",)):
            import paygo  # only then: a meter without it carries no code for it in RAM
            self.paygo = paygo.PaygoTokens(self, board, cfg)
        self.store = RecordStore(board.root + "/state.a", board.root + "/state.b", record.SIZE)
        self._undo = bytearray(record.SIZE)
        storage = cfg.get("storage", {})
        self.sync = Sync(board.meter_id, board.clock, storage.get("outbox", outbox_mod.CAPACITY),
                         board.root + "/outbox", refusal_s=cfg.get("refusal_report_s", 3600))
        self.log = logbook.Logbook(board.root, storage)
        self.log.on_error = self.sync.outbox.on_error = self.storage_error
        # Billing decides what the snapshots and the top-up journal hold; the logbook keeps them.
        self.billing = None
        self.topup_log = None
        day = self.log.ring("daily", billing_mod.SNAP_SIZE)
        month = self.log.ring("monthly", billing_mod.SNAP_SIZE)
        tops = self.log.ring("topups", billing_mod.TOPUP_SIZE)
        if day is not None and month is not None:
            self.billing = billing_mod.Billing(day, month)
        if tops is not None:
            self.topup_log = billing_mod.TopupLog(tops)
        self.remote = Remote(self)
        # Firmware updates (ota.py) on boards with OTA slots (board.partition: esp32.Partition):
        # imported only then.
        self.ota = None
        if getattr(board, "partition", None) is not None:
            import ota
            self.ota = ota.Updater(self, board.partition, getattr(board, "release_key", None),
                                   getattr(board, "name", ""), cfg.get("ota_trial_s", 600))
        self.sync.emit = emit
        self.sync.set_key(board.key)  # replies are signed (remote.py re-keys it after a rotation)
        # Wall time's source and trust (docs/time.md): raised to the floor after a power cut, SNTP
        # in the link's connect phase, the backend's `time` as the authority.
        self.timesrc = timesource.TimeSource(self.clock, self._raise_clock, getattr(board, "sntp", None),
                                             getattr(board, "keep_time", None), emit,
                                             events.TIME_SET, events.TIME_REFUSED)
        self.sync.time = self.timesrc
        self.sync.cmds = self.commands
        self.topups = 0
        self._tariff_path = board.root + "/tariff_passive.json"
        # The backend's tariff in force once a passive one has activated (its file renamed to
        # this): a reboot goes back to it, not to the board's configured tariff.
        self._active_path = board.root + "/tariff_active.json"
        self.tariff_error = None  # why the last tariff sent was refused (REPL)
        self._activations = 0
        self.commit_wh = cfg.get("commit_wh", 5)
        self.commit_ms = cfg.get("commit_s", 900) * 1000
        self._uncommitted_wh = 0
        self.commit_faults = 0
        # The latest wall time the meter has trusted (meter seconds), committed with every record:
        # the clock never starts below it after a power cut, and command expiry is judged on
        # max(clock, floor), so pulling the plug cannot bring an expired command back to life.
        self.time_floor = 0
        self._floor_committed = 0
        self.foreign = 0  # the version of a newer firmware's record found at boot (kept untouched)
        self.step_errors = 0  # steps that raised (main.loop counts them and goes on)
        self.last_error = None
        now = self.clock.ticks_ms()
        self._last_tick = now
        self._last_commit = now
        self._button_since = None
        self._relayed = None  # the outcome of a token relayed over MQTT, for the journal
        self.last_token = 0  # type of the token entered last (token.CREDIT, DEBT, TEST)
        self.last_amount = 0  # and its amount (minor units)
        # The customer's display, keypad and buzzer (customer.py), on boards that have them:
        # imported only then, so a meter without them carries no code for them in RAM.
        self.ui = None
        if getattr(board, "display", None) is not None or getattr(board, "keypad", None) is not None:
            import customer
            self.ui = customer.Customer(self, board.display, getattr(board, "keypad", None),
                                        getattr(board, "buzzer", None), cfg.get("customer"))

    # -- events ---------------------------------------------------------------
    def emit(self, code, arg):
        self.events.raise_(code, arg, self.clock.time())

    # -- boot -----------------------------------------------------------------
    def boot(self):
        """Restore the durable state and start the hardware. Never raises: a meter that
        cannot read its storage keeps metering with the relay open (safe) and says so."""
        reformatted = getattr(self.board, "fs_state", 0) >= store_mod.REFORMATTED
        unknown = False  # no record to trust: committed as such before this boot ends
        try:
            ok = self.store.load()
            if ok and record.version(self.store.payload, self.store.length) == record.FOREIGN:
                self.foreign = record.written_version(self.store.payload) or 1
                ok = False
            ok = ok and record.unpack(self.store.payload, self, self.store.length)
        except Exception:  # never a boot loop: an unexpected record is a damaged record
            ok = False
            self.store.damaged += 1
        # The clock first, so every event of this boot carries a sane time: an RTC that lost its
        # power (back at 2000) or was set back starts from the record's time floor, a time TLS
        # certificates are valid at, until SNTP or the backend's time sets it (docs/time.md).
        self._floor_committed = self.time_floor
        kept = getattr(self.board, "kept_time", None)
        self.timesrc.boot(self.time_floor, kept() if kept is not None else None)
        if reformatted and not ok:
            # The file system had to be formatted to mount (or cannot be mounted at all):
            # whatever it held is gone, so the state is unknown.
            self.emit(events.STORE_REFORMATTED, self.board.fs_state)
        if getattr(self.board, "fs_fallback", False):
            self.emit(events.STORE_FALLBACK, 0)  # a stock image: the backend should know the wear
        if ok:
            pass
        elif self.foreign:
            # A newer firmware's record: keep it for that firmware (no commit writes over it) and
            # stay safe, since this firmware cannot read the balance.
            self.emit(events.STORE_NEWER, self.foreign)
            self.relay.restore(relay_mod.DISCONNECTED, relay_mod.SAFETY)
        elif self.store.damaged or reformatted:
            # Storage exists but no record is readable: we do not know the balance, so stay safe;
            # and the replay window went with it, so no command moves money before a resync.
            self.emit(events.STORE_FAULT, self.store.damaged)
            self.relay.restore(relay_mod.DISCONNECTED, relay_mod.SAFETY)
            self.commands.lost = True
            unknown = True
        else:
            # A new meter: start from the provisioned opening balance.
            opening = self.board.config.get("opening_balance", 0)
            if opening > 0:
                self.account.topup(opening)
            self.relay.restore(relay_mod.CONNECTED, 0)
            self._credit_rules()
            self.commit()
        if self.store.damaged:
            self.emit(events.STORE_FAULT, self.store.damaged)
        self.relay.power_up()
        self.remote.boot()
        if not self.board.key:
            self.emit(events.NO_KEY, 0)
        self._load_passive()
        self.emit(events.BOOT, self.store.seq)
        if self.commands.lost:
            n = os.urandom(4)
            self.commands.lose((n[0] << 22 | n[1] << 14 | n[2] << 6 | n[3] >> 2) or 1)
            self.emit(events.REPLAY_LOST, self.commands.nonce)
        # No record to trust: commit that (safety hold, lost replay window) before anything else,
        # so a power cut from here on boots into it. After a reformat the mark goes only then (or
        # when a cut fell between that commit and this), never while a new-meter boot could follow.
        committed = unknown and self.commit()
        if reformatted and (ok or committed):
            import fsmark
            fsmark.settled(self.board.root)
        cause = getattr(self.board, "reset_cause", None)  # a real board says why it started
        if cause is not None:
            self.emit(events.RESET, cause())
            if self.board.brownout():
                self.emit(events.BROWNOUT, 0)
        self.metering.start()
        self.sync.boot = self.clock.time()
        self.reporter = Reporter(self, self.board.config)
        if self.ota is not None:
            import version
            self.ota.boot(version.VERSION)  # a job the last reset interrupted goes on from here
        subs = (self.sync.cmd_topic,) if self.ota is None else (self.sync.cmd_topic, self.ota.topic)
        self.sync.link = self.board.make_link(self.on_message, subs, self.sync.will(), self.sync.birth)
        if self.sync.link is not None:
            self.sync.link.net_task = self.timesrc.query  # SNTP in the link phase, bounded

    # -- the loop ---------------------------------------------------------------
    def step(self):
        clock = self.clock
        now = clock.ticks_ms()
        dt = clock.ticks_diff(now, self._last_tick)
        self._last_tick = now
        m = self.metering
        m.poll(dt)
        wh = m.step_wh
        # Meter seconds (timebase.py), a small int on the ESP32 until 2059; while the time is
        # uncertain after a power cut the calendar stands at the floor (docs/time.md).
        utc = self.timesrc.bill_time(clock.time())
        # Every tick: the standing charge runs on monotonic time even when no energy flows. The
        # step's energy was drawn before `utc`: it is priced at the rate of the step's last second,
        # so the step that ends on a switch point, midnight or an activation is the old period's.
        self.account.debit(self.tariff.charge(wh, utc - 1, dt))
        if self.tariff.rolled or m.rolled:  # an energy register passed 10^9 Wh and started again
            self.emit(events.REGISTER_ROLLOVER, self.tariff.rolled + m.rolled)
            self.tariff.rolled = m.rolled = 0
        if wh:
            self._uncommitted_wh += wh
        if self.tariff.activations != self._activations:
            self._activations = self.tariff.activations
            self.emit(events.TARIFF_ACTIVATED, self._activations)
            self._keep_active()
        lc = self.tariff.t.tz
        lc.update(utc)
        b = self.billing
        if lc.day > self.account.last_day or (b is not None and lc.day > b.day):
            self._new_day(lc, utc)
        self._credit_rules()
        self._button(now)
        self.protection.step(now)
        self.relay_cmds.tick(now)  # buckets refill on the tick: no stamp outlives 2^29 ms
        self.sync.tick(now)  # answer budgets refill; the refusals' summary once an interval
        if (self.relay.changed or self.protection.changed() or self._uncommitted_wh >= self.commit_wh
                or clock.ticks_diff(now, self._last_commit) >= self.commit_ms):
            self.commit()
        self.reporter.step(now)
        self.log.tick(self, utc)  # the same second the billing step used
        self.log.drain(self.events)
        self.sync.forward_events(self.events)
        self.sync.poll()
        if self.ota is not None and self.ota.state:
            self.ota.step(now)  # a few blocks verified, a request repeated, the trial watched
        if self.ui is not None:
            self.ui.step(now, utc)  # after the tick's changes: the screen shows this second's state
        self.board.feed_watchdog()

    def _load_passive(self):
        """The backend's tariffs survive reboots in files: the one in force (once one of its
        tariffs has activated) and the one scheduled last; if the scheduled one's time has passed
        it becomes active at the first tick."""
        for path in (self._active_path, self._tariff_path):
            try:
                with open(path) as f:
                    doc = json.load(f)
            except OSError:
                continue
            except ValueError:
                self.tariff_error = "stored tariff is not JSON"
                continue
            try:
                if path == self._tariff_path:
                    self.tariff.schedule(doc)
                else:
                    self.tariff.restore(doc)
            except tariff_mod.TariffError as e:
                self.tariff_error = str(e)

    def _keep_active(self):
        """The scheduled tariff has activated: its file becomes the active one's (a rename, atomic
        on littlefs). If the flash refuses, a reboot still finds it scheduled and past its time;
        set_tariff tries again before it writes over it. True once done (or nothing to rename)."""
        try:
            os.rename(self._tariff_path, self._active_path)
        except OSError as e:
            if e.args[0] != _ENOENT:  # no file: renamed already, or the tariff was never saved
                self.storage_error()
                return False
        return True

    def set_tariff(self, doc):
        """Validate and schedule a tariff document (docs/tariff.md); it needs activate_at.
        A bad one is refused with the reason and the active tariff is kept."""
        was = self.tariff.passive
        try:
            self.tariff.schedule(doc)
        except tariff_mod.TariffError as e:
            self.tariff_error = str(e)
            return _BAD_ARGS
        self.tariff_error = None
        try:
            # Nothing waiting although a tariff activated since boot: the file may still be the
            # one in force (its rename refused), so it is moved first, never written over.
            if was is None and self.tariff.activations and not self._keep_active():
                raise OSError(5)
            with open(self._tariff_path, "w") as f:
                json.dump(doc, f)
        except OSError:
            self.tariff.passive = was
            self.storage_error()
            return _STORE_FAULT
        return _APPLIED

    def set_limits(self, new):
        """Change credit rules (docs/credit.md keys) from the backend: validated as a whole, saved
        so they survive reboots, then applied. False (nothing changed) if invalid; OSError
        (nothing changed) if they could not be saved."""
        cfg = dict(self._credit_cfg)
        cfg.update(new)
        probe = account.Account(None)
        try:
            probe.configure(cfg)
        except account.CreditError:
            return False
        saved = self._credit_saved
        if saved is None:
            saved = self._read_credit()
            if saved is None:
                raise OSError(5)  # the rules saved before cannot be read: change nothing
        saved = dict(saved)
        saved.update(new)
        # Written aside, then renamed over the old file (atomic on littlefs): a power cut leaves
        # the old rules or the new ones, never a torn file that would fall back to the defaults.
        tmp = self._credit_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(saved, f)
        os.rename(tmp, self._credit_path)
        self._credit_saved = saved
        self.account.configure(cfg)
        self._credit_cfg = cfg
        self._credit_rules()
        return True

    def _read_credit(self):
        """The credit rules saved by the backend: a dict ({} when there are none), or None when
        the file is there but cannot be read (after a few tries: an I/O error can be transient)."""
        for _ in range(_READ_TRIES):
            try:
                with open(self._credit_path) as f:
                    doc = json.load(f)
                return doc if isinstance(doc, dict) else {}
            except ValueError:
                return {}  # not JSON (written aside and renamed, so not torn): the board's rules
            except OSError as e:
                if e.args[0] == _ENOENT:
                    return {}
        return None

    def _new_day(self, lc, utc):
        """Local midnight (or the first tick): daily debt recovery and the billing freeze, then
        a commit of the new day. A freeze the flash refused keeps the billing day open (retried
        by Billing.tick) without a commit at every tick."""
        changed = lc.day > self.account.last_day
        if changed:
            self.account.new_day(lc.day)
        b = self.billing
        if b is not None and lc.day > b.day:
            n = b.tick(self, lc, utc)
            if n < 0:
                self.storage_error()
            else:
                changed = changed or b.day == lc.day
            if n > 0:
                for ring in (b.daily, b.monthly)[:n]:
                    doc = b.last(ring)
                    if doc is not None:  # unreadable right after the append: the ring's check counts it
                        self.sync.billing(billing_mod.to_json(doc))
        if changed:
            self.commit()

    def _credit_rules(self):
        a = self.account
        if a.exhausted():
            # Friendly periods (nights, weekends, holidays) defer the credit disconnection; the
            # reason is set all the same, so the relay opens the moment the period ends.
            self.relay.defer_credit(a.friendly.active(self.tariff.t.tz, self.timesrc.bill_time(self.clock.time())))
            self.relay.set_reason(relay_mod.CREDIT)
        else:
            self.relay.defer_credit(False)
            if a.may_reconnect():
                self.relay.clear_reason(relay_mod.CREDIT)

    def _button(self, now):
        if self.board.button():
            if self._button_since is None:
                self._button_since = now
            elif self.clock.ticks_diff(now, self._button_since) >= _BUTTON_HOLD_MS:
                self._button_since = None
                self.relay.confirm_local()
        else:
            self._button_since = None

    # -- durability -------------------------------------------------------------
    def commit(self):
        """Commit the hot record. Returns False (and keeps the old record) if storage fails."""
        if self.foreign:
            self._uncommitted_wh = 0  # nothing to write over a newer firmware's record
            self._last_commit = self.clock.ticks_ms()
            self.relay.changed = False
            return False
        now = self.timesrc.lower()  # never what SNTP alone said (docs/time.md)
        if now > self.time_floor and now >= timebase.SET_MIN:
            self.time_floor = now
        record.pack(self.store.payload, self)
        try:
            self.store.commit()
        except (OSError, MemoryError):
            self.commit_faults += 1
            self.emit(events.STORE_FAULT, 0)
            self.storage_error()
            return False
        self._uncommitted_wh = 0
        self._last_commit = self.clock.ticks_ms()
        self._floor_committed = self.time_floor
        self.relay.changed = False
        self.protection.committed()
        self.sync.outbox.checkpoint()
        return True

    def storage_error(self):
        """After any flash error: remount, so later reads and writes do not go through a
        file system whose in-RAM state no longer matches the flash."""
        remount = getattr(self.board, "remount", None)
        if remount is not None:
            remount()

    # -- commands ---------------------------------------------------------------
    def on_message(self, topic, payload):
        if self.ota is not None and topic == self.ota.topic:
            self.ota.chunk(payload)  # image bytes: judged by the signed manifest's hash, not here
            return
        link = self.sync.link
        if link is not None and link.retained:
            # A retained command would replay on every reconnect: never act on one.
            self.sync.refused(0, "retained", self, self.clock.ticks_ms())
            return
        now = self.timesrc.lower()  # a time server cannot bring an expired command back
        verdict, doc, res = self.commands.check(payload, now if now > self.time_floor else self.time_floor,
                                                self.timesrc.state == timesource.TRUSTED)
        if verdict == auth.REFUSED:
            if res == "expired" and self.commands.expired_at > self._floor_committed:
                # Refused as expired, but the floor on flash is older than its expiry: a power cut
                # now would let it in again. Commit the floor (once per such command).
                self.commit()
            self.sync.refused(doc, res, self, self.clock.ticks_ms())  # doc: the id, or 0
            return
        cid = doc["id"]
        if verdict == auth.REPEAT:
            self.sync.repeated(cid, RESULTS[res], self, self.clock.ticks_ms())
            return
        # Apply, then commit before acknowledging; if the commit fails, undo everything.
        record.pack(self._undo, self)
        topups = self.topups
        result = self._apply(doc)
        extra = self.remote.take_extra()
        committed = False
        if result != _STORE_FAULT:
            # An op that could not save its own file changed nothing: like a failed commit, its id
            # is not used up, so the backend's retry of the same bytes is applied (docs/storage.md).
            self.commands.remember(cid, result)
            committed = self.commit()
        if not committed:
            record.unpack(self._undo, self)
            self.topups = topups
        if doc["op"] == "token" and self._relayed is not None:
            res, typ, tid, amt = self._relayed
            self._relayed = None
            self._journal(tid, billing_mod.SRC_MQTT, typ, res if committed else "store_fault", amt)
        if not committed:
            # extra tells what did take effect outside the record (e.g. a rotated key's kid).
            self.sync.reply(cid, RESULTS[_STORE_FAULT], self, extra=extra)
            return
        if doc["op"] == "topup":
            amt = doc.get("amt")
            amt = amt if type(amt) is int and -(1 << 30) < amt < 1 << 30 else 0
            self.emit(events.TOPUP_APPLIED if result == _APPLIED else events.TOPUP_REFUSED, amt)
            self._journal(cid, billing_mod.SRC_MQTT, token_mod.CREDIT, RESULTS[result], amt)
        self.sync.reply(cid, RESULTS[result], self, extra=extra if result in (_APPLIED, _OTA_REFUSED) else "")

    def _journal(self, cid, src, typ, result, amount):
        if self.topup_log is not None:
            try:
                self.topup_log.add(self.clock.time(), cid, src, typ, result, amount)
            except (OSError, MemoryError):
                self.emit(events.STORE_FAULT, 1)

    # -- offline tokens and emergency credit (REPL / keypad) ---------------------
    def enter_token(self, text):
        """Apply a typed 20-digit token; returns the result name. The outcome (including a bad
        token's lockout count) is committed before it is shown."""
        record.pack(self._undo, self)
        topups = self.topups
        res, typ, cid, amt = self._token(text)
        self.last_token = typ  # its type and amount, for what the REPL (or a display) says about it
        self.last_amount = amt
        if not self.commit():
            record.unpack(self._undo, self)
            self.topups = topups
            res = "store_fault"
        self._journal(cid, billing_mod.SRC_TOKEN, typ, res, amt)
        return res

    def _token(self, text):
        now = self.timesrc.lower()  # a lockout is not shortened by a time server's word
        tk = self.tokens
        if self.paygo is not None and isinstance(text, str):
            digits = text.replace(" ", "").replace("-", "")
            if len(digits) in (9, 12) and digits.isdigit():  # OpenPAYGO: standard or extended
                return self.paygo.enter(digits, now)
        v, typ, cid, amt, reason = tk.check(text, now)
        if v == token_mod.REFUSED:
            self.emit(events.TOPUP_REFUSED, cid)
            if reason == "bad_mac" and tk.locked(now):
                self.emit(events.TOKEN_LOCKOUT, tk.lock_until - now)
            return reason, typ, cid, 0
        if v == token_mod.USED:
            return "used", typ, cid, amt
        result = _APPLIED
        if typ == token_mod.CREDIT:
            r = self.account.topup(amt)
            if r == account.APPLIED:
                self.topups += 1
                self.emit(events.TOPUP_APPLIED, amt)
            else:
                # Not remembered: the customer may enter it again once it fits under the maximum.
                self.emit(events.TOPUP_REFUSED, amt)
                return RESULTS[_REFUSED_MAX if r == account.REFUSED_MAX_BALANCE else _BAD_AMOUNT], typ, cid, amt
        elif typ == token_mod.DEBT:
            if self.account.add_debt(amt) != account.APPLIED:
                return RESULTS[_BAD_AMOUNT], typ, cid, amt
        self.tokens.ids.remember(cid)
        self._credit_rules()
        return RESULTS[result], typ, cid, amt

    def emergency_credit(self):
        """The customer invokes emergency credit; returns "granted", "not_offered" or "already"."""
        r = self.account.invoke_ec()
        if r == account.EC_GRANTED:
            self._credit_rules()
            self.commit()
        return ("granted", "not_offered", "already")[r]

    def _apply(self, doc):
        op = doc["op"]
        if op == "topup":
            r = self.account.topup(doc.get("amt"))
            if r == account.APPLIED:
                self.topups += 1
                self._credit_rules()
                return _APPLIED
            return _REFUSED_MAX if r == account.REFUSED_MAX_BALANCE else _BAD_AMOUNT
        if op == "tariff":
            return self.set_tariff(doc.get("tariff"))
        if op == "token":
            # An offline token relayed by the backend: the same verifier and token ids (the
            # relaying command's id is a command id, checked apart).
            tok = doc.get("tok")
            if type(tok) is not str:
                return _BAD_ARGS
            self._relayed = self._token(tok)
            res = self._relayed[0]
            for i in range(len(RESULTS)):
                if RESULTS[i] == res:
                    return i
            return _TOKEN_REFUSED
        if op in ("disconnect", "reconnect", "keep_power", "clear"):
            return self._relay_op(op, doc)
        if op == "status":
            self.sync.telemetry(self, self.clock.time())
            return _APPLIED
        if op in ("ota", "ota_cancel"):
            return self._ota(op, doc)
        if op == "resync":
            # "tlast": the highest token id issued (a backend before token ids of their own
            # numbered tokens with commands: "last" covers them then).
            tlast = doc.get("tlast", doc.get("last"))
            if type(tlast) is not int or not 0 <= tlast < 1 << 31 or not self.commands.resync(doc):
                return _BAD_ARGS
            ids = self.tokens.ids
            ids.reset(tlast if tlast > ids.top else ids.top)
            return _APPLIED
        return self.remote.apply(doc)

    def _ota(self, op, doc):
        """Start (or confirm) an update from a signed release manifest, or cancel one that has
        not switched yet. The manifest's release signature is checked on top of this command's."""
        u = self.ota
        if u is None:
            self.remote.extra = ',"why":"no_ota"'
            return _OTA_REFUSED
        if op == "ota_cancel":
            u.cancel()
            return _APPLIED
        text, sig = doc.get("man"), doc.get("sig")
        if type(text) is not str or type(sig) is not str or len(sig) > 1024 or len(sig) % 2:
            return _BAD_ARGS
        try:
            sig = unhexlify(sig)
        except ValueError:
            return _BAD_ARGS
        ok = u.start(text.encode(), sig)
        self.remote.extra = u.take_extra()
        return _APPLIED if ok else _OTA_REFUSED

    def set_time(self, utc):
        """An authority sets the clock to Unix second `utc` (the backend's signed `time`, the
        technician's set_time): trusted, and the floor follows it, down as well as up. False
        when the board cannot set its clock (nothing changes)."""
        if not self._set_wall(utc):
            return False
        self.timesrc.authoritative()
        self.time_floor = self.clock.time()
        return True

    def _set_wall(self, utc):
        """Set the wall clock to Unix second `utc`: the board's RTC when it has one (boards take
        Unix time), else the injected clock. False when neither can be set."""
        hook = getattr(self.board, "set_time", None)
        if hook is not None:
            hook(utc)
        elif hasattr(self.clock, "jump"):
            self.clock.jump(timebase.from_unix(utc) - self.clock.time())
        else:
            return False
        return True

    def _raise_clock(self, t):
        """The time source moves the wall clock to meter second t (the floor, or SNTP's answer)."""
        self._set_wall(timebase.to_unix(t))

    def _relay_op(self, op, doc):
        """Relay commands, rate limited (a refused one is an event and changes nothing)."""
        what = doc.get("what")
        if op == "keep_power" and not isinstance(doc.get("on"), bool):
            return _BAD_ARGS
        if op == "clear" and what not in ("limiter", "tamper", "fault"):
            return _BAD_ARGS
        direct = doc.get("direct")
        if op == "reconnect" and direct is not None and not isinstance(direct, bool):
            return _BAD_ARGS
        if not self.relay_cmds.take(self.clock.ticks_ms()):
            self.emit(events.RELAY_CMD_LIMITED, 0)
            return _RATE_LIMITED
        p = self.protection
        if op == "disconnect":
            self.relay.remote_disconnect()
        elif op == "reconnect":
            self.relay.remote_reconnect(direct)
        elif op == "keep_power":
            self.relay.set_keep_power(doc["on"])
        elif what == "limiter":
            p.limiter.cancel()
        elif what == "tamper":
            p.tamper.clear()
        else:
            p.clear_fault()
        return _APPLIED

