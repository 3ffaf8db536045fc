# One simulated meter under micropython: the firmware app on a sim board, in simulated time.
# Run by tools/sim.py (which adds a broker and a backend stand-in), or directly from the repository
# root, with the firmware and the boards on the module path:
#   MICROPYPATH=firmware:boards:.deps/mplib .venv/bin/micropython -X heapsize=512k tools/sim_meter.py \
#       --board sim-atm90e26 --hours 48 --flash /tmp/m.img [--broker 127.0.0.1:1883 --key HEX]
# (for the technician's REPL on a simulated meter: make repl-sim)
# Prints one status line per simulated hour and a JSON summary as its last line.
import sys
import gc
import os
import json
import time
from binascii import unhexlify

import relay as relay_mod


def fail(msg):
    print("sim_meter: error: " + msg)
    sys.exit(2)


def parse(argv):
    opts = {"board": "sim-atm90e26", "hours": "48", "seed": "1", "tick-s": "5", "meter-id": "sim-0001",
            "customer-delay-s": "120", "broker": "", "key": "", "flash": "", "config": "",
            "pace-ms": "0", "faults": "", "customer": "1", "screens": "", "token-file": "",
            "utc-start": "0", "ticks": "0", "stop-file": ""}
    i = 0
    while i < len(argv):
        a = argv[i]
        if not a.startswith("--") or a[2:] not in opts or i + 1 >= len(argv):
            fail("bad argument %r" % a)
        opts[a[2:]] = argv[i + 1]
        i += 2
    for k in ("hours", "seed", "tick-s", "customer-delay-s", "pace-ms", "customer", "utc-start", "ticks"):
        try:
            opts[k] = int(opts[k])
        except ValueError:
            fail("--%s must be an integer" % k)
    if opts["hours"] <= 0 or opts["tick-s"] <= 0 or opts["ticks"] < 0 or opts["utc-start"] < 0:
        fail("--hours and --tick-s must be positive, --ticks and --utc-start not negative")
    if not opts["flash"]:
        fail("--flash PATH is required")
    if opts["config"].startswith("@"):
        # The unix port dies ("uncaught NLR") on a command-line argument of 250 bytes or more:
        # a board configuration with a tariff comes in a file.
        try:
            with open(opts["config"][1:]) as f:
                opts["config"] = f.read()
        except OSError:
            fail("--config %s: cannot read the file" % opts["config"])
    opts["faults"] = parse_faults(opts["faults"])
    return opts


FAULT_KINDS = ("resets", "absent", "stuck", "flip", "drop", "bus", "upset")


def parse_faults(text):
    """`resets=3,bus=20,absent=1` -> {kind: count}; bus=N is split between flips and drops."""
    out = {}
    for item in text.split(","):
        if not item:
            continue
        k, _, v = item.partition("=")
        if k not in FAULT_KINDS or not v.isdigit():
            fail("--faults takes kind=count items, kinds %s; got %r" % (", ".join(FAULT_KINDS), item))
        out[k] = out.get(k, 0) + int(v)
    bus = out.pop("bus", 0)
    if bus:
        out["flip"] = out.get("flip", 0) + (bus + 1) // 2
        out["drop"] = out.get("drop", 0) + bus // 2
    return out


MAX_SCREENS = 120  # distinct screens kept by --screens (a bound: a long run does not fill the disk)
_SLICE_MS = 20  # the keypad's scan slice in the device loop (main.py)


class Customer:
    """The simulated customer at the meter's keypad: types each token the utility sent them
    (one per line in the token file, their text messages) a minute after it came, and presses D
    when the meter asks them to confirm a reconnection. With a screens directory, keeps each
    distinct screen they saw: its pixels as the display shows them and the text read back from
    them (the numbers do not make a screen distinct, so the count stays bounded)."""

    def __init__(self, board, m, o):
        self.b = board
        self.m = m
        self.tick_s = o["tick-s"]
        self.inbox = o["token-file"]
        self.read = 0  # tokens taken from the inbox
        self.pending = []
        self.due = 0
        self.keyed = 0
        self.waited = 0  # times the customer waited (in real time) for a token
        self.screens = o["screens"]
        self.seen = set()
        self.written = 0
        self._redraws = -1
        if self.screens:
            import os
            for d in (self.screens, self.screens + "/frames"):
                try:
                    os.mkdir(d)
                except OSError:
                    pass
            self._index = open(self.screens + "/screens.jsonl", "w")

    def check_inbox(self, n):
        if not self.inbox:
            return
        try:
            with open(self.inbox) as f:
                # whole lines only: the backend may be half-way through writing the next one
                lines = [x.strip() for x in f.read().split("\n")[:-1] if x.strip()]
        except OSError:
            return
        for tok in lines[self.read:]:
            self.pending.append(tok)
            if len(self.pending) == 1:
                self.due = n + 60 // self.tick_s
        self.read = len(lines)

    def wait_for_token(self, n):
        """Off for credit with no token in hand: the customer waits for the utility's message.
        Waited for in real time (up to 30 s, the link kept alive), so on a busy machine the backend's
        answer still lands at the same simulated moment."""
        if not self.inbox or self.pending or not self.m.relay.reasons & relay_mod.CREDIT:
            return
        read = self.read
        deadline = time.ticks_add(time.ticks_ms(), 30000)
        while self.read == read and time.ticks_diff(deadline, time.ticks_ms()) > 0:
            self.m.sync.poll()
            time.sleep_ms(20)
            self.check_inbox(n)
        self.waited += 1

    def act(self, n):
        """Start typing a token when one is due; returns True while keys are being typed."""
        keys = self.b.keys
        if self.pending and n >= self.due and not keys.busy():
            keys.type(self.pending.pop(0) + "#")
            self.keyed += 1
            self.due = n + 12
        return keys.busy()

    def confirm(self):
        self.b.keys.type("D")

    def capture(self):
        ui = self.m.ui
        if not self.screens or ui.redraws == self._redraws or self.written >= MAX_SCREENS:
            return
        self._redraws = ui.redraws
        key = screen_key(ui.screen)
        if key in self.seen:
            return
        self.seen.add(key)
        from simhw import screentext
        frame = self.b.oled.visible()
        with open("%s/frames/%04d.bin" % (self.screens, self.written), "wb") as f:
            f.write(frame)
        import timebase
        json.dump({"n": self.written, "t": timebase.to_unix(self.b.clock.time()), "text": screentext.lines(frame)},
                  self._index)
        self._index.write("\n")
        self.written += 1

    def close(self):
        if self.screens:
            self._index.close()


def screen_key(scr):
    """What makes a screen distinct: its words and layout, not its numbers (digits collapse to
    one "#", blanks go), and which rows are banners."""
    out = bytearray()
    g = scr.grid
    for r in range(8):
        out.append(124 if not scr.inv[r] else 33)  # "|" a row, "!" a banner row
        prev = 0
        for c in g[r * 16:r * 16 + 16]:
            if 48 <= c <= 57:
                c = 35
                if prev == 35:
                    continue
            elif c == 32:
                continue
            out.append(c)
            prev = c
    return bytes(out)


def print_story(ring, seen):
    """One line for each relay transition (with its reason), top-up and overload trip since
    event `seen`; returns the next event seq to look at."""
    import events

    s = max(seen, ring.oldest_seq())
    while s < ring.seq:
        code, arg, utc = ring.get(s)
        s += 1
        if code in (events.RELAY_OPEN, events.RELAY_CLOSED, events.RELAY_ARMED):
            state = {events.RELAY_OPEN: "disconnected", events.RELAY_CLOSED: "connected",
                     events.RELAY_ARMED: "ready"}[code]
            why = "local confirm" if code == events.RELAY_CLOSED and arg == relay_mod.MANUAL else relay_mod.reason_name(arg)
            what = "relay -> %s (%s)" % (state, why)
        elif code in (events.TOPUP_APPLIED, events.LIMIT_TRIP, events.LIMIT_LATCHED, events.CREDIT_EXHAUSTED):
            what = "%s %d" % (events.name(code), arg)
        else:
            continue
        t = utc % 86400
        print("         %02d:%02d:%02d %s" % (t // 3600, t // 60 % 60, t % 60, what))
    return s


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def idle(m, ms):
    """Wait for the next tick as the device does (on the broker's socket, waking for a command);
    with no link a plain sleep: the unix port's sleep_ms polls every millisecond, which a fleet of
    a thousand meters turns into the machine's whole load."""
    link = m.sync.link
    if link is not None and link.state == 1:  # link.UP
        m.sync.wait(ms)
    else:
        time.sleep(ms / 1000)


def main():
    o = parse(sys.argv[1:])
    modname = o["board"].replace("-", "_")
    if not o["board"].startswith("sim-"):
        fail("board %r is not a simulated board" % o["board"])
    try:
        board_mod = __import__(modname)
    except ImportError as e:
        fail("cannot load board %r: %s" % (o["board"], e))
    broker = None
    if o["broker"]:
        host, _, port = o["broker"].partition(":")
        broker = (host, int(port or 1883))
    key = unhexlify(o["key"]) if o["key"] else None
    board = board_mod.build({"meter_id": o["meter-id"], "key": key, "seed": o["seed"], "flash": o["flash"],
                             "broker": broker, "config": json.loads(o["config"]) if o["config"] else {},
                             "customer": o["customer"] == 1,
                             # A meter powered up again in a fleet run goes on at the time it had
                             # reached (its clock set by SNTP), not at the start of the simulation.
                             "utc_start": o["utc-start"] or 1767225600})
    import app as app_mod

    m = app_mod.Meter(board)
    m.boot()
    tick_ms = o["tick-s"] * 1000
    if o["faults"]:
        try:
            board.emu.schedule(o["faults"], o["hours"] * 3600 * 1000, o["seed"])
        except ValueError as e:  # a kind this board's chip emulator does not model
            fail("--faults on %s: %s" % (o["board"], e))
    ticks = o["ticks"] or o["hours"] * 3600 * 1000 // tick_ms
    per_hour = 3600 * 1000 // tick_ms
    ready_since = None
    confirms = 0
    ev_seen = m.events.seq
    heap_peak = 0
    t0 = time.ticks_ms()
    pace = o["pace-ms"]  # real ms per tick, so a long-lived meter can be talked to (0: flat out)
    cust = Customer(board, m, o) if m.ui is not None else None
    # --stop-file: after its ticks the meter runs on (metering, answering commands, sending what
    # it holds) until that file exists, so a fleet's backend can finish backfills and retries;
    # at most as long again as the run.
    stop_file = o["stop-file"]
    n = 0
    while True:
        n += 1
        if n > ticks:
            if n == ticks + 1 and stop_file:
                open(stop_file + ".done." + o["meter-id"], "w").close()  # tells the fleet: past its end
            if not stop_file or exists(stop_file) or n > 2 * ticks:
                break
        if cust is not None and n % 12 == 0:
            cust.check_inbox(n)
            cust.wait_for_token(n)
        if cust is not None and cust.act(n):
            # Keys are being typed: the tick in keypad slices, as the device loop runs it.
            for _ in range(tick_ms // _SLICE_MS):
                board.advance(_SLICE_MS)
                m.ui.poll(board.clock.ticks_ms())
                cust.capture()
            board.advance(tick_ms % _SLICE_MS)
        else:
            board.advance(tick_ms)
        m.step()
        if cust is not None:
            cust.capture()
        if pace:
            idle(m, pace)
        # The customer: some time after the meter asks for a local confirmation, they hold the button.
        if m.relay.state == relay_mod.READY:
            if ready_since is None:
                ready_since = n
            elif (n - ready_since) * o["tick-s"] == o["customer-delay-s"]:
                if cust is not None:
                    cust.confirm()  # key D on the keypad
                else:
                    board.button.hold(3000 + 2 * tick_ms)  # long enough for the 3 s hold to be seen
                confirms += 1
        else:
            ready_since = None
        if m.events.seq != ev_seen:
            ev_seen = print_story(m.events, ev_seen)
        if n % per_hour == 0:
            gc.collect()  # live heap, sampled hourly (the garbage between collections is not demand)
            a = gc.mem_alloc()
            if a > heap_peak:
                heap_peak = a
            link = m.sync.link
            lim = m.protection.limiter
            print("hour %3d | energy %6d Wh | balance %6d | charged %6d | relay %-12s | disc %d rec %d | topups %d | overload trips %d retries %d | mqtt %s out %d" % (
                n // per_hour, m.metering.imp_wh, m.account.balance, m.account.charged,
                relay_mod.STATE_NAMES[m.relay.state], m.relay.disconnects, m.relay.reconnects, m.topups,
                lim.trips_total, lim.retries, "up" if link and link.state else "down", m.sync.published))
    # Give the link a moment (real time) to deliver what is still queued.
    deadline = time.ticks_add(time.ticks_ms(), 3000)
    while m.sync.link and m.sync.outbox.count and time.ticks_diff(deadline, time.ticks_ms()) > 0:
        m.sync.poll()
        time.sleep_ms(5)
    m.commit()
    emu = board.emu
    mt = m.metering
    summary = {
        "board": o["board"], "sim_hours": o["hours"], "energy_wh": mt.imp_wh,
        "energy_rem_counts": mt.imp_rem, "truth_wh": emu.truth_mj // 3600000, "truth_mj": emu.truth_mj,
        "meter_constant": board.config["meter_constant"],
        "charged_minor": m.account.charged, "balance_minor": m.account.balance,
        "topped_up_minor": m.account.topped_up, "topups_applied": m.topups,
        "opening_balance": board.config.get("opening_balance", 0),
        "relay": relay_mod.STATE_NAMES[m.relay.state], "disconnects": m.relay.disconnects,
        "reconnects": m.relay.reconnects, "overload_trips": m.protection.limiter.trips_total,
        "overload_retries": m.protection.limiter.retries, "overload_latches": m.protection.limiter.latches,
        "local_confirms": confirms, "relay_faults": m.protection.driver.fault, "mqtt_out": m.sync.published,
        "mqtt_connects": m.sync.link.connects if m.sync.link else 0,
        "outbox_left": m.sync.outbox.count, "uplink_seq": m.sync.seq, "outbox_dropped": m.sync.outbox.dropped,
        "commands_refused": m.commands.refused, "commits": m.store.commits,
        "chip_resets": mt.resets, "chip_upsets": mt.upsets, "chip_faults": mt.faults, "chip_bus_errors": mt.bus_errors,
        "energy_rejected": mt.rejected, "tampers": mt.tampers, "chip": board.chip.NAME,
        "energy_den": board.chip.WH_DEN, "max_poll_ms": mt.max_poll_ms, "tick_ms": tick_ms,
        "channel_wh": list(mt.ch_wh), "truth_export_mj": emu.truth_export_mj, "export_wh": mt.exp_wh,
        "tariff_price_per_kwh": m.tariff.price, "tariff_den": m.tariff.den,
        "heap_peak": heap_peak, "real_ms": time.ticks_diff(time.ticks_ms(), t0),
    }
    summary.update(emu.summary())
    if cust is not None:
        cust.close()
        summary["token_waits"] = cust.waited
        summary["tokens_keyed"] = m.ui.tokens_keyed
        summary["tokens_accepted"] = m.ui.tokens_accepted
        summary["keys"] = m.ui.keys
        summary["screens_written"] = cust.written
        summary["display_errors"] = board.display.errors
        summary["tones"] = board.beeper.count
    summary["pulses"] = {p.name: p.value for p in board.pulses}
    summary["pulse_counts"] = [p.count for p in board.pulses]
    summary["pulse_truth"] = board.pulses_truth
    if m.sync.link:
        m.sync.link.close()
    gc.collect()
    json.dump(summary, sys.stdout)  # streamed: no one large string in a small (device-sized) heap
    print()


main()
