# The ESP32's start-up played on the host, over the stand-ins and the virtual world: what
# ports/esp32/main.c, the frozen _boot.py and inisetup.py do after every reset (MicroPython 1.28).
#   install(stage, remove)  what `make deploy` does with mpremote: the root file system (made as
#                           inisetup makes it when the partition is blank) gets the staged files
#   boot()                  power-up: on a table with OTA slots the second-stage bootloader first
#                           (esp32ota: chooses the slot, rolls back an image that never confirmed
#                           itself); then mount the "vfs" partition at "/" (VfsLfs2's default
#                           geometry), run boot.py, then main.py (a frozen one first), until a Reboot
# Run by tools/esp32_host.py as `micropython -c "import esp32boot; esp32boot.boot()"` with the
# world's configuration in $PM_ESP32_WORLD. The last stdout line is a JSON report.
import sys
import os
import vfs
import esp32world as W
import esp32flash
import esp32ota

# Modules the harness itself needs once the host's files are gone: the stand-ins and the world
# (frozen on the 32-bit build), the emulators, and umqtt.simple, which both ESP32 images have
# frozen in. Anything else imported while building the world (the board module and the driver
# modules the emulators borrow constants from) is dropped again, so the firmware the ESP32 runs
# comes from its own file system or its own frozen modules only.
_KEEP = ("esp32boot", "esp32world", "esp32house", "esp32flash", "machine", "time", "select",
         "network", "esp32", "esp32ota", "espimage", "flashbdev", "umqtt", "umqtt.simple", "ntptime",
         "ssl")


def _prepare():
    import machine  # noqa: F401 - imported for the sys.modules entry
    import time  # noqa: F401
    import select  # noqa: F401
    import network  # noqa: F401
    import flashbdev  # noqa: F401
    import ntptime  # noqa: F401 - frozen in both ESP32 images (micropython-lib)
    import ssl  # noqa: F401 - the port's ssl, here only its certificate-date check (ssl.py)
    import umqtt.simple  # noqa: F401
    for name in list(sys.modules):
        if name not in _KEEP and not name.startswith("simhw"):
            del sys.modules[name]
    import gc
    gc.collect()


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _mount_root(at):
    """Mount the root file system as _boot.py does (vfs.mount(bdev) detects littlefs with VfsLfs2's
    defaults: read/prog size 32, lookahead 32), or make it as inisetup.setup() does. False when the
    partition is neither a file system nor blank: the port then prints its warning for ever."""
    from flashbdev import bdev
    if bdev is None:
        return False
    try:
        vfs.mount(bdev, at)
        return True
    except OSError:
        pass
    buf = bytearray(bdev.ioctl(5, 0))
    bdev.readblocks(0, buf)
    if any(b != 0xFF for b in buf):
        return False
    print("Performing initial setup")
    vfs.VfsLfs2.mkfs(bdev)
    vfs.mount(vfs.VfsLfs2(bdev), at)
    with open(at.rstrip("/") + "/boot.py", "w") as f:
        f.write("# This file is executed on every boot (including wake-boot from deepsleep)\n")
    return True


def _root_mounted():
    """The powered-off board's root file system at /flash, as mpremote reaches it."""
    _prepare()
    if not _mount_root("/flash"):
        raise OSError("no vfs partition, or it holds something that is not a file system")


def install(stage, remove=()):
    """Copy every file of the host folder `stage` to the root file system, after removing the
    names in `remove` (stale sources that would shadow the new files), as deploy's mpremote does."""
    _root_mounted()
    for name in remove:
        try:
            os.remove("/flash/" + name)
        except OSError:
            pass
    buf = bytearray(4096)
    names = sorted(os.listdir(stage))
    for name in names:
        with open(stage + "/" + name, "rb") as src, open("/flash/" + name, "wb") as dst:
            while True:
                n = src.readinto(buf)
                if not n:
                    break
                dst.write(memoryview(buf)[:n])
    listing = sorted(os.listdir("/flash"))
    vfs.umount("/flash")
    _report({"reason": "installed", "files": listing})


def read_root(names):
    """Report the text of files on the root file system (what mpremote cat would show), for
    tests that check what the firmware left there; a missing file reads as None."""
    _root_mounted()
    files = {}
    for name in names:
        try:
            with open("/flash/" + name) as f:
                files[name] = f.read()
        except OSError:
            files[name] = None
    files["_listing"] = sorted(os.listdir("/flash"))
    vfs.umount("/flash")
    _report({"reason": "read", "files": files})


def boot():
    _prepare()
    import gc
    # The heap the stand-ins and the world hold before the board runs (the device has none of it):
    # benchmarks state it next to the smallest heap the board runs in.
    harness = gc.mem_alloc()
    try:
        reason, extra = _run()
    except (W.Reboot, esp32flash.PowerCut) as e:
        reason, extra = e.reason, {}
    r = W.report()
    r.update(extra)
    r["harness_alloc"] = harness
    import ssl
    import ntptime
    r["tls"] = {"handshakes": ssl.handshakes, "refused": ssl.refused}
    r["ntp_queries"] = ntptime.queries
    gc.collect()
    r["live_alloc"] = gc.mem_alloc()  # everything still reachable when the board stopped
    r["meter"] = _meter_view()
    r["reason"] = reason
    _report(r)


def _meter_view():
    # What the live meter object held when the board stopped, as a probe on the board would see
    # it (RAM, gone with the power; the tests judge by what the meter published).
    m = getattr(sys.modules.get("app"), "current", None)
    if m is None:
        return None
    try:
        return {"imp_wh": m.metering.imp_wh, "balance": m.account.balance, "relay": m.relay.state,
                "reasons": m.relay.reasons, "topups": m.topups, "step_errors": m.step_errors,
                "last_error": repr(getattr(m, "last_error", None)),
                "connects": m.sync.link.connects if m.sync.link is not None else 0,
                "outbox_dropped": m.sync.outbox.dropped, "published": m.sync.published,
                "time_floor": m.time_floor, "time_state": m.timesrc.state,
                "events": [list(m.events.get(k)[:2]) for k in range(m.events.oldest_seq(), m.events.seq)]}
    except Exception as e:  # noqa: BLE001 - a diagnostic only
        return {"error": repr(e)}


def _run():
    if W.ext.get(0) == 0:
        # GPIO0 held low at reset: the ROM bootloader waits for a download, nothing else runs.
        return "download_mode", {}
    fault = None
    if W.flash is not None and esp32ota.has_ota(W.flash):
        W.running = esp32ota.bootload(W.flash)
        if W.running is None:
            # No slot holds an image that passes the check: the bootloader resets the chip into
            # itself for ever, and nothing else runs.
            return "bricked", {}
        fault = esp32ota.last["fault"]
    frozen = W.cfg["frozen"]
    vfs.umount("/")  # the host's root: from here on only the ESP32's file system exists
    if not _mount_root("/"):
        print("The filesystem appears to be corrupted.")
        while True:
            W.sleep_ms(3000)  # inisetup.fs_corrupted() prints this every 3 s for ever
    os.chdir("/")
    # sys.path as the port sets it. Playing a stock image on the 32-bit host build, whose .frozen
    # holds this firmware (a stock image's does not), .frozen is left out: umqtt.simple, the one
    # frozen module the firmware needs there, is imported already (_prepare).
    stock_on_frozen = not frozen and W.cfg["runtime_frozen"]
    sys.path[:] = ["", "/lib"] if stock_on_frozen else ["", ".frozen", "/lib"]
    _apply_fault(fault)
    try:
        if _exists("boot.py"):
            with open("boot.py") as f:
                exec(f.read(), {"__name__": "__main__"})
        if frozen and _exists("main.py"):
            # The port runs the frozen main.py and ignores this one; the harness cannot do that
            # with the port's path order while the file is there.
            return "crash", {"error": "main.py on the file system of a frozen image: remove it (deploy FROZEN=1 does)"}
        if frozen or _exists("main.py"):
            __import__("main", None, None, False)  # runs it as __main__, as pyexec_file does
    except Exception as e:  # noqa: BLE001 - on the device: a traceback, then the REPL
        import io
        out = io.StringIO()
        sys.print_exception(e, out)
        text = out.getvalue()
        print(text)
        return _repl("crash", {"error": text})
    return _repl("repl", {})  # main.py returned: the REPL waits for a technician


def _repl(reason, extra):
    """The REPL waits for a technician. With the watchdog started it does not wait long: time
    passes (the firmware's timers still fire) until the watchdog resets the board, the run ends
    or the power goes. Without it, the run ends here with `reason`."""
    if not W.wdt_timeout:
        return reason, extra
    try:
        while True:
            W.sleep_ms(1000)
    except W.Reboot as e:
        return e.reason, extra


class _Unusable:
    """Stands in sys.modules for the firmware's app module on an image whose app is broken."""

    def __getattr__(self, name):
        raise AttributeError("app.%s: this image's app is broken (sim fault 'crash')" % name)


def _apply_fault(fault):
    # The sim fault of the image the bootloader started (espimage): "crash", the firmware's app
    # module is unusable for this boot (main.start fails on app.Meter); "selftest", the metering
    # chip never answers on the SPI bus.
    if fault == "crash":
        sys.modules["app"] = _Unusable()
    elif fault == "selftest" and W.house is not None:
        W.house.dead = True


def _report(r):
    import json
    print(json.dumps(r))
