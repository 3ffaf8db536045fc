# Technician REPL kit. After Ctrl-C stops the main loop:
#     >>> from repl import *
#     >>> status()
# Every command works on the live meter (app.current), prints readable lines with units, and
# returns a small value a script can check. Nothing here runs on the metering hot path, so
# clarity wins over allocation here. Bad input prints one clear line and changes nothing.
import time
import app
import events
import relay as relay_mod
import timebase
import timesource

__all__ = ("status", "selftest", "relay_test", "token", "log", "set_time", "config",
           "cal_read", "cal_check", "calibrate", "resume", "help_")

_NO_LOAD_MA = 100  # below this the relay test cannot confirm anything from the current
_SETTLE_MS = 1500  # the chip's RMS registers settle within about a second


class ReplError(Exception):
    pass


def _command(f):
    """A REPL command: while it runs, the hold timer (main.hold_watchdog) only feeds the watchdog
    and takes no loop step, so a step never commits or reads a command's half-done state."""
    def run(*args, **kw):
        busy = getattr(app, "console_busy", 0)
        app.console_busy = busy + 1
        try:
            return f(*args, **kw)
        finally:
            app.console_busy = busy
    return run


def _m():
    m = getattr(app, "current", None)
    if m is None:
        raise ReplError("no running meter (main.py starts one; or call main.start(board))")
    if getattr(app, "console_hold", None) is not None:
        import main
        main.renew_hold()  # the technician is still here
    # One loop step first: energy drawn while paused is billed, and what we show is current.
    m.step()
    return m


def _out(msg):
    print(msg)


def _err(msg):
    print("error: " + msg)
    return None


# -- formatting ---------------------------------------------------------------------
def money(minor, decimals=2):
    sign = "-" if minor < 0 else ""
    minor = -minor if minor < 0 else minor
    if not decimals:
        return sign + str(minor)
    d = 10 ** decimals
    return "%s%d.%0*d" % (sign, minor // d, decimals, minor % d)


def _fixed(v, div, places):
    sign = "-" if v < 0 else ""
    v = -v if v < 0 else v
    return "%s%d.%0*d" % (sign, v // div, places, v % div)


def utc_text(t):
    """A meter second (timebase.py) as a UTC date and time."""
    if t >= timebase.EPOCH:
        t -= timebase.EPOCH  # logged by a firmware that kept Unix seconds (meter time is 2080 then)
    y, mo, d, h, mi, s = time.gmtime(t + _epoch_offset())[:6]
    return "%04d-%02d-%02d %02d:%02d:%02d UTC" % (y, mo, d, h, mi, s)


def _epoch_offset():
    # The meter epoch in the port's own seconds: gmtime()/mktime() count from 2000 on the
    # ESP32 and from 1970 on the unix port.
    return timebase.EPOCH - (946684800 if time.gmtime(0)[0] == 2000 else 0)


def _reasons(bits):
    names = [n for i, n in enumerate(relay_mod.REASON_NAMES) if bits & (1 << i)]
    return ",".join(names) if names else "none"


def _chip(m):
    # The metering chip behind the Metering layer; only the driver's shared MeterChip API is
    # used here, so every command works on every chip.
    return m.metering.chip


def _ch_word(n):
    return "phase" if n == 3 else "channel"


def _ch_name(n, k):
    return _ch_word(n) + " " + "ABC"[k]


def _vip(v, i, p):
    return "%s V  %s A  %d W" % (_fixed(v, 100, 2), _fixed(i, 1000, 3), p)


def _dec(m):
    return m.board.config.get("currency_decimals", 2)


def _settle(m, ms):
    """Let the analogue world settle: a simulated board advances its time, a real one sleeps."""
    adv = getattr(m.board, "advance", None)
    if adv is not None:
        adv(ms)
    else:
        step = 200
        while ms > 0:
            time.sleep_ms(step if ms > step else ms)
            ms -= step
            m.board.feed_watchdog()


# -- status ---------------------------------------------------------------------------
@_command
def status():
    m = _m()
    mt = m.metering
    a = m.account
    r = m.relay
    dec = _dec(m)
    link = m.sync.link
    _out("meter     %s" % m.board.meter_id)
    ts = m.timesrc
    _out("time      %s  (%s%s)" % (utc_text(m.clock.time()), timesource.NAMES[ts.state],
                                   "" if ts.state == timesource.TRUSTED else
                                   ": since a power cut; set_time(...) or the backend's time sets it"))
    if m.commands.lost:
        _out("commands  REFUSED: the record was lost; the backend must send resync (nonce %d)" % m.commands.nonce)
    _out("energy    import %s kWh   export %s kWh" % (_fixed(mt.imp_wh, 1000, 3), _fixed(mt.exp_wh, 1000, 3)))
    _out("now       %s V  %s A  %d W  %s Hz" % (_fixed(mt.v_cv, 100, 2), _fixed(mt.i_ma, 1000, 3), mt.p_w,
                                             _fixed(mt.f_chz, 100, 2)))
    chip = _chip(m)
    n = chip.CHANNELS
    if n > 1:  # the line above is the total (voltage of the first channel): each one too
        for k in range(n):
            _out("  %-9s %s" % (_ch_name(n, k), _vip(chip.v_cv[k], chip.i_ma[k], chip.p_w[k])))
    _out("credit    balance %s   charged %s   topped up %s   (%d top-ups)" % (
        money(a.balance, dec), money(a.charged, dec), money(a.topped_up, dec), m.topups))
    _out("relay     %s   reasons: %s   (opened %d, closed %d)" % (
        relay_mod.STATE_NAMES[r.state], _reasons(r.reasons), r.disconnects, r.reconnects))
    _out("chip      %s   resets %d   faults %d" % ("ok" if mt.ok else "FAULT", mt.resets, mt.faults))
    _out("storage   record seq %d   commits %d   faults %d   damaged slots %d" % (
        m.store.seq, m.store.commits, m.commit_faults, m.store.damaged))
    if link is None:
        _out("network   no broker configured")
    else:
        _out("network   %s:%d %s   connects %d   outbox %d   sent %d   dropped %d" % (
            link.host, link.port, "up" if link.state else "down", link.connects, m.sync.outbox.count,
            m.sync.published, m.sync.outbox.dropped))
    t = m.sync.tally  # refusals and repeats counted since the interval's first (firmware/refusals.py)
    _out("commands  last id %d   refused %d   key %s   this interval %d   unanswered %d" % (
        m.commands.last_id, m.commands.refused, "set" if m.board.key else "MISSING", t.total, m.sync.suppressed))
    ui = m.ui
    if ui is not None:
        _out("customer  display %s   keypad %s   keys %d   tokens keyed %d (accepted %d)%s" % (
            "-" if ui.display is None else "errors %d" % ui.display.errors,
            "-" if ui.keypad is None else "errors %d" % ui.keypad.errors, ui.keys, ui.tokens_keyed,
            ui.tokens_accepted, "   settings refused: " + ui.config_error if ui.config_error else ""))
    u = m.ota
    if u is not None:
        st, done, blocks, version = u.progress()
        _out("firmware  %d.%d.%d in %s   update: %s%s" % (
            u.running >> 16 & 255, u.running >> 8 & 255, u.running & 255, u.label, st,
            " %s, block %d of %d" % (version, done, blocks) if version else "",
        ) + ("   last: " + u.last if u.last else ""))
    return {"balance": a.balance, "imp_wh": mt.imp_wh, "relay": relay_mod.STATE_NAMES[r.state]}


# -- self test --------------------------------------------------------------------------
def _result(name, ok, detail):
    _out("%-8s %-4s %s" % (name, "ok" if ok else ("--" if ok is None else "FAIL"), detail))
    return ok


def _check_chip(m):
    chip = _chip(m)
    try:
        bad, detail = chip.diagnose()  # what this chip can tell (see the driver's _diagnose)
    except Exception as e:  # a bus error is exactly what this test is for
        return _result("spi", False, "bus error: %r" % e)
    if bad:
        return _result("spi", False, "; ".join(bad))
    resets = m.metering.resets
    if resets:  # healthy now because the meter re-initialised it: the technician should know
        detail += "; re-initialised after %d silent reset(s) since boot" % resets
    return _result("spi", True, "%s: %s" % (chip.NAME, detail))


def _read_ma(m):
    """Current of all channels together, fresh from the chip: the relay switches them all."""
    chip = _chip(m)
    chip.read_inst()
    i = 0
    for k in range(chip.CHANNELS):
        i += chip.i_ma[k]
    return i


def _closed(m):
    """True when the contacts are driven closed: CONNECTED and no close still waiting for its
    randomised reconnect delay (then the contacts are still open)."""
    return m.relay.state == relay_mod.CONNECTED and not m.protection.driver.pending()


def _click(m):
    """Open the contacts for a moment and watch the current fall. Returns (ok, before_ma, after_ma)."""
    drv = m.protection.driver
    if not _closed(m):
        return None, 0, 0
    before = _read_ma(m)
    drv.jog(False)
    try:
        _settle(m, _SETTLE_MS)
        after = _read_ma(m)
    finally:
        drv.jog(True)  # back to where the driver has them: closed
    _settle(m, _SETTLE_MS)
    if before < _NO_LOAD_MA:
        return None, before, after
    return after < _NO_LOAD_MA, before, after


def _check_relay(m):
    if not m.metering.ok:
        return _result("relay", None, "not tested: metering chip not answering, so no current to confirm it")
    ok, before, after = _click(m)
    if ok is None and m.relay.state != relay_mod.CONNECTED:
        return _result("relay", None, "not tested: relay is %s (reasons %s)" % (
            relay_mod.STATE_NAMES[m.relay.state], _reasons(m.relay.reasons)))
    if ok is None and not _closed(m):
        return _result("relay", None, "not tested: relay closes after its reconnect delay (up to %d s)" % (
            m.relay.delay_max_s))
    if ok is None:
        return _result("relay", None, "clicked, but no load to confirm it (%s A before)" % _fixed(before, 1000, 3))
    n = _chip(m).CHANNELS
    return _result("relay", ok, "open: %s A -> %s A%s, closed again" % (
        _fixed(before, 1000, 3), _fixed(after, 1000, 3), " (all %d %ss)" % (n, _ch_word(n)) if n > 1 else ""))


def _check_storage(m):
    from store import RecordStore
    root = m.board.root
    if not m.commit():
        return _result("storage", False, "commit failed (faults %d)" % m.commit_faults)
    probe = RecordStore(root + "/state.a", root + "/state.b", len(m.store.payload))
    if not probe.load() or bytes(probe.payload) != bytes(m.store.payload) or probe.seq != m.store.seq:
        return _result("storage", False, "record read back differs from what was written")
    free = ""
    try:
        import os
        s = os.statvfs(root)
        free = ", %d kB free" % (s[0] * s[3] // 1024)
    except (OSError, AttributeError):
        pass
    return _result("storage", probe.damaged == 0, "record seq %d written and read back, %d damaged slot(s)%s" % (
        probe.seq, probe.damaged, free))


def _check_clock(m):
    c = m.clock
    t = c.time()
    t0 = c.ticks_ms()
    _settle(m, 50)
    moved = c.ticks_diff(c.ticks_ms(), t0)
    ok = t >= timebase.SET_MIN and moved > 0  # after 2024-01-01 and ticking
    why = "" if t >= timebase.SET_MIN else "  (not set: use set_time(...))"
    return _result("clock", ok, "%s, ticks advance %d ms%s" % (utc_text(t), moved, why))


def _check_broker(m):
    link = m.sync.link
    if link is None:
        return _result("broker", None, "no broker configured")
    if link.state:
        return _result("broker", True, "%s:%d connected (%d connects)" % (link.host, link.port, link.connects))
    import socket
    s = socket.socket()
    try:
        s.settimeout(2)
        s.connect(socket.getaddrinfo(link.host, link.port)[0][-1])
        return _result("broker", True, "%s:%d reachable (link will reconnect)" % (link.host, link.port))
    except Exception as e:
        return _result("broker", False, "%s:%d unreachable: %r" % (link.host, link.port, e))
    finally:
        s.close()


@_command
def selftest():
    """The metering chip's own diagnosis (absent, reset, its checksums/configuration), relay click
    with current confirmation, storage, clock, broker."""
    m = _m()
    results = [_check_chip(m), _check_relay(m), _check_storage(m), _check_clock(m), _check_broker(m),
               _check_customer(m)]
    failed = results.count(False)
    _out("selftest: %s (%d failed, %d not tested)" % ("PASS" if not failed else "FAIL", failed, results.count(None)))
    return not failed


def _check_customer(m):
    """The display and the keypad's expander answer on their bus; the buzzer beeps (listen)."""
    ui = m.ui
    if ui is None:
        return _result("customer", None, "no display or keypad on this board")
    bad = []
    d = ui.display
    if d is not None and not (d.init() and d.show()):
        bad.append("the display does not answer (I2C 0x3C)")
    kp = ui.keypad
    if kp is not None:
        e = kp.errors
        kp.scan(m.clock.ticks_ms())
        if kp.errors != e:
            bad.append("the keypad's expander does not answer (I2C 0x20)")
    if ui.buzzer is not None:
        import buzzer
        ui.buzzer.play(buzzer.ACCEPT, m.clock.ticks_ms())
    return _result("customer", not bad, "; ".join(bad) or "display and keypad answer; the buzzer beeps twice")


@_command
def relay_test():
    """One open/close cycle of the load relay, confirmed by the measured current."""
    m = _m()
    ok = _check_relay(m)
    _out("relay operations so far: %d" % getattr(m.board.relay, "operations", -1))
    return ok


# -- token entry --------------------------------------------------------------------------
# What an applied token did, by its type (token.CREDIT, DEBT, TEST).
_TOKEN_APPLIED = ("credit added", "added to the debt to recover", "test token: keypad, key and counter work; no money")
_TOKEN_HELP = {
    "used": "already applied, nothing added",
    "check_digit": "a digit is mistyped: type the token again",
    "bad_mac": "not a valid token for this meter",
    "locked": "too many wrong tokens: wait and try again",
    "refused_max_balance": "the balance would go above its maximum",
    "no_key": "this meter has no key: it cannot check tokens",
}


@_command
def token(text):
    """Enter a 20-digit token; spaces and dashes between groups are fine."""
    m = _m()
    if not isinstance(text, str):
        return _err('give the token as text: token("1234 5678 9012 3456 7890")')
    digits = "".join(ch for ch in text if ch not in " -")
    paygo = m.paygo is not None  # this meter also takes OpenPAYGO Token codes (9 or 12 digits)
    if not digits.isdigit() or not (len(digits) == 20 or paygo and len(digits) in (9, 12)):
        return _err("a token has 20 digits%s, got %r (%d digits)" % (
            " (or 9 or 12 for OpenPAYGO)" if paygo else "", text, sum(1 for c in digits if c.isdigit())))
    res = m.enter_token(digits)
    t = m.last_token
    why = _TOKEN_APPLIED[t] if res == "applied" and t < len(_TOKEN_APPLIED) else _TOKEN_HELP.get(res)
    _out("token %s: %s%s; balance %s" % (" ".join(digits[i:i + 4] for i in range(0, len(digits), 4)), res,
                                         " (%s)" % why if why else "", money(m.account.balance, _dec(m))))
    return res


# -- event log ------------------------------------------------------------------------------
@_command
def log(n=20):
    """The last n events, oldest first, from the event log on flash (so events from before
    the last reboot show too); the RAM ring if the log cannot be read."""
    m = _m()  # its step persists the events raised so far
    if type(n) is not int or n <= 0:
        return _err("log(n): n must be a positive whole number")
    ring = m.log.events
    if ring is None:
        _out("(event log on flash unavailable: events since boot only)")
        return _log_ram(m, n)
    import struct
    from logbook import EV_FMT, EV_SIZE
    buf = bytearray(EV_SIZE)
    first = ring.next_seq - n if ring.next_seq - n > ring.first_seq else ring.first_seq
    shown = 0
    for s in range(first, ring.next_seq):
        if not ring.read(s, buf):
            _out("#%-4d (unreadable)" % s)
            continue
        utc, arg, code = struct.unpack(EV_FMT, buf)
        _show_event(s, code, arg, utc)
        shown += 1
    if not shown:
        _out("(no events logged)")
    return shown


def _show_event(s, code, arg, utc):
    _out("#%-4d %s  %-17s %d" % (s, utc_text(utc), events.name(code), arg))


def _log_ram(m, n):
    ring = m.events
    first = ring.seq - n if ring.seq > n else 0
    if first < ring.oldest_seq():
        first = ring.oldest_seq()
    shown = 0
    for s in range(first, ring.seq):
        e = ring.get(s)
        if e is None:
            continue
        _show_event(s, e[0], e[1], e[2])
        shown += 1
    if not shown:
        _out("(no events since boot)")
    return shown


# -- clock ------------------------------------------------------------------------------------
@_command
def set_time(y, mo=None, d=None, h=0, mi=0, s=0):
    """set_time(unix_seconds) or set_time(2026, 11, 27, 10, 30, 0) -- UTC."""
    m = _m()
    if mo is None:
        utc = y
        if type(utc) is not int:
            return _err("set_time(unix_seconds) or set_time(year, month, day, hour, minute, second)")
    else:
        for v, lo, hi, name in ((y, 2024, 2058, "year"), (mo, 1, 12, "month"), (d, 1, 31, "day"),
                                (h, 0, 23, "hour"), (mi, 0, 59, "minute"), (s, 0, 59, "second")):
            if type(v) is not int or not lo <= v <= hi:
                return _err("%s must be a whole number in %d..%d" % (name, lo, hi))
        t = time.mktime((y, mo, d, h, mi, s, 0, 0)) - _epoch_offset()  # meter seconds
        if time.gmtime(t + _epoch_offset())[:3] != (y, mo, d):
            return _err("no such date %04d-%02d-%02d" % (y, mo, d))
        utc = timebase.to_unix(t)
    if not 1704067200 <= utc < 2808950400:
        return _err("time must be between 2024 and 2058")  # the meter's clock ends in 2059 (timebase.py)
    if not m.set_time(utc):  # the technician's time is trusted (docs/time.md)
        return _err("this board cannot set its clock")
    _out("clock set: %s" % utc_text(m.clock.time()))
    return timebase.to_unix(m.clock.time())


# -- settings -----------------------------------------------------------------------------------
# name -> (lo, hi, where it lives); bools use (0, 1)
_SETTINGS = {
    "telemetry_s": (60, 86400, "telemetry period, s"),
    "commit_s": (60, 3600, "record commit period, s"),
    "commit_wh": (1, 100, "record commit every N Wh"),
    "auto_reconnect": (0, 1, "close relay by itself when credit returns (True/False)"),
    "low1": (0, 10000000, "low-credit warning 1, minor units"),
    "low2": (0, 10000000, "low-credit warning 2, minor units"),
    "hysteresis": (0, 100000, "low-credit hysteresis, minor units"),
    "reconnect_threshold": (0, 10000000, "credit needed before reconnecting, minor units"),
}


_CREDIT = {"low1": "low1", "low2": "low2", "hysteresis": "hyst", "reconnect_threshold": "reconnect_threshold"}


def _get(m, name):
    if name == "telemetry_s":
        return m.reporter.tele_ms // 1000
    if name == "commit_s":
        return m.commit_ms // 1000
    if name == "commit_wh":
        return m.commit_wh
    if name == "auto_reconnect":
        return m.relay.auto_reconnect
    return getattr(m.account, _CREDIT[name])


def _set(m, name, v):
    if name == "telemetry_s":
        m.reporter.tele_ms = v * 1000
    elif name == "commit_s":
        m.commit_ms = v * 1000
    elif name == "commit_wh":
        m.commit_wh = v
    elif name == "auto_reconnect":
        m.relay.auto_reconnect = v


def _save(m, name, v):
    import json
    from main import SETTINGS
    path = m.board.root + "/" + SETTINGS
    try:
        with open(path) as f:
            saved = json.load(f)
    except (OSError, ValueError):
        saved = {}
    saved[name] = v
    with open(path, "w") as f:
        json.dump(saved, f)


@_command
def config(name=None, value=None):
    """config() shows every setting; config("telemetry_s", 300) sets one (checked, saved, live)."""
    m = _m()
    if name is None:
        for k in sorted(_SETTINGS):
            _out("%-20s %-10s %s" % (k, _get(m, k), _SETTINGS[k][2]))
        return None
    if name not in _SETTINGS:
        return _err("unknown setting %r; known: %s" % (name, ", ".join(sorted(_SETTINGS))))
    if value is None:
        _out("%s = %s" % (name, _get(m, name)))
        return _get(m, name)
    lo, hi, _ = _SETTINGS[name]
    if name == "auto_reconnect":
        if value is not True and value is not False:
            return _err("auto_reconnect must be True or False")
    elif type(value) is not int or not lo <= value <= hi:
        return _err("%s must be a whole number in %d..%d, got %r" % (name, lo, hi, value))
    a = m.account
    low1 = value if name == "low1" else a.low1
    low2 = value if name == "low2" else a.low2
    if low2 > low1:
        return _err("low2 (%d) must not be above low1 (%d)" % (low2, low1))
    try:
        if name in _CREDIT:
            # Credit rules have one home, shared with the backend's `limits` command: the
            # account, validated as a whole and saved in credit.json.
            if not m.set_limits({name: value}):
                return _err("%s = %r refused by the credit rules (nothing changed)" % (name, value))
        else:
            _save(m, name, value)
            _set(m, name, value)
    except OSError as e:
        return _err("could not save: %r (nothing changed)" % e)
    _out("%s = %s (saved)" % (name, value))
    return value


# -- calibration ----------------------------------------------------------------------------------
@_command
def cal_read(samples=5):
    """Step 1 of a calibration check: the meter's own readings, averaged over a few seconds.
    Returns (v, i, p): voltage of the first channel, current and power of all channels (on a
    single-channel meter simply its V, A, W); multi-channel meters add one (v, i, p) per channel."""
    m = _m()
    if type(samples) is not int or not 1 <= samples <= 60:
        return _err("samples must be 1..60")
    if not m.metering.ok:
        return _err("the metering chip is not answering: see selftest()")
    chip = _chip(m)
    n = chip.CHANNELS
    v = [0] * n
    i = [0] * n
    p = [0] * n
    for _ in range(samples):
        _settle(m, 1000)
        chip.read_inst()
        for k in range(n):
            v[k] += chip.v_cv[k]
            i[k] += chip.i_ma[k]
            p[k] += chip.p_w[k]
    chans = tuple((v[k] // samples, i[k] // samples, p[k] // samples) for k in range(n))
    total = (chans[0][0], sum(c[1] for c in chans), sum(c[2] for c in chans))
    if n == 1:
        _out("meter reads %s  (mean of %d s)" % (_vip(*total), samples))
        return total
    _out("meter reads (mean of %d s):" % samples)
    for k in range(n):
        _out("  %-9s %s" % (_ch_name(n, k), _vip(*chans[k])))
    _out("  %-9s %10s%s A  %d W" % ("total", "", _fixed(total[1], 1000, 3), total[2]))
    return total + chans


def _err_pm(meter, ref):
    # error in tenths of a percent, rounded half away from zero, integer only
    if ref == 0:
        return None
    num = (meter - ref) * 2000
    q = (abs(num) + abs(ref)) // (2 * abs(ref))
    return q if (num >= 0) == (ref > 0) else -q


@_command
def cal_check(ref_v, ref_a, ref_w, ch=0, samples=5):
    """Step 2: compare with a reference meter on the same load. ref_v in V, ref_a in A, ref_w in W,
    as text or whole numbers: cal_check("230.1", "4.350", 1000). On a multi-channel meter the
    reference is on one phase/channel: ch = 0, 1, 2 or "A", "B", "C" (default the first)."""
    m = _m()
    try:
        rv = _parse_fixed(ref_v, 2)
        ra = _parse_fixed(ref_a, 3)
        rw = _parse_fixed(ref_w, 0)
        k = _channel(_chip(m).CHANNELS, ch)
    except ValueError as e:
        return _err(str(e))
    got = cal_read(samples)
    if got is None:
        return None
    n = _chip(m).CHANNELS
    if n > 1:
        got = got[3 + k]
        _out("%s against the reference:" % _ch_name(n, k))
    out = []
    for name, mv, rv_, unit in (("voltage", got[0], rv, "V"), ("current", got[1], ra, "A"), ("power", got[2], rw, "W")):
        e = _err_pm(mv, rv_)
        out.append(e)
        _out("%-8s error %s %%" % (name, "n/a (reference is 0)" if e is None else _fixed(e, 10, 1)))
    return tuple(out)


def _channel(n, ch):
    """Index of channel ch (0.. or a letter A..) on a meter with n channels; ValueError if none."""
    if type(ch) is str and len(ch) == 1 and "A" <= ch.upper() <= "C":
        k = ord(ch.upper()) - ord("A")
    elif type(ch) is int:
        k = ch
    else:
        k = -1
    if not 0 <= k < n:
        if n == 1:
            raise ValueError("this meter has one channel: leave ch out (got %r; the averaging time is "
                             "samples=N)" % (ch,))
        raise ValueError("ch must be 0..%d or A..%s on this meter, got %r" % (n - 1, "ABC"[n - 1], ch))
    return k


def _parse_fixed(v, places):
    if type(v) is int:
        return v * 10 ** places
    if not isinstance(v, str):
        raise ValueError("reference values are text like \"230.1\" or whole numbers, got %r" % (v,))
    whole, _, frac = v.strip().partition(".")
    neg = whole.startswith("-")
    if neg:
        whole = whole[1:]
    if not (whole or frac) or (whole and not whole.isdigit()) or (frac and not frac.isdigit()) or len(frac) > places:
        raise ValueError("%r is not a number with at most %d decimals" % (v, places))
    r = int(whole or "0") * 10 ** places + (int(frac) * 10 ** (places - len(frac)) if frac else 0)
    return -r if neg else r


@_command
def calibrate(step=None, *args):
    """Gain calibration steps come from the calibration module when this firmware has one."""
    m = _m()
    try:
        import calibration
    except ImportError:
        return _err("gain calibration is not supported by this firmware; cal_read()/cal_check() still work")
    fn = getattr(calibration, "repl_step", None)
    if fn is None:
        return _err("this firmware's calibration module has no REPL steps")
    return fn(m, step, *args)


# -- resume ------------------------------------------------------------------------------------------
def resume(ticks=None):
    """Go back to metering (the main loop). Ctrl-C pauses it again."""
    m = _m()
    import main
    try:  # Ctrl-C at any moment, even before the loop's own handler, brings the prompt back
        _out("resuming the meter loop")
        return main.loop(m, ticks)
    except KeyboardInterrupt:
        return None


_HELP = (
    ("status()", "meter, energy, power, credit, relay, storage and network at a glance"),
    ("selftest()", "metering chip diagnosis, relay click with current check, storage, clock, broker"),
    ("relay_test()", "open the relay for a moment and confirm the current falls"),
    ('token("1234 ...")', "enter a 20-digit token"),
    ("log(20)", "the last events from the log on flash, oldest first"),
    ("set_time(2026,11,27,10,30,0)", "set the clock (UTC); or set_time(unix_seconds)"),
    ("config()", 'show settings; config("telemetry_s", 300) sets one'),
    ("cal_read()", "calibration step 1: the meter's V, A, W over a few seconds (per phase too)"),
    ('cal_check("230.1","4.35",1000)', "calibration step 2: error against a reference meter; ch=1 for phase B"),
    ("calibrate(step, ...)", "guided calibration: voltage, current, power, phase, offset, check, save"),
    ("resume()", "back to metering"),
)


def help_():
    for cmd, what in _HELP:
        _out("%-32s %s" % (cmd, what))
