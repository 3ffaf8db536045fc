"""tools/headend.py against a real Mosquitto and a simulated meter (micropython, paced)."""
import csv
import json
import re
import struct
import subprocess
import sys
import types
import zlib
from pathlib import Path

import pytest

import headend
import mpbroker
from fleet import start_meter, wait_online

REPO = Path(__file__).resolve().parents[2]
METER = "hx-0001"


class Cli:
    def __init__(self, home, broker, capsys, ttl=20 * 86400):
        self.ttl = ttl
        self.home = home
        self.broker = broker
        self.capsys = capsys

    def __call__(self, *args, timeout=5):
        self.capsys.readouterr()
        # The simulated meter runs days in seconds: an hour of its time is about a second of ours.
        rc = headend.main(["--home", str(self.home), "--broker", self.broker, "--timeout", str(timeout),
                           "--ttl", str(self.ttl)] + list(args))
        out, err = self.capsys.readouterr()
        return rc, out, err

    def rec(self, meter=METER):
        return json.loads((self.home / "meters" / (meter + ".json")).read_text())


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    b = mpbroker.Broker()
    home = tmp_path_factory.mktemp("headend")
    addr = "%s:%d" % (b.host, b.port)
    rc = headend.main(["--home", str(home), "--broker", addr, "provision", METER, "--board", "esp32-atm90e26"])
    assert rc == 0
    key = json.loads((home / "meters" / (METER + ".json")).read_text())["key"]
    proc = start_meter(METER, key, addr, tmp_path_factory.mktemp("flash") / "f.img")
    try:
        assert wait_online(b.host, b.port, METER), "simulated meter never reported"
        yield types.SimpleNamespace(broker=b, home=home, addr=addr, proc=proc)
    finally:
        proc.terminate()
        proc.wait(5)
        b.close()


@pytest.fixture
def cli(live, capsys):
    return Cli(live.home, live.addr, capsys)


def test_provision_writes_key_credentials_and_deploy_files(tmp_path, capsys):
    c = Cli(tmp_path, "127.0.0.1:1", capsys)
    rc, out, err = c("provision", "MTR-7", "--board", "esp32-atm90e26", "--wifi-ssid", "s", "--wifi-password", "p")
    assert rc == 0, err
    rec = c.rec("MTR-7")
    assert len(bytes.fromhex(rec["key"])) == 32 and rec["next_cmd_id"] == 1
    sec = json.loads((tmp_path / "deploy" / "MTR-7" / "secrets.json").read_text())
    # Keys and passwords are for this user only (issue 20: meters/<id>.json was world-readable).
    for p in (tmp_path / "deploy" / "MTR-7" / "secrets.json", tmp_path / "meters" / "MTR-7.json"):
        assert p.stat().st_mode & 0o077 == 0, p
    assert sec["key"] == rec["key"] and sec["meter_id"] == "MTR-7" and sec["wifi_ssid"] == "s"
    assert sec["mqtt_user"] == "MTR-7" and len(sec["mqtt_password"]) >= 20
    assert (tmp_path / "deploy" / "MTR-7" / "board.txt").read_text().strip() == "esp32-atm90e26"
    acl = (tmp_path / "deploy" / "MTR-7" / "mosquitto-acl.conf").read_text()
    assert "topic read pm/v1/MTR-7/cmd" in acl and "topic write pm/v1/MTR-7/cmd" not in acl
    for kind in ("status", "tele", "lp", "evt", "snap", "reply"):  # every uplink topic of docs/protocol.md
        assert "topic write pm/v1/MTR-7/%s\n" % kind in acl, kind
    assert "make deploy" in out
    # A second meter gets a different key; re-provisioning is refused without --force.
    assert c("provision", "MTR-8", "--board", "esp32-atm90e26")[0] == 0
    assert c.rec("MTR-8")["key"] != rec["key"]
    rc, out, err = c("provision", "MTR-7", "--board", "esp32-atm90e26")
    assert rc == 2 and "already provisioned" in err and c.rec("MTR-7")["key"] == rec["key"]
    for bad in (["bad id!", "--board", "esp32-atm90e26"], ["M9", "--board", "nope"],
                ["M9", "--board", "sim-atm90e26"], ["M9", "--board", "esp32-atm90e26", "--wifi-ssid", "x"]):
        rc, out, err = c("provision", *bad)
        assert rc == 2 and err.startswith("headend: error: "), bad
    assert not (tmp_path / "meters" / "M9.json").exists()


def test_list_shows_online_meter_and_last_balance(cli):
    assert cli("watch", METER, "--count", "4")[0] == 0
    rc, out, err = cli("list")
    assert rc == 0, err
    row = [ln for ln in out.splitlines() if ln.startswith(METER)][0].split()
    assert row[1] == "esp32-atm90e26" and row[2] == "online"
    last = json.loads((cli.home / "data" / (METER + ".jsonl")).read_text().splitlines()[-1])["d"]
    assert row[-1] == headend.fmt_money(last["b"])


def test_status_prints_fresh_telemetry_with_units(cli):
    rc, out, err = cli("status", METER)
    assert rc == 0, err
    first, second = out.splitlines()[:2]
    assert first.startswith(METER + ": balance ")
    for unit in (" kWh", " W ", " V ", " A ", "balance ", "relay "):
        assert unit in second, unit


def test_watch_prints_and_records_telemetry(cli):
    reg = headend.Registry(cli.home)
    before = {k: len(reg.recorded(METER, k)) for k in ("tele", "lp")}
    # The retained birth, then telemetry (one report per 15 minutes closing each interval).
    rc, out, err = cli("watch", METER, "--count", "7")
    assert rc == 0, err
    lines = out.splitlines()
    assert len(lines) == 7 and all(ln.startswith(METER) for ln in lines)
    assert "link online (retained)" in lines[0]
    assert sum(" energy " in ln and " kWh " in ln and " power " in ln for ln in lines) >= 2
    assert sum(bool(re.search(r" load profile: interval \+\d+ Wh", ln)) for ln in lines) >= 2, out
    assert len(reg.recorded(METER, "tele")) >= before["tele"] + 6
    # Revision 5: no lp messages; the reports that close intervals say so.
    assert len(reg.recorded(METER, "lp")) == before["lp"]
    assert sum(1 for d in reg.recorded(METER, "tele") if d.get("lp")) >= 3


def test_watch_without_a_meter_watches_them_all(cli):
    rc, out, err = cli("watch", "--count", "3", "--no-record")
    assert rc == 0, err
    assert len(out.splitlines()) == 3 and all(ln.split()[0] == METER for ln in out.splitlines())


def test_topup_applies_once_and_reports_balance(cli):
    rc, out, err = cli("topup", METER, "5.25")
    assert rc == 0, err
    assert "top-up 5.25 applied" in out
    after = int(out.strip().rsplit(" ", 1)[1].replace(".", ""))
    rc, out2, err = cli("status", METER)
    assert rc == 0, err
    # From here the balance only goes down (energy is charged): the top-up was not applied twice.
    now = int(out2.splitlines()[0].split("balance ")[1].split(",")[0].replace(".", ""))
    assert now <= after


def test_topup_bad_amounts_send_nothing(cli):
    nid = cli.rec()["next_cmd_id"]
    for bad in ("5.001", "-1", "abc", "0", "0.00"):
        rc, out, err = cli("topup", METER, bad)
        assert rc == 2 and "amount must be" in err, bad
    assert cli.rec()["next_cmd_id"] == nid


def test_topup_refused_by_meter_shows_reason(cli):
    rc, out, err = cli("topup", METER, "200000.00")  # the meter's maximum balance is 100000.00
    assert rc == 1
    assert "refused topup: refused_max_balance" in err


def test_command_with_wrong_key_is_refused_with_reason(cli):
    rec = cli.rec()
    good = rec["key"]
    rec["key"] = "00" * 32
    (cli.home / "meters" / (METER + ".json")).write_text(json.dumps(rec))
    try:
        rc, out, err = cli("disconnect", METER)
    finally:
        rec = cli.rec()
        rec["key"] = good
        (cli.home / "meters" / (METER + ".json")).write_text(json.dumps(rec))
    # The meter's answer is signed with its own key, which the headend no longer has: reported
    # (with what it said), never believed, and the command stays pending.
    assert rc == 1 and "bad_mac" in err and "without a valid mac" in err, err
    assert cli.rec()["pending"]["op"] == "disconnect"
    rc, out, err = cli("retry", METER, "--drop")
    assert rc == 0 and "pending" not in cli.rec(), err


def test_a_forged_reply_is_reported_never_believed(cli, live):
    """No meter runs; someone who can publish on its reply topic answers every command, as the
    meter would (a broker without an access list lets anyone)."""
    import paho.mqtt.client as mqtt
    ghost = "hx-ghost"
    assert cli("provision", ghost, "--board", "esp32-atm90e26")[0] == 0
    cid = cli.rec(ghost)["next_cmd_id"]
    forger = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="forger")
    forger.connect(live.broker.host, live.broker.port)

    def on_message(c, u, msg):
        doc = json.loads(msg.payload.split(b" ", 1)[1])
        for seq in (10 ** 6, None):  # a numbered reply and an unnumbered answer
            fake = {"seq": seq, "id": doc["id"], "res": "applied", "rep": 0, "b": 999999, "r": 0,
                    "mac": "0123456789abcdef"}
            if seq is None:
                del fake["seq"]
            c.publish("pm/v1/%s/reply" % ghost, json.dumps(fake, separators=(",", ":")), qos=1)

    import threading
    subscribed = threading.Event()
    forger.on_message = on_message
    forger.on_subscribe = lambda *a: subscribed.set()
    forger.subscribe("pm/v1/%s/cmd" % ghost, qos=1)
    forger.loop_start()
    try:
        assert subscribed.wait(10), "the forger's SUBACK"
        rc, out, err = cli("topup", ghost, "50.00", timeout=3)
    finally:
        forger.loop_stop()
        forger.disconnect()
    assert rc == 1 and "without a valid mac" in err and "applied" in err, (out, err)
    assert "9999.99" not in out
    rec = cli.rec(ghost)
    assert rec["pending"]["id"] == cid, "the command's fate is unknown: it stays pending"
    data = cli.home / "data" / (ghost + ".jsonl")
    assert not data.exists() or "999999" not in data.read_text(), "a forged reply was recorded"
    assert headend.Registry(cli.home).seq_high(ghost) < 10 ** 6


def test_watch_records_only_telemetry_the_meter_signed(cli, live):
    """Someone who can publish on the meter's topics leaves a telemetry message with a balance of
    9999.99 (retained, so it reaches every subscriber): shown as not from the meter, never recorded."""
    import paho.mqtt.client as mqtt
    forger = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="forger-tele")
    forger.connect(live.broker.host, live.broker.port)
    forger.loop_start()
    topic = "pm/v1/%s/tele" % METER
    fake = b'{"seq":999999,"t":1767229200,"e":1,"x":0,"b":999999,"c":0,"v":23000,"i":0,"p":0,"r":0,"rs":0}'
    try:
        forger.publish(topic, fake[:-1] + b',"mac":"0123456789abcdef"}', qos=1, retain=True).wait_for_publish(5)
        rc, out, err = cli("watch", METER, "--count", "3")
    finally:
        forger.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)  # clear it
        forger.loop_stop()
        forger.disconnect()
    assert rc == 0, err
    assert "NOT FROM THE METER" in out and "999999" in out, out
    data = (cli.home / "data" / (METER + ".jsonl")).read_text()
    assert '"b": 999999' not in data and "999999" not in data.replace('"seq": 999999', ""), "recorded"
    assert headend.Registry(cli.home).seq_high(METER) < 999999
    genuine = [ln for ln in out.splitlines() if "NOT FROM THE METER" not in ln]
    assert len(genuine) == 3, out


def test_commands_expire_in_the_meters_time_even_when_it_differs_from_ours(cli):
    """The simulated meter's clock is trusted and runs in early 2026, far behind ours: a headend
    that has never seen its time signs in its own, the meter refuses that as too far ahead
    (exp_far) and says its time, and the headend signs once more in the meter's time."""
    reg = headend.Registry(cli.home)
    reg.update(METER, lambda r: [r.pop(k, None) for k in ("meter_time", "meter_time_at")])
    first = cli.rec()["next_cmd_id"]
    cli.ttl = headend.CMD_TTL_S
    rc, out, err = cli("status", METER)
    assert rc == 0, err
    rec = cli.rec()
    assert rec["next_cmd_id"] == first + 2, "one refused exp_far, one applied"
    assert rec["meter_time"] < headend.time.time() - 31 * 86400, "the meter's clock is behind ours"
    # Known now: the next command is signed in the meter's time at once.
    rc, out, err = cli("status", METER)
    assert rc == 0 and cli.rec()["next_cmd_id"] == first + 3, err
    # A ttl the meter would refuse is refused here first.
    cli.ttl = 32 * 86400
    rc, out, err = cli("status", METER)
    assert rc == 2 and "--ttl" in err and "31 days" in err


def test_disconnect_then_reconnect_then_direct(cli):
    rc, out, err = cli("disconnect", METER)
    assert rc == 0 and "relay disconnected" in out, err
    rc, out, err = cli("reconnect", METER)
    assert rc == 0 and "relay ready" in out and "button" in out, err
    rc, out, err = cli("disconnect", METER)
    rc, out, err = cli("reconnect", METER, "--direct")
    assert rc == 0 and "relay connected" in out, err


def test_token_needs_an_issuer_and_formats_twenty_digits(cli, monkeypatch):
    if headend.load_issuer() is None:
        rc, out, err = cli("token", METER, "10")
        assert rc == 2 and "offline tokens are not supported by this build" in err
    calls = []

    def issue(key, meter, cid, amt):
        calls.append((key, meter, cid, amt))
        return "%020d" % (amt * 1000 + cid)

    monkeypatch.setattr(headend, "load_issuer", lambda: types.SimpleNamespace(issue=issue))
    cid, tid = cli.rec()["next_cmd_id"], cli.rec()["next_token_id"]
    rc, out, err = cli("token", METER, "10.50")
    assert rc == 0, err
    assert out.strip() == " ".join(("%020d" % (1050 * 1000 + tid))[i:i + 4] for i in range(0, 20, 4))
    assert calls[0][1:] == (METER, tid, 1050) and calls[0][0] == bytes.fromhex(cli.rec()["key"])
    # Tokens have a counter of their own: commands do not move it, and it does not move theirs.
    assert (cli.rec()["next_cmd_id"], cli.rec()["next_token_id"]) == (cid, tid + 1)
    # A meter of protocol revision 3 or older numbers tokens with commands.
    headend.Registry(cli.home).update(METER, lambda r: r.__setitem__("rev", 3))
    try:
        assert cli("token", METER, "1")[0] == 0
        assert calls[-1][2] == cid and (cli.rec()["next_cmd_id"], cli.rec()["next_token_id"]) == (cid + 1, tid + 1)
    finally:
        headend.Registry(cli.home).update(METER, lambda r: r.__setitem__("rev", 4))

    def refuse(*a):
        raise ValueError("amount not representable")

    for fake, msg in ((lambda *a: "123", "not 20 digits"), (refuse, "amount not representable")):
        monkeypatch.setattr(headend, "load_issuer", lambda f=fake: types.SimpleNamespace(issue=f))
        rc, out, err = cli("token", METER, "1")
        assert rc == 2 and msg in err


def test_a_paper_token_stays_good_after_commands_and_relays_once(cli):
    """Issue 20: a token issued as id 18, then `headend status` (command 19), then the token
    entered was refused stale_id: it shared the command counter. Relayed here (the headend's own
    `token --send` path, as if typed), after commands, and in any order."""
    if headend.load_issuer() is None:
        pytest.skip("no host token issuer in this build")
    import token_issue
    key = bytes.fromhex(cli.rec()["key"])
    paper = []
    for _ in range(2):
        rc, out, err = cli("token", METER, "0.10")
        assert rc == 0, err
        paper.append((int(re.search(r"id (\d+)", err).group(1)), out.strip().replace(" ", "")))
    for _ in range(3):
        assert cli("status", METER)[0] == 0  # commands after the tokens were issued
    (t1, d1), (t2, d2) = paper
    assert d2 == token_issue.issue(key, METER, t2, 10) and t2 == t1 + 1
    bal = None
    for tid, digits, want in ((t2, d2, "applied"), (t1, d1, "applied"), (t1, d1, "used")):
        reply = _relay(cli, digits)  # as if typed: the meter's token verifier and token ids
        assert reply["res"] == want, (tid, reply)
        if bal is not None and want == "applied":
            assert reply["b"] >= bal + 10 - 5, "credited"  # (minus what the load used meanwhile)
        bal = reply["b"]
    # `token --send` issues and relays in one step.
    rc, out, err = cli("token", METER, "0.20", "--send")
    assert rc == 0 and "relayed and applied" in out, (out, err)


def _relay(cli, digits):
    """Send {"op": "token"} through the headend's own command path; the meter's signed reply."""
    a = headend.parser().parse_args(["--home", str(cli.home), "--broker", cli.broker, "--timeout", "10",
                                     "--ttl", str(cli.ttl), "list"])
    headend.credentials(a)
    h = headend.Headend(a)
    try:
        try:
            return h.send(METER, "token", tok=digits)
        except headend.Refused as e:
            return e.answer
    finally:
        h.close()


def test_tariff_is_validated_before_sending(cli, tmp_path):
    nid = cli.rec()["next_cmd_id"]
    bad = tmp_path / "bad.json"
    for text, msg in (('{"v": 1, "kind": "flat", "price_per_kwh": -5, "scale": 1000, "activate_at": 1}',
                       "price_per_kwh must be"),
                      ('{"v": 1, "kind": "flat", "price_per_kwh": 30000, "scale": 1000}', "needs activate_at"),
                      ('{"v": 2}', "unsupported tariff version"), ("{nope", "not valid JSON")):
        bad.write_text(text)
        rc, out, err = cli("tariff", METER, str(bad))
        assert rc == 2 and msg in err, text
    rc, out, err = cli("tariff", METER, str(tmp_path / "missing.json"))
    assert rc == 2 and "no such tariff file" in err
    assert cli.rec()["next_cmd_id"] == nid  # nothing was sent


def test_tariff_push_reaches_the_meter(cli, tmp_path):
    good = tmp_path / "t.json"
    good.write_text('{"v": 1, "kind": "flat", "price_per_kwh": 30000, "scale": 1000, "activate_at": 1767225600}')
    rc, out, err = cli("tariff", METER, str(good))
    assert rc == 0 and "%s: tariff applied" % METER in out, err
    # Valid on its own, but the meter keeps its remainder in the active scale's units: it refuses.
    other = tmp_path / "t100.json"
    other.write_text('{"v": 1, "kind": "flat", "price_per_kwh": 3000, "scale": 100, "activate_at": 1767225600}')
    rc, out, err = cli("tariff", METER, str(other))
    assert rc == 1 and "refused tariff: bad_args" in err and "active scale" in err, err


def test_backfill_asks_for_the_first_gap_in_what_was_recorded(cli):
    # A refusal of a non-authentic command is answered unnumbered, outside the outbox, so the
    # backfill below cannot re-send it and be taken for the backfill's own answer. Make one anyway.
    rec = cli.rec()
    good = rec["key"]
    rec["key"] = "00" * 32
    (cli.home / "meters" / (METER + ".json")).write_text(json.dumps(rec))
    try:
        assert "bad_mac" in cli("disconnect", METER)[2]
    finally:
        rec = cli.rec()
        rec["key"] = good
        (cli.home / "meters" / (METER + ".json")).write_text(json.dumps(rec))
    assert cli("retry", METER, "--drop")[0] == 0
    data = cli.home / "data" / (METER + ".jsonl")
    saved = data.read_text()
    try:
        # Messages 1-3 and 6 arrived; 4 and 5 were lost.
        data.write_text("".join(json.dumps({"k": "tele", "rx": 0, "d": {"seq": q, "t": q}}) + "\n" for q in (1, 2, 3, 6)))
        rc, out, err = cli("backfill", METER)
        resent = {d["seq"]: d for d in headend.Registry(cli.home).recorded(METER)}
    finally:
        data.write_text(saved)
    assert "2 uplink message(s) missing, first seq 4" in out
    assert rc == 0, err
    sent = re.search(r"resend from seq 4 requested; the meter sent 4\.\.(\d+), recorded", out)
    assert sent and int(sent.group(1)) > 6, out
    # The messages re-sent while the headend waited for the reply are recorded: the holes are filled
    # with the meter's real messages (their times are the meter's, not the stand-ins').
    assert resent[4]["t"] >= 1767225600 and resent[5]["t"] >= 1767225600
    assert max(resent) >= int(sent.group(1)) - 1


def test_backfill_without_gaps_or_data(cli, tmp_path, capsys):
    c = Cli(tmp_path, "127.0.0.1:1", capsys)  # no broker needed: nothing is sent
    assert c("provision", "B1", "--board", "esp32-atm90e26")[0] == 0
    rc, out, err = c("backfill", "B1")
    assert rc == 2 and "give --from-seq" in err
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "B1.jsonl").write_text("".join(
        json.dumps({"k": "tele", "rx": 0, "d": {"seq": q, "t": q}}) + "\n" for q in (4, 5, 6)))
    rc, out, err = c("backfill", "B1")
    assert rc == 0 and "no gaps in the recorded uplink (seq 4..6)" in out
    rc, out, err = c("backfill", "B1", "--from-seq", "0")
    assert rc == 2 and "--from-seq: must be 1 or more" in err


def test_export_csv_load_profile_and_billing(cli, tmp_path):
    assert cli("watch", METER, "--count", "12")[0] == 0
    reg = headend.Registry(cli.home)
    # Revision 5: the reports that close each 15-minute interval carry "lp" and the closing registers.
    ends = [d for d in reg.recorded(METER, "tele") if d.get("lp")]
    assert not reg.recorded(METER, "lp") and all(d["lp"] == 900 and d["t"] % 900 == 0 for d in ends)
    load = tmp_path / "load.csv"
    rc, out, err = cli("export-csv", METER, "--kind", "load", "--out", str(load))
    assert rc == 0, err
    rows = list(csv.DictReader(load.open()))
    # One row per pair of consecutive interval ends: the interval's energy is the register step.
    want = [(b["t"], b["e"] - a["e"], b["e"], b["b"]) for a, b in zip(ends, ends[1:]) if b["t"] - a["t"] == 900]
    assert len(rows) == len(want) >= 4
    for r, (t, wh, e, bal) in zip(rows, want):
        assert r["interval_end_utc"] == headend.utc(t) and int(r["interval_s"]) == 900
        assert int(r["import_wh"]) == wh and int(r["import_total_wh"]) == e and wh >= 0
        assert int(r["mean_w"]) == wh * 3600 // 900 and r["balance"] == headend.fmt_money(bal)
    bill = tmp_path / "bill.csv"
    rc, out, err = cli("export-csv", METER, "--kind", "billing", "--out", str(bill))
    assert rc == 0, err
    rows = list(csv.DictReader(bill.open()))
    snaps = reg.recorded(METER, "snap")
    if snaps:  # the simulated meter passed a local midnight: its own snapshots
        last = snaps[-1]
        assert rows[-1]["date"] == last["date"] and rows[-1]["import_total_wh"] == str(sum(last["e"]))
        assert rows[-1]["balance"] == headend.fmt_money(last["b"])
    else:  # else the last telemetry report of the day
        tele = reg.recorded(METER, "tele")
        assert rows and rows[-1]["import_total_wh"] == str(tele[-1]["e"]) and rows[-1]["period"] == "day"
        assert rows[-1]["balance"] == headend.fmt_money(tele[-1]["b"]) and rows[-1]["relay"]


def test_plot_writes_a_png(cli, tmp_path):
    png = tmp_path / "p.png"
    rc, out, err = cli("plot", METER, "--out", str(png), "--width", "640", "--height", "400")
    assert rc == 0, err
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    assert struct.unpack(">II", data[16:24]) == (640, 400)
    n = int(re.search(r"(\d+) intervals plotted", err).group(1))
    assert n == len(headend.load_profile(headend.Registry(cli.home), METER)[1]) > 0


def test_unknown_meter_and_no_data(cli, tmp_path):
    for args in (("status", "ghost"), ("topup", "ghost", "1"), ("watch", "ghost", "--count", "1"),
                 ("export-csv", "ghost"), ("plot", "ghost", "--out", str(tmp_path / "x.png"))):
        rc, out, err = cli(*args)
        assert rc == 2 and "unknown meter 'ghost'" in err, args


def _snapshot(home):
    return {p: p.read_bytes() for p in Path(home).rglob("*") if p.is_file() and p.suffix != ".lock"}


def test_bad_inputs_give_one_line_a_nonzero_status_and_change_nothing(tmp_path, capsys, broker):
    """Issue 20, the headend's table: each gave a traceback, wrote something, or passed silently."""
    home = tmp_path / "home"
    live = "%s:%d" % (broker.host, broker.port)
    broker = "127.0.0.1:%d" % mpbroker.free_port()  # nothing listens: no case may get that far
    c = Cli(home, broker, capsys)
    assert c("provision", "M1", "--board", "esp32-atm90e26")[0] == 0
    (tmp_path / "f").write_text("x")
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00garbage")
    cases = [
        (("tariff", "M1", str(tmp_path)), "cannot read tariff file"),
        (("tariff", "M1", str(tmp_path / "bin.json")), "not valid JSON"),
        (("export-csv", "M1", "--out", str(tmp_path / "nodir" / "x.csv")), "does not exist"),
        (("export-csv", "M1", "--out", str(tmp_path)), "is a directory"),
        (("plot", "M1", "--out", str(tmp_path / "nodir" / "x.png")), "does not exist"),
        (("plot", "M1", "--out", str(tmp_path / "x.png"), "--width", "-5"), "must be 320 to 4000 pixels"),
        (("plot", "M1", "--out", str(tmp_path / "x.png"), "--width", "0"), "must be 320 to 4000 pixels"),
        (("plot", "M1", "--out", str(tmp_path / "x.png"), "--height", "x"), "not a whole number"),
        (("list", "--wait", "-1"), "must be 0 to 60"),
        (("list", "--wait", "nan"), "must be 0 to 60"),
        (("watch", "--count", "0"), "must be 1 or more"),
        (("backfill", "M1", "--from-seq", "0"), "must be 1 or more"),
        (("provision", "M2", "--board", "esp32-atm90e26", "--meter-broker", "nonsense"), "HOST:PORT"),
        (("provision", "M2", "--board", "esp32-atm90e26", "--meter-broker", "h:99999"), "port 1..65535"),
        (("--timeout", "-1", "status", "M1"), "must be 0 to 3600"),
        (("--ttl", "10", "status", "M1"), "60 to"),
    ]
    before = _snapshot(home)
    for args, msg in cases:
        capsys.readouterr()
        try:
            rc = headend.main(["--home", str(home), "--broker", broker] + list(args))
        except SystemExit as e:  # argparse: usage line and one error line, status 2
            rc = e.code
        out, err = capsys.readouterr()
        lines = [ln for ln in err.splitlines() if not ln.startswith("usage:") and not ln.startswith("  ")]
        assert rc == 2 and msg in err and len(lines) == 1 and "Traceback" not in err, (args, rc, err)
        assert _snapshot(home) == before, ("changed something", args)
    # --home on a file.
    rc = headend.main(["--home", str(tmp_path / "f"), "--broker", broker, "list"])
    assert rc == 2 and "is a file" in capsys.readouterr().err
    # A damaged meter record is named, and does not hide the others from `list`.
    assert c("provision", "M3", "--board", "esp32-atm90e26")[0] == 0
    (home / "meters" / "M2.json").write_text("garbage")
    capsys.readouterr()
    rc = headend.main(["--home", str(home), "--broker", live, "--timeout", "5", "list", "--wait", "0.2"])
    out, err = capsys.readouterr()
    rows = {ln.split()[0]: ln for ln in out.splitlines()[1:]}
    assert rc == 2 and sorted(rows) == ["M1", "M2", "M3"] and "DAMAGED" in rows["M2"], out
    assert "record of M2" in err and "is damaged" in err and "Traceback" not in err, err
    rc, out, err = c("status", "M2")
    assert rc == 2 and "is damaged" in err


def test_unreachable_broker_is_a_clear_error(tmp_path, capsys):
    c = Cli(tmp_path, "127.0.0.1:%d" % mpbroker.free_port(), capsys)
    assert c("provision", "M1", "--board", "esp32-atm90e26")[0] == 0  # offline work needs no broker
    for args in (("list",), ("status", "M1"), ("topup", "M1", "1")):
        rc, out, err = c(*args)
        assert rc == 2 and "cannot reach broker" in err, args
    # Issue 20: nothing was sent, so nothing is pending and no id was spent: the cashier's
    # "cannot reach broker" means the top-up did not happen, and a later retry sends nothing.
    assert "pending" not in c.rec("M1") and c.rec("M1")["next_cmd_id"] == 1
    rc, out, err = c("retry", "M1")
    assert rc == 0 and "no unanswered command" in out
    rc = headend.main(["--home", str(tmp_path), "--broker", "nope", "list"])
    assert rc == 2 and "broker must be HOST:PORT" in capsys.readouterr().err


def test_offline_meter_gives_no_reply_error_and_holds_the_command(tmp_path, capsys, broker):
    c = Cli(tmp_path, "%s:%d" % (broker.host, broker.port), capsys)
    assert c("provision", "M2", "--board", "esp32-atm90e26")[0] == 0
    rc, out, err = c("topup", "M2", "3", timeout=1)
    assert rc == 1 and "no reply from M2" in err and "headend retry M2" in err
    assert c.rec("M2")["pending"]["op"] == "topup"
    # No second money command while the first may or may not have been applied.
    rc, out, err = c("topup", "M2", "3", timeout=1)
    assert rc == 2 and "command 1 (topup) to M2 is still unanswered" in err
    assert c.rec("M2")["next_cmd_id"] == 2
    rc, out, err = c("retry", "M2", timeout=1)
    assert rc == 1 and "no reply from M2" in err
    rc, out, err = c("retry", "M2", "--drop")
    assert rc == 0 and "forgot command 1 (topup)" in out and "pending" not in c.rec("M2")
    rc, out, err = c("retry", "M2")
    assert rc == 0 and "no unanswered command" in out


class Replies:
    """The meter's numbered replies as they reach the broker (a subscriber of our own)."""

    def __init__(self, live):
        import threading

        import paho.mqtt.client as mqtt

        self.ids = set()
        self._cv = threading.Condition()
        self._c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self._c.on_message = self._on
        subscribed = threading.Event()
        self._c.on_subscribe = lambda *args: subscribed.set()
        self._c.connect(live.broker.host, live.broker.port)
        self._c.subscribe("pm/v1/%s/reply" % METER, qos=1)
        self._c.loop_start()
        assert subscribed.wait(300), "no SUBACK"  # listening before the command goes out

    def _on(self, client, userdata, msg):
        with self._cv:
            self.ids.add(json.loads(msg.payload).get("id"))
            self._cv.notify_all()

    def wait(self, cid, cap=300):
        """True once the meter has answered command `cid` (the cap only bounds a broken run)."""
        with self._cv:
            self._cv.wait_for(lambda: cid in self.ids, cap)
            return cid in self.ids

    def close(self):
        self._c.loop_stop()
        self._c.disconnect()


def test_retry_of_an_applied_command_is_not_applied_again(cli, live, monkeypatch):
    # The reply is missed (the headend stops listening at once; even a timeout of 0 can catch a
    # fast reply), but the meter applied the top-up: wait until it has answered, however busy the
    # machine (a retry before that would be the first delivery, applied).
    replies = Replies(live)
    try:
        with monkeypatch.context() as mp:
            mp.setattr(headend.Bus, "wait_for", lambda self, pred, timeout, start=0, idle=False: None)
            rc, out, err = cli("topup", METER, "1.00", timeout=0)
        assert rc == 1 and "no reply" in err
        cid = cli.rec()["pending"]["id"]
        assert replies.wait(cid), "the meter never answered command %d" % cid
    finally:
        replies.close()
    rc, out, err = cli("retry", METER)
    assert rc == 0, err
    assert out.startswith("%s: command %d (topup) had already been applied; balance " % (METER, cid))
    assert "pending" not in cli.rec()


def test_cli_entry_point_runs_as_a_program(tmp_path):
    p = subprocess.run([sys.executable, str(REPO / "tools" / "headend.py"), "--home", str(tmp_path), "list"],
                       capture_output=True, text=True, env={"PM_BROKER": "127.0.0.1:%d" % mpbroker.free_port(),
                                                            "PATH": "/usr/bin:/bin"})
    assert p.returncode == 2 and "cannot reach broker" in p.stderr and "Traceback" not in p.stderr
    p = subprocess.run([sys.executable, str(REPO / "tools" / "headend.py"), "--help"], capture_output=True, text=True)
    assert p.returncode == 0 and "provision" in p.stdout and "export-csv" in p.stdout


def test_command_ids_are_unique_across_concurrent_headends(tmp_path, capsys):
    import threading
    c = Cli(tmp_path, "127.0.0.1:1", capsys)
    assert c("provision", "C1", "--board", "esp32-atm90e26")[0] == 0
    reg = headend.Registry(tmp_path)
    got = []

    def grab():
        for _ in range(50):
            got.append(reg.next_id("C1")[0])

    ts = [threading.Thread(target=grab) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert sorted(got) == list(range(1, 201))
    assert c.rec("C1")["next_cmd_id"] == 201


def test_export_prefers_the_meters_own_load_profile_and_snapshots(tmp_path, capsys):
    # Firmware that sends `lp` and `snap` (docs/protocol.md): those records win over telemetry.
    c = Cli(tmp_path, "127.0.0.1:1", capsys)
    assert c("provision", "L1", "--board", "esp32-atm90e26")[0] == 0
    t = 1767225600
    msgs = [("status", {"online": 1, "v": 1, "boot": t, "last": 0, "kid": 0}),
            ("lp", {"seq": 1, "t": t + 900, "e": 100, "x": 0, "de": 100, "dx": 0}),
            ("lp", {"seq": 2, "t": t + 1800, "e": 160, "x": 0, "de": 60, "dx": 0}),
            ("lp", {"seq": 2, "t": t + 1800, "e": 160, "x": 0, "de": 60, "dx": 0}),  # a QoS1 duplicate
            ("tele", {"seq": 3, "t": t + 2000, "e": 170, "x": 0, "b": 950, "c": 50, "v": 23000, "i": 0, "p": 0,
                      "r": 0, "rs": 0}),
            # A reboot at t+2000: the numbering goes on, and the next record counts from the boot.
            ("status", {"online": 1, "v": 1, "boot": t + 2000, "last": 3, "kid": 0}),
            ("lp", {"seq": 4, "t": t + 2700, "e": 175, "x": 0, "de": 5, "dx": 0}),
            ("snap", {"seq": 5, "t": t + 86400, "snap": "d", "date": "2026-01-01", "e": [1500, 900],
                      "blk": [2400], "tm": 400, "ss": 86400, "c": 411, "b": 389, "debt": 20, "tu": 800}),
            ("snap", {"seq": 6, "t": t + 31 * 86400, "snap": "m", "date": "2026-01", "e": [9000, 5000, 0, 0, 0, 0, 0, 0],
                      "blk": [14000, 0, 0, 0, 0, 0, 0], "tm": 3000, "ss": 31 * 86400, "c": 3100, "b": 0,
                      "debt": 0, "tu": 3100})]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "L1.jsonl").write_text("".join(json.dumps({"k": k, "rx": 0, "d": d}) + "\n" for k, d in msgs))
    rc, out, err = c("export-csv", "L1", "--kind", "load")
    assert rc == 0, err
    rows = list(csv.reader(out.splitlines()))
    assert rows[1:] == [["2026-01-01 00:15:00", "900", "100", "400", "100", ""],
                        ["2026-01-01 00:30:00", "900", "60", "240", "160", ""],
                        ["2026-01-01 00:45:00", "700", "5", "25", "175", ""]]
    rc, out, err = c("export-csv", "L1", "--kind", "billing")
    assert rc == 0, err
    rows = list(csv.reader(out.splitlines()))
    assert rows[0] == ["date", "period", "snapshot_utc", "import_total_wh", "import_by_rate_wh", "charged_total",
                       "balance", "debt", "topped_up_total", "relay"]
    assert rows[1:] == [["2026-01-01", "day", "2026-01-02 00:00:00", "2400", "1500 900", "4.11", "3.89", "0.20",
                         "8.00", ""],
                        ["2026-01", "month", "2026-02-01 00:00:00", "14000", "9000 5000 0 0 0 0 0 0", "31.00", "0.00",
                         "0.00", "31.00", ""]]
    rc, out, err = c("plot", "L1", "--out", str(tmp_path / "l1.png"))
    assert rc == 0 and (tmp_path / "l1.png").read_bytes()[:4] == b"\x89PNG"


def test_backfill_looks_for_gaps_only_since_the_meter_restarted_its_numbering(tmp_path, capsys):
    c = Cli(tmp_path, "127.0.0.1:1", capsys)
    assert c("provision", "R1", "--board", "esp32-atm90e26")[0] == 0
    t = 1767225600
    lines = [("status", {"online": 1, "boot": t, "last": 0})] + [("tele", {"seq": q, "t": t + q}) for q in (1, 2, 3, 4, 5)]
    # A reboot that keeps the numbering (last 5), then one with blank flash (boot new, last below 5).
    lines += [("status", {"online": 1, "boot": t + 100, "last": 5}), ("tele", {"seq": 6, "t": t + 106}),
              ("status", {"online": 1, "boot": t + 200, "last": 0})]
    lines += [("tele", {"seq": q, "t": t + 200 + q}) for q in (1, 2, 4)]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "R1.jsonl").write_text("".join(json.dumps({"k": k, "rx": 0, "d": d}) + "\n" for k, d in lines))
    reg = headend.Registry(tmp_path)
    assert [d["seq"] for d in reg.recorded("R1")] == [1, 2, 3, 4, 5, 6, 1, 2, 4]  # both numberings kept
    assert [d["seq"] for d in reg.recorded("R1", current=True)] == [1, 2, 4]
    rc, out, err = c("backfill", "R1")  # the broker is unreachable: the request itself fails
    assert "1 uplink message(s) missing, first seq 3" in out and rc == 2 and "cannot reach broker" in err
    # The headend's watermark follows the births the same way (id-0 replies are told apart by it).
    reg.record("R1", "status", {"online": 1, "boot": t + 300, "last": 9})
    assert reg.seq_high("R1") == 9
    reg.record("R1", "tele", {"seq": 10, "t": t + 310})
    reg.record("R1", "status", {"online": 1, "boot": t + 400, "last": 2})
    assert reg.seq_high("R1") == 2


def test_refusal_hints_say_what_to_do():
    assert "limits relay commands" in headend.hint("rate_limited", "disconnect") and "later" in headend.hint("rate_limited", "reconnect")
    assert "scale" in headend.hint("bad_args", "tariff")
    assert headend.hint("bad_args", "topup") == ""


def test_relay_reasons_are_named_by_the_firmwares_bits():
    src = (REPO / "firmware" / "relay.py").read_text()
    names = re.search(r"^REASON_NAMES = \((.*)\)$", src, re.M).group(1)
    assert headend.REASONS == tuple(n.strip().strip('"') for n in names.split(","))
    assert headend.reasons_text(16) == "remote" and headend.reasons_text(32 | 16) == "remote,credit"
    assert headend.reasons_text(0) == "none"


def test_resync_brings_back_a_meter_that_lost_its_record(tmp_path, capsys, broker):
    # A meter whose record slots were both lost refuses every command (replay_lost) until the
    # headend answers the nonce of its event with a signed resync (docs/protocol.md 6.4).
    import mprun
    meter = "hx-0009"
    addr = "%s:%d" % (broker.host, broker.port)
    home = tmp_path / "home"
    cli = Cli(home, addr, capsys)
    assert headend.main(["--home", str(home), "--broker", addr, "provision", meter, "--board", "esp32-atm90e26"]) == 0
    key = cli.rec(meter)["key"]
    flash = tmp_path / "f.img"
    proc = start_meter(meter, key, addr, flash)
    try:
        assert wait_online(broker.host, broker.port, meter), "simulated meter never reported"
        rc, out, err = cli("topup", meter, "5.00", timeout=20)
        assert rc == 0, err
    finally:
        proc.terminate()
        proc.wait(5)
    res = mprun.run_mpy("""
import sys, simkit
b = simkit.board(sys.argv[1], meter_id="%s")
import os
for p in ("/flash/state.a", "/flash/state.b"):
    with open(p, "wb") as f:
        f.write(b"\\xff" * 64)
os.umount("/flash")
print('{"ok": true}')
""" % meter, args=(str(flash),), heap=mprun.APP_HEAP)
    assert res.returncode == 0, res.describe()
    rc, out, err = cli("resync", meter)
    assert rc == 2 and "does not say it lost its replay protection" in err, err
    proc = start_meter(meter, key, addr, flash)
    try:
        assert wait_online(broker.host, broker.port, meter, timeout=30), "no telemetry after the reboot"
        seen = ""
        for _ in range(10):  # each watch gets the retained birth on subscribing; a busy machine may be slow
            rc, out, err = cli("watch", meter, "--seconds", "1")
            seen += out
            if "replay protection lost" in seen:
                break
        assert "replay protection lost" in seen and "headend resync %s" % meter in seen, seen
        rc, out, err = cli("topup", meter, "1.00", timeout=20)
        assert rc == 1 and "replay_lost" in err and "headend resync" in err, err
        last = cli.rec(meter)["next_cmd_id"] - 1
        rc, out, err = cli("resync", meter, timeout=20)
        tlast = cli.rec(meter)["next_token_id"] - 1
        assert rc == 0 and "command ids up to %d and token ids up to %d are stale" % (last, tlast) in out, err
        rc, out, err = cli("topup", meter, "1.00", timeout=20)
        assert rc == 0 and "top-up 1.00 applied" in out, err
    finally:
        proc.terminate()
        proc.wait(5)


def test_time_sets_the_meters_clock(cli):
    import time as _time
    before = int(_time.time())
    rc, out, err = cli("time", METER, timeout=20)
    assert rc == 0 and "clock set to" in out, err
    t = out.split("clock set to ")[1].split(" UTC")[0]
    import calendar
    set_to = calendar.timegm(_time.strptime(t, "%Y-%m-%d %H:%M:%S"))
    assert before <= set_to <= int(_time.time()) + 1, (t, before)


def test_broker_dying_during_a_command_gives_one_line_and_keeps_it_pending(tmp_path, capsys, monkeypatch):
    b = mpbroker.Broker()
    try:
        c = Cli(tmp_path, "%s:%d" % (b.host, b.port), capsys)
        assert c("provision", "hx-dies", "--board", "esp32-atm90e26")[0] == 0
        subscribe = headend.Bus.subscribe

        def then_die(self, *topics):
            subscribe(self, *topics)
            b.stop()  # the broker goes away between the subscription and the command

        monkeypatch.setattr(headend.Bus, "subscribe", then_die)
        rc, out, err = c("topup", "hx-dies", "1.00", timeout=2)
        assert rc in (1, 2) and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert "broker" in err or "no reply" in err, err
        assert c.rec("hx-dies")["pending"]["op"] == "topup", "the command's fate is unknown: pending"
    finally:
        b.close()


def test_the_tariff_error_quoted_in_the_docs_is_the_one_printed(tmp_path, capsys):
    # Issue 20: headend.md quoted a range the validator no longer has.
    doc = (REPO / "docs" / "headend.md").read_text()
    quoted = re.search(r"headend: error: tariff bad\.json rejected before sending: (.*)", doc).group(1)
    c = Cli(tmp_path, "127.0.0.1:1", capsys)
    assert c("provision", "T1", "--board", "esp32-atm90e26")[0] == 0
    bad = tmp_path / "bad.json"
    bad.write_text('{"v": 1, "kind": "flat", "price_per_kwh": 5, "scale": 0, "activate_at": 1775044800}')
    rc, out, err = c("tariff", "T1", str(bad))
    assert rc == 2 and err.strip().endswith(quoted), (err, quoted)


def test_headend_issues_openpaygo_tokens_the_reference_library_decodes(tmp_path, capsys):
    import openpaygo
    import token_issue
    from openpaygo.token_shared import OpenPAYGOTokenShared
    c = Cli(tmp_path, "127.0.0.1:1", capsys)
    assert c("provision", "P1", "--board", "esp32-atm90e26", "--openpaygo-unit", "50")[0] == 0
    rc, out, err = c("token", "P1", "0.75", "--openpaygo")
    assert rc == 2 and "whole units of 0.50" in err
    meter_key = bytes.fromhex(c.rec("P1")["key"])
    key = token_issue.openpaygo_key(meter_key)
    start = OpenPAYGOTokenShared.generate_starting_code(key)
    count, used = 0, [0]
    for amount, units in (("2.00", 4), ("0.50", 1)):
        rc, out, err = c("token", "P1", amount, "--openpaygo")
        assert rc == 0 and len(out.strip()) == 9, (out, err)
        v, typ, n, upd = openpaygo.decode_token(token=out.strip(), secret_key=key.hex(), count=count,
                                                used_counts=used, starting_code=start)
        assert (v, typ) == (units, openpaygo.TokenType.ADD_TIME) and n == c.rec("P1")["openpaygo_count"]
        count, used = n, upd or used
