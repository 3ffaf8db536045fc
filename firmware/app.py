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
import tariff as tariff_mod
from metering import Metering
from store import RecordStore
from sync import Sync

_BUTTON_HOLD_MS = const(3000)  # the customer holds the button this long to reconnect

RESULTS = ("applied", "refused_max_balance", "bad_amount", "unknown_op", "bad_args", "store_fault",
           "rate_limited")
_APPLIED = const(0)
_REFUSED_MAX = const(1)
_BAD_AMOUNT = const(2)
_UNKNOWN_OP = const(3)
_BAD_ARGS = const(4)
_STORE_FAULT = const(5)
_RATE_LIMITED = const(6)


class Meter:
    def __init__(self, board):
        self.board = board
        cfg = board.config
        self.clock = board.clock
        self.events = events.EventRing(32)
        emit = self.emit
        self.metering = Metering(board.chip, cfg["max_power_w"], emit, getattr(board, "pulses", ()))
        self.tariff = tariff_mod.from_doc(cfg["tariff"])
        credit = cfg.get("credit", {})
        self.account = account.Account(emit, credit.get("low1", 200), credit.get("low2", 50),
                                       credit.get("hysteresis", 20), credit.get("max_balance", 10000000))
        self.reconnect_threshold = credit.get("reconnect_threshold", 0)
        self.relay, self.protection, self.relay_cmds = protection_mod.build(board, self.metering, emit)
        self.commands = auth.Commands(board.meter_id, board.key)
        self.store = RecordStore(board.root + "/state.a", board.root + "/state.b", record.SIZE)
        self._undo = bytearray(record.SIZE)
        self.sync = Sync(board.meter_id)
        self.topups = 0
        self.commit_wh = cfg.get("commit_wh", 5)
        self.commit_ms = cfg.get("commit_s", 900) * 1000
        self.tele_ms = cfg.get("telemetry_s", 900) * 1000
        self._uncommitted_wh = 0
        self.commit_faults = 0
        now = self.clock.ticks_ms()
        self._last_tick = now
        self._last_commit = now
        self._last_tele = now
        self._button_since = None

    # -- events ---------------------------------------------------------------
    def emit(self, code, arg):
        self.events.raise_(code, arg, self.clock.time())

    # -- boot -----------------------------------------------------------------
    def boot(self):
        """Restore the durable state and start the hardware. Never raises: a meter that
        cannot read its storage keeps metering with the relay open (safe) and says so."""
        if self.store.load() and record.unpack(self.store.payload, self):
            pass
        elif self.store.damaged:
            # Storage exists but no record is readable: we do not know the balance, so stay safe.
            self.emit(events.STORE_FAULT, self.store.damaged)
            self.relay.restore(relay_mod.DISCONNECTED, relay_mod.SAFETY)
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
        if not self.board.key:
            self.emit(events.NO_KEY, 0)
        self.emit(events.BOOT, self.store.seq)
        self.metering.start()
        self.sync.link = self.board.make_link(self.on_message, (self.sync.cmd_topic,),
                                              self.sync.will(), self.sync.birth)

    # -- the loop ---------------------------------------------------------------
    def step(self):
        clock = self.clock
        now = clock.ticks_ms()
        dt = clock.ticks_diff(now, self._last_tick)
        self._last_tick = now
        m = self.metering
        m.poll(dt)
        wh = m.step_wh
        if wh:
            self.account.debit(self.tariff.charge(wh))
            self._uncommitted_wh += wh
        self._credit_rules()
        self._button(now)
        self.protection.step(now)
        if (self.relay.changed or self.protection.changed() or self._uncommitted_wh >= self.commit_wh
                or clock.ticks_diff(now, self._last_commit) >= self.commit_ms):
            self.commit()
        if clock.ticks_diff(now, self._last_tele) >= self.tele_ms:
            self._last_tele = now
            self.sync.telemetry(self, clock.time())
        self.sync.forward_events(self.events)
        self.sync.poll()
        self.board.feed_watchdog()

    def _credit_rules(self):
        a = self.account
        if a.balance <= 0:
            self.relay.set_reason(relay_mod.CREDIT)
        elif a.balance > self.reconnect_threshold:
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
        record.pack(self.store.payload, self)
        try:
            self.store.commit()
        except (OSError, MemoryError):
            self.commit_faults += 1
            self.emit(events.STORE_FAULT, 0)
            return False
        self._uncommitted_wh = 0
        self._last_commit = self.clock.ticks_ms()
        self.relay.changed = False
        self.protection.committed()
        return True

    # -- commands ---------------------------------------------------------------
    def on_message(self, topic, payload):
        link = self.sync.link
        if link is not None and link.retained:
            # A retained command would replay on every reconnect: never act on one.
            self.emit(events.RETAINED_CMD, 0)
            return
        verdict, doc, res = self.commands.check(payload, self.clock.time())
        if verdict == auth.REFUSED:
            self.emit(events.CMD_REFUSED, 0)
            self.sync.reply(0, res, self)
            return
        cid = doc["id"]
        if verdict == auth.REPEAT:
            self.sync.reply(cid, RESULTS[res], self, True)
            return
        # Apply, then commit before acknowledging; if the commit fails, undo everything.
        record.pack(self._undo, self)
        topups = self.topups
        result = self._apply(doc)
        self.commands.remember(cid, result)
        if not self.commit():
            record.unpack(self._undo, self)
            self.topups = topups
            self.sync.reply(cid, RESULTS[_STORE_FAULT], self)
            return
        if result == _APPLIED and doc["op"] == "topup":
            self.emit(events.TOPUP_APPLIED, doc["amt"])
        self.sync.reply(cid, RESULTS[result], self)

    def _apply(self, doc):
        op = doc["op"]
        if op == "topup":
            r = self.account.topup(doc.get("amt"))
            if r == account.APPLIED:
                self.topups += 1
                self._credit_rules()
                return _APPLIED
            return _REFUSED_MAX if r == account.REFUSED_MAX_BALANCE else _BAD_AMOUNT
        if op in ("disconnect", "reconnect", "keep_power", "clear"):
            return self._relay_op(op, doc)
        if op == "status":
            self.sync.telemetry(self, self.clock.time())
            return _APPLIED
        return _UNKNOWN_OP

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
        if not self.relay_cmds.allow():
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

