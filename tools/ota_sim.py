#!/usr/bin/env python3
"""Firmware updates over the air, simulated (`make ota-sim`, docs/ota.md).

Builds ESP-IDF app images (boards/esp32port/espimage.py), signs releases with a fresh release key
(tools/release_key.py, as `headend release` does) and runs tools/ota_sweep_mp.py under MicroPython
(the 32-bit build with the firmware frozen when it is there, as the device runs it):

  sweep   an update that passes its trial, and one whose new image fails it (its chip does not
          answer) and rolls back, each with the power cut at every flash program and erase from
          the update command on: the job record, every image block, the read-back, the OTA data
          written by set_boot, by the bootloader and by mark_app_valid, and the meter's own
          commits in between. After each cut the bootloader runs, the meter boots on what
          survived, the backend re-sends what was not answered; checks: some image always boots,
          the record is the last committed one, the top-up sent mid-transfer is applied once,
          the outcome is the expected one.
  checks  manifests that must be refused (forged, tampered, unknown key, wrong board, too big, old
          record, downgrades, the same version), an image corrupted in transit and a truncated
          release (fetched, then refused; the old image keeps running), and a downgrade the
          release allows.
  verify  the time of one RSA-3072 signature verification on the runtime in force.

The last line is one JSON object: updates_ok, cut_points, bricked, state_lost, rolled_back,
forged_accepted, downgrade_accepted, verify_ms (and the details). Exit status 1 on any failure.

    python tools/ota_sim.py            # every cut point
    python tools/ota_sim.py --quick    # a strided subset (make test)
"""
import argparse
import json
import os
import secrets
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
sys.path.append(str(ROOT / "boards" / "esp32port"))  # after the standard library: it has time, select
import mprun  # noqa: E402
import ota_release  # noqa: E402
import ota_rollout  # noqa: E402
import release_key  # noqa: E402
import espimage  # noqa: E402
import esp32flash  # noqa: E402
import esp32ota  # noqa: E402

SCRIPT = "tools/ota_sweep_mp.py"
HEAP = "4m"
METER = "ota-0001"
OLD, NEW = "1.0.0", "1.1.0"
IMAGE_SIZE = 64 * 1024
BOARD = "esp32-atm90e26"
FLASH_SIZE = 0x100000
# The meter image's OTA layout, scaled down so a sweep copies 1 MiB per run: the same partitions
# in the same order (boards/esp32_meter/partitions-ota.csv), smaller slots.
TABLE = """
nvs,      data, nvs,     0x9000,  0x4000,
otadata,  data, ota,     0xd000,  0x2000,
phy_init, data, phy,     0xf000,  0x1000,
ota_0,    app,  ota_0,   0x10000, 0x30000,
ota_1,    app,  ota_1,   0x40000, 0x30000,
meter,    data, 0x83,    0x70000, 0x80000,
vfs,      data, fat,     0xF0000, 0x10000,
"""
REASONS = ota_rollout.REASONS  # the firmware's ota_manifest.REASONS (a test holds them equal)
# release name -> the refusal it must get
REFUSE = [("forged", "bad_signature"), ("tampered", "bad_signature"), ("unknown_kid", "unknown_key"),
          ("wrong_board", "wrong_board"), ("too_big", "too_big"), ("record_too_old", "record_too_old"),
          ("same_version", "same_version"), ("downgrade", "downgrade"),
          ("downgrade_wrong_from", "downgrade")]
SUM = ("runs", "cut_points", "bricked", "state_lost", "reboots", "rolled_back", "restarts", "failed_runs",
       "updates_ok")


def make_plan(work, image_size=IMAGE_SIZE):
    key = release_key.load(release_key.generate(str(work / "release.pem")) or str(work / "release.pem"))
    rogue = release_key.load(release_key.generate(str(work / "rogue.pem")) or str(work / "rogue.pem"))
    n = release_key.modulus(key)
    kid = release_key.key_id(n)
    rec = ota_release.record_version()
    images = {
        "old": espimage.build(OLD, IMAGE_SIZE, payload_seed=1),
        "good": espimage.build(NEW, image_size, payload_seed=2),
        "broken": espimage.build(NEW, image_size, fault="selftest", payload_seed=3),
        "down": espimage.build("0.9.0", IMAGE_SIZE, payload_seed=4),
    }
    images["truncated"] = images["good"][:-1000]
    rels = {}

    def release(name, img, version=NEW, boards=(BOARD,), min_record=rec, kid_=kid, signer=key,
                downgrade_from=None, size=None, tamper=False):
        text = ota_release.manifest_bytes(images[img], version, boards, min_record, kid_, downgrade_from)
        if size is not None:
            text = text.replace(b'"size":%d' % len(images[img]), b'"size":%d' % size)
        sig = release_key.sign(signer, text)
        if tamper:
            text = text.replace(b'"min_record":%d' % rec, b'"min_record":%d' % (rec - 1))
        path = work / ("%s.bin" % img)
        path.write_bytes(images[img])
        rels[name] = {"man": text.decode(), "sig": sig.hex(), "version": version, "image": str(path)}

    release("good", "good")
    release("broken", "broken")
    release("truncated", "truncated")
    release("forged", "good", signer=rogue, kid_=release_key.key_id(release_key.modulus(rogue)))
    release("tampered", "good", tamper=True)
    release("unknown_kid", "good", kid_="00" * 8)
    release("wrong_board", "good", boards=("esp32-ade7953",))
    release("too_big", "good", size=0x30000 + 4096)
    release("record_too_old", "good", min_record=rec + 1)
    release("same_version", "old", version=OLD)
    release("downgrade", "down", version="0.9.0")
    release("downgrade_wrong_from", "down", version="0.9.0", downgrade_from=NEW)
    release("downgrade_allowed", "down", version="0.9.0", downgrade_from=OLD)
    table = work / "table.csv"
    table.write_text(TABLE)
    template = work / "template.bin"
    f = esp32flash.Flash(str(template), FLASH_SIZE, str(table))
    esp32ota.install_image(f, "ota_0", images["old"])  # as esptool flashes the first image
    f.close()
    plan = {"meter": METER, "key": secrets.token_hex(32), "release_key": n.hex(), "template": str(template),
            "table": str(table), "flash_size": FLASH_SIZE, "work": str(work / "flash"), "old_version": OLD,
            "releases": rels, "refuse": REFUSE, "reasons": list(REASONS)}
    path = work / "plan.json"
    path.write_text(json.dumps(plan))
    return path, n


def run_mp(plan, *args, timeout=3600):
    res = mprun.run_mpy(SCRIPT, args=(str(plan),) + tuple(str(a) for a in args), heap=HEAP, timeout=timeout,
                        esp32=True)
    for line in res.stdout.splitlines():
        if line.startswith("FAIL"):
            print("  " + line)
    if res.result is None:
        raise SystemExit("ota-sim: %s %s crashed\n%s" % (SCRIPT, " ".join(map(str, args)), res.describe()))
    return res.result


def sweep(plan, scen, last, stride, jobs):
    parts = [(scen, 1 + k * stride, last, stride * jobs) for k in range(jobs) if 1 + k * stride <= last]
    with ThreadPoolExecutor(max_workers=jobs) as ex:
        results = list(ex.map(lambda p: run_mp(plan, "cut", *p), parts))
    tot = {k: 0 for k in SUM}
    for r in results:
        for k in SUM:
            tot[k] += r.get(k, 0)
    return tot


def verify_ms(n_hex, work):
    """Median ms of one verification of a release signature, on the runtime in force."""
    key = release_key.load(str(work / "release.pem"))
    msg = b"release manifest bytes"
    sig = release_key.sign(key, msg)
    code = (
        "import time, hashlib\nfrom binascii import unhexlify\nimport rsaverify\n"
        "n = unhexlify(open(%r).read()); s = unhexlify(%r); d = hashlib.sha256(%r).digest()\n"
        "ts = []\nok = True\nfor _ in range(9):\n    t = time.ticks_us(); ok = ok and rsaverify.verify(n, s, d)\n"
        "    ts.append(time.ticks_diff(time.ticks_us(), t))\nts.sort()\n"
        "print('{\"ok\": %%s, \"us\": %%d}' %% ('true' if ok else 'false', ts[4]))\n") % (
        str(work / "release.hex"), sig.hex(), msg)
    (work / "release.hex").write_text(n_hex)
    res = mprun.run_mpy(code, heap="256k", timeout=300)
    if res.result is None or not res.result.get("ok"):
        raise SystemExit("ota-sim: the release signature did not verify on %s\n%s" % (mprun.runtime(), res.describe()))
    return round(res.result["us"] / 1000.0, 1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="strided sweep (make test)")
    ap.add_argument("--jobs", type=int, default=max(1, min(4, os.cpu_count() or 1)))
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ota-sim-") as tmp:
        work = Path(tmp)
        plan, n = make_plan(work)
        out = {k: 0 for k in SUM}
        for scen in ("good", "broken"):
            dry = run_mp(plan, "dry", scen, 0, 0, 1)
            if dry["failed_runs"]:
                print("ota-sim: the clean %s run fails its checks" % scen)
                print(json.dumps({"ok": False, "scenario": scen, **dry}))
                return 1
            ops = dry["ops"]
            stride = max(1, ops // 40) if a.quick else 1
            r = sweep(plan, scen, ops, stride, a.jobs)
            print("%-6s update: %d flash programs/erases from the command to the end; cut at N=1..%d step %d: "
                  "%d runs (%d with a cut), %d reboots, bricked %d, state lost %d, rolled back %d, "
                  "update restarted after a rollback %d, failed runs %d" % (
                      scen, ops, ops, stride, r["runs"], r["cut_points"], r["reboots"], r["bricked"],
                      r["state_lost"], r["rolled_back"], r["restarts"], r["failed_runs"]))
            for k in SUM:
                out[k] += r[k]
            out["ops_" + scen] = ops
        chk = run_mp(plan, "checks", "good", 0, 0, 1)
        print("checks: refused %s" % ", ".join("%s=%s" % kv for kv in sorted(chk["refusals"].items())))
        out["forged_accepted"] = chk["forged_accepted"]
        out["downgrade_accepted"] = chk["downgrade_accepted"]
        out["check_failures"] = len(chk["fails"])
        out["verify_ms"] = verify_ms(n.hex(), work)
        out["runtime"] = mprun.runtime()
    problems = [k for k in ("bricked", "state_lost", "failed_runs", "forged_accepted", "downgrade_accepted",
                            "check_failures") if out[k]]
    if not a.quick and out["cut_points"] < 200:
        problems.append("only %d cut points" % out["cut_points"])
    out["ok"] = not problems
    if problems:
        print("ota-sim: FAILED: " + ", ".join(problems))
    keys = ("updates_ok", "cut_points", "bricked", "state_lost", "rolled_back", "forged_accepted",
            "downgrade_accepted", "verify_ms")
    print(json.dumps(dict([(k, out[k]) for k in keys] + [(k, v) for k, v in out.items() if k not in keys])))
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
