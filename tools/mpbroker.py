"""A private Mosquitto broker on a free 127.0.0.1 port, for tests and the simulator.

    from mpbroker import Broker
    with Broker() as b:             # started, port accepting connections
        connect_to(b.host, b.port)
        b.restart()                 # same port, sessions dropped
        b.stop()                    # down until start()/restart()
        print(b.log_text())

Never touches a system broker on 1883: every Broker has its own config,
port and log in a temporary directory that close() removes.
"""

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

HOST = "127.0.0.1"
_EXTRA_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/opt/homebrew/sbin/mosquitto")


class MosquittoNotFound(RuntimeError):
    pass


class BrokerError(RuntimeError):
    pass


def find_mosquitto():
    """Path of the mosquitto binary ($MOSQUITTO, PATH, usual sbin dirs) or MosquittoNotFound."""
    for c in (os.environ.get("MOSQUITTO"), shutil.which("mosquitto")) + _EXTRA_PATHS:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    raise MosquittoNotFound(
        "mosquitto not found; install it with `sudo apt-get install mosquitto` "
        "(or run tools/ensure_mosquitto.sh), or set $MOSQUITTO to its path"
    )


def free_port(host=HOST):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, port=None, start=True, start_timeout=10.0):
        self.host = HOST
        self.port = port
        self.start_timeout = start_timeout
        self._fixed_port = port is not None
        self._binary = find_mosquitto()
        self._dir = Path(tempfile.mkdtemp(prefix="mpbroker-"))
        self.log_path = self._dir / "mosquitto.log"
        self.config_path = self._dir / "mosquitto.conf"
        self._proc = None
        atexit.register(self.close)
        if start:
            self.start()

    # -- lifecycle --------------------------------------------------------

    def start(self):
        if self.running:
            return self
        attempts = 1 if self._fixed_port else 3
        for i in range(attempts):
            if not self._fixed_port:
                self.port = free_port()
            try:
                self._launch()
                self._fixed_port = True  # restart() must come back on the same port
                return self
            except BrokerError:
                self.stop()
                if i == attempts - 1:
                    raise
        return self

    def stop(self):
        p, self._proc = self._proc, None
        if p is None:
            return
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)

    def restart(self, down_for=0.0):
        """Stop, optionally stay down for `down_for` seconds, start again on the same port."""
        self.stop()
        if down_for:
            time.sleep(down_for)
        return self.start()

    def close(self):
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)
        atexit.unregister(self.close)

    @property
    def running(self):
        return self._proc is not None and self._proc.poll() is None

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return "Broker(%s:%s, %s)" % (self.host, self.port, "up" if self.running else "down")

    # -- internals --------------------------------------------------------

    def _write_config(self):
        lines = [
            "listener %d %s" % (self.port, self.host),
            "allow_anonymous true",
            "persistence false",
            "log_dest file %s" % self.log_path,
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            # Small MQTT packets otherwise wait for the peer's delayed ACK (Nagle): ~40-90 ms each.
            "set_tcp_nodelay true",
        ]
        if os.geteuid() == 0:
            # Otherwise mosquitto drops to user "mosquitto" and cannot write our log.
            lines.append("user root")
        self.config_path.write_text("\n".join(lines) + "\n")

    def _launch(self):
        self._write_config()
        self._proc = subprocess.Popen(
            [self._binary, "-c", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BrokerError(
                    "mosquitto exited with status %s while starting on port %s; log:\n%s"
                    % (self._proc.returncode, self.port, self.log_text())
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise BrokerError(
            "mosquitto did not accept connections on %s:%s within %ss; log:\n%s"
            % (self.host, self.port, self.start_timeout, self.log_text())
        )
