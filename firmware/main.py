# Device entry point: pick the board, build the meter, boot it and run the loop.
# The board module is named in /board.txt (written by `make deploy`, e.g. "esp32-atm90e26"),
# or by BOARD in an optional board_config.py. Ctrl-C stops the loop and leaves the meter
# object in app.current, so `from repl import *` at the REPL works on the live meter and
# resume() continues the loop.
import time
import app

SETTINGS = "settings.json"  # technician overrides (repl.config), under board.root


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
    """Overlay the technician's saved settings (already validated when set) on the board config."""
    import json
    try:
        with open(board.root + "/" + SETTINGS) as f:
            saved = json.load(f)
    except (OSError, ValueError):
        return 0
    cfg = dict(board.config)
    for k, v in saved.items():
        if k in ("low1", "low2", "hysteresis", "reconnect_threshold"):
            credit = dict(cfg.get("credit", {}))
            credit[k] = v
            cfg["credit"] = credit
        else:
            cfg[k] = v
    board.config = cfg
    return len(saved)


def start(board):
    apply_settings(board)
    m = app.Meter(board)
    app.current = m  # the REPL kit finds the live meter here
    m.boot()
    return m


def loop(m, ticks=None):
    """Run the meter: one step per tick. Simulated boards advance their own time; real ones sleep
    until the next tick. Returns after `ticks` steps, or when Ctrl-C is pressed."""
    board = m.board
    tick = board.config.get("tick_ms", 1000)
    clock = board.clock
    advance = getattr(board, "advance", None)
    n = 0
    try:
        nxt = clock.ticks_ms()
        while ticks is None or n < ticks:
            if advance is not None:
                advance(tick)
            else:
                nxt = clock.ticks_add(nxt, tick)
                wait = clock.ticks_diff(nxt, clock.ticks_ms())
                if wait > 0:
                    time.sleep_ms(wait)
                else:
                    nxt = clock.ticks_ms()  # overran: do not try to catch up in a burst
            m.step()
            n += 1
    except KeyboardInterrupt:
        board.feed_watchdog()
        print("\nmeter loop paused (the watchdog keeps running: resume within its timeout).")
        print("  from repl import *   then status(), help_(), resume()")
    return n


def run():
    m = start(load_board())
    loop(m)


if __name__ == "__main__":
    run()
