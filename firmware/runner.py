# Runs the meter on a board: boot, then step once per tick forever, servicing the MQTT link
# between ticks so commands are answered promptly. An exception in one step is counted and
# the loop goes on: a meter must never stop metering (the watchdog covers real hangs).
import app


def load_board(name=None):
    """The board module named in /board.txt (written at deploy), e.g. `esp32_atm90e26`."""
    if name is None:
        with open("/board.txt") as f:
            name = f.read().strip()
    return __import__(name.replace("-", "_"))


class Runner:
    def __init__(self, board, wait_ms=None):
        self.board = board
        self.meter = app.Meter(board)
        self.tick_ms = board.config.get("tick_ms", 1000)
        # How to spend the time between ticks: by default on the MQTT socket, waking for commands.
        self._wait_ms = wait_ms or self.meter.sync.wait
        self.step_errors = 0
        self.last_error = None
        app.current = self.meter  # for the technician's REPL

    def start(self):
        self.meter.boot()

    def run(self, ticks=-1, slice_ms=100):
        """Step `ticks` times (forever when negative)."""
        clock = self.board.clock
        m = self.meter
        due = clock.ticks_add(clock.ticks_ms(), self.tick_ms)
        while ticks != 0:
            try:
                m.step()
            except Exception as e:  # noqa: BLE001 - keep metering whatever went wrong
                self.step_errors += 1
                self.last_error = e
            ticks -= 1
            while True:
                left = clock.ticks_diff(due, clock.ticks_ms())
                if left <= 0:
                    break
                try:
                    m.sync.poll()
                except Exception as e:  # noqa: BLE001
                    self.last_error = e
                self._wait_ms(left if left < slice_ms else slice_ms)
            due = clock.ticks_add(due, self.tick_ms)
            if clock.ticks_diff(clock.ticks_ms(), due) > 10 * self.tick_ms:
                due = clock.ticks_add(clock.ticks_ms(), self.tick_ms)  # fell far behind: resync, don't burst


def main():
    r = Runner(load_board().build())
    r.start()
    try:
        r.run()
    except KeyboardInterrupt:
        print("meter loop stopped: REPL. `from repl import *` for the technician kit, resume() to continue")
