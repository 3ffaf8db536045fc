"""A throw-away PostgreSQL server on a loopback port, for tests and demos of the headend
service on PostgreSQL (docs/service.md). Uses the server binaries of Debian's `postgresql`
package; as root the cluster runs as the `postgres` user (the server refuses to run as root).

    with PgTemp() as pg:
        db = service_db.Db(pg.url)
"""
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mpbroker  # noqa: E402  (free_port)


class PgError(Exception):
    pass


def bindir():
    """The directory of initdb/pg_ctl, or None when PostgreSQL is not installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return os.path.dirname(found[-1])
    p = shutil.which("initdb")
    return os.path.dirname(p) if p else None


class PgTemp:
    def __init__(self):
        self.bin = bindir()
        if not self.bin:
            raise PgError("PostgreSQL is not installed (Debian: apt-get install postgresql)")
        self.dir = tempfile.mkdtemp(prefix="pm-pg-")
        self.port = mpbroker.free_port()
        self.url = "postgresql://pm@127.0.0.1:%d/pm" % self.port
        self._as = []
        if os.geteuid() == 0:
            os.chmod(self.dir, 0o777)
            self._as = ["runuser", "-u", "postgres", "--"]

    def _run(self, *cmd, timeout=120):
        p = subprocess.run(self._as + list(cmd), capture_output=True, text=True, timeout=timeout)
        if p.returncode:
            raise PgError("%s failed: %s" % (cmd[0], (p.stderr or p.stdout).strip()[-500:]))

    def start(self):
        data = os.path.join(self.dir, "data")
        self._run(os.path.join(self.bin, "initdb"), "-D", data, "-U", "pm", "--auth=trust", "-E", "UTF8")
        self._run(os.path.join(self.bin, "pg_ctl"), "-D", data, "-w", "-t", "120", "-l",
                  os.path.join(self.dir, "log"), "-o",
                  "-p %d -c listen_addresses=127.0.0.1 -k %s -c fsync=on" % (self.port, self.dir), "start")
        self._run(os.path.join(self.bin, "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "pm", "pm")
        return self

    def stop(self):
        data = os.path.join(self.dir, "data")
        if os.path.isdir(data):
            subprocess.run(self._as + [os.path.join(self.bin, "pg_ctl"), "-D", data, "-m", "fast", "-w", "stop"],
                           capture_output=True, timeout=120)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


if __name__ == "__main__":
    with PgTemp() as pg:
        print(pg.url)
        time.sleep(1)
