"""OTA on the ESP32 stand-ins: ESP-IDF app images (espimage.py, under MicroPython and CPython),
the OTA data and the bootloader with rollback (esp32ota.py, as ESP-IDF 5.5 with
CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE), esp32.Partition's OTA calls, power cuts inside their flash
operations (esp32flash.Flash.cut_at), and boots through esp32boot of images with a sim fault."""
import hashlib
import struct
from pathlib import Path

import pytest

import esp32_host

USES_MICROPYTHON = True
REPO = Path(__file__).resolve().parents[3]
OTA_CSV = REPO / "boards" / "esp32_meter" / "partitions-ota.csv"


def world(tmp_path):
    """MicroPython prelude: a world on the OTA table (8 MiB) and helpers for the tests below."""
    return """
import mptest, esp32world as W, esp32ota, espimage, esp32flash
from esp32 import Partition
W.setup({"flash": %r, "partitions": %r, "flash_size": 0x800000})
F = W.flash

def boot():
    # a reset: the bootloader runs and starts a slot
    W.running = esp32ota.bootload(F)
    return W.running

def raw():
    od = esp32ota.otadata(F)
    b = bytearray(od[4])
    F.read(od[3], b)
    return bytes(b)

def restore(b):
    od = esp32ota.otadata(F)
    F.erase(od[3], od[4])
    F.write(od[3], b)

def state(label):
    s = esp32ota.slot_state(F, label)
    return None if s is None else esp32ota.STATES[s]

def image(version, **kw):
    return espimage.build(version, **kw)
""" % (str(tmp_path / "flash.img"), str(OTA_CSV))


# -- the image format ------------------------------------------------------------------------
IMAGE_CHECKS = """
import mptest, espimage, struct, hashlib

def reader(b):
    def read(off, buf):
        assert len(buf) <= 4096, "a bounded buffer"
        assert off + len(buf) <= LIMIT, "inside the limit"
        n = min(len(buf), max(0, len(b) - off))
        buf[:n] = b[off:off + n]
        for i in range(n, len(buf)):
            buf[i] = 0xFF  # erased flash after the image
    return read

LIMIT = 0x1F0000

def check(b, limit=LIMIT):
    return espimage.check(reader(b), limit)

def refix(b):
    # checksum and hash made right again after an edit, so one fault is tested at a time
    b = bytearray(b)
    n = len(b) - 32
    hsize = 24
    count = b[1]
    off = hsize
    x = 0xEF
    for _ in range(count):
        addr, dlen = struct.unpack("<II", b[off:off + 8])
        for v in b[off + 8:off + 8 + dlen]:
            x ^= v
        off += 8 + dlen
    b[n - 1] = x
    b[n:] = hashlib.sha256(b[:n]).digest()
    return bytes(b)

img = espimage.build("1.2.3")
info = check(img)
mptest.eq(info, {"size": len(img), "version": "1.2.3", "project": "micropython", "chip_id": 0, "fault": None},
          "a built image passes")
mptest.eq(len(img) % 16, 0, "checksum at the end of a 16-byte block, then 32 bytes of hash")
mptest.eq(img[0], 0xE9, "image magic")
mptest.eq(struct.unpack("<I", img[32:36])[0], 0xABCD5432, "app descriptor right after the first segment header")
mptest.eq(struct.unpack("<I", img[24:28])[0], 0x3F400020, "the first segment is DROM at its flash offset")
mptest.eq(img[-32:], hashlib.sha256(img[:-32]).digest(), "SHA-256 of everything before it")
mptest.eq(espimage.desc_version(img[:288]), "1.2.3", "version from the first 288 bytes")
mptest.eq(espimage.desc_version(img[:287]), None, "too short")
mptest.eq(espimage.desc_version(b"\\xff" * 288), None, "blank flash")
mptest.eq(check(refix(img)), info, "refix keeps a good image good")
for f in ("crash", "selftest"):
    mptest.eq(check(espimage.build("1.2.4", fault=f))["fault"], f, "the sim fault survives: " + f)
big = espimage.build("2.0.0", size=100000, payload_seed=7)
mptest.check(abs(len(big) - 100000) <= 64, "about the size asked: %d" % len(big))
mptest.eq(check(big)["size"], len(big), "a large image passes")
other = espimage.build("2.0.1", size=100000, payload_seed=7)
mptest.check(big[4096:8192] != other[4096:8192], "two versions differ in their code, not only the descriptor")
mptest.check(espimage.build("2.0.0", size=100000, payload_seed=7) == big, "deterministic")
mptest.eq(check(big, len(big)), check(big), "an image that fills its partition exactly")
mptest.eq(check(big, len(big) - 1), None, "one byte more than the partition: refused")
mptest.eq(check(img[:-1]), None, "truncated: the hash incomplete")
mptest.eq(check(img[:200]), None, "truncated in a segment")
bad = bytearray(img); bad[0] = 0xE8
mptest.eq(check(bytes(bad)), None, "wrong magic")
bad = bytearray(img); bad[300] ^= 1
mptest.eq(check(bytes(bad)), None, "one bit of segment data flipped")
bad = bytearray(img); bad[-33] ^= 0x5A
bad[-32:] = hashlib.sha256(bytes(bad[:-32])).digest()
mptest.eq(check(bytes(bad)), None, "bad checksum, good hash")
bad = bytearray(img); bad[-1] ^= 1
mptest.eq(check(bytes(bad)), None, "bad hash")
bad = bytearray(img); bad[1] = 17
mptest.eq(check(bytes(bad)), None, "more than 16 segments")
bad = bytearray(img); bad[32] ^= 0xFF
mptest.eq(check(refix(bad)), None, "no app descriptor magic")
bad = bytearray(img); bad[24] = 0x24  # DROM segment off its MMU page offset
mptest.eq(check(refix(bad)), None, "mapped segment misplaced")
bad = bytearray(img); bad[28] = 0x02  # data_len 0x102: not a multiple of 4
mptest.eq(check(bytes(bad)), None, "unaligned segment length")
mptest.eq(check(espimage.build("1.2.3", chip_id=5)), None, "an image for another chip")
mptest.eq(check(b"\\xff" * 4096), None, "blank slot")
mptest.raises(ValueError, espimage.build, "1.0.0", fault="melt")
mptest.raises(ValueError, espimage.build, "x" * 32)
import binascii
mptest.done(image=binascii.hexlify(img).decode())
"""


def test_image_build_and_check_under_micropython(esp32):
    r = esp32(IMAGE_CHECKS, heap="2m")
    assert r["ok"], r["failures"]
    # CPython builds the same bytes (the host tools write images that MicroPython checks)
    img = esp32_host.port_module("espimage").build("1.2.3")
    assert bytes.fromhex(r["image"]) == img


@pytest.mark.runtimes("micropython")  # CPython only: one runtime parameter is enough
def test_image_build_and_check_under_cpython():
    espimage = esp32_host.port_module("espimage")
    img = espimage.build("3.1.4", size=1900000, fault="selftest", project="meter", payload_seed=3)
    assert len(img) == 1900000

    def read(off, buf):
        assert len(buf) <= 4096 and off + len(buf) <= 0x1F0000
        buf[:] = img[off:off + len(buf)].ljust(len(buf), b"\xff")

    assert espimage.check(read, 0x1F0000) == {"size": len(img), "version": "3.1.4", "project": "meter",
                                              "chip_id": 0, "fault": "selftest"}
    # ESP-IDF's own rule for the header and the hash, restated: 24-byte header, hash_appended
    magic, count, _, _, entry, wp = struct.unpack("<BBBBIB", img[:9])
    assert (magic, wp, img[23]) == (0xE9, 0xEE, 1) and 3 <= count <= 16
    assert img[-32:] == hashlib.sha256(img[:-32]).digest()
    bad = bytearray(img)
    bad[1000000] ^= 0x80
    img = bytes(bad)
    assert espimage.check(read, 0x1F0000) is None


# -- OTA data, the bootloader and esp32.Partition --------------------------------------------
def test_set_boot_trial_mark_valid_and_rollback(esp32, tmp_path):
    r = esp32(world(tmp_path) + """
esp32ota.install_image(F, "ota_0", image("1.0.0"))
mptest.eq(boot(), "ota_0", "blank OTA data, no factory app: ota_0")
e = esp32ota.entries_info(F)
mptest.eq((e[0]["seq"], e[0]["state"], e[0]["crc_ok"], e[1]["seq"]), (1, "VALID", True, None),
          "the bootloader recorded it (set_actual_ota_seq)")
mptest.eq(Partition(Partition.RUNNING).info()[4], "ota_0", "running")
mptest.eq(Partition(Partition.BOOT).info()[4], "ota_0", "boot")
nxt = Partition(Partition.RUNNING).get_next_update()
mptest.eq(nxt.info()[:5], (0, 0x11, 0x200000, 0x1F0000, "ota_1"), "the next update goes to ota_1")
mptest.eq(nxt.get_next_update().info()[4], "ota_0", "and after ota_1 comes ota_0 again")
mptest.eq(Partition("meter").get_next_update().info()[4], "ota_0", "from anything else: the first slot")

# set_boot refuses what esp_image_verify refuses, and leaves the OTA data alone
before = raw()
ops = F.ops
e = mptest.raises(OSError, nxt.set_boot)
mptest.eq(e.args if e else None, (-0x1503, "ESP_ERR_OTA_VALIDATE_FAILED"), "a blank slot: as check_esp_err raises it")
bad = bytearray(image("1.1.0"))
bad[500] ^= 4
esp32ota.install_image(F, "ota_1", bad)
mptest.raises(OSError, nxt.set_boot)
esp32ota.install_image(F, "ota_1", image("1.1.0")[:-40])
mptest.raises(OSError, nxt.set_boot)
mptest.check(raw() == before, "OTA data unchanged")
mptest.eq(boot(), "ota_0", "and the next boot runs the old image")
mptest.raises(OSError, Partition("meter").set_boot)

# a good image: the other sector gets seq 2, state NEW
esp32ota.install_image(F, "ota_1", image("1.1.0"))
ops = F.ops
nxt.set_boot()
mptest.eq(F.ops - ops, 2, "one sector erased, one entry programmed")
e = esp32ota.entries_info(F)
mptest.eq((e[1]["seq"], e[1]["state"], e[1]["slot"]), (2, "NEW", "ota_1"), "the new entry")
mptest.eq(Partition(Partition.BOOT).info()[4], "ota_1", "boot partition now ota_1")
mptest.eq(Partition(Partition.RUNNING).info()[4], "ota_0", "still running ota_0")
mptest.eq(boot(), "ota_1", "the next boot starts the new slot")
mptest.eq((state("ota_1"), esp32ota.last["rolled_back"]), ("PENDING_VERIFY", False), "on trial")
Partition.mark_app_valid_cancel_rollback()
mptest.eq(state("ota_1"), "VALID", "marked valid")
ops = F.ops
Partition.mark_app_valid_cancel_rollback()
mptest.eq(F.ops, ops, "marking a VALID entry again writes nothing")
mptest.eq((boot(), state("ota_1"), esp32ota.last["rolled_back"]), ("ota_1", "VALID", False), "kept after a reset")

# the next update goes back to ota_0; it never marks itself valid
esp32ota.install_image(F, "ota_0", image("1.2.0"))
Partition(Partition.RUNNING).get_next_update().set_boot()
e = esp32ota.entries_info(F)
mptest.eq((e[0]["seq"], e[0]["state"]), (3, "NEW"), "seq 3 selects ota_0 again, in sector 0")
mptest.eq((boot(), state("ota_0")), ("ota_0", "PENDING_VERIFY"), "trial of 1.2.0")
mptest.eq((boot(), state("ota_0"), state("ota_1")), ("ota_1", "ABORTED", "VALID"),
          "reset without marking: back to 1.1.0")
mptest.eq(esp32ota.last["rolled_back"], True, "reported as a rollback")
mptest.eq(Partition(Partition.BOOT).info()[4], "ota_1", "the OTA data selects the old slot")
mptest.eq((boot(), esp32ota.last["rolled_back"]), ("ota_1", False), "and stays there")
r = esp32ota.report(F, W.running)
mptest.eq((r["running"], r["version"], r["state"], r["next_boot"]), ("ota_1", "1.1.0", "VALID", "ota_1"), "report")

# the aborted image can be offered again: a new entry, a new trial
Partition("ota_0").set_boot()
mptest.eq((boot(), state("ota_0")), ("ota_0", "PENDING_VERIFY"), "a second trial")
mptest.done()
""", heap="512k")
    assert r["ok"], r["failures"]


def test_the_bootloader_skips_images_that_fail_and_bricks_without_any(esp32, tmp_path):
    r = esp32(world(tmp_path) + """
esp32ota.install_image(F, "ota_0", image("1.0.0"))
boot()
esp32ota.install_image(F, "ota_1", image("1.1.0"))
Partition("ota_1").set_boot()
boot()
Partition.mark_app_valid_cancel_rollback()
# ota_1 gets corrupted in flash: the bootloader tries the slots below it, then above
p = esp32ota.by_label(F, "ota_1")
F.write(p[3] + 48, b"\\x00")  # the first digit of its version
mptest.eq(boot(), "ota_0", "the selected image fails its check: the other slot boots")
mptest.eq(esp32ota.last["skipped"], ["ota_1"], "what was skipped")
mptest.eq(Partition(Partition.RUNNING).info()[4], "ota_0", "running what booted")
mptest.eq(Partition(Partition.BOOT).info()[4], "ota_1", "while the OTA data still selects ota_1")
mptest.eq(esp32ota.report(F, W.running)["state"], "VALID", "ota_0's own entry (seq 1)")
p = esp32ota.by_label(F, "ota_0")
F.erase(p[3], 4096)
mptest.eq(boot(), None, "no image passes: nothing boots")
mptest.eq(esp32ota.last["skipped"], ["ota_1", "ota_0"], "both tried")
mptest.done()
""", heap="512k")
    assert r["ok"], r["failures"]


def test_marking_valid_after_set_boot_marks_the_new_entry(esp32, tmp_path):
    # ESP-IDF marks the *selected* entry valid, whatever it is: a firmware that calls
    # mark_app_valid_cancel_rollback() after set_boot() (in the same boot) takes away the new
    # image's trial. The firmware must confirm itself before it offers an update.
    r = esp32(world(tmp_path) + """
esp32ota.install_image(F, "ota_0", image("1.0.0"))
esp32ota.install_image(F, "ota_1", image("1.1.0"))
boot()
Partition("ota_1").set_boot()
Partition.mark_app_valid_cancel_rollback()
mptest.eq(esp32ota.entries_info(F)[1]["state"], "VALID", "the NEW entry became VALID")
mptest.eq((boot(), state("ota_1")), ("ota_1", "VALID"), "no trial: nothing will roll it back")
mptest.done()
""", heap="512k")
    assert r["ok"], r["failures"]


def test_factory_only_tables_keep_their_behaviour(esp32, tmp_path):
    r = esp32("""
import mptest, esp32world as W
W.setup({"flash": %r})
from esp32 import Partition
mptest.eq(Partition(Partition.BOOT).info()[4], "factory", "boot")
mptest.eq(Partition(Partition.RUNNING).info()[4], "factory", "running")
mptest.raises(OSError, Partition(Partition.RUNNING).get_next_update)
Partition(Partition.RUNNING).set_boot()
Partition.mark_app_valid_cancel_rollback()
mptest.eq(W.report().get("ota"), None, "no ota report")
mptest.done()
""" % str(tmp_path / "flash.img"))
    assert r["ok"], r["failures"]


# -- power cuts --------------------------------------------------------------------------------
SWEEP = """
esp32ota.install_image(F, "ota_0", image("1.0.0"))
esp32ota.install_image(F, "ota_1", image("1.1.0"))

def sweep(name, setup, action, outcomes):
    # cut the power at every flash operation of `action`, from the state `setup` leaves
    setup()
    running = W.running
    snap = raw()
    ops = F.ops
    action()
    n = F.ops - ops
    mptest.check(n >= 2, "%s: %d flash operations" % (name, n))
    seen = []
    for k in range(1, n + 1):
        restore(snap)
        W.running = running
        F.cut_at = F.ops + k
        try:
            action()
            mptest.check(False, "%s: op %d was not cut" % (name, k))
        except esp32flash.PowerCut:
            pass
        F.cut_at = None
        chosen = Partition(Partition.BOOT).info()[4]
        got = boot()
        seen.append(got)
        mptest.check(got in outcomes, "%s, cut at op %d: booted %r" % (name, k, got))
        mptest.eq(got, chosen, "%s, cut at op %d: booted what the OTA data selected" % (name, k))
        # whatever happened, the meter can still update and confirm
        target = "ota_0" if got == "ota_1" else "ota_1"
        Partition(target).set_boot()
        mptest.eq(boot(), target, "%s, cut at op %d: a later update boots" % (name, k))
        Partition.mark_app_valid_cancel_rollback()
        mptest.eq((boot(), state(target)), (target, "VALID"), "%s, cut at op %d: and is kept" % (name, k))
    return seen

for OLD, NEW in (("ota_0", "ota_1"), ("ota_1", "ota_0")):
    def at_old():
        # OLD running and valid, NEW holds a verified image
        restore(b"\\xff" * 8192)
        boot()
        if OLD != "ota_0":
            Partition(OLD).set_boot()
            boot()
            Partition.mark_app_valid_cancel_rollback()
        mptest.eq((W.running, state(OLD)), (OLD, "VALID"), "set up")

    def on_trial():
        at_old()
        Partition(NEW).set_boot()
        boot()

    def set_boot():
        Partition(NEW).set_boot()

    def trial_boot():
        at_old()
        set_boot()

    tag = " %s->%s" % (OLD, NEW)
    seen = sweep("set_boot" + tag, at_old, set_boot, (OLD,))
    mptest.eq(seen, [OLD, OLD], "erase or program cut: the old slot" + tag)
    seen = sweep("mark_app_valid" + tag, on_trial, Partition.mark_app_valid_cancel_rollback, (OLD, NEW))
    mptest.check(OLD in seen, "an erased entry falls back to the old slot: %r" % seen)
    sweep("the bootloader starting a trial" + tag, trial_boot, boot, (OLD, NEW))
    sweep("the bootloader rolling back" + tag, on_trial, boot, (OLD,))
mptest.done()
"""


def test_a_power_cut_in_any_flash_operation_leaves_a_bootable_choice(esp32, tmp_path):
    r = esp32(world(tmp_path) + SWEEP, heap="512k")
    assert r["ok"], r["failures"]


def test_flash_cut_at_does_half_an_operation(esp32, tmp_path):
    r = esp32("""
import mptest, esp32world as W, esp32flash
W.setup({"flash": %r})
F = W.flash
mptest.eq((F.ops, F.cut_at), (0, None), "counted from construction")
F.write(0x200000, b"\\x00" * 8)
F.erase(0x201000, 8192)
mptest.eq(F.ops, 3, "a program, two sector erases")
F.write(0x201000, b"\\x00" * 4096)
F.cut_at = F.ops + 1
mptest.raises(esp32flash.PowerCut, F.write, 0x202000, b"\\x00" * 100)
b = bytearray(100)
F.read(0x202000, b)
mptest.eq(bytes(b), b"\\x00" * 50 + b"\\xff" * 50, "half a program")
F.cut_at = F.ops + 2
e = None
try:
    F.erase(0x200000, 8192)
except Exception as x:  # noqa
    e = x
except BaseException as x:
    e = x
mptest.check(isinstance(e, esp32flash.PowerCut) and not isinstance(e, Exception), "a BaseException: %%r" %% e)
s = bytearray(4096)
F.read(0x200000, s)
mptest.eq(bytes(s[:8]), b"\\xff" * 8, "the first sector erased")
F.read(0x201000, s)
mptest.check(bytes(s[:2048]) == b"\\xff" * 2048 and bytes(s[2048:]) == b"\\x00" * 2048, "half of the second")
mptest.eq(F.erases, 4, "erases count sectors, the cut one too")
F.write(0x203000, b"\\x00")
mptest.eq(F.cut_at is not None and F.ops > F.cut_at, True, "no second cut")
mptest.done()
""" % str(tmp_path / "flash.img"))
    assert r["ok"], r["failures"]


# -- boots through esp32boot (tools/esp32_host.py) --------------------------------------------
SPI_PROBE = """from machine import SPI, Pin
import binascii
spi = SPI(2, baudrate=160000, polarity=1, phase=1, sck=Pin(18), mosi=Pin(23), miso=Pin(19))
cs = Pin(5, Pin.OUT, value=1)
rx = bytearray(3)
cs(0)
spi.write_readinto(b"\\xa1\\x00\\x00", rx)  # read PLconstH
cs(1)
print("miso=" + binascii.hexlify(rx).decode())
"""


def host(tmp_path, fault=None, main=None, files=None):
    h = esp32_host.Esp32Host(tmp_path / "board", "esp32-atm90e26", ota=True, rtc_utc=esp32_host.UTC_START)
    h.flash_firmware(h.image("4.5.6", fault=fault))
    h.install_files(dict(files or {}, **{"main.py": main}))
    return h


@pytest.mark.parametrize("fault", [None, "selftest"])
def test_a_selftest_fault_silences_the_metering_chip(tmp_path, fault):
    h = host(tmp_path, fault, SPI_PROBE + "import time\ntime.sleep_ms(1000)\n")
    r = h.boot(60)
    out = h.boots[-1].output
    assert r["ota"]["running"] == "ota_0" and r["ota"]["version"] == "4.5.6", r["ota"]
    assert r["ota"]["fault"] == fault
    if fault:
        assert "miso=ffffff" in out and r["frames"] == 0, out
    else:
        assert "miso=00" in out and r["frames"] >= 1, out


def test_a_crash_fault_breaks_the_app_module_and_the_watchdog_resets_the_board(tmp_path):
    main = "import machine\nif machine.reset_cause() != machine.WDT_RESET:\n    machine.WDT(timeout=5000)\n" \
           "import app\nprint('meter', app.Meter)\n"
    h = host(tmp_path, None, main, files={"app.py": "Meter = 'the app'\n"})
    r = h.boot(60)
    assert r["reason"] == "wdt" and "meter the app" in h.boots[-1].output, "the watchdog runs on at the REPL"
    h = host(tmp_path / "crash", "crash", main, files={"app.py": "Meter = 'the app'\n"})
    reports = h.run(60)
    assert [x["reason"] for x in reports] == ["wdt", "crash"], reports
    assert "AttributeError" in reports[0]["error"] and "Meter" in reports[0]["error"], reports[0]
    assert reports[0]["uptime_ms"] == 5000, "the REPL sat idle until the watchdog's timeout"
    assert reports[1]["ota"]["fault"] == "crash" and reports[1]["ota"]["running"] == "ota_0"


def test_an_unbootable_flash_reports_bricked(tmp_path):
    h = host(tmp_path, None, "print('never')\n")
    f = h.open_flash()
    try:
        f.erase(0x10000, 0x10000)
    finally:
        f.close()
    r = h.boot(10)
    assert r["reason"] == "bricked" and r["ota"]["running"] is None and r["uptime_ms"] == 0, r
    assert "never" not in h.boots[-1].output


def test_the_host_reads_and_writes_slots_and_ota_data(tmp_path):
    h = host(tmp_path, None, "print('up')\n")
    assert h.otadata() == [{"seq": None, "state": "UNDEFINED", "crc_ok": False, "slot": None}] * 2
    assert h.slot_image("ota_0")["version"] == "4.5.6" and h.slot_image("ota_1") is None
    r = h.boot(5)
    assert r["ota"]["state"] == "VALID" and h.otadata()[0]["seq"] == 1
    h.write_image("ota_1", h.image("4.6.0"))
    h.set_boot("ota_1")
    assert h.otadata()[1] == {"seq": 2, "state": "NEW", "crc_ok": True, "slot": "ota_1"}
    r = h.boot(5)
    assert (r["ota"]["running"], r["ota"]["version"], r["ota"]["state"]) == ("ota_1", "4.6.0", "PENDING_VERIFY")
    r = h.boot(5)
    assert (r["ota"]["running"], r["ota"]["rolled_back"], r["ota"]["state"]) == ("ota_0", True, "VALID"), r["ota"]
    with pytest.raises(OSError) as e:
        h.set_boot("meter")
    assert e.value.args == (-0x1503, "ESP_ERR_OTA_VALIDATE_FAILED")


def test_partition_io_stays_inside_the_partition(esp32, tmp_path):
    # esp_partition_read/write/erase_range: an image written one block too far must not run into
    # the next slot or the meter's data
    r = esp32(world(tmp_path) + """
s = Partition("ota_1")
n = s.ioctl(4, 0)
buf = bytearray(4096)
s.readblocks(n - 1, buf)
e = mptest.raises(OSError, s.readblocks, n, buf)
mptest.eq(e.args if e else None, (-0x104, "ESP_ERR_INVALID_SIZE"), "read past the end")
e = mptest.raises(OSError, s.writeblocks, n, buf)
mptest.eq(e.args if e else None, (-0x104, "ESP_ERR_INVALID_SIZE"), "write past the end")
mptest.raises(OSError, s.writeblocks, n - 1, buf, 1)
mptest.raises(OSError, s.ioctl, 6, n)
m = Partition("meter")
m.readblocks(0, buf)
mptest.check(all(b == 0xFF for b in buf), "the meter partition untouched")
s.writeblocks(n - 1, buf)
mptest.done()
""", heap="512k")
    assert r["ok"], r["failures"]
