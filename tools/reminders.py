"""Customer reminders: the headend service's outbox dispatcher (issue 18).

`Db.store_uplink` queues one notice per meter event the customer is told about (low credit,
emergency credit, disconnected, reconnected) and one delivery per channel the customer has a
contact for, in the uplink's own transaction. The `Dispatcher` here sends what is due:

    channels = {"email": SmtpChannel("mail.example", 587, "meters@utility.example", starttls=True,
                                     user="meters", password="..."),
                "sms": WebhookChannel("https://sms.example/send", token="...")}
    d = Dispatcher(db, channels, {"tz": "Africa/Nairobi", "quiet": [22, 7], "utility": "Example Power"})
    d.run(stop_event, interval=30)      # or d.run_once(now) from a scheduler; d.wake() after a notice

Delivery is at least once on the wire and once per event for the customer: a redelivered uplink
raises no second notice, a delivery is marked sent only after the server took it, and a crash
between the server's acceptance and that mark makes the next run send it again with the same
dedup id (`dedup_id`: the e-mail's Message-ID, the SMS gateway's Idempotency-Key), which the
receiving side uses to drop the copy. Run one dispatcher per database: two would both send.

Config keys (all optional; an unknown key or a bad value raises ConfigError at load):
    tz            IANA time zone of the customers ("UTC"): event times and quiet hours
    quiet         [start_hour, end_hour] local, e.g. [22, 7]: nothing is sent from 22:00 to 07:00;
                  a delivery due then waits for the end (not counted as an attempt). None: off
    quiet_exempt  notice kinds sent even in quiet hours ([]), e.g. ["disconnected"]
    retry_s       first retry delay after a temporary error (30), doubling per attempt ...
    retry_max_s   ... up to this (3600)
    attempts      give up (state 'failed', last error kept) after this many attempts (10)
    batch         deliveries read per query (50)
    utility       the utility's name, {utility} in templates ("Electricity service")
    templates     {kind: {"subject"|"text"|"sms": template}}: overrides; `str.format` fields from
                  FIELDS only; the SMS text must fit SMS_MAX characters
"""
import datetime
import email.message
import email.utils
import hashlib
import http.client
import json
import logging
import smtplib
import ssl
import string
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from service_db import CHANNELS, NOTICE_OF_EVENT  # noqa: E402

log = logging.getLogger("reminders")

KINDS = tuple(sorted(set(NOTICE_OF_EVENT.values())))
SMS_MAX = 160

# The fields each kind's templates may use; nothing else reaches str.format_map.
_COMMON = ("name", "meter", "time", "utility")
FIELDS = {
    "low_credit": _COMMON + ("balance",),         # the balance the meter reported with the event
    "emergency_credit": _COMMON + ("amount",),    # the emergency credit granted (ec_limit)
    "disconnected": _COMMON + ("reason",),        # the relay's top reason (docs/relay.md)
    "reconnected": _COMMON + ("reason",),         # the reason that cleared
}
PARTS = ("subject", "text", "sms")

DEFAULT_TEMPLATES = {
    "low_credit": {
        "subject": "Low credit on meter {meter}",
        "text": "Dear {name},\n\nThe credit on your prepaid electricity meter {meter} is low: {balance} "
                "on {time}.\nPlease top up soon so that your supply stays on.\n\n{utility}\n",
        "sms": "{utility}: low credit on meter {meter}: {balance} on {time}. Please top up soon.",
    },
    "emergency_credit": {
        "subject": "Emergency credit in use on meter {meter}",
        "text": "Dear {name},\n\nEmergency credit of {amount} was switched on at your meter {meter} on "
                "{time}.\nIt is repaid from your next top-up: please top up soon.\n\n{utility}\n",
        "sms": "{utility}: emergency credit of {amount} in use on meter {meter} since {time}. Top up "
               "soon to repay it.",
    },
    "disconnected": {
        "subject": "Supply disconnected at meter {meter}",
        "text": "Dear {name},\n\nThe electricity supply at your meter {meter} was disconnected on {time} "
                "({reason}).\nIf your credit ran out, a top-up reconnects it; the meter may ask you to "
                "hold its button for 3 seconds.\n\n{utility}\n",
        "sms": "{utility}: power at meter {meter} was disconnected on {time} ({reason}).",
    },
    "reconnected": {
        "subject": "Supply restored at meter {meter}",
        "text": "Dear {name},\n\nThe electricity supply at your meter {meter} was reconnected on "
                "{time}.\n\n{utility}\n",
        "sms": "{utility}: power at meter {meter} was reconnected on {time}.",
    },
}

# Relay reason bits (docs/relay.md), as the customer reads them.
REASONS = {1: "safety lock", 2: "supply voltage out of range", 4: "tampering detected", 8: "relay fault",
           16: "disconnected by the utility", 32: "credit used up", 64: "load over the limit",
           128: "switched off at the meter"}

# Worst-case-ish values for the checks at load time.
_SAMPLE = {"name": "Customer Name Twenty", "meter": "pm-00000001", "time": "2026-01-01 00:00 EAT",
           "balance": "KES -99999.99", "amount": "KES 99999.99", "reason": max(REASONS.values(), key=len)}

DEFAULTS = {"tz": "UTC", "quiet": None, "quiet_exempt": [], "retry_s": 30, "retry_max_s": 3600, "attempts": 10,
            "batch": 50, "utility": "Electricity service", "templates": {}}


class ConfigError(ValueError):
    pass


class ChannelError(Exception):
    """A send failed. permanent: retrying cannot help (give up now). down: the channel itself is
    unreachable or overloaded, so the rest of this run skips it."""

    def __init__(self, msg, permanent=False, down=False):
        super().__init__(msg)
        self.permanent = permanent
        self.down = down and not permanent


def dedup_id(delivery):
    """The id a receiver drops duplicates by: the same for every attempt of one delivery (notice
    key, event time, channel) and different for each other one (the time too: a rebuilt database
    numbers eras from 0 again)."""
    key = "%s|%s|%s" % (delivery["ukey"], delivery["t"], delivery["channel"])
    return "pm-" + hashlib.sha256(key.encode()).hexdigest()[:32]


# -- channels ------------------------------------------------------------------------------------
class SmtpChannel:
    """E-mail through an SMTP server, one message per delivery.

    Delivery is at least once on the wire: if we crash (or the connection drops) after the server's
    250 and before the database records the send, the message goes out again. It is exactly once
    per event for a receiver that drops duplicates: every copy carries the same `Message-ID`,
    derived from the notice's unique key and the channel (`dedup_id`).

    5xx answers to the envelope or the message are permanent. 4xx answers, connection errors and
    failures of the session itself (EHLO, STARTTLS, login, a refused sender) are temporary: those
    are this channel's configuration or the server's state, and the deliveries wait until fixed.
    """

    def __init__(self, host, port, sender, user=None, password=None, starttls=False, timeout=10):
        self.host, self.port, self.sender = host, port, sender  # "a@b" or "Name <a@b>"
        self.user, self.password, self.starttls, self.timeout = user, password, starttls, timeout
        self.envelope_from = email.utils.parseaddr(sender)[1]
        if "@" not in self.envelope_from:
            raise ConfigError("the e-mail sender must be an address, got %r" % sender)
        self.domain = self.envelope_from.rpartition("@")[2]

    def message(self, delivery, subject, text):
        m = email.message.EmailMessage()
        m["From"] = self.sender
        m["To"] = email.utils.formataddr((_clean(delivery.get("name") or ""), delivery["address"]))
        m["Subject"] = subject
        m["Date"] = email.utils.formatdate(usegmt=True)
        m["Message-ID"] = "<%s@%s>" % (dedup_id(delivery), self.domain)
        if text.isascii():
            m.set_content(text)
        else:  # servers without 8BITMIME take quoted-printable
            m.set_content(text, cte="quoted-printable")
        return m

    def send(self, delivery, subject, text):
        msg = self.message(delivery, subject, text)
        where = "%s:%s" % (self.host, self.port)
        try:
            s = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        except (OSError, smtplib.SMTPException) as e:
            raise ChannelError("cannot reach the mail server %s: %s" % (where, _smtp_text(e)), down=True)
        try:
            try:
                s.ehlo_or_helo_if_needed()
                if self.starttls:
                    s.starttls(context=ssl.create_default_context())
                    s.ehlo()
                if self.user:
                    s.login(self.user, self.password or "")
            except (OSError, smtplib.SMTPException) as e:
                raise ChannelError("mail server %s: %s" % (where, _smtp_text(e)), down=True)
            try:
                s.send_message(msg, from_addr=self.envelope_from, to_addrs=[delivery["address"]])
            except smtplib.SMTPRecipientsRefused as e:
                code, resp = next(iter(e.recipients.values()))
                raise ChannelError("recipient refused: %d %s" % (code, _text(resp)), permanent=code >= 500)
            except smtplib.SMTPSenderRefused as e:
                raise ChannelError("sender refused: %d %s" % (e.smtp_code, _text(e.smtp_error)), down=True)
            except smtplib.SMTPResponseException as e:
                raise ChannelError("mail server answered %d %s" % (e.smtp_code, _text(e.smtp_error)),
                                   permanent=e.smtp_code >= 500, down=e.smtp_code == 421)
            except smtplib.SMTPNotSupportedError as e:
                raise ChannelError("mail server cannot take this address: %s" % e, permanent=True)
            except (OSError, smtplib.SMTPException) as e:
                raise ChannelError("mail server %s: %s" % (where, _smtp_text(e)), down=True)
        finally:
            try:
                s.quit()
            except (OSError, smtplib.SMTPException):
                s.close()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # urllib would turn the POST into a GET: make it an error instead


class WebhookChannel:
    """SMS through the gateway's webhook: POST JSON {"to", "text", "id", "meter", "kind"} with an
    `Idempotency-Key` header equal to "id" (`dedup_id`), so a resend after a crash between the
    gateway's 2xx and our commit is dropped there. 2xx: sent; 4xx but 408 and 429: permanent;
    anything else (5xx, 408, 429, a redirect, no connection): temporary."""

    def __init__(self, url, token=None, timeout=10):
        self.url, self.token, self.timeout = url, token, timeout
        if not url.startswith(("http://", "https://")):
            raise ConfigError("the SMS webhook must be an http(s) URL, got %r" % url)
        self._opener = urllib.request.build_opener(_NoRedirect)

    def send(self, delivery, subject, text):
        did = dedup_id(delivery)
        body = json.dumps({"to": delivery["address"], "text": text, "id": did, "meter": delivery["meter_id"],
                           "kind": delivery["kind"]}).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": did}
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with self._opener.open(req, timeout=self.timeout) as r:
                r.read(65536)
        except urllib.error.HTTPError as e:
            try:
                detail = e.read(300).decode("utf-8", "replace").strip()
            except (OSError, ValueError):
                detail = ""
            e.close()
            permanent = 400 <= e.code < 500 and e.code not in (408, 429)
            raise ChannelError("SMS gateway answered %d %s" % (e.code, detail or e.reason), permanent=permanent,
                               down=not permanent)
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as e:
            raise ChannelError("cannot reach the SMS gateway: %s" % getattr(e, "reason", e), down=True)


def _text(b):
    return b.decode("utf-8", "replace") if isinstance(b, bytes) else str(b)


def _smtp_text(e):
    if isinstance(e, smtplib.SMTPResponseException):
        return "%d %s" % (e.smtp_code, _text(e.smtp_error))
    return str(e) or type(e).__name__


# -- templates -----------------------------------------------------------------------------------
def load_templates(overrides=None, utility=DEFAULTS["utility"]):
    """The templates by kind, defaults overridden by `overrides`; ConfigError on an unknown kind,
    part or placeholder, a field access ({name.x}, {name[0]}), a bad format, a subject of more
    than one line or an SMS text that cannot fit SMS_MAX characters."""
    overrides = overrides or {}
    if not isinstance(overrides, dict):
        raise ConfigError("templates must be an object {kind: {part: template}}")
    out = {k: dict(v) for k, v in DEFAULT_TEMPLATES.items()}
    for kind, parts in overrides.items():
        if kind not in FIELDS:
            raise ConfigError("templates: unknown notice kind %r (kinds: %s)" % (kind, ", ".join(KINDS)))
        if not isinstance(parts, dict):
            raise ConfigError("templates.%s must be an object {part: template}" % kind)
        for part, tpl in parts.items():
            if part not in PARTS:
                raise ConfigError("templates.%s: unknown part %r (parts: %s)" % (kind, part, ", ".join(PARTS)))
            if not isinstance(tpl, str):
                raise ConfigError("templates.%s.%s must be a string" % (kind, part))
            out[kind][part] = tpl
    for kind, parts in out.items():
        sample = {k: utility if k == "utility" else _SAMPLE[k] for k in FIELDS[kind]}
        for part, tpl in parts.items():
            where = "templates.%s.%s" % (kind, part)
            try:
                fields = list(string.Formatter().parse(tpl))
            except ValueError as e:
                raise ConfigError("%s: %s" % (where, e))
            for _, field, spec, _ in fields:
                if field is None:
                    continue
                if field not in FIELDS[kind] or "{" in (spec or ""):
                    raise ConfigError("%s: unknown placeholder {%s}; %s templates may use %s" % (
                        where, field, kind, ", ".join("{%s}" % f for f in FIELDS[kind])))
            try:
                text = tpl.format_map(sample)
            except (ValueError, TypeError, KeyError) as e:
                raise ConfigError("%s: %s" % (where, e))
            if part == "subject" and "\n" in text:
                raise ConfigError("%s: a subject is one line" % where)
            if part == "sms" and len(text) > SMS_MAX:
                raise ConfigError("%s: %d characters with typical values; an SMS holds %d" % (
                    where, len(text), SMS_MAX))
    return out


def fmt_money(minor, decimals=2, currency=""):
    """Integer minor units as the customer reads them: exact, no floating point."""
    if not isinstance(minor, int) or isinstance(minor, bool):
        return "an unknown amount"
    whole, frac = divmod(abs(minor), 10 ** decimals)
    s = ("-" if minor < 0 else "") + str(whole) + ("." + str(frac).zfill(decimals) if decimals else "")
    return currency + " " + s if currency else s


def fmt_time(t, tz):
    if not isinstance(t, int) or t <= 0:
        return "an unknown time"
    return datetime.datetime.fromtimestamp(t, tz).strftime("%Y-%m-%d %H:%M %Z")


def _clean(s):
    return "".join(" " if ord(ch) < 32 or ord(ch) == 127 else ch for ch in str(s)).strip()


def context(delivery, rec, tz, utility):
    """The whitelisted values a delivery's templates are formatted with."""
    kind = delivery["kind"]
    a = (delivery.get("data") or {}).get("a")
    dec = rec.get("decimals", 2)
    dec = dec if isinstance(dec, int) and 0 <= dec <= 4 else 2
    cur = _clean(rec.get("currency") or "")
    ctx = {"name": _clean(delivery.get("name") or "") or "customer", "meter": _clean(delivery["meter_id"]),
           "time": fmt_time(delivery.get("t"), tz), "utility": utility}
    if kind == "low_credit":
        ctx["balance"] = fmt_money(a, dec, cur)
    elif kind == "emergency_credit":
        ctx["amount"] = fmt_money(a, dec, cur)
    else:
        ctx["reason"] = REASONS.get(a, "reason %s" % a)
    return {k: ctx[k] for k in FIELDS[kind]}


def render(templates, delivery, ctx):
    """(subject, text) for the delivery's channel: the SMS text fits SMS_MAX (a long name is
    shortened first, then the end is cut)."""
    t = templates[delivery["kind"]]
    subject = _clean(t["subject"].format_map(ctx))
    if delivery["channel"] != "sms":
        return subject, t["text"].format_map(ctx)
    text = t["sms"].format_map(ctx)
    over = len(text) - SMS_MAX
    if over > 0 and "name" in ctx:
        ctx = dict(ctx, name=ctx["name"][:max(1, len(ctx["name"]) - over)])
        text = t["sms"].format_map(ctx)
    if len(text) > SMS_MAX:
        text = text[:SMS_MAX - 3] + "..."
    return subject, text


# -- config --------------------------------------------------------------------------------------
class Config:
    def __init__(self, config=None):
        config = dict(config or {})
        unknown = set(config) - set(DEFAULTS)
        if unknown:
            raise ConfigError("unknown reminder setting(s): %s (known: %s)" % (
                ", ".join(sorted(unknown)), ", ".join(sorted(DEFAULTS))))
        c = dict(DEFAULTS, **config)
        try:
            self.tz = ZoneInfo(c["tz"])
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise ConfigError("tz: unknown time zone %r (an IANA name, e.g. Africa/Nairobi)" % (c["tz"],))
        q = c["quiet"]
        if q is not None and not (isinstance(q, (list, tuple)) and len(q) == 2
                                  and all(_int(h) and 0 <= h <= 23 for h in q) and q[0] != q[1]):
            raise ConfigError("quiet must be [start_hour, end_hour], two different hours 0-23, or null; got %r" % (q,))
        self.quiet = tuple(q) if q is not None else None
        ex = c["quiet_exempt"]
        if not isinstance(ex, (list, tuple)) or any(k not in FIELDS for k in ex):
            raise ConfigError("quiet_exempt must be a list of notice kinds (%s); got %r" % (", ".join(KINDS), ex))
        self.quiet_exempt = frozenset(ex)
        for k in ("retry_s", "retry_max_s", "attempts", "batch"):
            if not (_int(c[k]) and c[k] >= 1):
                raise ConfigError("%s must be a whole number >= 1; got %r" % (k, c[k]))
        if c["retry_max_s"] < c["retry_s"]:
            raise ConfigError("retry_max_s must be at least retry_s")
        self.retry_s, self.retry_max_s, self.attempts, self.batch = (
            c["retry_s"], c["retry_max_s"], c["attempts"], c["batch"])
        if not isinstance(c["utility"], str):
            raise ConfigError("utility must be a string")
        self.utility = _clean(c["utility"])
        self.templates = load_templates(c["templates"], self.utility)

    def quiet_until(self, now):
        """The end of the quiet period `now` falls in (Unix time), or None outside one."""
        if self.quiet is None:
            return None
        start, end = self.quiet
        local = datetime.datetime.fromtimestamp(now, self.tz)
        h = local.hour
        if not (start <= h < end if start < end else h >= start or h < end):
            return None
        day = local.date() + datetime.timedelta(days=0 if h < end else 1)
        t = int(datetime.datetime.combine(day, datetime.time(end), self.tz).timestamp())
        return t if t > now else now + 60  # a DST jump can land the end at or before now

    def backoff(self, attempt):
        """Delay after the attempt-th failed attempt (1-based)."""
        return min(self.retry_s * 2 ** min(attempt - 1, 30), self.retry_max_s)


def _int(v):
    return isinstance(v, int) and not isinstance(v, bool)


# -- dispatcher ----------------------------------------------------------------------------------
class Dispatcher:
    def __init__(self, db, channels, config=None):
        self.db = db
        self.cfg = Config(config)
        bad = set(channels) - set(CHANNELS)
        if bad:
            raise ConfigError("unknown channel(s) %s (channels: %s)" % (", ".join(sorted(bad)), ", ".join(CHANNELS)))
        self.channels = dict(channels)
        for name in CHANNELS:
            if name not in self.channels:
                log.warning("no %s channel configured: %s reminders stay pending until one is", name, name)
        self._lock = threading.Lock()  # one run at a time: two would send the same delivery
        self._kick = threading.Event()

    def run_once(self, now=None):
        """Send what is due at `now` (Unix time). Returns counts: sent, retried (a temporary error,
        tried again later), failed (gave up), postponed (quiet hours)."""
        now = int(time.time() if now is None else now)
        counts = {"sent": 0, "retried": 0, "failed": 0, "postponed": 0}
        with self._lock:
            up = set(self.channels)
            seen, recs = set(), {}
            while up:
                batch = [d for d in self.db.due_deliveries(now, self.cfg.batch, channels=sorted(up))
                         if (d["notice_id"], d["channel"]) not in seen]
                if not batch:
                    break
                for d in batch:
                    seen.add((d["notice_id"], d["channel"]))
                    if d["channel"] not in up:
                        continue  # went down earlier in this batch: left due for the next run
                    outcome, down = self._one(d, now, recs)
                    counts[outcome] += 1
                    if down:
                        up.discard(d["channel"])
        return counts

    def _one(self, d, now, recs):
        nid, ch = d["notice_id"], d["channel"]
        if d["kind"] not in self.cfg.quiet_exempt:
            until = self.cfg.quiet_until(now)
            if until is not None:
                self.db.delivery_retry(nid, ch, until, "postponed: quiet hours", count=False)
                return "postponed", False
        try:
            if d["meter_id"] not in recs:
                m = self.db.meter(d["meter_id"])
                recs[d["meter_id"]] = (m or {}).get("rec") or {}
            subject, text = render(self.cfg.templates, d, context(d, recs[d["meter_id"]], self.cfg.tz,
                                                                  self.cfg.utility))
            self.channels[ch].send(d, subject, text)
        except ChannelError as e:
            return self._failed(d, now, str(e), e.permanent), e.down
        except Exception as e:  # a bug must not stop the other deliveries, nor lose this one
            log.exception("reminder %s/%s: unexpected error", d["ukey"], ch)
            return self._failed(d, now, "internal error: %r" % e, False), False
        self.db.delivery_sent(nid, ch, now)
        log.info("reminder %s %s sent by %s to %s", d["ukey"], d["kind"], ch, d["address"])
        return "sent", False

    def _failed(self, d, now, error, permanent):
        n = d["attempts"] + 1
        if permanent or n >= self.cfg.attempts:
            self.db.delivery_retry(d["notice_id"], d["channel"], now, error, give_up=True)
            log.error("reminder %s by %s to %s: gave up after %d attempt(s): %s", d["ukey"], d["channel"],
                      d["address"], n, error)
            return "failed"
        delay = self.cfg.backoff(n)
        self.db.delivery_retry(d["notice_id"], d["channel"], now + delay, error)
        log.warning("reminder %s by %s: %s; retry in %d s", d["ukey"], d["channel"], error, delay)
        return "retried"

    def wake(self):
        """Run again now (after a new notice, or to make `run` see its stop event at once)."""
        self._kick.set()

    def run(self, stop_event, interval=30, clock=time.time):
        """Run every `interval` seconds, or sooner after `wake()`, until `stop_event` is set (set
        it, then call wake() to stop without waiting out the interval)."""
        while not stop_event.is_set():
            self._kick.clear()  # before the run: a wake during it makes another
            try:
                self.run_once(clock())
            except Exception:  # the database may be back by the next run
                log.exception("reminder run failed")
            self._kick.wait(interval)
