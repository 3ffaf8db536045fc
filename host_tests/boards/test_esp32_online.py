"""A day online against Mosquitto with the real esp32-atm90e26 board file on the ESP32 stand-ins
(tools/esp32_host.py), then a power cut and a reboot from the same flash image. 64-bit: a stock
image with the staged .mpy files; 32-bit: the frozen meter image and its partition table.

The backend tops the meter up with signed commands; after the cut it re-sends one it already had
acknowledged and sends a new one. Nothing acknowledged may be lost or applied twice, the energy
the meter holds after the reboot may trail the chip's truth by at most the commit bound, and the
RTC, without a battery, starts again at 2000-01-01: the meter starts its clock from the time floor
it committed instead, until the backend sets it."""
import json
import sys
from pathlib import Path

import esp32_host
import meterproto

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "firmware"))
from meterrig import Backend  # noqa: E402

USES_MICROPYTHON = True
DAY = 86400
START = esp32_host.UTC_START  # the RTC was set to 2026-01-01 00:00 UTC before this power-up
MJ_PER_WH = 3600000
COMMIT_S = 900  # the default commit interval: the floor is at most this old at a cut
AT_RISK_WH = 9  # what a power cut may cost at the default commit bound (README: energy_at_risk_wh)
WAIT = 120.0  # real seconds the backend waits for the meter (a virtual day takes about a minute)
STALL = 60.0  # ... or, for simulated hours to pass, as long as the meter keeps sending (a busy machine)


def topup(be, amt):
    cid, payload = be.command("topup", amt=amt)
    be.publish(payload)
    assert be.wait(lambda: cid in be.replies, WAIT), "no reply to top-up %d" % cid
    reply = be.replies[cid][0]
    assert reply["res"] == "applied" and reply["rep"] == 0, reply
    return cid, payload, reply


def last_tele(be, after_seq=0):
    t = [d for d in be.of("tele") if d["seq"] > after_seq]
    return t[-1] if t else None


def test_a_day_online_then_a_power_cut_and_a_reboot_from_the_same_flash(tmp_path, broker, mp_runtime):
    frozen = mp_runtime == "micropython32"
    h = esp32_host.Esp32Host(tmp_path, "esp32-atm90e26", broker=(broker.host, broker.port), frozen=frozen,
                             rtc_utc=START)
    h.setup()
    secrets = json.loads((h.home / "deploy" / h.meter_id / "secrets.json").read_text())
    be = Backend(broker.host, broker.port, h.meter_id, bytes.fromhex(secrets["key"]))
    seqs = meterproto.SeqTracker()
    try:
        # -- the first day: power-up, a top-up at birth and another half-way through -----------------
        # The backend cuts the power once the day is over (control: over the board's stdin, so the
        # cut follows what the backend saw, whatever the real speed); three days is a backstop.
        boot = h.start(run_s=3 * DAY, control=True)
        assert be.wait(lambda: be.of("status"), WAIT), "no birth message"
        assert be.of("status")[0]["boot"] >= START
        acked = {}
        cid, _, _ = topup(be, 20000)
        acked[cid] = 20000
        assert be.wait_progress(lambda: any(d["t"] >= START + DAY // 2 for d in be.of("tele")), STALL), "no telemetry at noon"
        cid_b, payload_b, reply_b = topup(be, 30000)
        acked[cid_b] = 30000
        assert be.wait_progress(lambda: any(d["t"] >= START + DAY for d in be.of("tele")), STALL), "no telemetry after a day"
        boot.cut()
        r1 = boot.wait()
        assert r1["reason"] == "power_cut", r1.get("error") or r1
        assert r1["uptime_ms"] > DAY * 1000
        day1 = [d for d in be.of("tele") if d["t"] < START + DAY]
        assert len(day1) >= 90, "telemetry every 15 minutes: %d" % len(day1)
        before = last_tele(be)
        assert before["b"] + before["c"] == sum(acked.values()), before
        truth1_wh = r1["truth_mj"] // MJ_PER_WH
        assert before["e"] <= truth1_wh and r1["water_pulses"] > 0
        seen1 = len(be.msgs)

        # -- power back: the same flash image, the RTC back at 2000-01-01 ----------------------------
        boot = h.start(run_s=DAY, control=True)
        assert be.wait(lambda: len(be.of("status")) >= 2 and be.of("status")[-1].get("online") == 1, WAIT)
        birth = be.of("status")[-1]
        # The RTC came back at 2000; the meter started its clock from the time floor it committed
        # (docs/time.md): at most a commit interval before the cut, and says it is uncertain.
        floor_lo = r1["utc_end"] - COMMIT_S - 60
        assert floor_lo <= birth["boot"] <= r1["utc_end"] and birth["tq"] == 0, (birth, r1["utc_end"])
        assert birth["last"] >= before["seq"], "the numbering survives the cut"
        # The backend is unsure whether its last top-up arrived: it re-sends the same bytes.
        be.publish(payload_b)
        assert be.wait(lambda: len(be.replies[cid_b]) >= 2, WAIT)
        again = be.replies[cid_b][-1]
        assert again["res"] == "applied" and again["rep"] == 1, "answered, not applied again: %r" % again
        cid, _, _ = topup(be, 5000)
        acked[cid] = 5000
        # The birth said the clock is uncertain: the backend sets it (the board's set_time writes the RTC).
        set_to = START + DAY + 7200
        cid, payload = be.command("time", utc=set_to)
        be.publish(payload)
        assert be.wait(lambda: cid in be.replies, WAIT)
        set_reply = be.replies[cid][0]
        assert set_reply["res"] == "applied" and set_reply["t"] == set_to, set_reply
        assert be.wait_progress(lambda: any(d["t"] >= set_to + 3600 for d in be.of("tele")), STALL), "no telemetry after the set"
        boot.end()
        r2 = boot.wait()
        assert r2["reason"] == "end", r2.get("error") or r2
        assert r1["meter"]["step_errors"] == r2["meter"]["step_errors"] == 0, (r1["meter"], r2["meter"])
        # What boot 2 numbered (a resent message from before the cut keeps its old number).
        after = [d for k, d, _ in be.msgs[seen1:] if k == "tele" and d["seq"] > birth["last"]]
        assert after and after[0]["e"] >= before["e"], "no energy lost that had been reported"
        unset = [d for _, d, _ in be.msgs[seen1:] if "t" in d and birth["last"] < d.get("seq", 0) < set_reply["seq"]]
        assert unset and all(birth["boot"] <= d["t"] < birth["boot"] + DAY for d in unset), \
            "meter time from the floor after the cut: %r" % unset
        assert all(d["t"] >= set_to for d in after if d["seq"] > set_reply["seq"]), "then the time set"
        assert r2["rtc"] >= set_to + 3600 - esp32_host.Y2000, "the RTC holds it"
        final = after[-1]
        assert final["b"] + final["c"] == sum(acked.values()), (final, acked)  # once each, none lost
        # Energy: what the meter holds at the end trails everything the chip measured over both
        # boots by at most the energy a cut may lose, plus the tick not read yet.
        truth_wh = (r1["truth_mj"] + r2["truth_mj"]) // MJ_PER_WH
        held = r2["meter"]["imp_wh"]
        assert truth_wh - AT_RISK_WH - 1 <= held <= truth_wh, (held, truth_wh)
        # Every uplink number arrived (duplicates after the cut are allowed, gaps are not).
        for d in be.of("status"):
            seqs.status(d)
        for s in be.seqs():
            seqs.add(s)
        assert seqs.gaps() == [], seqs.gaps()
    finally:
        be.close()
        for b in h.boots:
            b.kill()
