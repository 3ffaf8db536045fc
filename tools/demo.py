#!/usr/bin/env python3
"""`make demo`: the utility's side end to end. A simulated meter (MicroPython unix port) runs a
month against a local Mosquitto; the headend service stores what it sends in its database; the
meter's low-credit event reaches the customer as an e-mail (a real local SMTP server) and a text
message (the SMS gateway's webhook, a local HTTP receiver); the customer tops up on the web page
(through the stand-in payment step) and sees the new balance there; the month's bill is made from
the meter's snapshots and checked against tools/billreplay.py and the meter's own charge.

Prints progress, then one JSON line: emails, webhooks, bills, bill_matches_meter, web_balance_ok
(and the figures behind them). Exit status 0 when every check holds, 1 otherwise, 2 on bad input.
"""
import argparse
import http.cookiejar
import http.server
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import billreplay  # noqa: E402
import ebill  # noqa: E402
import fleet  # noqa: E402
import headend  # noqa: E402  (fmt_money: exact money from minor units)
import mpbroker  # noqa: E402
import reminders  # noqa: E402
import service  # noqa: E402
import service_db  # noqa: E402
import webapp  # noqa: E402

METER = "MTR-DEMO"
UTC_START = 1767225600  # 2026-01-01 00:00 UTC: the demo bills January
MONTH = "2026-01"
OPENING = 6000
TOPUP = 12000  # what the customer pays on the web page when the low-credit text arrives
# Time of use with a standing charge, in East Africa Time: what the meter charges and the bill replays.
TARIFF = {"v": 1, "kind": "tou", "scale": 1000, "rates": [30000, 18000],
          "tz": {"offset_min": 180, "dst": None},
          "days": [[[360, 0], [1320, 1]]], "weeks": [[0, 0, 0, 0, 0, 0, 0]], "standing_per_day": 20000}
TICK_S = 300  # five-minute meter steps: TOU switch points, midnights and intervals fall on them
CREDIT = {"low1": 4000, "low2": 200}  # about eleven days between the two warnings


class DemoError(Exception):
    pass


# -- the customer's inboxes ------------------------------------------------------------------------
class SmtpInbox:
    """A real SMTP server on a free loopback port (aiosmtpd); keeps every message it accepts."""

    def __init__(self):
        from aiosmtpd.controller import Controller

        self.messages = []
        self.arrived = threading.Event()
        inbox = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                inbox.messages.append({"to": list(envelope.rcpt_tos), "data": envelope.content.decode("utf-8",
                                                                                                      "replace")})
                inbox.arrived.set()
                return "250 OK"

        self.ctl = Controller(Handler(), hostname="127.0.0.1", port=mpbroker.free_port())
        self.ctl.start()
        self.host, self.port = "127.0.0.1", self.ctl.port

    def close(self):
        self.ctl.stop()


class WebhookInbox:
    """The SMS gateway stand-in: an HTTP server that keeps every POST."""

    def __init__(self):
        self.calls = []
        self.arrived = threading.Event()
        inbox = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", 0))
                inbox.calls.append({"body": json.loads(self.rfile.read(n) or b"{}"),
                                    "key": self.headers.get("Idempotency-Key")})
                inbox.arrived.set()
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b'{"ok":true}')

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        self.url = "http://127.0.0.1:%d/sms" % self.srv.server_address[1]

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


# -- the customer on the web page -------------------------------------------------------------------
class Browser:
    """A cookie-keeping HTTP client: the customer's visits to the web page."""

    def __init__(self, base):
        self.base = base
        self.op = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def get(self, path):
        with self.op.open(self.base + path, timeout=30) as r:
            return r.geturl(), r.read().decode()

    def post(self, path, fields):
        data = urllib.parse.urlencode(fields).encode()
        with self.op.open(urllib.request.Request(self.base + path, data=data), timeout=30) as r:
            return r.geturl(), r.read().decode()


def form(page, action_part):
    """(action, fields) of the first form on `page` whose action contains action_part."""
    for m in re.finditer(r"<form[^>]*action=\"([^\"]*)\"[^>]*>(.*?)</form>", page, re.S):
        if action_part in m.group(1):
            fields = dict(re.findall(r"<input[^>]*name=\"([^\"]+)\"[^>]*value=\"([^\"]*)\"", m.group(2)))
            return m.group(1).replace("&amp;", "&"), fields
    raise DemoError("the page has no form for %r" % action_part)


def balance_shown(page):
    m = re.search(r'id="balance"[^>]*>([^<]*)<', page)
    if not m:
        raise DemoError("the customer page shows no balance")
    return m.group(1).strip()


# -- the run ----------------------------------------------------------------------------------------
def run(a):
    t0 = time.monotonic()
    work = Path(a.work or tempfile.mkdtemp(prefix="pm-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    broker = mpbroker.Broker()
    smtp, hook = SmtpInbox(), WebhookInbox()
    db = service_db.Db(str(work / "headend.db"))
    key = os.urandom(32)  # provisioned per run: there is no default key
    token = "demo-" + os.urandom(9).hex()
    db.put_meter({"meter_id": METER, "key": key.hex(), "decimals": 2, "currency": "KES", "tariff": TARIFF,
                  "opening_balance": OPENING},
                 name="Amina Njoroge", email="amina@example.net", phone="+254700000001",
                 address="Plot 12, Kisumu", web_token=token)
    stop = threading.Event()
    svc = service.Service(db, broker.host, broker.port, client_id="pm-headend-demo",
                          bills=lambda meter_id, month: service.make_bill(db, meter_id, month, work)).start()
    disp = reminders.Dispatcher(db, {"email": reminders.SmtpChannel(smtp.host, smtp.port, "billing@utility.example"),
                                     "sms": reminders.WebhookChannel(hook.url)},
                                {"tz": "Africa/Nairobi", "quiet": None})
    threading.Thread(target=disp.run, args=(stop, 0.2), daemon=True).start()
    web = webapp.make_server(db, svc, ("127.0.0.1", 0), operator_password=os.urandom(8).hex())
    threading.Thread(target=web.serve_forever, daemon=True).start()
    base = "http://127.0.0.1:%d" % web.server_address[1]
    if not svc.subscribed.wait(30):
        raise DemoError("the service could not subscribe at the broker")
    stop_file = work / "stop"
    log = open(work / "meter.log", "w")  # a file, not a pipe: nobody reads a pipe while the month runs
    cfg = {"opening_balance": OPENING, "tariff": TARIFF, "credit": CREDIT}
    hours = 24 * 32 + 2  # January and the first hours of February: the monthly snapshot closes January
    meter = fleet.start_meter(METER, key.hex(), "%s:%d" % (broker.host, broker.port), work / "flash.img",
                              config=cfg, pace_ms=a.pace_ms, hours=hours, tick_s=TICK_S, stop_file=stop_file,
                              stdout=log, utc_start=UTC_START)
    out = {}
    try:
        print("meter %s running %d simulated hours; service, SMTP %s:%d, SMS webhook %s, web %s" % (
            METER, hours, smtp.host, smtp.port, hook.url, base), flush=True)
        if not hook.arrived.wait(a.timeout):
            raise DemoError("no low-credit text message within %ds" % a.timeout)
        print("text message to %s: %s" % (hook.calls[0]["body"].get("to"), hook.calls[0]["body"].get("text")),
              flush=True)
        out["web_balance_ok"], out["web"] = customer_tops_up(db, svc, base, token, a.timeout)
        print("customer page after the top-up: %s" % out["web"], flush=True)
        done = work / ("stop.done." + METER)
        wait(lambda: done.exists(), a.timeout * 4, "the meter to finish its month")
        wait(lambda: not svc.missing(METER) and db.bill(METER, MONTH) is not None, a.timeout,
             "every message and January's bill")
        stop_file.write_text("")
        meter.wait(120)
        log.flush()
        text = (work / "meter.log").read_text()
        summary = json.loads([ln for ln in text.splitlines() if ln.startswith("{")][-1])
        last = summary["uplink_seq"] - summary["outbox_left"]
        wait(lambda: set(range(1, last + 1)) <= db.seen_seqs(METER, 0)[0], a.timeout, "the meter's last messages")
        wait(lambda: disp_idle(db), a.timeout, "the reminders to go out")
        out.update(check_bill(db, work))
        low = [n for n in db.deliveries(METER) if n["kind"] == "low_credit"]
        out.update({
            "emails": len(smtp.messages), "webhooks": len(hook.calls), "bills": len(db.bills(METER)),
            "notices": len({(n["kind"], n["t"]) for n in db.deliveries(METER)}),
            "low_credit_notices": len({n["t"] for n in low}),
            "uplinks_stored": len(db.seen_seqs(METER, 0)[0]), "meter_last_seq": last,
            "duplicates_dropped": svc.stats["duplicates"], "forged": svc.stats["forged"],
            "real_s": round(time.monotonic() - t0, 1)})
    finally:
        if meter.poll() is None:
            stop_file.write_text("")
            try:
                meter.wait(60)
            except subprocess.TimeoutExpired:
                meter.kill()
        log.close()
        stop.set()
        disp.wake()
        svc.stop()
        web.shutdown()
        smtp.close()
        hook.close()
        broker.close()
    bad = []
    if out["low_credit_notices"] != 1:
        bad.append("%d low-credit notices, expected 1" % out["low_credit_notices"])
    if not out["emails"] == out["webhooks"] == out["notices"]:
        bad.append("%d e-mails and %d text messages for %d notices" % (out["emails"], out["webhooks"], out["notices"]))
    if out["uplinks_stored"] != out["meter_last_seq"]:
        bad.append("stored %d of the meter's %d messages" % (out["uplinks_stored"], out["meter_last_seq"]))
    if not out["bill_matches_meter"]:
        bad.append("the bill does not match: %s" % out["bill_check"])
    if not out["web_balance_ok"]:
        bad.append("the web page did not show the topped-up balance: %s" % out["web"])
    out["ok"] = not bad
    for b in bad:
        print("CHECK FAILED: " + b)
    print(json.dumps(out, sort_keys=True))
    return 0 if not bad else 1


def disp_idle(db):
    return all(d["state"] != "pending" for d in db.deliveries(METER))


def wait(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise DemoError("timed out after %ds waiting for %s" % (timeout, what))


def customer_tops_up(db, svc, base, token, timeout):
    """The customer opens the page from the text message, pays TOPUP and looks again."""
    b = Browser(base)
    _, page = b.get("/c/%s?t=%s" % (METER, token))
    before = balance_shown(page)
    action, fields = form(page, "topup")
    fields["amount"] = headend.fmt_money(TOPUP)
    _, pay = b.post(action, fields)
    action, fields = form(pay, "/pay/")
    fields["action"] = "confirm"  # the customer presses Pay
    _, page = b.post(action, fields)
    cmds = [c for c in db.commands(METER) if c["op"] == "topup"]
    if not cmds:
        return False, "no top-up command was sent"
    cid = cmds[0]["cmd_id"]
    ans = svc.wait_answer(METER, cid, timeout)
    if not ans or ans["res"] != "applied":
        return False, "the top-up was not applied: %s" % (ans and ans["res"])
    reply_seq = ans["answer"]["seq"]
    # The page shows the meter's newest telemetry: wait for one sent after the top-up.
    wait(lambda: any(d["seq"] > reply_seq for d in db.uplinks(METER, kind="tele")[-3:]), timeout,
         "telemetry after the top-up")
    _, page = b.get("/c/%s" % METER)
    shown = balance_shown(page)
    tele = db.state(METER)["tele"]
    expect = headend.fmt_money(tele["b"])
    ok = expect in shown and tele["b"] > CREDIT["low1"] and ans["answer"]["b"] >= TOPUP
    return ok, "before %s, paid %s, meter answered balance %s, page shows %s (newest telemetry %s)" % (
        before, headend.fmt_money(TOPUP), headend.fmt_money(ans["answer"]["b"]), shown, expect)


# -- the bill ---------------------------------------------------------------------------------------
def check_bill(db, work):
    """The bill, the firmware's tariff engine over the month's load profile, and the meter's own
    monthly snapshots must agree."""
    got = db.bill(METER, MONTH)
    if got is None:
        return {"bill_matches_meter": False, "bill_check": "no bill for %s" % MONTH}
    bill = got["totals"]
    snaps = {(s["snap"], s["date"]): s for s in db.snapshots(METER)}
    closing = snaps.get(("m", MONTH))
    tele = db.uplinks(METER, kind="tele")
    csv = work / "profile.csv"
    # A new meter: its registers were zero when it was first powered, at the start of the demo
    # (the first interval report has no report before it to take a difference from).
    start = UTC_START
    tele = [{"t": start, "e": 0, "lp": 900}] + tele
    csv.write_text(ebill.interval_csv(tele, start, closing["t"]))
    tariff = work / "tariff.json"
    tariff.write_text(json.dumps(TARIFF))
    rep = billreplay.replay(tariff, csv)
    meter_charge = closing["tm"]  # a new meter: January's opening registers are zero
    figures = {"bill": bill["tariff_charge"], "billreplay": rep["charged_minor"], "meter": meter_charge,
               "bill_wh": bill["energy_wh"], "replay_wh": rep["energy_wh"], "meter_wh": sum(closing["e"]),
               "pdf": got["pdf"] is not None and got["pdf"][:4] == b"%PDF"}
    ok = (figures["bill"] == figures["billreplay"] == figures["meter"]
          and figures["bill_wh"] == figures["replay_wh"] == figures["meter_wh"] and figures["pdf"])
    return {"bill_matches_meter": ok, "bill_check": figures}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pace-ms", type=int, default=5, help="real ms per five simulated minutes")
    p.add_argument("--timeout", type=int, default=300, help="seconds to wait for each step")
    p.add_argument("--work", default="", help="directory for the database, bills and the meter's flash")
    a = p.parse_args(argv)
    if a.pace_ms < 0 or a.timeout <= 0:
        print("demo: error: --pace-ms must be >= 0 and --timeout > 0", file=sys.stderr)
        return 2
    try:
        return run(a)
    except (DemoError, service.ServiceError, service_db.DbError, mpbroker.MosquittoNotFound) as e:
        print("demo: error: %s" % e, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
