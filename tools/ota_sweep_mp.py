# Firmware-update sweep under MicroPython (run by tools/ota_sim.py):
#   micropython tools/ota_sweep_mp.py PLAN MODE SCENARIO FIRST LAST STRIDE
# PLAN: the JSON file ota_sim.py wrote (flash template with the old image in ota_0, the signed
# manifests, the images the backend serves, keys). MODE: dry (one clean run: prints its cut
# points), cut (power lost at flash program/erase N of the scenario, for N = FIRST..LAST step
# STRIDE), checks (the refusals: forged, tampered, wrong board, downgrades, a truncated and a
# corrupted image). SCENARIO: good (an update that passes its trial) or broken (one whose chip
# does not answer on the new image: its trial fails and the bootloader rolls back).
# The meter is app.Meter on boards/sim_ota.py, every write on one virtual flash; the harness plays
# the bootloader at each reset (esp32ota.bootload), the backend (commands re-sent until answered,
# every block request answered) and checks after every reboot that the record is the last one
# committed (or the one in flight), that some image boots, and at the end that the outcome is the
# expected one with every acknowledged top-up applied once. Last line: a JSON summary.
import sys
import commit_watch
import os
import gc
import json
import struct
from binascii import hexlify, unhexlify

import esp32world as W
import esp32flash
import esp32ota
import app as app_mod
import record
import store as store_mod
import sim_ota
from hmac256 import HmacSha256

PLAN = json.load(open(sys.argv[1]))
METER = PLAN["meter"]
KEY = unhexlify(PLAN["key"])
TICK_MS = 5000
WARM = 6  # ticks before the update starts (and before cuts are counted)
MAX_STEPS = 400
TOPUP_AT = 3  # steps after the update command: a top-up arrives mid-transfer
TOPUP = 77
CONFIG = {"tariff": {"v": 1, "kind": "flat", "price_per_kwh": 300000, "scale": 100},
          "opening_balance": 5000, "telemetry_s": 600, "auto_reconnect": True, "ota_trial_s": 120,
          "commit_wh": 5}
_EXP = 1767225600 + 30 * 86400
_FLOOR = record.HEAD


def vcode(t):
    a, b, c = t.split(".")
    return int(a) << 16 | int(b) << 8 | int(c)


class Run:
    def __init__(self, scen, cut):
        self.scen = scen
        self.cut = cut
        self.fails = []
        self.bricked = 0
        self.state_lost = 0
        self.reboots = 0
        self.cuts = 0
        self.rolled_back = 0
        self.restarts = 0
        self.board = None
        self.m = None
        self.link = sim_ota.Link()
        self.seen = 0  # link.sent scanned so far
        self.replies = {}  # command id -> result
        self.events = []  # (name, arg)
        self.cmds = {}  # id -> payload
        self.next_id = 100
        self.last_ok = None
        self.attempts = []
        self.version = None
        self.mac = HmacSha256(KEY)
        self.serving = None
        path = PLAN["work"] + ".%s.%d" % (scen, cut)
        with open(PLAN["template"], "rb") as src, open(path, "wb") as dst:
            buf = bytearray(4096)
            while True:
                n = src.readinto(buf)
                if not n:
                    break
                dst.write(memoryview(buf)[:n])
        self.path = path
        W.flash = esp32flash.Flash(path, PLAN["flash_size"], PLAN["table"])
        W.running = None
        self.flash = W.flash

    def fail(self, what):
        self.fails.append(what)
        if len(self.fails) <= 3:
            print("FAIL %s cut=%d: %s" % (self.scen, self.cut, what))

    # -- the backend -----------------------------------------------------------------
    def command(self, body):
        cid = self.next_id
        self.next_id += 1
        b = ('{"m":"%s","id":%d,"exp":%d,%s}' % (METER, cid, _EXP, body)).encode()
        self.cmds[cid] = hexlify(self.mac.digest(b)) + b" " + b
        return cid

    def ota_command(self, name):
        self.serving = name  # the image the backend answers block requests from
        r = PLAN["releases"][name]
        return self.command('"op":"ota","man":%s,"sig":"%s"' % (json.dumps(r["man"]), r["sig"]))

    def deliver(self):
        for cid in sorted(self.cmds):
            if cid not in self.replies:
                self.m.on_message(self.m.sync.cmd_topic, self.cmds[cid])

    def serve(self, corrupt=False):
        """Answer every block request with its chunks (which may ask for the next block)."""
        while self.seen < len(self.link.sent):
            topic, payload = self.link.sent[self.seen]
            self.seen += 1
            kind = topic.rsplit(b"/", 1)[1]
            doc = json.loads(payload)
            if kind == b"reply":
                self.replies[doc["id"]] = (doc["res"], doc.get("why"))
            elif kind == b"evt":
                self.events.append((doc["ev"], doc["a"]))
            elif kind == b"fwreq":
                img = IMAGES[self.serving]
                o, end = doc["o"], min(doc["o"] + doc["n"], len(img))
                while o < end:
                    k = min(1024, end - o)
                    chunk = bytearray(struct.pack(">I", o) + img[o:o + k])
                    if corrupt and o == 4096:
                        chunk[100] ^= 0x40
                        corrupt = False
                    self.m.on_message(self.m.ota.topic, bytes(chunk))
                    o += k

    # -- the device ----------------------------------------------------------------------
    def _track(self, m):
        commit_watch.watch(m.store, self)

    def boot(self):
        while True:
            try:
                self._boot()
                return
            except (esp32flash.PowerCut, sim_ota.Reset) as e:
                self.reboots += 1
                if isinstance(e, esp32flash.PowerCut):
                    self.cuts += 1

    def _boot(self):
        gc.collect()
        if self.board is not None:
            try:
                os.umount("/data")
            except OSError:
                pass
        label = esp32ota.bootload(self.flash)
        if label is None:
            self.bricked += 1
            self.fail("no image boots")
            raise SystemExit
        W.running = label
        info = esp32ota.last
        if info.get("rolled_back"):
            self.rolled_back += 1
        self.version = info.get("version")
        before = self.board
        self.board = None
        self.board = sim_ota.Board({"meter_id": METER, "key": KEY, "config": CONFIG, "link": self.link,
                                    "release_key": unhexlify(PLAN["release_key"]),
                                    "chip_dead": info.get("fault") == "selftest"}, before)
        if before is not None:
            self._check_record()
        m = app_mod.Meter(self.board)
        self._track(m)
        self.m = m
        m.boot()

    def _check_record(self):
        st = store_mod.RecordStore("/data/state.a", "/data/state.b", record.SIZE)
        found = bytes(st.payload) if st.load() else None
        if found not in [self.last_ok] + self.attempts:
            self.state_lost += 1
            self.fail("the record after reboot is neither the last committed one nor the one in flight")
        self.last_ok = found
        self.attempts = []

    def tick(self):
        self.board.advance(TICK_MS)
        self.m.step()

    # -- the scenario ------------------------------------------------------------------------
    def outcome(self):
        for name, arg in self.events:
            if name in ("ota_done", "ota_rolled_back") and arg == vcode(PLAN["releases"][self.scen]["version"]):
                return name
        return None

    def go(self, arm=True):
        self.boot()
        for _ in range(WARM):
            self.tick()
        self.serve()
        start_ops = self.flash.ops
        if arm and self.cut:
            self.flash.cut_at = start_ops + self.cut
        ota = self.ota_command(self.scen)
        topup = None
        steps = 0
        while steps < MAX_STEPS:
            steps += 1
            try:
                if steps == TOPUP_AT:
                    topup = self.command('"op":"topup","amt":%d' % TOPUP)
                self.deliver()
                self.serve()
                self.tick()
                self.serve()
            except (esp32flash.PowerCut, sim_ota.Reset) as e:
                self.reboots += 1
                if isinstance(e, esp32flash.PowerCut):
                    self.cuts += 1
                self.boot()
                continue
            out = self.outcome()
            if out == "ota_rolled_back" and self.scen == "good" and self.restarts < 3:
                # A power cut during the trial rolls back a good image too: the backend tries again.
                self.restarts += 1
                self.events = [e for e in self.events if e[0] != "ota_rolled_back"]
                ota = self.ota_command(self.scen)
                continue
            if out is not None and all(c in self.replies for c in self.cmds) and self.m.ota.state == 0:
                break
        self.flash.cut_at = None
        self.ops = self.flash.ops - start_ops
        self._final(ota, topup)

    def _final(self, ota, topup):
        want = "ota_done" if self.scen == "good" else "ota_rolled_back"
        got = self.outcome()
        if got != want:
            self.fail("outcome %s, expected %s (ota reply %s, events %s)" % (
                got, want, self.replies.get(ota), self.events[-6:]))
        new = PLAN["releases"][self.scen]["version"]
        running = new if want == "ota_done" else PLAN["old_version"]
        if self.version != running:
            self.fail("running %s, expected %s" % (self.version, running))
        if topup is None or self.replies.get(topup, (None,))[0] != "applied":
            self.fail("the top-up was not acknowledged: %s" % (self.replies.get(topup),))
        elif self.m.account.topped_up != CONFIG["opening_balance"] + TOPUP:
            self.state_lost += 1
            self.fail("topped_up %d, expected %d" % (self.m.account.topped_up, CONFIG["opening_balance"] + TOPUP))
        try:
            os.umount("/data")
        except OSError:
            pass
        self.flash.close()
        os.remove(self.path)


def checks():
    """Every manifest that must be refused, and the images that must not boot."""
    out = {"forged_accepted": 0, "downgrade_accepted": 0, "refusals": {}, "fails": []}
    r = Run("good", 0)
    r.boot()
    for _ in range(WARM):
        r.tick()
    for name, why in PLAN["refuse"]:
        cid = r.ota_command(name)
        r.deliver()
        switched = False
        for _ in range(4):  # the reply goes out with the step's sync; a taken one would be fetched
            try:
                r.tick()
                r.serve()
            except sim_ota.Reset:
                switched = True  # it was taken, fetched and booted
                r.boot()
        res = r.replies.get(cid)
        if switched:
            out["fails"].append("%s: the meter switched to it" % name)
            out["downgrade_accepted" if name.startswith("downgrade") else "forged_accepted"] += 1
            continue
        out["refusals"][name] = res[1] if res and res[0] == "ota_refused" else res
        if res is None or res[0] != "ota_refused":
            out["fails"].append("%s: %s, expected a refusal (%s)" % (name, res, why))
            if name.startswith("downgrade"):
                out["downgrade_accepted"] += 1
            else:
                out["forged_accepted"] += 1
        elif res[1] != why:
            out["fails"].append("%s refused as %s, expected %s" % (name, res[1], why))
    # Signed, accepted, but the bytes that arrive are not the release (corrupted in transit), or the
    # release itself is a truncated image: fetched, then refused; the old image keeps running.
    for name, why, corrupt in (("good", "hash_mismatch", True), ("truncated", "bad_image", False)):
        cid = r.ota_command(name)
        r.deliver()
        for _ in range(10):
            try:
                r.serve(corrupt)
                corrupt = False
                r.tick()
            except sim_ota.Reset:
                out["forged_accepted"] += 1
                out["fails"].append("%s: the meter switched to it" % name)
                break
        fails = [e for e in r.events if e[0] == "ota_failed"]
        code = fails[-1][1] if fails else None
        out["refusals"][name + ("_corrupted" if name == "good" else "")] = code
        if code != PLAN["reasons"].index(why) + 1:
            out["fails"].append("%s: ota_failed %s, expected %s" % (name, code, why))
        r.events = []
    # A downgrade the release allows (downgrade_from = the running version) is taken.
    cid = r.ota_command("downgrade_allowed")
    r.deliver()
    r.tick()
    r.serve()
    out["downgrade_allowed"] = r.replies.get(cid)
    if (r.replies.get(cid) or (None,))[0] != "applied":
        out["fails"].append("the allowed downgrade was refused: %s" % (r.replies.get(cid),))
    r.flash.close()
    os.remove(r.path)
    return out


IMAGES = {}
for name, rel in PLAN["releases"].items():
    with open(rel["image"], "rb") as f:
        IMAGES[name] = f.read()


def main():
    mode, scen = sys.argv[2], sys.argv[3]
    if mode == "checks":
        res = checks()
        for f in res["fails"]:
            print("FAIL checks: " + f)
        print(json.dumps(res))
        return
    first, last, stride = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
    tot = {"runs": 0, "cut_points": 0, "bricked": 0, "state_lost": 0, "reboots": 0, "rolled_back": 0,
           "restarts": 0, "failed_runs": 0, "updates_ok": 0, "ops": 0}
    cuts = [0] if mode == "dry" else range(first, last + 1, stride)
    for n in cuts:
        r = Run(scen, n)
        try:
            r.go()
        except SystemExit:
            pass
        tot["runs"] += 1
        tot["cut_points"] += 1 if r.cuts else 0
        tot["bricked"] += r.bricked
        tot["state_lost"] += r.state_lost
        tot["reboots"] += r.reboots
        tot["rolled_back"] += r.rolled_back
        tot["restarts"] += r.restarts
        tot["failed_runs"] += 1 if r.fails else 0
        tot["updates_ok"] += 1 if not r.fails and scen == "good" else 0
        tot["ops"] = getattr(r, "ops", 0)
        gc.collect()
    print(json.dumps(tot))


main()
