"""`make repl-sim` (tools/repl_sim.py): the technician's REPL on a simulated meter, driven as a
technician would: status, config, a full guided calibration against the reference meter, resume()
until Ctrl-C, and back at the prompt (issue 20: resume() never returned, calibrate() waited in real
time while the sim chip ran in simulated time, config() raised)."""
import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

USES_MICROPYTHON = True

REPO = Path(__file__).resolve().parents[2]


class Session:
    """The REPL process, its output collected by a thread; wait() blocks on text, not on time."""

    def __init__(self, *args):
        self.p = subprocess.Popen([sys.executable, str(REPO / "tools" / "repl_sim.py")] + list(args),
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, cwd=REPO)
        self.out = ""
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            with self.cond:
                self.out += line
                self.cond.notify_all()
        with self.cond:
            self.out += "\n<EOF>"
            self.cond.notify_all()

    def send(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()

    def wait(self, text, start=0, timeout=120):
        with self.cond:
            ok = self.cond.wait_for(lambda: text in self.out[start:] or "<EOF>" in self.out, timeout)
            assert ok and text in self.out[start:], "never saw %r in:\n%s" % (text, self.out[-3000:])
            return self.out.index(text, start) + len(text)

    def close(self):
        try:
            self.p.stdin.close()
        except OSError:
            pass
        try:
            self.p.wait(60)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


def _value(s, text, start):
    """What was printed after `text` on its line (tuples printed by the commands below)."""
    i = s.wait(text, start)
    j = s.wait("\n", i)
    return eval(s.out[i:j]), j


def test_repl_sim_status_config_full_calibration_and_resume(tmp_path):
    s = Session("--speed", "0", "--flash", str(tmp_path / "flash.img"))
    try:
        i = s.wait("resume() meters until Ctrl-C")
        s.send("status()")
        i = s.wait("commands  last id", i)
        s.send("config()")
        i = s.wait("telemetry_s", i)
        s.send('config("telemetry_s", 300)')
        i = s.wait("telemetry_s = 300 (saved)", i)
        # The guided calibration of docs/technician.md against the reference meter: this unit
        # reads 2 % low on voltage and 3 % high on current with the board's gains, and has a
        # phase error and a current offset.
        s.send("r0 = cal_read()")
        s.send("ref = reference()")
        i = s.wait("reference: ", i)
        steps = ('calibrate("voltage", ref[0])', 'calibrate("current", ref[1])', 'calibrate("power", ref[2])',
                 'set_load(1150, 0.5); ref = reference()', 'calibrate("phase", ref[2])',
                 'set_load(115); ref = reference()', 'calibrate("offset", "current", ref[1])',
                 'set_load(2300); ref = reference()', 'calibrate("current", ref[1])')
        for step in steps:
            if step.startswith("set_load"):
                s.send(step)
                i = s.wait("reference: ", i)
                continue
            s.send("print('gain', %s)" % step)
            i = s.wait("gain ", i)
            line = s.out[i:s.wait("\n", i)]
            assert line.strip().isdigit(), (step, line, s.out[-2000:])
        s.send("print('phi', calibrate('show')['phi'])")
        phi, i = _value(s, "phi ", i)
        assert abs((phi & 0x7FFF) - 40) <= 2 and phi & 0x8000, hex(phi)  # the front end's phase error
        for w in (230, 2300, 6900):  # 1, 10 and 30 A: the error at each, ppm
            s.send("set_load(%d); r = reference(); print('ppm', calibrate('check', r[1]))" % w)
            ppm, i = _value(s, "ppm ", i)
            assert abs(ppm) <= 1000, (w, ppm)
        s.send("print('read', cal_read())")
        (v_cv, i_ma, p_w), i = _value(s, "read ", i)
        assert abs(v_cv - 23000) <= 23 and abs(i_ma - 30000) <= 30 and abs(p_w - 6900) <= 7, (v_cv, i_ma, p_w)
        s.send("print('saved', calibrate('save'))")
        i = s.wait("saved True", i)
        s.send("t0 = meter.clock.time()")
        s.send("resume()")
        i = s.wait("resuming the meter loop", i)
        s.p.send_signal(signal.SIGINT)  # Ctrl-C: back to the prompt
        s.send("print('after', meter.clock.time() - t0 > 0, meter.board.relay.closed)")
        i = s.wait("after True True", i)
        s.send("status()")
        i = s.wait("commands  last id", i)
    finally:
        s.close()
    assert s.p.returncode == 0 and "Traceback" not in s.out, s.out[-3000:]
    # The calibration was saved on the meter's flash: a new session on it starts calibrated.
    s = Session("--speed", "0", "--flash", str(tmp_path / "flash.img"))
    try:
        i = s.wait("resume() meters until Ctrl-C")
        s.send("print('again', cal_read())")
        v, i = _value(s, "again ", i)
        assert abs(v[0] - 23000) <= 23, v
    finally:
        s.close()


def test_repl_sim_refuses_bad_options_in_one_line():
    for args, msg in ((["--board", "sim-powercut"], "invalid choice"), (["--speed", "-1"], "--speed must be"),
                      (["--load-w", "x"], "invalid int value")):
        p = subprocess.run([sys.executable, str(REPO / "tools" / "repl_sim.py")] + args, capture_output=True,
                           text=True, cwd=REPO, timeout=60)
        assert p.returncode == 2 and msg in p.stderr and "Traceback" not in p.stderr, (args, p.stderr)


def test_repl_sim_units_of_the_other_boards_are_off_and_calibrate(tmp_path):
    # Every board's unit reads 2 % low on voltage and 3 % high on current on its first channel
    # until calibrated (a wrong base gain would put it outside the 20 % the steps accept).
    for board in ("sim-atm90e32", "sim-ade7953"):
        s = Session("--speed", "0", "--board", board, "--flash", str(tmp_path / (board + ".img")))
        try:
            i = s.wait("resume() meters until Ctrl-C")
            s.send("ref = reference()")
            s.send("print('before', cal_read()[3][:2])")  # the first channel's V, A
            (v0, a0), i = _value(s, "before ", i)
            s.send("calibrate('voltage', ref[0]); calibrate('current', ref[1])")
            s.send("print('after', cal_read()[3][:2])")
            (v1, a1), i = _value(s, "after ", i)
        finally:
            s.close()
        assert abs(v0 - 22549) <= 23 and abs(a0 - 10309) <= 10, (board, v0, a0)
        assert abs(v1 - 23000) <= 23 and abs(a1 - 10000) <= 10, (board, v1, a1)
