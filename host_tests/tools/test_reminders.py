"""tools/reminders.py against real local servers: an SMTP server (aiosmtpd) and an SMS webhook
(http.server), on the headend service's database (SQLite; one run on PostgreSQL)."""
import email
import email.policy
import http.server
import json
import logging
import threading
from zoneinfo import ZoneInfo

import pytest
from aiosmtpd.controller import Controller

import mpbroker
import pgtemp
import reminders
import service_db
from reminders import ConfigError, Dispatcher, SmtpChannel, WebhookChannel

T0 = 1767226512          # 2026-01-01 00:15:12 UTC: 03:15 in Nairobi (UTC+3)
MIDNIGHT = 1767225600    # 2026-01-01 00:00 UTC
METER = "pm-00000001"
WAIT = 30                # bound on every wait for a server thread


class Mailbox:
    """aiosmtpd handler: keeps what it accepts; answers RCPT or DATA with an error when told."""

    def __init__(self):
        self.cond = threading.Condition()
        self.messages = []
        self.rcpt_answer = None
        self.data_answer = None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.rcpt_answer:
            return self.rcpt_answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.data_answer:
            return self.data_answer
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.cond:
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
            self.cond.notify_all()
        return "250 Message accepted"

    def wait(self, n):
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.messages) >= n, WAIT), self.messages
        return self.messages


class Smtp:
    def __init__(self):
        self.box = Mailbox()
        self.port = mpbroker.free_port()
        self.ctl = None

    def start(self):
        self.ctl = Controller(self.box, hostname="127.0.0.1", port=self.port, ready_timeout=60)
        self.ctl.start()

    def stop(self):
        if self.ctl:
            self.ctl.stop()
            self.ctl = None


class Gateway:
    """The SMS gateway's webhook: keeps every request and answers `status`."""

    def __init__(self):
        self.cond = threading.Condition()
        self.requests = []
        self.status = 200
        gw = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with gw.cond:
                    status = gw.status
                    gw.requests.append({"path": self.path, "headers": self.headers, "json": json.loads(body),
                                        "status": status})
                    gw.cond.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.srv.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        self.url = "http://127.0.0.1:%d/sms" % self.srv.server_address[1]

    def wait(self, n):
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.requests) >= n, WAIT), self.requests
        return self.requests

    def accepted(self):
        return [r for r in self.requests if r["status"] == 200]

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


@pytest.fixture
def smtp():
    s = Smtp()
    s.start()
    yield s
    s.stop()


@pytest.fixture
def gw():
    g = Gateway()
    yield g
    g.close()


def make_db(url):
    db = service_db.Db(url)
    db.put_meter({"meter_id": METER, "decimals": 2, "currency": "KES"}, name="Amina Wanjiru",
                 email="amina@example.org", phone="+254700000001", now=T0 - 1000)
    return db


def event(db, seq, ev="low_credit_1", a=198, t=T0, meter=METER):
    return db.store_uplink(meter, "evt", {"seq": seq, "t": t, "ev": ev, "a": a}, now=t + 2)


def dispatcher(db, smtp, gw, channels=("email", "sms"), **cfg):
    ch = {"email": SmtpChannel("127.0.0.1", smtp.port, "Example Power <meters@utility.example>", timeout=WAIT),
          "sms": WebhookChannel(gw.url, token="s3cret", timeout=WAIT)}
    return Dispatcher(db, {k: ch[k] for k in channels}, dict({"tz": "Africa/Nairobi", "utility": "Example Power"},
                                                             **cfg))


def states(db):
    return sorted((d["kind"], d["channel"], d["state"], d["attempts"]) for d in db.deliveries())


def zero(**k):
    return dict({"sent": 0, "retried": 0, "failed": 0, "postponed": 0}, **k)


def dedup(seq, channel, t=T0):
    return reminders.dedup_id({"ukey": "%s/0/%d" % (METER, seq), "t": t, "channel": channel})


# -- templates and formatting ----------------------------------------------------------------
def test_money_is_formatted_exactly_and_times_in_the_customers_zone():
    assert reminders.fmt_money(198, 2, "KES") == "KES 1.98"
    assert reminders.fmt_money(-5, 2) == "-0.05"
    assert reminders.fmt_money(1234567, 3) == "1234.567"
    assert reminders.fmt_money(42, 0, "UGX") == "UGX 42"
    assert reminders.fmt_money(10 ** 20 + 1, 2) == "1000000000000000000.01"  # beyond a float's precision
    assert reminders.fmt_money(None, 2) == "an unknown amount"
    assert reminders.fmt_time(T0, ZoneInfo("Africa/Nairobi")) == "2026-01-01 03:15 EAT"
    assert reminders.fmt_time(T0, ZoneInfo("UTC")) == "2026-01-01 00:15 UTC"
    d = {"kind": "disconnected", "channel": "sms", "meter_id": METER, "name": "A\r\nBcc: x", "t": T0,
         "data": {"ev": "relay_open", "a": 32}}
    ctx = reminders.context(d, {"decimals": 2, "currency": "KES"}, ZoneInfo("Africa/Nairobi"), "Example Power")
    assert ctx == {"name": "A  Bcc: x", "meter": METER, "time": "2026-01-01 03:15 EAT", "utility": "Example Power",
                   "reason": "credit used up"}


def test_a_configured_template_with_an_unknown_placeholder_is_refused_at_load():
    with pytest.raises(ConfigError, match=r"templates\.low_credit\.sms: unknown placeholder \{balanse\}.*\{balance\}"):
        reminders.Config({"templates": {"low_credit": {"sms": "Low: {balanse}"}}})
    for kind, part, tpl in (("reconnected", "text", "Balance {balance}"),     # another kind's field
                            ("low_credit", "subject", "{name.__class__}"),    # no attribute access
                            ("low_credit", "subject", "{name[0]}"),
                            ("low_credit", "text", "{}"),
                            ("low_credit", "text", "{balance:{name}}")):
        with pytest.raises(ConfigError, match=r"templates\.%s\.%s: unknown placeholder" % (kind, part)):
            reminders.Config({"templates": {kind: {part: tpl}}})
    for bad, msg in (({"templates": {"low_credit": {"text": "{balance"}}}, r"templates\.low_credit\.text"),
                     ({"templates": {"low_credit": {"text": "{balance:d}"}}}, r"templates\.low_credit\.text"),
                     ({"templates": {"low_credit": {"subject": "a\n{meter}"}}}, "one line"),
                     ({"templates": {"topup": {"text": "x"}}}, "unknown notice kind 'topup'"),
                     ({"templates": {"low_credit": {"body": "x"}}}, "unknown part 'body'"),
                     ({"quiet": [22, 24]}, "quiet"), ({"tz": "Mars/Olympus"}, "unknown time zone"),
                     ({"quiet_exempt": ["relay"]}, "quiet_exempt"), ({"attempts": 0}, "attempts"),
                     ({"retries": 3}, "unknown reminder setting.*retries")):
        with pytest.raises(ConfigError, match=msg):
            reminders.Config(bad)
    with pytest.raises(ConfigError, match="unknown placeholder"):
        Dispatcher(None, {}, {"templates": {"low_credit": {"sms": "{x}"}}})
    cfg = reminders.Config({"templates": {"low_credit": {"subject": "Balance {balance} on {meter}"}}})
    d = {"kind": "low_credit", "channel": "email", "meter_id": METER, "name": "", "t": T0, "data": {"a": 1}}
    subject, text = reminders.render(cfg.templates, d, reminders.context(d, {"decimals": 2}, cfg.tz, cfg.utility))
    assert subject == "Balance 0.01 on pm-00000001" and text.startswith("Dear customer,")


def test_sms_text_is_at_most_160_characters():
    cfg = reminders.Config({"tz": "Africa/Nairobi", "utility": "Kenya Power and Lighting Co."})
    for ev, kind in reminders.NOTICE_OF_EVENT.items():
        for a in (-999999999, 5, 32, 128, 3):
            d = {"kind": kind, "channel": "sms", "meter_id": "pm-" + "9" * 29, "name": "N" * 200, "t": T0,
                 "data": {"ev": ev, "a": a}}
            _, text = reminders.render(cfg.templates, d, reminders.context(d, {"decimals": 4, "currency": "KES"},
                                                                           cfg.tz, cfg.utility))
            assert 20 < len(text) <= reminders.SMS_MAX, text
    with pytest.raises(ConfigError, match=r"templates\.reconnected\.sms: 1\d\d characters"):
        reminders.Config({"templates": {"reconnected": {"sms": "Power is back at {meter}. " + "x" * 140}}})
    # a long name is shortened first, so what matters still fits
    cfg = reminders.Config({"templates": {"low_credit": {"sms": "{name}: balance {balance} on meter {meter}."}}})
    d = {"kind": "low_credit", "channel": "sms", "meter_id": METER, "name": "Wanjiru " * 30, "t": T0,
         "data": {"a": 198}}
    _, text = reminders.render(cfg.templates, d, reminders.context(d, {"currency": "KES"}, cfg.tz, cfg.utility))
    assert len(text) == reminders.SMS_MAX and text.startswith("Wanjiru Wanjiru")
    assert text.endswith(": balance KES 1.98 on meter pm-00000001.")


# -- end to end --------------------------------------------------------------------------------
def _end_to_end(db, smtp, gw):
    """One event delivered twice, a second one while the gateway answers 503, a third in quiet
    hours: each reaches the customer once by e-mail and once by SMS."""
    assert event(db, 19)[0] is True
    assert event(db, 19) == (False, 0, [])  # the broker delivered it again
    disp = dispatcher(db, smtp, gw, quiet=[22, 7])
    now = T0 + 10  # 03:15 local: quiet
    assert disp.run_once(now) == zero(postponed=2)
    assert states(db) == [("low_credit", "email", "pending", 0), ("low_credit", "sms", "pending", 0)]
    seven = MIDNIGHT + 4 * 3600  # 07:00 in Nairobi
    assert disp.cfg.quiet_until(now) == seven
    assert disp.run_once(seven - 1) == zero() and not smtp.box.messages and not gw.requests
    assert disp.run_once(seven) == zero(sent=2)
    assert disp.run_once(seven + 1) == zero()
    (mail_from, rcpt, msg), = smtp.box.messages
    assert mail_from == "meters@utility.example" and rcpt == ["amina@example.org"]
    assert msg["To"] == "Amina Wanjiru <amina@example.org>"
    assert msg["Subject"] == "Low credit on meter pm-00000001"
    assert msg["Message-ID"] == "<%s@utility.example>" % dedup(19, "email")
    body = msg.get_content()
    assert "Dear Amina Wanjiru," in body and "is low: KES 1.98 on 2026-01-01 03:15 EAT" in body
    (r,) = gw.requests
    assert r["path"] == "/sms" and r["headers"]["Authorization"] == "Bearer s3cret"
    assert r["headers"]["Idempotency-Key"] == dedup(19, "sms") != dedup(19, "email")
    assert r["json"] == {"to": "+254700000001", "id": dedup(19, "sms"), "meter": METER, "kind": "low_credit",
                         "text": "Example Power: low credit on meter pm-00000001: KES 1.98 on 2026-01-01 03:15 EAT. "
                                 "Please top up soon."}
    assert states(db) == [("low_credit", "email", "sent", 1), ("low_credit", "sms", "sent", 1)]

    t1 = seven + 600
    gw.status = 503
    event(db, 20, ev="relay_open", a=32, t=t1)
    assert disp.run_once(t1 + 10) == zero(sent=1, retried=1)
    assert disp.run_once(t1 + 39) == zero()      # backoff: 30 s
    assert disp.run_once(t1 + 40) == zero(retried=1)
    assert disp.run_once(t1 + 99) == zero()      # then 60 s
    gw.status = 200
    assert disp.run_once(t1 + 100) == zero(sent=1)
    assert [r["status"] for r in gw.requests[1:]] == [503, 503, 200]
    assert {r["headers"]["Idempotency-Key"] for r in gw.requests[1:]} == {dedup(20, "sms", t1)}
    assert gw.requests[-1]["json"]["text"] == ("Example Power: power at meter pm-00000001 was disconnected on "
                                               "2026-01-01 07:10 EAT (credit used up).")
    assert len(smtp.box.messages) == 2 and smtp.box.messages[1][2]["Subject"] == "Supply disconnected at meter " + METER
    assert sorted(d["state"] + str(d["attempts"]) for d in db.deliveries()) == ["sent1", "sent1", "sent1", "sent3"]
    assert disp.run_once(t1 + 3600) == zero()


def test_each_event_reaches_the_customer_once_per_channel(tmp_path, smtp, gw):
    _end_to_end(make_db(str(tmp_path / "h.db")), smtp, gw)


def test_the_same_on_postgresql(smtp, gw):
    if pgtemp.bindir() is None:
        pytest.skip("PostgreSQL is not installed")
    with pgtemp.PgTemp() as pg:
        db = make_db(pg.url)
        try:
            assert db.engine == "postgresql"
            _end_to_end(db, smtp, gw)
        finally:
            db.close()


def test_nothing_is_lost_while_the_mail_server_is_down(tmp_path, smtp, gw):
    db = make_db(str(tmp_path / "h.db"))
    event(db, 1)
    event(db, 2, a=40, ev="low_credit_2", t=T0 + 60)
    smtp.stop()
    disp = dispatcher(db, smtp, gw)
    now = T0 + 100
    # one connection attempt per run while it is down; the SMS go out meanwhile
    assert disp.run_once(now) == zero(sent=2, retried=1)
    assert len(gw.requests) == 2
    assert sorted((d["channel"], d["state"], d["attempts"]) for d in db.deliveries()) == [
        ("email", "pending", 0), ("email", "pending", 1), ("sms", "sent", 1), ("sms", "sent", 1)]
    assert "cannot reach the mail server" in [d for d in db.deliveries() if d["attempts"] == 1
                                              and d["channel"] == "email"][0]["last_error"]
    assert disp.run_once(now + 30) == zero(retried=1)
    smtp.start()
    assert disp.run_once(now + 3600) == zero(sent=2)
    assert disp.run_once(now + 7200) == zero()
    msgs = smtp.box.messages
    assert sorted(m["Message-ID"] for _, _, m in msgs) == sorted(
        "<%s@utility.example>" % dedup(s, "email", t) for s, t in ((1, T0), (2, T0 + 60)))
    assert sorted(m.get_content().split("is low: ")[1][:8] for _, _, m in msgs) == ["KES 0.40", "KES 1.98"]
    assert [d["state"] for d in db.deliveries()] == ["sent"] * 4 and len(gw.requests) == 2


def test_a_restarted_dispatcher_sends_what_was_pending(tmp_path, smtp, gw):
    path = str(tmp_path / "h.db")
    db = make_db(path)
    event(db, 7, ev="ec_invoked", a=5000)
    smtp.stop()
    gw.status = 503
    assert dispatcher(db, smtp, gw).run_once(T0 + 10) == zero(retried=2)
    db.close()
    smtp.start()
    gw.status = 200
    db2 = service_db.Db(path)
    assert dispatcher(db2, smtp, gw).run_once(T0 + 40) == zero(sent=2)
    (_, rcpt, msg), = smtp.box.messages
    assert rcpt == ["amina@example.org"] and msg["Subject"] == "Emergency credit in use on meter " + METER
    assert "Emergency credit of KES 50.00 was switched on" in msg.get_content()
    assert [r["status"] for r in gw.requests] == [503, 200] and "KES 50.00" in gw.requests[1]["json"]["text"]
    assert states(db2) == [("emergency_credit", "email", "sent", 2), ("emergency_credit", "sms", "sent", 2)]


def test_a_crash_between_send_and_commit_resends_with_the_same_dedup_id(tmp_path, smtp, gw, monkeypatch):
    db = make_db(str(tmp_path / "h.db"))
    event(db, 3)
    real = db.delivery_sent
    crash = {"email", "sms"}

    def sent_then_crash(notice_id, channel, now):
        if channel in crash:
            crash.discard(channel)
            raise service_db.DbError("power cut")
        real(notice_id, channel, now)

    monkeypatch.setattr(db, "delivery_sent", sent_then_crash)
    disp = dispatcher(db, smtp, gw)
    for _ in range(2):
        with pytest.raises(service_db.DbError):
            disp.run_once(T0 + 10)
    assert disp.run_once(T0 + 10) == zero(sent=1)
    assert [m["Message-ID"] for _, _, m in smtp.box.messages] == ["<%s@utility.example>" % dedup(3, "email")] * 2
    assert [(r["headers"]["Idempotency-Key"], r["json"]["id"]) for r in gw.requests] == [(dedup(3, "sms"),) * 2] * 2
    assert states(db) == [("low_credit", "email", "sent", 1), ("low_credit", "sms", "sent", 1)]


def test_permanent_errors_give_up_at_once_temporary_ones_retry(tmp_path, smtp, gw):
    db = make_db(str(tmp_path / "h.db"))
    disp = dispatcher(db, smtp, gw)
    event(db, 1)
    smtp.box.rcpt_answer = "550 5.1.1 No such mailbox"
    gw.status = 400
    assert disp.run_once(T0 + 10) == zero(failed=2)
    failed = {d["channel"]: d for d in db.deliveries()}
    assert failed["email"]["state"] == "failed" and "550 5.1.1 No such mailbox" in failed["email"]["last_error"]
    assert failed["sms"]["state"] == "failed" and "400" in failed["sms"]["last_error"]
    smtp.box.rcpt_answer = None
    smtp.box.data_answer = "451 4.3.0 Try again later"
    gw.status = 429
    event(db, 2, t=T0 + 20)
    assert disp.run_once(T0 + 30) == zero(retried=2)
    errors = {d["channel"]: (d["state"], d["last_error"]) for d in db.deliveries() if d["attempts"] == 1
              and d["state"] == "pending"}
    assert errors == {"email": ("pending", "mail server answered 451 4.3.0 Try again later"),
                      "sms": ("pending", "SMS gateway answered 429 {}")}
    smtp.box.data_answer = None
    gw.status = 408
    assert disp.run_once(T0 + 60) == zero(sent=1, retried=1)
    assert disp.run_once(T0 + 119) == zero()     # the second retry waits 60 s
    gw.status = 200
    assert disp.run_once(T0 + 120) == zero(sent=1)
    assert [r["status"] for r in gw.requests] == [400, 429, 408, 200]
    assert [m["To"] for _, _, m in smtp.box.messages] == ["Amina Wanjiru <amina@example.org>"]


def test_it_gives_up_after_the_configured_attempts(tmp_path, smtp, gw):
    db = make_db(str(tmp_path / "h.db"))
    disp = dispatcher(db, smtp, gw, attempts=3, retry_s=10, retry_max_s=15)
    event(db, 1)
    gw.status = 503
    assert disp.run_once(T0 + 10) == zero(sent=1, retried=1)
    assert disp.run_once(T0 + 20) == zero(retried=1)
    assert disp.run_once(T0 + 34) == zero()       # 2nd retry: 20 s capped at 15
    assert disp.run_once(T0 + 35) == zero(failed=1)
    sms = [d for d in db.deliveries() if d["channel"] == "sms"][0]
    assert (sms["state"], sms["attempts"]) == ("failed", 3) and "503" in sms["last_error"]
    assert len(gw.requests) == 3 and not gw.accepted()
    gw.status = 200
    assert disp.run_once(T0 + 10000) == zero() and len(gw.requests) == 3


def test_quiet_hours_postpone_without_counting_and_exempt_kinds_go_out(tmp_path, smtp, gw):
    db = make_db(str(tmp_path / "h.db"))
    disp = dispatcher(db, smtp, gw, quiet=[22, 7], quiet_exempt=["disconnected"])
    eleven_pm = MIDNIGHT + 20 * 3600            # 23:00 in Nairobi
    event(db, 1, t=eleven_pm - 60)
    event(db, 2, ev="relay_open", a=16, t=eleven_pm - 30)
    assert disp.run_once(eleven_pm) == zero(sent=2, postponed=2)
    assert [m["Subject"] for _, _, m in smtp.box.messages] == ["Supply disconnected at meter " + METER]
    assert [r["json"]["kind"] for r in gw.requests] == ["disconnected"]
    assert "disconnected by the utility" in gw.requests[0]["json"]["text"]
    pending = [d for d in db.deliveries() if d["kind"] == "low_credit"]
    assert [(d["state"], d["attempts"], d["last_error"]) for d in pending] == [
        ("pending", 0, "postponed: quiet hours")] * 2
    seven = MIDNIGHT + 28 * 3600                 # 07:00 the next morning
    assert disp.cfg.quiet_until(eleven_pm) == seven
    assert disp.run_once(seven - 1) == zero()
    assert disp.run_once(seven) == zero(sent=2)
    assert len(smtp.box.messages) == 2 and len(gw.requests) == 2
    assert "KES 1.98 on 2026-01-01 22:59 EAT" in smtp.box.messages[1][2].get_content()
    # nothing is quiet outside the hours, nor at all without them
    assert reminders.Config({"tz": "Africa/Nairobi", "quiet": [22, 7]}).quiet_until(seven + 3600) is None
    assert reminders.Config({"quiet": [1, 5]}).quiet_until(MIDNIGHT + 4 * 3600 + 59 * 60) == MIDNIGHT + 5 * 3600
    assert reminders.Config({}).quiet_until(eleven_pm) is None


def test_a_missing_channel_leaves_its_deliveries_pending_and_does_not_block_the_others(tmp_path, smtp, gw, caplog):
    db = make_db(str(tmp_path / "h.db"))
    db.put_meter({"meter_id": "pm-00000002"}, name="B", phone="+254700000002", now=T0 - 1000)
    for seq in (1, 2, 3):  # older SMS deliveries than the e-mail, more than a batch
        event(db, seq, t=T0 - 500 + seq, meter="pm-00000002")
    event(db, 9)
    caplog.set_level(logging.WARNING, logger="reminders")
    disp = dispatcher(db, smtp, gw, channels=("email",), batch=2)
    for k in range(3):
        assert disp.run_once(T0 + 10 + k) == (zero(sent=1) if k == 0 else zero())
    warned = [r.getMessage() for r in caplog.records if r.name == "reminders"]
    assert warned == ["no sms channel configured: sms reminders stay pending until one is"]
    assert len(smtp.box.messages) == 1 and not gw.requests
    assert sorted((d["channel"], d["state"], d["attempts"]) for d in db.deliveries()) == (
        [("email", "sent", 1)] + [("sms", "pending", 0)] * 4)
    assert dispatcher(db, smtp, gw, batch=2).run_once(T0 + 20) == zero(sent=4)
    assert sorted(r["json"]["to"] for r in gw.requests) == ["+254700000001"] + ["+254700000002"] * 3
    with pytest.raises(ConfigError, match="unknown channel"):
        Dispatcher(db, {"e-mail": None})


def test_run_sends_on_wake_and_stops(tmp_path, smtp, gw):
    db = make_db(str(tmp_path / "h.db"))
    disp = dispatcher(db, smtp, gw)
    runs, cond, run_once = [], threading.Condition(), disp.run_once

    def counted(now):
        out = run_once(now)
        with cond:
            runs.append(out)
            cond.notify_all()
        return out

    disp.run_once = counted
    stop = threading.Event()
    th = threading.Thread(target=disp.run, args=(stop, 3600), kwargs={"clock": lambda: T0 + 10}, daemon=True)
    th.start()
    with cond:  # the first run is over: only wake() can bring the next within the hour
        assert cond.wait_for(lambda: runs, WAIT) and runs == [zero()]
    event(db, 5, ev="relay_closed", a=128)
    disp.wake()
    (_, _, msg), = smtp.box.wait(1)
    assert msg["Subject"] == "Supply restored at meter " + METER
    assert gw.wait(1)[0]["json"]["text"] == "Example Power: power at meter pm-00000001 was reconnected on " \
                                           "2026-01-01 03:15 EAT."
    stop.set()
    disp.wake()
    th.join(WAIT)
    assert not th.is_alive() and runs[1] == zero(sent=2)


def test_a_name_beyond_ascii_arrives_intact(tmp_path, smtp, gw):
    db = make_db(str(tmp_path / "h.db"))
    db.put_meter({"meter_id": METER, "decimals": 0, "currency": "UGX"}, name="Añna Ñjoroge",
                 email="anna@example.org", phone="+256700000001", now=T0)
    event(db, 4, a=1500)
    assert dispatcher(db, smtp, gw).run_once(T0 + 10) == zero(sent=2)
    (_, _, msg), = smtp.box.messages
    assert msg["To"] == "Añna Ñjoroge <anna@example.org>"
    assert "Dear Añna Ñjoroge,\n\nThe credit on your prepaid electricity meter pm-00000001 is low: UGX 1500 on " \
           "2026-01-01 03:15 EAT." in msg.get_content().replace("\r\n", "\n")  # CRLF: quoted-printable on the wire
    assert "UGX 1500" in gw.requests[0]["json"]["text"] and gw.requests[0]["json"]["to"] == "+256700000001"
