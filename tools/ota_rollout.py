"""Start firmware updates and serve their images (docs/ota.md): `headend update`.

A rollout goes in waves: the canary share of the meters first; only when every canary meter has
finished (kept the new image, refused it, failed or rolled back) with fewer failures than
--halt-after does the rest follow. Meanwhile this process answers every meter's block requests
(pm/v1/<id>/fwreq, signed by the meter) with the image's chunks (pm/v1/<id>/fw) and follows the
meters' ota_* events. Progress and the outcome per meter go into the headend's registry ("ota").
"""
import json
import math
import sys
import time

import meterproto
import ota_release

TERMINAL = ("done", "refused", "failed", "rolled_back")
FAILURES = ("refused", "failed", "rolled_back")
# ota_manifest.REASONS of the firmware: the ota_failed event's argument is the index + 1.
REASONS = ("no_release_key", "bad_signature", "bad_manifest", "wrong_board", "too_big", "downgrade",
           "same_version", "record_too_old", "no_ota", "busy", "hash_mismatch", "bad_image",
           "write_failed", "selftest", "unknown_key", "cancelled")


def vtext(code):
    return "%d.%d.%d" % (code >> 16 & 255, code >> 8 & 255, code & 255)


class Rollout:
    def __init__(self, h, release, meters, canary_pct=10, halt_after=1, wait_s=3600, out=print):
        self.h = h
        self.rel = release
        self.meters = list(meters)
        self.canary = max(1, math.ceil(len(self.meters) * canary_pct / 100.0)) if canary_pct < 100 else len(self.meters)
        self.halt_after = halt_after
        self.wait_s = wait_s
        self.out = out
        self.state = {}  # meter -> {"state", "offset", "why"}
        self.keys = {}
        self.served = 0  # chunk messages sent
        self.halted = False
        self._seen = 0

    # -- bookkeeping --------------------------------------------------------------------
    def _set(self, meter, **change):
        st = self.state.setdefault(meter, {"version": self.rel.version, "state": "sent", "offset": 0})
        before = st.get("state")
        st.update(change)
        self.h.reg.update(meter, lambda r: r.__setitem__("ota", dict(st)))
        if change.get("state") and change["state"] != before:
            self.out("%s: %s%s" % (meter, st["state"], " (%s)" % st["why"] if st.get("why") else ""))

    def summary(self):
        by = {}
        for st in self.state.values():
            by[st["state"]] = by.get(st["state"], 0) + 1
        return {"release": self.rel.version, "meters": len(self.meters), "canary": self.canary,
                "halted": self.halted, "by_state": by, "chunks_served": self.served,
                "outcome": {m: self.state.get(m, {}).get("state", "not_started") for m in self.meters}}

    # -- the run ----------------------------------------------------------------------
    def run(self):
        bus = self.h.connect()
        bus.subscribe("pm/v1/+/fwreq", "pm/v1/+/evt")
        self._seen = len(bus.msgs)
        waves = [self.meters[:self.canary], self.meters[self.canary:]]
        for i, wave in enumerate(waves):
            if not wave:
                continue
            for meter in wave:
                self.keys[meter] = bytes.fromhex(self.h.reg.get(meter)["key"])
                self._start(meter)
                self._serve(0)  # meters already loading are answered between starts
            self._serve_until(wave)
            failed = sum(1 for m in wave if self.state[m]["state"] in FAILURES)
            unfinished = [m for m in wave if self.state[m]["state"] not in TERMINAL]
            if i == 0 and waves[1] and (failed >= self.halt_after or unfinished):
                self.halted = True
                self.out("rollout halted after the canary wave: %d failed, %d unfinished of %d; "
                         "%d meter(s) not started" % (failed, len(unfinished), len(wave), len(waves[1])))
                for m in unfinished:
                    if self.state[m]["state"] in ("sent", "loading"):
                        self._cancel(m)  # not switched yet: stop it (one on trial finishes by itself)
                break
        return self.summary()

    def _errors(self):
        """The headend's Refused and CliError: of the module that made h (it may run as __main__)."""
        mod = sys.modules[type(self.h).__module__]
        return getattr(self.h, "Refused", None) or mod.Refused, getattr(self.h, "CliError", None) or mod.CliError

    def _start(self, meter):
        Refused = self._errors()[0]
        self._set(meter, state="sent", offset=0, why=None)
        try:
            self.h.send(meter, "ota", man=self.rel.manifest.decode(), sig=self.rel.sig)
        except Refused as e:
            why = (e.answer or {}).get("why") or (e.answer or {}).get("res") or "no reply"
            if why == "busy":
                self._set(meter, state="loading")  # our own job, still going from an earlier run
                return
            self._set(meter, state="refused", why=why)
            return
        self._set(meter, state="loading")

    def _cancel(self, meter):
        Refused, CliError = self._errors()
        try:
            self.h.send(meter, "ota_cancel")
            self._set(meter, state="failed", why="cancelled")
        except (Refused, CliError) as e:
            self._set(meter, why="cancel not confirmed: %s" % e)

    def _serve_until(self, wave):
        deadline = time.monotonic() + self.wait_s
        while time.monotonic() < deadline:
            if all(self.state[m]["state"] in TERMINAL for m in wave):
                return
            self._serve(0.5)

    def _serve(self, wait):
        """Answer block requests and follow events received since the last call (waiting up to
        `wait` seconds for the first one)."""
        bus = self.h.bus
        with bus.cond:
            if len(bus.msgs) <= self._seen and wait:
                bus.cond.wait(wait)
            batch = bus.msgs[self._seen:]
            self._seen = len(bus.msgs)
        for topic, payload, _retain in batch:
            parts = topic.split("/")
            if len(parts) != 4 or parts[2] not in self.state:
                continue
            meter, kind = parts[2], parts[3]
            key = self.keys.get(meter)
            if key is None or not meterproto.verify_uplink(key, payload):
                continue  # only the meter's own word moves its rollout
            doc = json.loads(payload)
            if kind == "fwreq":
                self._request(meter, doc)
            elif kind == "evt":
                self._event(meter, doc)

    def _request(self, meter, doc):
        o, n = doc.get("o"), doc.get("n")
        if doc.get("v") != self.rel.version or not isinstance(o, int) or not isinstance(n, int) or not 0 <= o < len(self.rel.image):
            return
        if self.halted or self.state[meter]["state"] in TERMINAL:
            return
        for msg in self.rel.chunks(o, min(n, 4096)):
            self.h.bus.c.publish(meterproto.topic(meter, "fw"), msg, qos=0)
            self.served += 1
        done = min(o + n, len(self.rel.image))
        before = self.state[meter].get("offset", 0)
        self._set(meter, offset=done)
        size = len(self.rel.image)
        if done * 4 // size > before * 4 // size and done < size:
            self.out("%s: %d%% of %d bytes" % (meter, done * 100 // size, size))  # progress by quarters

    def _event(self, meter, doc):
        ev, arg = doc.get("ev"), doc.get("a")
        if not isinstance(arg, int):
            return
        if ev == "ota_done" and vtext(arg) == self.rel.version:
            self._set(meter, state="done", offset=len(self.rel.image))
        elif ev == "ota_rolled_back" and vtext(arg) == self.rel.version:
            self._set(meter, state="rolled_back")
        elif ev == "ota_failed" and self.state[meter]["state"] not in TERMINAL:
            why = REASONS[arg - 1] if 0 < arg <= len(REASONS) else "reason %d" % arg
            # A failed trial is followed by the old image's ota_rolled_back: not the end yet.
            self._set(meter, state="trial_failed" if why == "selftest" else "failed", why=why)


def find_release(home, version):
    names = ota_release.releases(home)
    if version not in names:
        raise ota_release.ReleaseError("no release %r in %s/releases (have: %s); `headend release IMAGE` makes one" % (
            version, home, ", ".join(names) or "none"))
    return ota_release.Release(ota_release.Path(home) / "releases" / version)
