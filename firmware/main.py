# Device entry point: pick the board, build the meter, boot it and run the loop.
# The board module is named in /board.txt (written by `make deploy`, e.g. "esp32-atm90e26"),
# or by BOARD in an optional board_config.py. Ctrl-C stops the loop and leaves the meter
# object in app.current, so `from repl import *` at the REPL works on the live meter and
# resume() continues the loop.
import app

SETTINGS = "settings.json"  # technician overrides (repl.config), under board.root
# While the loop is paused at the REPL a timer keeps the meter running: every period it takes one
# loop step (metering, billing, relay, commit, sync; the step feeds the watchdog), but only for this
# long after the last REPL command: a console left open reboots into metering. Stepping, not just
# feeding the watchdog, because a chip's energy registers fill fast at full load (the ATM90E32 in
# under 18 s at 3 x 60 A): a pause of minutes would overflow them and lose the energy.
HOLD_S = 300
_HOLD_PERIOD_MS = 5000  # at most; never more than a third of the chip's max_poll_ms
# Hardware timer of the hold. machine.Timer(n) on the ESP32 is the one hardware timer n, shared by
# every Timer(n): the boards sample the pulse inputs on timer 0 (boards/esp32_*.py), so a hold on
# timer 0 would replace that callback and its deinit() would stop pulse counting for good.
_HOLD_TIMER = 1
_WAIT_SLICE_MS = 100  # poll the link at least this often while waiting for a tick


def board_name():
    try:
        with open("/board.txt") as f:
            name = f.read().strip()
        if name:
            return name
    except OSError:
        pass
    try:
        import board_config
        return board_config.BOARD
    except ImportError:
        raise RuntimeError("no board named: write /board.txt or board_config.py (make deploy does)")


def load_board(name=None, opts=None):
    mod = __import__((name or board_name()).replace("-", "_"))
    return mod.build(opts) if opts is not None else mod.build()


def apply_settings(board):
    """Overlay the technician's saved settings (validated when set; repl.config) on the board
    config. Credit rules are not here: they live in credit.json with the backend's (app.set_limits)."""
    import json
    try:
        with open(board.root + "/" + SETTINGS) as f:
            saved = json.load(f)
    except (OSError, ValueError):
        return 0
    cfg = dict(board.config)
    cfg.update(saved)
    board.config = cfg
    return len(saved)


def start(board):
    apply_settings(board)
    m = app.Meter(board)
    app.current = m  # the REPL kit finds the live meter here
    m.boot()
    return m


def loop(m, ticks=None, wait_ms=None):
    """Run the meter: one step per tick; returns after `ticks` steps, or when Ctrl-C is pressed.

    A simulated board (one with advance()) runs in simulated time, as fast as it can. Otherwise
    the time between ticks is spent servicing the MQTT link, idle on its socket (wait_ms,
    default m.sync.wait), so a command is answered as soon as it arrives. A step that raises is
    counted in m.step_errors and the loop goes on: a meter never stops metering (the watchdog
    covers real hangs)."""
    board = m.board
    tick = board.config.get("tick_ms", 1000)
    clock = board.clock
    advance = getattr(board, "advance", None) if wait_ms is None else None
    wait = wait_ms or m.sync.wait
    ui = m.ui
    n = 0
    release_watchdog()  # the loop feeds it again from here
    try:
        due = clock.ticks_add(clock.ticks_ms(), tick)
        while ticks is None or n < ticks:
            if advance is not None:
                advance(tick)
            else:
                while True:
                    left = clock.ticks_diff(due, clock.ticks_ms())
                    if left <= 0:
                        break
                    slice_ms = _WAIT_SLICE_MS
                    try:
                        m.sync.poll()
                        if ui is not None:  # keys and sounds want shorter slices (customer.py)
                            t = clock.ticks_ms()
                            ui.poll(t)
                            slice_ms = ui.slice_ms(t)
                    except Exception as e:  # noqa: BLE001 - the network never stops the loop
                        m.last_error = e
                    wait(left if left < slice_ms else slice_ms)
                due = clock.ticks_add(due, tick)
                if clock.ticks_diff(clock.ticks_ms(), due) > 10 * tick:
                    due = clock.ticks_add(clock.ticks_ms(), tick)  # far behind: resync, no burst
            try:
                m.step()
            except Exception as e:  # noqa: BLE001 - keep metering whatever went wrong
                m.step_errors += 1
                m.last_error = e
            n += 1
    except KeyboardInterrupt:
        board.feed_watchdog()
        held = advance is None and hold_watchdog(m)
        print("\nmeter loop paused%s." % (
            " (the meter reboots into metering %d s after the last REPL command)" % HOLD_S if held else ""))
        print("  from repl import *   then status(), help_(), resume()")
    return n


def hold_period_ms(m):
    """The hold's step period for this meter: a third of the time the chip's fullest energy
    register takes to overflow at the board's maximum power, at most _HOLD_PERIOD_MS."""
    p = m.metering.max_poll_ms // 3
    return p if p < _HOLD_PERIOD_MS else _HOLD_PERIOD_MS


def hold_watchdog(m):
    """Keep the meter stepping from a timer while a technician works at the REPL;
    app.console_hold = [periods left, periods in HOLD_S] (every REPL command renews it).
    While a REPL command runs (app.console_busy) the timer only feeds the watchdog: a step in the
    middle of a token entry or a calibration would commit or read half-done state. The ESP32's
    Timer callbacks are scheduled, so a step never runs inside another. False if the port has no
    Timer."""
    try:
        from machine import Timer
    except ImportError:
        return False
    period = hold_period_ms(m)
    full = HOLD_S * 1000 // period
    app.console_hold = [full, full]
    app.console_busy = 0  # REPL commands running (repl._command)
    board = m.board

    def tick(_t):
        h = app.console_hold
        if h is None or h[0] <= 0:
            return  # the hold ran out: no feed, the watchdog reboots into metering
        h[0] -= 1
        if app.console_busy:
            board.feed_watchdog()
            return
        try:
            m.step()
        except Exception as e:  # noqa: BLE001 - as in loop(): keep metering whatever went wrong
            m.step_errors += 1
            m.last_error = e
            board.feed_watchdog()

    t = Timer(_HOLD_TIMER)
    t.init(period=period, callback=tick)
    app.console_timer = t
    return True


def renew_hold():
    h = getattr(app, "console_hold", None)
    if h is not None:
        h[0] = h[1]


def release_watchdog():
    t = getattr(app, "console_timer", None)
    if t is not None:
        t.deinit()
        app.console_timer = None
        app.console_hold = None
        app.console_busy = 0


def run():
    try:
        m = start(load_board())
    except Exception:
        trial_failed()
        raise  # on a kept image: the traceback, then the REPL (the watchdog may reset it)
    loop(m)


def trial_failed():
    """A new image that cannot even start must not wait at the REPL for a technician: while it
    is the bootloader's trial (docs/ota.md), reset at once, and the bootloader goes back to the
    image before it."""
    try:
        import esp32
        import otadata
        if otadata.on_trial(esp32.Partition):
            import machine
            print("firmware update: this image does not start; resetting into the previous one")
            machine.reset()
    except ImportError:
        pass


if __name__ == "__main__":
    run()
