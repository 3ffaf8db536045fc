#!/usr/bin/env python3
"""Boot a real ESP32 board file on the host: the unmodified firmware and boards/esp32_*.py on the
ESP32 port stand-ins (boards/esp32port), with a virtual world around the board.

    python tools/esp32_host.py --board esp32-atm90e26 --hours 2
    python tools/esp32_host.py --board esp32-ade7953 --frozen --broker 127.0.0.1:1883 --hours 24
    python tools/esp32_host.py --board esp32-atm90e26 --ota --hours 1

Like a technician would: provision the meter (tools/headend.py provision), stage its files
(tools/deploy.py --stage-only; for the frozen meter image only board.txt and secrets.json), copy
them onto the board's flash image as mpremote would (with --ota, the meter image's OTA variant: an
8 MiB flash with two app slots, an app image written into ota_0 and blank OTA data as esptool
leaves them), and power it up under MicroPython
($PM_RUNTIME: the 64-bit unix port plays a stock image with the .mpy files; the 32-bit build,
--frozen, the meter image with the firmware frozen in). The board then runs until the end of the
run or a power cut in virtual time; the last line is the world's JSON report (truth energy, relay,
RTC, why it stopped).

The world's configuration (esp32world.DEFAULTS) goes to MicroPython as a JSON file named by
$PM_ESP32_WORLD. Between boots this object carries what outlives a reset: the flash image, the
outside world's clock, and the RTC (kept over a reset, back to 2000-01-01 after a power cut).
"""
import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import deploy  # noqa: E402
import headend  # noqa: E402
import mprun  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
METER_CSV = REPO / "boards" / "esp32_meter" / "partitions.csv"
OTA_CSV = REPO / "boards" / "esp32_meter" / "partitions-ota.csv"
PORT_DIR = REPO / "boards" / "esp32port"
VERSION_PY = REPO / "firmware" / "version.py"
FLASH_SIZE = {False: 0x400000, True: 0x800000}  # by ota: the 4 MiB modules, the 8 MiB ones
# The heap each runtime runs the board in, stand-ins and world included. The 32-bit build's is the
# one that stands for the device. The 64-bit proxy doubles every pointer and, with a conservative
# GC, can keep a dead ~30 KB buffer of the harness reachable depending on code layout alone (the
# report's "live_alloc" for the same run moved by that much after edits that allocate nothing new),
# so it gets room for that.
HEAP = {"micropython": "640k", "micropython32": "256k"}
UTC_START = 1767225600  # 2026-01-01 00:00 UTC
Y2000 = 946684800  # the ESP32's epoch in Unix seconds
RESETS = ("wdt", "hard_reset", "soft_reset", "deepsleep")  # the board starts again by itself


class HostError(Exception):
    pass


def port_module(name):
    """A module of boards/esp32port under CPython (espimage, esp32flash and esp32ota run on
    both), loaded by its path: that folder also holds stand-ins named like the standard
    library's time, select and ssl, so it never goes on sys.path."""
    path = PORT_DIR / (name + ".py")
    mod = sys.modules.get(name)
    if mod is not None and getattr(mod, "__file__", None) and Path(mod.__file__).resolve() == path.resolve():
        return mod  # loaded already (here, or from a sys.path entry naming that folder)
    if name == "esp32ota":
        port_module("espimage")  # what it imports
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def firmware_version():
    """firmware/version.py's VERSION, read as the image build reads it (mpconfigboard.cmake)."""
    m = re.search(r'^VERSION = "(\d+\.\d+\.\d+)"', VERSION_PY.read_text(), re.M)
    if not m:
        raise HostError("%s: no line VERSION = \"X.Y.Z\"" % VERSION_PY)
    return m.group(1)


class Boot:
    """One power-up of the board: a MicroPython process; wait() returns the world's report."""

    def __init__(self, host, proc, world_path):
        self.host = host
        self.proc = proc
        self._world_path = world_path
        self.report = None
        self.output = ""
        # Read both pipes from the start, so a chatty board never blocks on a full pipe, and
        # stdin (the control channel) stays open until the board stops.
        self._out, self._err = [], []
        self._readers = [threading.Thread(target=self._drain, args=(f, buf), daemon=True)
                         for f, buf in ((proc.stdout, self._out), (proc.stderr, self._err))]
        for t in self._readers:
            t.start()

    @staticmethod
    def _drain(f, buf):
        for line in f:
            buf.append(line)

    def wait(self, timeout=600):
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise HostError("the board did not stop within %ss of real time\n%s" % (timeout, self._text()[-6000:]))
        for t in self._readers:
            t.join()
        self._close_stdin()
        out = "".join(self._out)
        self.output = out + "".join(self._err)
        self.report = mprun.parse_result(out)
        if self.proc.returncode != 0 or not self.report or "reason" not in self.report:
            raise HostError("MicroPython failed (exit %s):\n%s" % (self.proc.returncode, self.output[-6000:]))
        self.host.after(self.report)
        return self.report

    def _text(self):
        return "".join(self._out) + "".join(self._err)

    def _close_stdin(self):
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass

    def cut(self):
        """Cut the power now (at the board's next whole virtual second): for a test that wants
        the cut after something happened rather than at a virtual time. Needs control=True."""
        self._say("cut\n")

    def end(self):
        """End the run now (at the next whole virtual second). Needs control=True."""
        self._say("end\n")

    def _say(self, line):
        try:
            self.proc.stdin.write(line)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, AttributeError):
            pass  # it stopped already, or was not started with control

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close_stdin()


class Esp32Host:
    """A board on the host. frozen: the meter image (32-bit runtime only); partitions: a partition
    table CSV (default: the meter image's for frozen, ESP32_GENERIC's otherwise). ota: the meter
    image's OTA variant: partitions-ota.csv on an 8 MiB flash, and setup() writes an app image of
    `version` (firmware/version.py's by default; about image_size bytes) into ota_0. Its root file
    system (64 KiB) holds the frozen image's few files: a stock deploy does not fit there."""

    def __init__(self, workdir, board, meter_id="MTR-HOST-1", broker=None, frozen=False,
                 partitions=None, heap=None, seed=1, utc=UTC_START, rtc_utc=None, ota=False,
                 version=None, image_size=None):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.board = board
        self.meter_id = meter_id
        self.broker = broker
        self.frozen = frozen
        self.runtime = mprun.runtime()
        if frozen and self.runtime != "micropython32":
            raise HostError("the frozen meter image needs the 32-bit build: PM_RUNTIME=micropython32")
        self.ota = ota
        self.version = version
        self.image_size = image_size
        self.flash_size = FLASH_SIZE[bool(ota)]
        if partitions is None and (frozen or ota):
            partitions = OTA_CSV if ota else METER_CSV
        self.partitions = str(partitions) if partitions else None
        self.heap = heap or HEAP[self.runtime]
        self.seed = seed
        self.flash = self.dir / "flash.img"
        self.home = self.dir / "headend"
        self.stage_dir = self.dir / "stage"
        # What outlives a reset: the outside world's clock and the RTC (seconds since 2000).
        self.utc = utc
        self.rtc = (rtc_utc - Y2000) if rtc_utc is not None else 0
        self.rtc_memory = ""
        self.reset_cause = 1
        self.boots = []

    # -- setting the board up --------------------------------------------------------------
    def provision(self):
        """The meter's key and secrets, as `headend provision` writes them; returns secrets.json."""
        broker = "%s:%d" % tuple(self.broker) if self.broker else "127.0.0.1:9"  # nothing listens on 9
        args = ["--home", str(self.home), "--broker", broker, "provision", self.meter_id, "--board", self.board]
        if (self.home / "meters" / (self.meter_id + ".json")).exists():
            args.append("--force")
        if headend.main(args) != 0:
            raise HostError("headend provision failed")
        secrets = json.loads((self.home / "deploy" / self.meter_id / "secrets.json").read_text())
        if not self.broker:
            secrets["broker"] = ""  # offline: the board makes no link at all
            (self.home / "deploy" / self.meter_id / "secrets.json").write_text(json.dumps(secrets))
        return secrets

    def stage(self):
        """The device's files: deploy's staging for a stock image, only board.txt and secrets.json
        for the meter image. Returns the stage folder."""
        secrets = self.home / "deploy" / self.meter_id / "secrets.json"
        a = argparse.Namespace(board=self.board, meter=self.meter_id, frozen=self.frozen)
        try:
            if not self.frozen:
                deploy.build()
            deploy.stage(a, secrets, self.stage_dir)
        except deploy.DeployError as e:
            raise HostError(str(e))
        return self.stage_dir

    def install(self, stage=None):
        """Copy the staged files onto the flash image (the vfs partition; made as inisetup makes it
        when blank) after removing stale sources that would shadow them, like `make deploy`."""
        stage = Path(stage or self.stage_dir)
        names = sorted(p.name for p in stage.iterdir())
        # What `make deploy` removes first: stale sources, or on the meter image every module a
        # stock deploy left, as they would shadow the frozen ones.
        remove = deploy.stale_files(argparse.Namespace(frozen=self.frozen), names)
        return self._offline("install(%r, %r)" % (str(stage), remove), "installed")

    def install_files(self, files):
        """Install {name: text} onto the root file system, as `make deploy` copies a stage (tests
        that give the board a main.py or boot.py of their own)."""
        stage = self.dir / "stage-files"
        stage.mkdir(exist_ok=True)
        for name, text in files.items():
            (stage / name).write_text(text)
        return self.install(stage)

    def read_root(self, *names):
        """{name: text or None} of files on the board's root file system, read as a powered-off
        board's flash (and "_listing": every name there)."""
        return self._offline("read_root(%r)" % (list(names),), "read")["files"]

    def _offline(self, call, reason):
        """Run esp32boot.<call> on the powered-off board's flash image, as mpremote reaches it;
        its report, which must give `reason`."""
        path = self.dir / ("world-%s.json" % reason)
        path.write_text(json.dumps({"flash": str(self.flash), "partitions": self.partitions,
                                    "flash_size": self.flash_size,
                                    "runtime_frozen": self.runtime == "micropython32"}))
        p = self._start("import esp32boot; esp32boot." + call, {"PM_ESP32_WORLD": str(path)})
        out, err = p.communicate(timeout=300)
        r = mprun.parse_result(out)
        if p.returncode != 0 or not r or r.get("reason") != reason:
            raise HostError("%s failed (exit %s):\n%s\n%s" % (call.split("(")[0], p.returncode, out[-3000:],
                                                             err[-3000:]))
        return r

    def setup(self):
        """Provision, stage, flash the app image (ota) and install: a board ready to power up."""
        self.provision()
        self.stage()
        if self.ota:
            self.flash_firmware()
        return self.install()

    # -- the app slots and the OTA data, from CPython ---------------------------------------
    def open_flash(self):
        """The board's flash image as an esp32flash.Flash (close() it before the board runs)."""
        f = port_module("esp32flash")
        return f.Flash(str(self.flash), self.flash_size, self.partitions)

    def image(self, version=None, size=None, fault=None, seed=0):
        """An app image (espimage.build) of `version` (default: this host's, else the firmware's)."""
        v = version or self.version or firmware_version()
        return port_module("espimage").build(v, size=size if size is not None else self.image_size,
                                             fault=fault, payload_seed=seed)

    def flash_firmware(self, image=None, label="ota_0"):
        """What flashing the OTA variant with esptool does: the app image into `label` (default:
        self.image()) and blank OTA data (ota_data_initial.bin), so the bootloader boots ota_0."""
        ota = port_module("esp32ota")
        f = self.open_flash()
        try:
            ota.install_image(f, label, image if image is not None else self.image())
            ota.erase_otadata(f)
        finally:
            f.close()

    def write_image(self, label, image):
        """Write an app image into slot `label` (nothing else changes: set_boot is the firmware's)."""
        f = self.open_flash()
        try:
            port_module("esp32ota").install_image(f, label, image)
        finally:
            f.close()

    def set_boot(self, label):
        """esp32.Partition(label).set_boot() on the powered-off board's flash, as the firmware would
        call it (the image is checked first: OSError(-0x1503, ...) when it would not boot)."""
        ota = port_module("esp32ota")
        f = self.open_flash()
        try:
            p = ota.by_label(f, label)
            if p is None:
                raise HostError("no partition %r" % label)
            ota.set_boot(f, p)
        finally:
            f.close()

    def otadata(self):
        """The two OTA data entries as dicts (seq, state, crc_ok, slot), or None without otadata."""
        f = self.open_flash()
        try:
            return port_module("esp32ota").entries_info(f)
        finally:
            f.close()

    def slot_image(self, label):
        """espimage.check of the image in slot `label`: its dict, or None when it would not boot."""
        ota = port_module("esp32ota")
        f = self.open_flash()
        try:
            return ota.image(f, ota.by_label(f, label))
        finally:
            f.close()

    # -- running it ------------------------------------------------------------------------
    def world(self, run_s=None, cut_s=None, speed=0, **extra):
        w = {"board": self.board, "flash": str(self.flash), "partitions": self.partitions,
             "flash_size": self.flash_size, "utc": self.utc, "rtc": self.rtc, "rtc_memory": self.rtc_memory,
             "reset_cause": self.reset_cause, "seed": self.seed, "speed": speed,
             "frozen": self.frozen, "runtime_frozen": self.runtime == "micropython32",
             "end_ms": int(run_s * 1000) if run_s is not None else None,
             "cut_ms": int(cut_s * 1000) if cut_s is not None else None}
        w.update(extra)
        return w

    def start(self, run_s=None, cut_s=None, speed=0, **extra):
        """Power the board up; it runs until run_s (EndOfRun) or cut_s (PowerCut) virtual
        seconds, or a reset. Returns a Boot; its wait() gives the report."""
        world = self.world(run_s, cut_s, speed, **extra)
        path = self.dir / ("world-%d.json" % (len(self.boots) + 1))
        path.write_text(json.dumps(world, indent=1))
        b = Boot(self, self._start("import esp32boot; esp32boot.boot()", {"PM_ESP32_WORLD": str(path)},
                                   control=world.get("control", False)), path)
        self.boots.append(b)
        return b

    def boot(self, run_s=None, cut_s=None, speed=0, timeout=600, **extra):
        return self.start(run_s, cut_s, speed, **extra).wait(timeout)

    def run(self, run_s, speed=0, max_boots=20, timeout=600, **extra):
        """Power up and keep the board running for run_s virtual seconds: after a reset (the
        watchdog, machine.reset()) it boots again at once, as the ESP32 does. Returns the
        reports, one per boot; the last says why it stopped (end, or crash/repl/download_mode)."""
        left = int(run_s * 1000)
        reports = []
        while True:
            r = self.boot(left / 1000, speed=speed, timeout=timeout, **extra)
            reports.append(r)
            left -= r["uptime_ms"]
            if r["reason"] not in RESETS or left <= 0 or len(reports) >= max_boots:
                return reports

    def after(self, r):
        """What the next power-up finds: the outside world moved on; the RTC and its memory kept
        over a reset, lost with the power."""
        self.utc = r["utc_end"]
        if r["reason"] in RESETS:
            self.rtc, self.rtc_memory = r["rtc"], r["rtc_memory"]
            self.reset_cause = {"wdt": 3, "soft_reset": 5, "deepsleep": 4}.get(r["reason"], 2)
        else:  # the power went (a cut, the end of a run, or the harness stopped a dead board)
            self.rtc, self.rtc_memory, self.reset_cause = 0, "", 1

    def _start(self, code, env, control=False):
        full = dict(os.environ, MICROPYPATH=mprun.micropypath(esp32=True))
        full.update(env)
        cmd = [mprun.mpy_path(), "-X", "heapsize=" + self.heap, "-c", code]
        return subprocess.Popen(cmd, cwd=str(REPO), env=full,
                                stdin=subprocess.PIPE if control else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--board", default="esp32-atm90e26")
    ap.add_argument("--frozen", action="store_true", help="the meter image (sets PM_RUNTIME=micropython32)")
    ap.add_argument("--ota", action="store_true",
                    help="the meter image's OTA variant (implies --frozen): 8 MiB, app image in ota_0")
    ap.add_argument("--image-version", help="the app image's version with --ota (default: firmware/version.py's)")
    ap.add_argument("--image-size", type=int, help="the app image's size in bytes with --ota (default: minimal)")
    ap.add_argument("--broker", default="", help="HOST:PORT of a broker (default: offline)")
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--cut-at", type=float, help="cut the power after this many hours instead")
    ap.add_argument("--speed", type=int, default=0, help="at most this many times real time (default: flat out)")
    ap.add_argument("--partitions", help="partition table CSV (default: ESP32_GENERIC's; the meter image's "
                                         "with --frozen, its OTA table with --ota)")
    ap.add_argument("--dir", help="work folder (flash image, headend home; default: a temporary one)")
    a = ap.parse_args(argv)
    a.frozen = a.frozen or a.ota
    if a.frozen:
        os.environ["PM_RUNTIME"] = "micropython32"
    broker = None
    if a.broker:
        host, _, port = a.broker.partition(":")
        broker = (host, int(port))
    work = a.dir or tempfile.mkdtemp(prefix="esp32-host-")
    try:
        h = Esp32Host(work, a.board, broker=broker, frozen=a.frozen, partitions=a.partitions,
                      rtc_utc=UTC_START, ota=a.ota, version=a.image_version, image_size=a.image_size)
        h.setup()
        r = h.boot(a.hours * 3600 if a.cut_at is None else None,
                   a.cut_at * 3600 if a.cut_at is not None else None, a.speed)
    except (HostError, mprun.MpyNotFound) as e:
        print("esp32_host: error: %s" % e, file=sys.stderr)
        return 2
    print(h.boots[-1].output.rstrip())
    print("esp32_host: work folder %s" % work, file=sys.stderr)
    return 0 if r["reason"] in ("end", "power_cut") else 1


if __name__ == "__main__":
    sys.exit(main())
