"""tools/ebill.py: the customer's monthly bill from the meter's uplinks. The key test bills a month
of a simulated meter (MicroPython, a real Mosquitto) and checks the bill against the firmware's
tariff engine replayed over the load profile (tools/billreplay.py) and the meter's own registers."""
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

import billreplay
import ebill
import meterproto
import mprun
import token_issue

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "tools" / "ebill.py"
CHROMIUM = Path("/usr/bin/chromium")

METER = {"meter_id": "pm-00000042", "name": "Achieng Otieno", "address": "Plot 7, Kisumu", "currency": "KES",
         "decimals": 2}
FEB1 = 1769893200  # 2026-02-01 00:00 in Nairobi (UTC+3): the freeze that closes January
MAR1 = 1772312400  # 2026-03-01 00:00 in Nairobi


def snap(kind, date, t, e, blk=None, tm=0, ss=0, c=None, b=0, debt=0, tu=0, seq=1):
    return {"seq": seq, "t": t, "snap": kind, "date": date, "e": e, "blk": blk or [sum(e)], "tm": tm, "ss": ss,
            "c": tm if c is None else c, "b": b, "debt": debt, "tu": tu, "mac": "%016x" % seq}


def feb_snaps():
    """January closed at FEB1 and February at MAR1, with a daily snapshot for every February day."""
    out = [snap("m", "2026-01", FEB1, [1000, 500], tm=2000, ss=86400 * 3, b=8000, debt=300, tu=10000)]
    for day in range(1, 29):
        out.append(snap("d", "2026-02-%02d" % day, FEB1 + 86400 * day, [1000 + 10 * day, 500 + 5 * day],
                        tm=2000 + 30 * day, ss=86400 * (3 + day), b=8000 - 30 * day, debt=300, tu=10000))
    out.append(snap("m", "2026-02", MAR1, [1280, 640], tm=2840, ss=86400 * 31, b=8160 - 200 - 40, debt=260,
                    tu=11000))
    return out


# -- compute ---------------------------------------------------------------------------------
def _walk(v):
    if isinstance(v, dict):
        for x in v.values():
            yield from _walk(x)
    elif isinstance(v, (list, tuple)):
        for x in v:
            yield from _walk(x)
    else:
        yield v


def test_a_month_with_a_top_up_and_debt_recovery():
    snaps = feb_snaps()
    readings = [{"t": FEB1, "e": 1500, "lp": 900, "u": {"water": 120}},
                {"t": FEB1 + 900, "e": 1501, "lp": 900, "u": {"water": 130}},
                {"t": MAR1, "e": 1920, "lp": 900, "u": {"water": 990}},
                {"t": MAR1 + 900, "e": 1921, "lp": 900, "u": {"water": 1000}}]  # next month's
    bill = ebill.compute(METER, "2026-02", snaps, readings)
    assert not bill["new_meter"] and (bill["period_start"], bill["period_end"]) == (FEB1, MAR1)
    assert bill["rate_wh"] == [280, 140] and bill["block_wh"] == [420] and bill["energy_wh"] == 420
    assert bill["tariff_charge"] == bill["debited"] == 840 and bill["standing_s"] == 28 * 86400
    assert bill["topups"] == 1000 and bill["opening_balance"] == 8000 and bill["closing_balance"] == 7920
    # 8000 + 1000 - 840 - recovered = 7920; the debt went from 300 to 260: 240 recovered, 200 added.
    assert bill["debt_recovered"] == 240 and bill["debt_added"] == 200 and bill["closing_debt"] == 260
    assert bill["pulses"] == {"water": {"first": 120, "last": 990, "used": 870}}
    assert bill["daily"][0] == ("2026-02-01", 15) and len(bill["daily"]) == 28
    assert bill["daily"][-1] == ("2026-02-28", 15)  # its daily snapshot is the monthly one's freeze
    # Integers only: no float anywhere in the accounts.
    assert not [v for v in _walk(bill) if isinstance(v, float)]


def test_first_month_of_a_new_meter():
    # Installed on 2026-02-10 with 5000 provisioned: the meter credited that as its first top-up
    # (firmware/app.py), so tu holds it; the bill shows it as the opening balance instead.
    snaps = [snap("d", "2026-02-%02d" % d, FEB1 + 86400 * d, [100 * (d - 9)], tm=40 * (d - 9),
                  b=5000 - 40 * (d - 9), tu=5000) for d in range(10, 29)]
    snaps.append(snap("m", "2026-02", MAR1, [1900], tm=760, b=5000 + 2000 - 760, tu=7000))
    meter = dict(METER, opening_balance=5000)
    bill = ebill.compute(meter, "2026-02", snaps, [])
    assert bill["new_meter"] and bill["period_start"] is None
    assert bill["opening"]["e"] == [0] and bill["opening"]["tm"] == 0
    assert bill["opening_balance"] == 5000 and bill["topups"] == 2000 and bill["debt_recovered"] == 0
    assert bill["energy_wh"] == 1900 and bill["tariff_charge"] == 760 and bill["closing_balance"] == 6240
    daily = dict(bill["daily"])
    assert daily["2026-02-09"] is None and daily["2026-02-10"] == 100 and daily["2026-02-28"] == 100
    # Without opening_balance in the meter file the provisioned credit stays among the top-ups.
    plain = ebill.compute(METER, "2026-02", snaps, [])
    assert (plain["opening_balance"], plain["topups"], plain["debt_recovered"]) == (0, 7000, 0)


def test_duplicate_snapshots_are_one_freeze():
    snaps = feb_snaps()
    again = [dict(s, seq=s["seq"] + 1000, mac="0" * 16) for s in snaps[-3:]]  # re-sent after a power cut
    assert ebill.compute(METER, "2026-02", snaps + again, []) == ebill.compute(METER, "2026-02", snaps, [])
    bad = dict(snaps[-1], seq=77, tm=snaps[-1]["tm"] + 1)
    with pytest.raises(ebill.BillError, match="snapshot m 2026-02 arrived twice with different figures"):
        ebill.compute(METER, "2026-02", snaps + [bad], [])


def test_missing_snapshots():
    snaps = feb_snaps()
    with pytest.raises(ebill.BillError, match="no monthly snapshot for 2026-02"):
        ebill.compute(METER, "2026-02", snaps[:-1], [])
    # The monthly one that closed January is lost; the daily of 2026-01-31 is the same freeze.
    jan31 = dict(snaps[0], snap="d", date="2026-01-31", seq=5)
    assert ebill.compute(METER, "2026-02", [jan31] + snaps[1:], [])["energy_wh"] == 420
    # Neither arrived, but older ones did: this is no new meter.
    dec = snap("m", "2025-12", FEB1 - 31 * 86400, [10, 5])
    with pytest.raises(ebill.BillError, match="snapshot that closed 2026-01 is missing"):
        ebill.compute(METER, "2026-02", [dec] + snaps[1:], [])
    # A lost daily snapshot leaves its day and the next unknown, not the month.
    bill = ebill.compute(METER, "2026-02", [s for s in snaps if s["date"] != "2026-02-05"], [])
    daily = dict(bill["daily"])
    assert daily["2026-02-05"] is None and daily["2026-02-06"] is None and daily["2026-02-07"] == 15
    assert bill["energy_wh"] == 420


def test_register_rollover():
    open_ = snap("m", "2026-01", FEB1, [999_999_400, 7], blk=[999_999_407], tm=10, b=100)
    close = snap("m", "2026-02", MAR1, [600, 9], blk=[609], tm=30, b=80)
    roll = {"seq": 9, "t": FEB1 + 5 * 86400, "ev": "register_rollover", "a": 2}
    bill = ebill.compute(METER, "2026-02", [open_, close], [roll])
    assert bill["rate_wh"] == [1200, 2] and bill["block_wh"] == [1202] and bill["energy_wh"] == 1202
    with pytest.raises(ebill.BillError, match="rate 1 register went backwards .* no register_rollover"):
        ebill.compute(METER, "2026-02", [open_, close], [])
    late = dict(roll, t=MAR1 + 1)  # after the closing freeze: not this month's
    with pytest.raises(ebill.BillError, match="went backwards"):
        ebill.compute(METER, "2026-02", [open_, close], [late])
    with pytest.raises(ebill.BillError, match="e must be a list of 1..8 registers"):
        ebill.compute(METER, "2026-02", [open_, dict(close, e=[10 ** 9])], [])


@pytest.mark.parametrize("change,why", [
    ({"b": 99999}, "balance rose by"),
    ({"tm": 1}, "tariff charge went backwards"),
    ({"ss": 0}, "standing-charge seconds went backwards"),
    ({"debt": 10 ** 6}, None),  # a debt token: added, not an error
    ({"blk": [1919]}, "energy per block"),
    ({"t": FEB1}, "is not after"),
])
def test_inconsistent_data_is_refused(change, why):
    snaps = feb_snaps()
    snaps[-1] = dict(snaps[-1], **change)
    if why is None:
        assert ebill.compute(METER, "2026-02", snaps, [])["debt_added"] == 10 ** 6 - 300 + 240
        return
    with pytest.raises(ebill.BillError, match=why):
        ebill.compute(METER, "2026-02", snaps, [])


@pytest.mark.parametrize("meter,month,why", [
    (dict(METER, decimals=2.0), "2026-02", "decimals must be an integer"),
    (dict(METER, meter_id="../x"), "2026-02", "meter_id must be"),
    (METER, "2026-13", "month must be YYYY-MM"),
    (METER, "2026-2", "month must be YYYY-MM"),
])
def test_bad_meter_or_month(meter, month, why):
    with pytest.raises(ebill.BillError, match=why):
        ebill.compute(meter, month, feb_snaps(), [])


# -- load profile ----------------------------------------------------------------------------
def test_interval_csv_takes_consecutive_interval_reports_only():
    reps = [{"seq": i, "t": FEB1 + 900 * i, "e": 1000 + 10 * i * i, "lp": 900} for i in range(8)]
    del reps[5]  # lost: the intervals it opens and closes are not known on their own
    readings = reps + [{"t": FEB1 + 450, "e": 1004, "p": 3000},  # an early report: no "lp"
                       {"t": FEB1 + 900, "e": 1010, "lp": 900},  # a duplicate
                       {"t": FEB1 + 900 * 3, "ev": "relay_open", "a": 32}]
    csv = ebill.interval_csv(readings, FEB1, FEB1 + 900 * 7)
    rows = [r for r in csv.splitlines() if r[:1].isdigit()]
    assert csv.startswith("timestamp,wh\n") and "# 2 interval(s) left out" in csv
    assert rows == ["%d,%d" % (FEB1 + 900 * i, 10 * (2 * i + 1)) for i in (0, 1, 2, 3, 6)]
    with pytest.raises(ebill.BillError, match="two interval reports"):
        ebill.interval_csv(readings + [{"t": FEB1, "e": 1, "lp": 900}], FEB1, FEB1 + 3600)


def test_interval_csv_bounds_are_the_freezes():
    # The freeze comes on the first meter step after midnight (here 40 s late); the interval report
    # for midnight goes out on that step, so the bounds are taken down to the 900 s grid.
    reps = [{"t": FEB1 + 900 * i, "e": 50 * (i + 2), "lp": 900} for i in range(-2, 6)]
    csv = ebill.interval_csv(reps, FEB1 + 40, FEB1 + 3600 + 40)
    assert csv.splitlines()[1:] == ["%d,50" % (FEB1 + 900 * i) for i in range(4)]
    # lp topic records (revision 4, or "lp_topic": true) carry no length: it is their step.
    old = [{"t": FEB1 + 900 * i, "e": 50 * i, "x": 0, "de": 50, "dx": 0} for i in range(5)]
    assert ebill.interval_csv(old, FEB1, FEB1 + 3600) == csv
    # A rollover of the import register between two reports, said by the meter.
    roll = [{"t": FEB1, "e": 999_999_990, "lp": 900}, {"t": FEB1 + 900, "e": 15, "lp": 900}]
    with pytest.raises(ebill.BillError, match="import register went backwards"):
        ebill.interval_csv(roll, FEB1, FEB1 + 900)
    ev = {"t": FEB1 + 905, "ev": "register_rollover", "a": 1}
    assert ebill.interval_csv(roll + [ev], FEB1, FEB1 + 900).splitlines()[1] == "%d,25" % FEB1


# -- presentation ----------------------------------------------------------------------------
@pytest.mark.parametrize("minor,dec,text", [(1250, 2, "12.50"), (5, 2, "0.05"), (-5, 2, "-0.05"), (0, 2, "0.00"),
                                            (7, 0, "7"), (123456789, 3, "123456.789"), (-100, 2, "-1.00"),
                                            (10 ** 20 + 1, 2, "1000000000000000000.01")])
def test_money_is_formatted_exactly_from_minor_units(minor, dec, text):
    assert ebill.format_money(minor, dec) == text


def test_money_refuses_floats():
    with pytest.raises(ebill.BillError):
        ebill.format_money(12.5, 2)


def test_html_bill_escapes_every_text_and_loads_nothing():
    meter = dict(METER, name="<script>alert('x')</script>", address='"Plot" & <b>7</b>', currency="<KES>",
                 units={"<gas>": "<m3>"}, opening_balance=0)
    readings = [{"t": FEB1, "e": 0, "lp": 900, "u": {"<gas>": 1}}, {"t": MAR1, "e": 9, "lp": 900, "u": {"<gas>": 4}}]
    bill = ebill.compute(meter, "2026-02", feb_snaps(), readings,
                         {"v": 1, "kind": "flat", "scale": 1000, "price_per_kwh": 25340, "standing_per_day": 3000})
    page = ebill.render_html(bill, meter)
    assert "<script" not in page and "alert(&#x27;x&#x27;)" in page
    assert "&quot;Plot&quot; &amp; &lt;b&gt;7&lt;/b&gt;" in page and "&lt;gas&gt;" in page and "3 &lt;m3&gt;" in page
    assert "<b>" not in page and "<KES>" not in page and "&lt;KES&gt; 79.20" in page
    for external in ("src=", "href=", "<link", "url(", "@import", "javascript:"):
        assert external not in page, external
    # Money and prices exactly: 2840 - 2000 = 840 minor units; 25340 at scale 1000 is 0.25340 a kWh.
    assert "&lt;KES&gt; 8.40" in page and "0.25340" in page
    # The standing charge: 28 days at 3000 / scale 1000 = 3 minor units a day.
    assert bill["tariff"]["standing_charge"] == 84 and bill["tariff"]["energy_charge"] == 840 - 84
    assert "<svg" in page and page.count("<rect") == 28


def test_html_groups_thousands_and_keeps_negative_balances():
    snaps = feb_snaps()
    snaps[-1] = dict(snaps[-1], b=-1234567)
    bill = ebill.compute(METER, "2026-02", snaps, [])
    page = ebill.render_html(bill, METER)
    assert "KES -12,345.67" in page


# -- PDF -------------------------------------------------------------------------------------
def test_render_pdf(tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium (the Debian package chromium; .ci/run installs it)")
    page = ebill.render_html(ebill.compute(METER, "2026-02", feb_snaps(), []), METER)
    out = ebill.render_pdf(page, tmp_path / "bill.pdf")
    assert out.read_bytes()[:5] == b"%PDF-"


def test_render_pdf_reports_why_it_failed(tmp_path, monkeypatch):
    monkeypatch.setattr(ebill, "find_chromium", lambda: None)
    with pytest.raises(ebill.BillError, match="Chromium not found"):
        ebill.render_pdf("<p>x</p>", tmp_path / "a.pdf")
    monkeypatch.undo()
    fake = tmp_path / "fake-chromium"
    fake.write_text("#!/bin/sh\necho 'cannot open display' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CHROMIUM", str(fake))
    with pytest.raises(ebill.BillError, match=r"made no PDF \(exit 3\): cannot open display"):
        ebill.render_pdf("<p>x</p>", tmp_path / "a.pdf")
    fake.write_text("#!/bin/sh\nexec sleep 60\n")  # hangs: the wait is bounded
    t0 = time.monotonic()
    with pytest.raises(ebill.BillError, match="did not finish the PDF within 1 s"):
        ebill.render_pdf("<p>x</p>", tmp_path / "a.pdf", timeout=1)
    assert time.monotonic() - t0 < 30


# -- command line ----------------------------------------------------------------------------
def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, str(TOOL)] + list(args), capture_output=True, text=True, cwd=cwd,
                          timeout=120)


def test_cli(tmp_path):
    up = tmp_path / "uplinks.jsonl"
    lines = [{"k": "status", "d": {"online": 1}}] + [{"k": "snap", "d": s} for s in feb_snaps()] + [
        {"k": "tele", "d": {"seq": 99, "t": FEB1, "e": 3, "lp": 900, "u": {"water": 5}}}]
    up.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    (tmp_path / "meter.json").write_text(json.dumps(METER))
    args = ["--month", "2026-02", "--uplinks", str(up), "--meter", str(tmp_path / "meter.json"),
            "--out", str(tmp_path / "out")]
    r = _cli(*args + (["--pdf"] if CHROMIUM.exists() else []))
    assert r.returncode == 0, r.stderr
    totals = json.loads(r.stdout)
    assert r.stdout.count("\n") == 1
    assert totals["energy_wh"] == 420 and totals["tariff_charge"] == 840 and totals["closing_balance"] == 7920
    html_path = tmp_path / "out" / "bill-pm-00000042-2026-02.html"
    assert totals["html"] == str(html_path) and "Achieng Otieno" in html_path.read_text()
    if CHROMIUM.exists():
        assert Path(totals["pdf"]).read_bytes()[:5] == b"%PDF-"


def test_cli_bad_input_is_one_line(tmp_path):
    (tmp_path / "meter.json").write_text(json.dumps(METER))
    up = tmp_path / "u.jsonl"
    up.write_text(json.dumps({"k": "snap", "d": feb_snaps()[0]}) + "\nnot json\n")
    base = ["--uplinks", str(up), "--meter", str(tmp_path / "meter.json"), "--out", str(tmp_path / "out")]
    for args, msg in ((["--month", "2026-02"] + base, "uplinks line 2: not JSON"),
                      (["--month", "02-2026"] + base, "month must be YYYY-MM"),
                      (["--month", "2026-02", "--uplinks", str(tmp_path / "none.jsonl")] + base[2:], "No such file"),
                      (["--month", "2026-02", "--meter", str(up)] + base[:2] + base[4:], "meter")):
        r = _cli(*args)
        assert r.returncode == 2 and msg in r.stderr and r.stderr.count("\n") == 1, (args, r.stderr)
        assert "Traceback" not in r.stderr
    up.write_text(json.dumps({"k": "snap", "d": feb_snaps()[0]}) + "\n")
    r = _cli("--month", "2026-02", *base)
    assert r.returncode == 2 and "no monthly snapshot for 2026-02" in r.stderr


# -- the key test: a simulated month, three ways -----------------------------------------------
LP = 300  # the meter steps every LP seconds and closes a load-profile interval at every step
RATES = [3000, 2000, 1000]  # peak, shoulder, night: whole minor units per Wh (30, 20, 10 KES/kWh)
STANDING = 5000  # 50 KES a day
# Nairobi time (UTC+3): shoulder 06:00-17:00, peak 17:00-23:00, night 23:00-06:00.
TARIFF = {"v": 1, "kind": "tou", "scale": 1, "rates": RATES, "tz": {"offset_min": 180},
          "days": [[[360, 1], [1020, 0], [1380, 2]]], "weeks": [[0] * 7], "standing_per_day": STANDING}
DEBT, DEBT_PER_DAY, CREDIT = 1000000, 2000, 500000
START = FEB1 - 3 * 86400  # installed on 2026-01-29 at local midnight
HOURS = (31 + 1) * 24 + 2  # January's last 3 days, February, 1 March and 2 hours of 2 March


def rate_at(t):
    minute = (t + 180 * 60) % 86400 // 60
    return 1 if 360 <= minute < 1020 else 0 if 1020 <= minute < 1380 else 2


class Collector:
    """The backend's side: every uplink of one meter (QoS 1), subscribed before the meter starts,
    each message believed only with the meter's mac."""

    def __init__(self, broker, meter_id, key):
        import paho.mqtt.client as mqtt

        self.key = key
        self.cond = threading.Condition()
        self.by_seq = {}
        self._low = 1  # every number below it has arrived
        self.forged = []
        self.subscribed = threading.Event()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="ebill-test-" + meter_id,
                             clean_session=False)
        self.c.on_message = self._on_message
        self.c.on_subscribe = lambda *a: self.subscribed.set()
        self.c.on_connect = lambda c, u, f, rc, p=None: c.subscribe(meterproto.topic(meter_id, "#"), qos=1)
        self.c.connect(broker.host, broker.port)
        self.c.loop_start()

    def _on_message(self, client, userdata, msg):
        kind = msg.topic.rsplit("/", 1)[-1]
        if kind in ("cmd", "status"):
            return
        doc = json.loads(msg.payload)
        with self.cond:
            if not meterproto.verify_uplink(self.key, msg.payload):
                self.forged.append(msg.payload)
            elif "seq" in doc:
                self.by_seq.setdefault(doc["seq"], (kind, doc))  # QoS 1 may deliver twice
            self.cond.notify_all()

    def wait_for(self, last_seq, timeout):
        """True once every number 1..last_seq has arrived (the meter's last messages may still be
        on their way when it exits)."""
        def done():
            while self._low in self.by_seq:
                self._low += 1
            return self._low > last_seq

        with self.cond:
            return self.cond.wait_for(done, timeout)

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


@pytest.fixture
def simulated_month(broker):
    key = os.urandom(32)
    meter_id = METER["meter_id"]
    cfg = json.dumps({"opening_balance": 3000000, "lp_s": LP, "credit": {"debt_per_day": DEBT_PER_DAY},
                      "tariff": TARIFF}, separators=(",", ":"))
    # The unix port aborts ("FATAL: uncaught NLR") on a command-line argument of 256 bytes or more.
    assert len(cfg) < 256
    col = Collector(broker, meter_id, key)
    # The meter writes its flash image at every step: on a disk shared with other test runs those
    # writes stall (4 simulated days took 12 s there and 0.8 s in memory).
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    try:
        assert col.subscribed.wait(30), "the collector never subscribed"
        with tempfile.TemporaryDirectory(prefix="ebill-sim-", dir=shm) as work:
            # The customer types a debt token and a credit token in the first hour (the simulated
            # customer reads them from this file, in simulated time).
            tokens = Path(work) / "tokens.txt"
            tokens.write_text(token_issue.issue(key, meter_id, 1, DEBT, "debt") + "\n"
                              + token_issue.issue(key, meter_id, 2, CREDIT) + "\n")
            cmd = [mprun.mpy_path(), "-X", "heapsize=" + mprun.APP_HEAP, str(REPO / "tools" / "sim_meter.py"),
                   "--meter-id", meter_id, "--key", key.hex(), "--broker", "%s:%d" % (broker.host, broker.port),
                   "--flash", str(Path(work) / "flash.img"), "--utc-start", str(START), "--hours", str(HOURS),
                   "--tick-s", str(LP), "--config", cfg, "--token-file", str(tokens)]
            t0 = time.monotonic()
            p = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600,
                               env=dict(os.environ, MICROPYPATH=mprun.micropypath()))
            sim_s = time.monotonic() - t0
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
        summary = mprun.parse_result(p.stdout)
        assert summary["outbox_dropped"] == 0 and summary["tokens_accepted"] == 2, summary
        last = summary["uplink_seq"] - summary["outbox_left"]
        assert col.wait_for(last, timeout=120), "uplinks never arrived: %s" % sorted(
            set(range(1, last + 1)) - set(col.by_seq))[:10]
        with col.cond:
            msgs = [col.by_seq[s] for s in sorted(col.by_seq)]
            forged = list(col.forged)
        print("simulated %d h in %.1f s (%d uplink messages)" % (HOURS, sim_s, len(msgs)))
        # Every message kept is the meter's word (status, where the clean disconnect goes unsigned,
        # is not read).
        assert not forged
        yield {"summary": summary, "msgs": msgs, "sim_s": sim_s}
    finally:
        col.close()


@pytest.mark.micropython
def test_a_simulated_month_billed_three_ways(simulated_month, tmp_path):
    msgs = simulated_month["msgs"]
    snaps = [d for k, d in msgs if k == "snap"]
    readings = [d for k, d in msgs if k in ("tele", "lp", "evt")]
    meter = dict(METER, opening_balance=3000000)
    jan = ebill.compute(meter, "2026-01", snaps, readings, TARIFF)
    feb = ebill.compute(meter, "2026-02", snaps, readings, TARIFF)
    assert (feb["period_start"], feb["period_end"]) == (FEB1, MAR1) and not feb["new_meter"]

    # 1. The meter's own figures: the monthly snapshots, and independently the telemetry that closed
    # the load-profile intervals at both freezes (sent on the same meter step as the freeze).
    ends = {d["t"]: d for d in readings if d.get("lp")}
    assert feb["tariff_charge"] == feb["debited"] == ends[MAR1]["c"] - ends[FEB1]["c"] > 0
    assert feb["energy_wh"] == ends[MAR1]["e"] - ends[FEB1]["e"] == sum(feb["rate_wh"])
    assert feb["standing_s"] == 28 * 86400
    assert feb["closing_balance"] == ends[MAR1]["b"] and feb["opening_balance"] == ends[FEB1]["b"]

    # 2. The firmware's engine replayed over the month's load profile as interval_csv gives it.
    csv = ebill.interval_csv(readings, feb["period_start"], feb["period_end"])
    rows = [tuple(int(x) for x in r.split(",")) for r in csv.splitlines()[1:]]
    assert len(rows) == 28 * 86400 // LP  # every interval, none left out
    (tmp_path / "tariff.json").write_text(json.dumps(TARIFF))
    (tmp_path / "feb.csv").write_text(csv)
    res = billreplay.replay(tmp_path / "tariff.json", tmp_path / "feb.csv")
    assert res["energy_wh"] == feb["energy_wh"] and res["standing_s"] == feb["standing_s"]
    # billreplay.charged_minor is energy at each row's rate plus the standing charge from the first
    # row to the end of the last: the same two parts as the meter's tariff charge (tm). The prices
    # are whole minor units per Wh and the meter started at a local midnight, so the remainder the
    # meter carries is zero at each freeze (otherwise its month could come out one minor unit
    # above a replay that starts from no remainder). The meter prices a step's energy at the rate
    # of the step's last second, a CSV row at the rate of its interval's start: the same rate
    # (firmware/app.py step; an interval ends on each switch point, so a mismatch shows here).
    switches = sum(rate_at(t) != rate_at(t + LP) for t, _ in rows)
    assert switches >= 28  # the month crosses switch points: the test can tell the two apart
    assert res["rate_wh"] == feb["rate_wh"]
    assert res["charged_minor"] == feb["tariff_charge"]

    # Debt: derived from b = opening + tu - c - recovered, it is what the meter's events say.
    recovered = {m: sum(d["a"] for d in readings if d.get("ev") == "debt_recovered" and lo < d["t"] <= hi)
                 for m, lo, hi in (("jan", 0, FEB1), ("feb", FEB1, MAR1))}
    assert feb["debt_recovered"] == recovered["feb"] == 28 * DEBT_PER_DAY and feb["debt_added"] == 0
    assert jan["debt_recovered"] == recovered["jan"] == 3 * DEBT_PER_DAY and jan["debt_added"] == DEBT
    # January is the new meter's first month: the provisioned balance opens it, the token is a top-up.
    assert jan["new_meter"] and jan["opening_balance"] == 3000000 and jan["topups"] == CREDIT
    assert jan["closing"] == feb["opening"] and jan["closing_balance"] == feb["opening_balance"]
    assert jan["energy_wh"] + feb["energy_wh"] == ends[MAR1]["e"]  # registers started at zero
    # Water: the readings at both freezes bound the month, so consecutive bills meet.
    w = feb["pulses"]["water"]
    assert w["first"] == ends[FEB1]["u"]["water"] == jan["pulses"]["water"]["last"]
    assert w["last"] == ends[MAR1]["u"]["water"] and w["used"] > 0
    # Each day from the daily snapshots; they add up to the month.
    assert len(feb["daily"]) == 28 and None not in dict(feb["daily"]).values()
    assert sum(wh for _, wh in feb["daily"]) == feb["energy_wh"]
    assert dict(feb["daily"])["2026-02-10"] == ends[FEB1 + 10 * 86400]["e"] - ends[FEB1 + 9 * 86400]["e"]
    page = ebill.render_html(feb, meter)
    assert "KES %s" % ebill._grouped(ebill.format_money(feb["tariff_charge"])) in page
    print("February: %d Wh %s, tariff charge %d (replay %d, %d switch points), standing %d s, "
          "debt recovered %d, water %d l" % (feb["energy_wh"], feb["rate_wh"], feb["tariff_charge"],
                                             res["charged_minor"], switches, feb["standing_s"],
                                             feb["debt_recovered"], w["used"]))
