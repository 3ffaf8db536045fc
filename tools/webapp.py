"""The utility's web pages: a customer page per meter and the operator's pages (issue 18).

    server = make_server(db, service, ("0.0.0.0", 8080), operator_password="...")
    threading.Thread(target=server.serve_forever, daemon=True).start()

Server-rendered HTML with inline CSS and SVG, no JavaScript. Every value is escaped.

Customers: `/c/<meter>?t=<web_token>` (the link the utility sends; meters.web_token) opens a
session (an HttpOnly SameSite=Strict cookie), after which `/c/<meter>` is enough. The page shows
the balance from the newest telemetry, days of credit left, the supply, daily use, bills, payments
and repair requests; a top-up goes through the payment provider (here a stand-in, `/pay/<ref>`)
and only a confirmed payment sends the meter a `topup` command, once per provider reference.
Every form carries the session's CSRF token.

Operators: `/op/` behind HTTP Basic auth (any user name, the configured password).
"""
import base64
import concurrent.futures
import datetime
import hmac
import html
import http.cookies
import json
import logging
import re
import secrets
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import headend  # noqa: E402  (parse_money, fmt_money: exact integer money)

log = logging.getLogger("pm.web")

COOKIE = "pm_session"
SESSION_IDLE_S = 12 * 3600
MAX_SESSIONS = 20000
MAX_BODY = 16 * 1024
WORKERS = 32
CHECKOUT_TTL_S = 3600
MAX_REQUEST_TEXT = 2000
MAX_CONTACT = 200
USAGE_DAYS = 30
COST_DAYS = 7
RELAY_REASONS = ("a safety hold", "a voltage fault", "tamper", "a relay fault", "switched off by the utility",
                 "no credit", "overload", "switched off at the meter")
METER_ID = r"[A-Za-z0-9_-]{1,32}"


def e(v):
    return html.escape("" if v is None else str(v), quote=True)


def when(t):
    if not t:
        return "—"
    return datetime.datetime.fromtimestamp(int(t), datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def money(minor, rec):
    return headend.fmt_money(minor, rec.get("decimals", 2))


def amount(minor, rec):
    """Money as the meter shows it: the currency, then the exact amount."""
    cur = rec.get("currency", "")
    return (cur + " " if cur else "") + money(minor, rec)


def kwh(wh, places=1):
    """Wh as kWh with `places` decimals, rounded half up in integers."""
    q = 10 ** (3 - places)
    v = (wh + q // 2) // q
    return str(v) if not places else "%d.%0*d" % (v // 10 ** places, places, v % 10 ** places)


# -- figures from the snapshots ------------------------------------------------------------------
def daily_snapshots(snaps):
    """{date: doc} of the daily snapshots with a valid date."""
    out = {}
    for s in snaps:
        if s.get("snap") != "d":
            continue
        try:
            d = datetime.date.fromisoformat(s.get("date", ""))
        except (TypeError, ValueError):
            continue
        out[d] = s
    return out


def days_left(balance, daily):
    """Whole days the balance lasts at the average daily cost of the newest up to COST_DAYS days
    (differences of `c` between the newest up to COST_DAYS + 1 daily snapshots); None when unknown."""
    pts = [(d, s["c"]) for d, s in sorted(daily.items()) if isinstance(s.get("c"), int)][-(COST_DAYS + 1):]
    if not isinstance(balance, int) or len(pts) < 2:
        return None, None
    days = (pts[-1][0] - pts[0][0]).days
    cost = pts[-1][1] - pts[0][1]
    if days <= 0 or cost <= 0:
        return None, None
    per_day = cost // days
    return (0 if balance <= 0 else balance * days // cost), per_day


def _total_wh(doc):
    e_ = doc.get("e")
    return e_ if isinstance(e_, list) and all(isinstance(x, int) for x in e_) else None


def daily_use(daily, n=USAGE_DAYS):
    """[(date, Wh or None)] for the n days ending at the newest daily snapshot: a day's use is the
    difference of its snapshot and the day before's (per rate, modulo the 10^9 Wh rollover)."""
    if not daily:
        return []
    end = max(daily)
    out = []
    for k in range(n - 1, -1, -1):
        d = end - datetime.timedelta(days=k)
        a, b = daily.get(d - datetime.timedelta(days=1)), daily.get(d)
        wh = None
        if a and b and _total_wh(a) is not None and _total_wh(b) is not None:
            ea, eb = _total_wh(a), _total_wh(b)
            n_ = max(len(ea), len(eb))
            ea, eb = ea + [0] * (n_ - len(ea)), eb + [0] * (n_ - len(eb))
            wh = sum((y - x) % 10 ** 9 for x, y in zip(ea, eb))
        out.append((d, wh))
    return out


def _nice_top(v):
    step = 1
    while True:
        for m in (1, 2, 5):
            if m * step >= v:
                return m * step
        step *= 10


def usage_svg(days):
    """Daily use as SVG bars, with a kWh axis."""
    w, h, left, bottom, top_pad = 640, 190, 48, 22, 8
    vals = [wh for _, wh in days if wh is not None]
    if not vals:
        return '<p class="muted" id="usage-none">No daily readings yet.</p>'
    top = _nice_top(max(max(vals), 1000))
    ph, pw = h - bottom - top_pad, w - left - 4
    slot = pw // len(days)
    parts = ['<svg id="usage" viewBox="0 0 %d %d" width="100%%" role="img" aria-label="daily use, kWh" '
             'xmlns="http://www.w3.org/2000/svg">' % (w, h)]
    div = 4 if str(top)[0] == "2" else 5  # round steps: 0.2, 0.5, 1 times a power of ten
    step = top // div
    places = next(p for p, q in ((0, 1000), (1, 100), (2, 10), (3, 1)) if step % q == 0)
    for i in range(div + 1):
        y = top_pad + ph - ph * i // div
        parts.append('<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="#ddd"/>' % (left, w - 4, y, y))
        parts.append('<text x="%d" y="%d" font-size="11" text-anchor="end" fill="#555">%s</text>'
                     % (left - 4, y + 4, e(kwh(step * i, places)) if i else "0"))
    for i, (d, wh) in enumerate(days):
        x = left + i * slot + 1
        if (len(days) - 1 - i) % 5 == 0:
            parts.append('<text x="%d" y="%d" font-size="10" text-anchor="middle" fill="#555">%s</text>'
                         % (x + slot // 2, h - 6, e(d.strftime("%d %b"))))
        if wh is None:
            parts.append('<rect class="nodata" x="%d" y="%d" width="%d" height="2" fill="#bbb">'
                         '<title>%s: no reading</title></rect>' % (x, top_pad + ph - 2, slot - 2, e(d)))
            continue
        bh = ph * min(wh, top) // top
        parts.append('<rect class="bar" data-wh="%d" x="%d" y="%d" width="%d" height="%d" fill="#2a7ab0">'
                     '<title>%s: %s kWh</title></rect>' % (wh, x, top_pad + ph - bh, slot - 2, bh, e(d), e(kwh(wh, 2))))
    parts.append('<text x="4" y="%d" font-size="11" fill="#555">kWh</text></svg>' % (top_pad + 10))
    return "".join(parts)


def relay_text(tele):
    r, rs = tele.get("r"), tele.get("rs", 0)
    if r == 0:
        return "on"
    why = [n for i, n in enumerate(RELAY_REASONS) if isinstance(rs, int) and rs & (1 << i)]
    if r == 2:
        return "ready: press the button on the meter to switch on"
    if r == 1:
        return "off" + (" (%s)" % ", ".join(why) if why else "")
    return "unknown"


def command_result(db, meter_id, cmd_id):
    """pending | applied | refused (reason), from the commands table."""
    if cmd_id is None:
        return "received, not sent to the meter yet", "pending"
    c = db.command(meter_id, cmd_id)
    if c is None or c["state"] != "answered":
        return "pending", "pending"
    if c["res"] == "applied":
        return "applied", "applied"
    return "refused (%s)" % c["res"], "refused"


# -- the payment provider stand-in ---------------------------------------------------------------
class StandInPayments:
    """Stands in for the payment provider: a checkout is a page on this server (/pay/<ref>)
    where the customer confirms or cancels. The reference is unguessable and is the provider
    reference the payment is recorded under (once: payments.ref is unique). The server uses
    begin(meter_id, amount) -> ref, get(ref) -> {meter_id, amount, state} or None, and
    mark(ref, "confirmed" | "cancelled"); checkouts live in memory for ttl_s."""

    def __init__(self, ttl_s=CHECKOUT_TTL_S, clock=time.monotonic):
        self.ttl_s, self.clock = ttl_s, clock
        self._lock = threading.Lock()
        self.checkouts = {}

    def begin(self, meter_id, amount):
        ref = "SI-" + secrets.token_hex(10)
        with self._lock:
            now = self.clock()
            for k in [k for k, c in self.checkouts.items() if c["until"] < now]:
                del self.checkouts[k]
            self.checkouts[ref] = {"meter_id": meter_id, "amount": amount, "state": "open",
                                   "until": now + self.ttl_s}
        return ref

    def get(self, ref):
        with self._lock:
            c = self.checkouts.get(ref)
            return dict(c) if c and c["until"] >= self.clock() else None

    def mark(self, ref, state):
        with self._lock:
            if ref in self.checkouts and self.checkouts[ref]["state"] == "open":
                self.checkouts[ref]["state"] = state


# -- sessions --------------------------------------------------------------------------------------
class _Sessions:
    def __init__(self):
        self._lock = threading.Lock()
        self._s = {}

    def get(self, sid):
        if not sid:
            return None
        with self._lock:
            s = self._s.get(sid)
            if s is None or s["seen"] + SESSION_IDLE_S < time.monotonic():
                self._s.pop(sid, None)
                return None
            s["seen"] = time.monotonic()
            return s

    def drop(self, sid):
        with self._lock:
            self._s.pop(sid, None)

    def new(self):
        sid = secrets.token_urlsafe(32)
        with self._lock:
            if len(self._s) >= MAX_SESSIONS:
                for k in sorted(self._s, key=lambda k: self._s[k]["seen"])[:len(self._s) // 10 + 1]:
                    del self._s[k]
            s = self._s[sid] = {"sid": sid, "meters": set(), "csrf": secrets.token_urlsafe(24),
                                "seen": time.monotonic(), "flash": {}}
        return s


class HttpError(Exception):
    def __init__(self, status, text, headers=()):
        super().__init__(text)
        self.status, self.text, self.headers = status, text, list(headers)


# -- pages -----------------------------------------------------------------------------------------
CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222;background:#f4f6f8}
header{background:#1d4f73;color:#fff;padding:14px 24px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;opacity:.85}main{padding:16px 24px;max-width:980px}
section{background:#fff;border-radius:8px;padding:12px 18px;margin:0 0 16px;box-shadow:0 1px 2px #0002}
h2{font-size:17px;margin:4px 0 10px}
.cards{display:flex;gap:16px;flex-wrap:wrap;background:none;box-shadow:none;padding:0}
.card{flex:1 1 220px;background:#fff;border-radius:8px;padding:12px 18px;box-shadow:0 1px 2px #0002}
.big{font-size:28px;font-weight:600;margin:4px 0}.muted{color:#666;font-size:13px}
table{border-collapse:collapse;width:100%;font-size:14px}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #e3e3e3;vertical-align:top}
th{background:#f0f3f6}.error{background:#fde8e8;color:#8a1010;padding:8px 12px;border-radius:6px}
.note{background:#e6f4ea;color:#10501f;padding:8px 12px;border-radius:6px}
input,textarea{font:inherit;padding:6px;border:1px solid #aaa;border-radius:4px}
textarea{width:100%;box-sizing:border-box}
button{font:inherit;padding:7px 16px;border:0;border-radius:4px;background:#1d4f73;color:#fff;cursor:pointer}
button.secondary{background:#888}.applied{color:#10501f}.refused{color:#8a1010}.pending{color:#8a5a00}
.online{color:#10501f}.offline{color:#8a1010}
"""


def page(title, body, header=""):
    return ('<!doctype html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width,initial-scale=1"><title>%s</title>'
            '<style>%s</style></head><body><header><h1>%s</h1>%s</header><main>%s</main></body></html>'
            % (e(title), CSS, e(title), header, body))


def table(cols, rows, tid=None, empty="none"):
    if not rows:
        return '<p class="muted"%s>%s</p>' % (' id="%s"' % e(tid) if tid else "", e(empty))
    head = "".join("<th>%s</th>" % e(c) for c in cols)
    body = "".join("<tr>%s</tr>" % "".join("<td>%s</td>" % c for c in r) for r in rows)
    return '<table%s><tr>%s</tr>%s</table>' % (' id="%s"' % e(tid) if tid else "", head, body)


class App:
    def __init__(self, db, service, operator_password, payments, secure_cookie=False):
        self.db, self.service = db, service
        self.operator_password = operator_password
        self.payments = payments
        self.sessions = _Sessions()
        self.secure_cookie = secure_cookie
        self.routes = [
            ("GET", re.compile(r"/c/(%s)" % METER_ID), self.customer),
            ("POST", re.compile(r"/c/(%s)/topup" % METER_ID), self.topup),
            ("POST", re.compile(r"/c/(%s)/request" % METER_ID), self.repair_request),
            ("GET", re.compile(r"/c/(%s)/bill/(\d{4}-\d{2})\.(html|pdf)" % METER_ID), self.bill),
            ("GET", re.compile(r"/pay/(SI-[0-9a-f]{20})"), self.pay_page),
            ("POST", re.compile(r"/pay/(SI-[0-9a-f]{20})"), self.pay_post),
            ("GET", re.compile(r"/op/?"), self.op_overview),
            ("GET", re.compile(r"/op/m/(%s)" % METER_ID), self.op_meter),
        ]

    # -- dispatch ------------------------------------------------------------------------------
    def handle(self, req):
        path = req.url.path
        allowed = False
        for method, rx, fn in self.routes:
            m = rx.fullmatch(path)
            if m:
                allowed = True
                if method == req.method:
                    return fn(req, *m.groups())
        if allowed:
            raise HttpError(405, "That method is not allowed here.", [("Allow", "GET, POST")])
        raise HttpError(404, "There is no such page.")

    # -- customer authentication ----------------------------------------------------------------
    def _meter_or_404(self, meter_id):
        row = self.db.meter(meter_id)
        if row is None:
            raise HttpError(404, "There is no such meter.")
        return row

    def _customer(self, req, meter_id):
        """The meter's row and the session allowed to see it; opens one with a valid ?t= token."""
        row = self._meter_or_404(meter_id)
        sess = self.sessions.get(req.cookie)
        token = req.query.get("t")
        if token is not None:
            good = row["web_token"] and hmac.compare_digest(token.encode(), row["web_token"].encode())
            if not good:
                raise HttpError(403, "This link is not valid. Use the newest link the utility sent you.")
            if sess is None or meter_id not in sess["meters"]:
                # A fresh session, so one planted in the browser beforehand never gains this meter.
                old = sess
                sess = self.sessions.new()
                if old:
                    sess["meters"] |= old["meters"]
                    self.sessions.drop(old["sid"])
                sess["meters"].add(meter_id)
                req.set_cookie = sess["sid"]
        if sess is None or meter_id not in sess["meters"] or not row["web_token"]:
            raise HttpError(403, "Please open the link the utility sent you to see this page.")
        return row, sess

    def _check_csrf(self, sess, form):
        sent = form.get("csrf", "")
        if not hmac.compare_digest(sent.encode(), sess["csrf"].encode()):
            raise HttpError(403, "The form could not be checked (it is too old, or it did not come from this "
                                 "site). Open the page again and retry.")

    # -- customer pages --------------------------------------------------------------------------
    def customer(self, req, meter_id):
        row, sess = self._customer(req, meter_id)
        return 200, self.render_customer(row, sess, {}, {})

    def render_customer(self, row, sess, errors, values):
        mid, rec = row["meter_id"], row["rec"]
        cur = rec.get("currency", "")
        st = self.db.state(mid) or {"tele": {}, "online": 0, "seen_at": 0}
        tele = st["tele"]
        bal = tele.get("b") if isinstance(tele.get("b"), int) else None
        daily = daily_snapshots(self.db.snapshots(mid))
        left, per_day = days_left(bal, daily)
        csrf = e(sess["csrf"])
        flash = "".join('<p class="note" id="flash">%s</p>' % e(t) for t in sess["flash"].pop(mid, []))

        cards = (
            '<section class="cards"><div class="card"><h2>Balance</h2><p class="big">'
            '<span id="currency">%s</span> <span id="balance">%s</span></p><p class="muted">as of %s</p></div>'
            % (e(cur), e(money(bal, rec)) if bal is not None else "—", e(when(tele.get("t")))))
        cards += ('<div class="card"><h2>Credit left</h2><p class="big"><span id="days-left">%s</span> days</p>'
                  '<p class="muted">%s</p></div>'
                  % (e(left) if left is not None else "—",
                     e("at about %s a day (the last %d days)" % (amount(per_day, rec), COST_DAYS))
                     if per_day is not None else "not enough daily readings yet"))
        online = st.get("online") == 1
        cards += ('<div class="card"><h2>Supply</h2><p class="big" id="relay">%s</p>'
                  '<p class="muted">meter <span class="%s">%s</span>, last heard %s</p></div></section>'
                  % (e(relay_text(tele)) if tele else "—", "online" if online else "offline",
                     "online" if online else "offline", e(when(st.get("seen_at")))))

        err = errors.get("topup")
        topup = ('<section id="topup-section"><h2>Top up</h2>%s<form id="topup" method="post" action="/c/%s/topup">'
                 '<input type="hidden" name="csrf" value="%s"><label>Amount (%s) '
                 '<input id="amount" name="amount" inputmode="decimal" autocomplete="off" size="10" value="%s">'
                 '</label> <button id="topup-submit" type="submit">Continue to payment</button></form></section>'
                 % ('<p class="error" id="topup-error">%s</p>' % e(err) if err else "", e(mid), csrf,
                    e(cur or "amount"), e(values.get("amount", ""))))

        pays = []
        for p in self.db.payments(mid)[:20]:
            text, cls = command_result(self.db, mid, p["cmd_id"])
            pays.append(['<span class="ref">%s</span>' % e(p["ref"]), e(when(p["created"])),
                         e(amount(p["amount"], rec)),
                         '<span class="result %s">%s</span>' % (cls, e(text))])
        payments = ('<section id="payments-section"><h2>Payments</h2>%s</section>'
                    % table(["reference", "paid", "amount", "top-up"], pays, "payments", "No payments yet."))

        usage = daily_use(daily)
        total = sum(wh for _, wh in usage if wh is not None)
        chart = ('<section><h2>Electricity use, last %d days</h2>%s<p class="muted" id="usage-total">'
                 '%s kWh on %d days with readings</p></section>'
                 % (USAGE_DAYS, usage_svg(usage), e(kwh(total, 1)), sum(1 for _, wh in usage if wh is not None)))

        bl = []
        for b in self.db.bills(mid):
            links = '<a href="/c/%s/bill/%s.html">view</a>' % (e(mid), e(b["month"]))
            if b["has_pdf"]:
                links += ' · <a href="/c/%s/bill/%s.pdf">PDF</a>' % (e(mid), e(b["month"]))
            bl.append([e(b["month"]), links])
        bills = '<section><h2>Bills</h2>%s</section>' % table(["month", ""], bl, "bills", "No bills yet.")

        err = errors.get("request")
        reqs = [[e("#%d" % r["id"]), e(when(r["created"])), e(r["text"]), e(r["state"])]
                for r in self.db.requests(mid)[:20]]
        repair = ('<section id="request-section"><h2>Report a problem</h2>%s<form id="request" method="post" '
                  'action="/c/%s/request"><input type="hidden" name="csrf" value="%s">'
                  '<label>What is wrong?<br><textarea id="request-text" name="text" rows="3" maxlength="%d">%s'
                  '</textarea></label><br><label>How can we reach you? (optional) '
                  '<input id="request-contact" name="contact" size="30" maxlength="%d" value="%s"></label> '
                  '<button id="request-submit" type="submit">Send</button></form>%s</section>'
                  % ('<p class="error" id="request-error">%s</p>' % e(err) if err else "", e(mid), csrf,
                     MAX_REQUEST_TEXT, e(values.get("text", "")), MAX_CONTACT, e(values.get("contact", "")),
                     table(["request", "sent", "text", "state"], reqs, "requests", "")))

        header = '<p>%s · meter %s%s</p>' % (e(row["name"] or "Customer"), e(mid),
                                              " · " + e(row["address"]) if row["address"] else "")
        return page("Your electricity account", flash + cards + topup + payments + chart + bills + repair, header)

    def topup(self, req, meter_id):
        row, sess = self._customer(req, meter_id)
        form = req.form()
        self._check_csrf(sess, form)
        text = form.get("amount", "")
        try:
            amt = headend.parse_money(text, row["rec"].get("decimals", 2))
        except headend.CliError:
            dec = row["rec"].get("decimals", 2)
            return 400, self.render_customer(row, sess, {"topup": (
                "Please enter an amount such as %s: a number more than zero with %s." % (
                    money(5 * 10 ** dec, row["rec"]), "no decimals" if not dec else "at most %d decimals" % dec))},
                {"amount": text})
        ref = self.payments.begin(meter_id, amt)
        return req.redirect("/pay/" + ref)

    def repair_request(self, req, meter_id):
        row, sess = self._customer(req, meter_id)
        form = req.form()
        self._check_csrf(sess, form)
        text, contact = form.get("text", "").strip(), form.get("contact", "").strip()
        err = None
        if not text:
            err = "Please say what is wrong."
        elif len(text) > MAX_REQUEST_TEXT or len(contact) > MAX_CONTACT:
            err = "Please keep it under %d characters (contact: %d)." % (MAX_REQUEST_TEXT, MAX_CONTACT)
        if err:
            return 400, self.render_customer(row, sess, {"request": err}, {"text": text, "contact": contact})
        rid = self.db.add_request(meter_id, text, contact)
        sess["flash"].setdefault(meter_id, []).append("Thank you: your request #%d was received." % rid)
        return req.redirect("/c/%s" % meter_id)

    def bill(self, req, meter_id, month, kind):
        self._customer(req, meter_id)
        b = self.db.bill(meter_id, month)
        if b is None or (kind == "pdf" and b["pdf"] is None):
            raise HttpError(404, "There is no such bill.")
        if kind == "pdf":
            return 200, b["pdf"], "application/pdf", [
                ("Content-Disposition", 'inline; filename="bill-%s-%s.pdf"' % (meter_id, month))]
        return 200, b["html"]

    # -- the payment stand-in ----------------------------------------------------------------------
    def _checkout(self, req, ref):
        co = self.payments.get(ref)
        if co is None:
            raise HttpError(404, "There is no such payment (or it expired): start the top-up again.")
        row, sess = self._customer(req, co["meter_id"])
        return co, row, sess

    def pay_page(self, req, ref):
        co, row, sess = self._checkout(req, ref)
        rec, mid = row["rec"], row["meter_id"]
        amt = amount(co["amount"], rec)
        if co["state"] != "open":
            body = ('<section><p id="pay-state">This payment was %s.</p><p><a href="/c/%s">Back to your account</a>'
                    '</p></section>' % (e(co["state"]), e(mid)))
        else:
            body = ('<section><p class="muted">Stand-in for the payment provider: nothing is charged.</p>'
                    '<p>Pay <b id="pay-amount">%s</b> to the utility for meter <b>%s</b>.</p>'
                    '<p class="muted">Reference <span id="pay-ref">%s</span></p>'
                    '<form id="pay" method="post" action="/pay/%s"><input type="hidden" name="csrf" value="%s">'
                    '<button id="pay-confirm" name="action" value="confirm" type="submit">Pay %s</button> '
                    '<button id="pay-cancel" class="secondary" name="action" value="cancel" type="submit">Cancel'
                    '</button></form></section>' % (e(amt), e(mid), e(ref), e(ref), e(sess["csrf"]),
                                                    e(amt)))
        return 200, page("Payment", body)

    def pay_post(self, req, ref):
        co, row, sess = self._checkout(req, ref)
        form = req.form()
        self._check_csrf(sess, form)
        mid, rec = co["meter_id"], row["rec"]
        flash = sess["flash"].setdefault(mid, [])
        action = form.get("action")
        if action == "cancel":
            if co["state"] == "open":
                self.payments.mark(ref, "cancelled")
                flash.append("Payment cancelled: nothing was charged.")
            return req.redirect("/c/%s" % mid)
        if action != "confirm":
            raise HttpError(400, "Unknown action.")
        if co["state"] == "cancelled":
            flash.append("That payment was cancelled; start the top-up again.")
            return req.redirect("/c/%s" % mid)
        self.payments.mark(ref, "confirmed")
        _, new, _ = self.settle(mid, co["amount"], ref)
        flash.append(("Payment %s of %s received." if new else "Payment %s of %s was already received.")
                     % (ref, amount(co["amount"], rec)))
        return req.redirect("/c/%s" % mid)

    def settle(self, meter_id, amt, ref):
        """Record a confirmed payment and send its top-up, once per provider reference (the
        database's unique ref decides, also between concurrent confirms): (pay_id, new, cmd_id)."""
        pay_id, new = self.db.add_payment(meter_id, amt, ref)
        if not new:
            log.info("payment %s confirmed again: already recorded, no second top-up", ref)
            return pay_id, False, None
        try:
            cmd_id = self.service.send(meter_id, "topup", origin="web", amt=amt)
        except Exception:  # noqa: BLE001 - the payment stays recorded as unsent for the operator
            log.exception("payment %s (%s, %d): the top-up could not be sent", ref, meter_id, amt)
            return pay_id, True, None
        self.db.payment_sent(pay_id, cmd_id)
        return pay_id, True, cmd_id

    # -- operator pages ------------------------------------------------------------------------
    def _operator(self, req):
        auth = req.headers.get("Authorization", "")
        ok = False
        if auth.startswith("Basic "):
            try:
                _, _, pw = base64.b64decode(auth[6:], validate=True).decode("utf-8").partition(":")
                ok = hmac.compare_digest(pw.encode(), self.operator_password.encode())
            except (ValueError, UnicodeDecodeError):
                ok = False
        if not ok:
            raise HttpError(401, "Operator pages need the operator password.",
                            [("WWW-Authenticate", 'Basic realm="pm operator", charset="UTF-8"')])

    def _command_rows(self, cmds, with_meter=True):
        rows = []
        for c in cmds:
            args = c["args"] if isinstance(c["args"], str) else json.dumps(c["args"], sort_keys=True)
            r = [e(c["cmd_id"]), e(c["op"]), e(args), e(c["origin"]), e(when(c["created"])), e(c["state"]),
                 e(c["res"] or "")]
            rows.append(([self._op_link(c["meter_id"])] if with_meter else []) + r)
        return rows

    @staticmethod
    def _link_state(online):
        return '<span class="online">online</span>' if online == 1 else '<span class="offline">offline</span>'

    @staticmethod
    def _op_link(mid):
        return '<a href="/op/m/%s">%s</a>' % (e(mid), e(mid))

    @staticmethod
    def _event_row(ev, with_meter=True):
        extra = {k: v for k, v in ev.items() if k not in ("meter_id", "seq", "t", "ev", "a", "mac")}
        r = [e(when(ev.get("t"))), e(ev.get("seq")), e(ev.get("ev")), e(ev.get("a")),
             e(json.dumps(extra, sort_keys=True) if extra else "")]
        return ([App._op_link(ev["meter_id"])] if with_meter else []) + r

    @staticmethod
    def _delivery_row(d, with_meter=True):
        r = [e(d["kind"]), e(d["channel"]), e(d["address"]), e(d["state"]), e(d["attempts"]),
             e(when(d["sent_at"])), e(d["last_error"])]
        return ([App._op_link(d["meter_id"])] if with_meter else []) + r

    @staticmethod
    def _request_row(r, with_meter=True):
        row = [e("#%d" % r["id"]), e(when(r["created"])), e(r["text"]), e(r["contact"]), e(r["state"])]
        return ([App._op_link(r["meter_id"])] if with_meter else []) + row

    def op_overview(self, req):
        self._operator(req)
        meters = []
        for m in self.db.overview():
            t = m["tele"]
            meters.append([self._op_link(m["meter_id"]), e(m["name"]), self._link_state(m["online"]),
                           e(amount(t["b"], m["rec"])) if isinstance(t.get("b"), int) else "—",
                           e(relay_text(t)) if t else "—", e(when(m["seen_at"])),
                           e("%s / %s" % (m["era"], m["high"]))])
        body = ('<section><h2>Meters</h2>%s</section>'
                % table(["meter", "customer", "link", "balance", "supply", "last seen", "era / high seq"],
                        meters, "meters", "No meters."))
        body += ('<section><h2>Recent events</h2>%s</section>'
                 % table(["meter", "time", "seq", "event", "a", "more"],
                         [self._event_row(ev) for ev in self.db.events(limit=50)], "events", "No events."))
        body += ('<section><h2>Failed and unanswered commands</h2>%s</section>'
                 % table(["meter", "id", "op", "args", "origin", "sent", "state", "result"],
                         self._command_rows(self.db.commands(failed_only=True, limit=50)), "failed-commands",
                         "None."))
        body += ('<section><h2>Reminders</h2>%s</section>'
                 % table(["meter", "notice", "channel", "to", "state", "attempts", "sent", "last error"],
                         [self._delivery_row(d) for d in self.db.deliveries(limit=50)], "deliveries", "None."))
        body += ('<section><h2>Repair requests</h2>%s</section>'
                 % table(["meter", "request", "sent", "text", "contact", "state"],
                         [self._request_row(r) for r in self.db.requests()[:100]], "op-requests", "None."))
        return 200, page("Operator: meters", body)

    def op_meter(self, req, meter_id):
        self._operator(req)
        row = self._meter_or_404(meter_id)
        rec = row["rec"]
        st = self.db.state(meter_id) or {}
        t = st.get("tele") or {}
        info = [["customer", e(row["name"])], ["email", e(row["email"])], ["phone", e(row["phone"])],
                ["address", e(row["address"])],
                ["link", self._link_state(st.get("online"))],
                ["balance", e(amount(t["b"], rec)) if isinstance(t.get("b"), int) else "—"],
                ["supply", e(relay_text(t)) if t else "—"], ["last seen", e(when(st.get("seen_at")))],
                ["meter clock", e(when(st.get("t")))],
                ["era / high / last seq", e("%s / %s / %s" % (st.get("era"), st.get("high"), st.get("last")))]]
        body = '<section><h2>Meter %s</h2>%s</section>' % (e(meter_id), table(["", ""], info, "meter-info"))
        pays = [[e(p["ref"]), e(when(p["created"])), e(amount(p["amount"], rec)), e(p["state"]), e(p["cmd_id"]),
                 e(p["res"] or "")] for p in self.db.payments(meter_id)[:50]]
        body += '<section><h2>Payments</h2>%s</section>' % table(
            ["reference", "paid", "amount", "state", "command", "result"], pays, "op-payments", "None.")
        body += '<section><h2>Commands</h2>%s</section>' % table(
            ["id", "op", "args", "origin", "sent", "state", "result"],
            self._command_rows(self.db.commands(meter_id=meter_id, limit=50), False), "op-commands", "None.")
        body += '<section><h2>Events</h2>%s</section>' % table(
            ["time", "seq", "event", "a", "more"],
            [self._event_row(ev, False) for ev in self.db.events(meter_id, limit=100)], "op-events", "None.")
        body += '<section><h2>Reminders</h2>%s</section>' % table(
            ["notice", "channel", "to", "state", "attempts", "sent", "last error"],
            [self._delivery_row(d, False) for d in self.db.deliveries(meter_id, limit=50)], "op-deliveries", "None.")
        body += '<section><h2>Repair requests</h2>%s</section>' % table(
            ["request", "sent", "text", "contact", "state"],
            [self._request_row(r, False) for r in self.db.requests(meter_id)], "op-meter-requests", "None.")
        return 200, page("Operator: %s" % meter_id, body, '<p><a style="color:#fff" href="/op/">all meters</a></p>')


# -- HTTP ------------------------------------------------------------------------------------------
# No scripts anywhere: stored bill HTML included.
CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")


class _Request:
    def __init__(self, handler, method):
        self.h = handler
        self.method = method
        self.url = urllib.parse.urlsplit(handler.path)
        try:
            q = urllib.parse.parse_qs(self.url.query, keep_blank_values=True, max_num_fields=20, errors="strict")
        except (UnicodeDecodeError, ValueError):
            raise HttpError(400, "Bad request.")
        self.query = {k: v[0] for k, v in q.items()}
        self.headers = handler.headers
        self.cookie = None
        try:
            c = http.cookies.SimpleCookie(handler.headers.get("Cookie", ""))
            if COOKIE in c:
                self.cookie = c[COOKIE].value
        except http.cookies.CookieError:
            pass
        self.set_cookie = None
        self._form = None

    def form(self):
        if self._form is None:
            try:
                n = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                raise HttpError(400, "Bad request.")
            if n < 0 or n > MAX_BODY:
                raise HttpError(413, "The form is too large.")
            ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
            raw = self.h.rfile.read(n) if n else b""
            if ctype != "application/x-www-form-urlencoded":
                raise HttpError(400, "Bad request.")
            try:
                q = urllib.parse.parse_qs(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=20,
                                          errors="strict")
            except (UnicodeDecodeError, ValueError):
                raise HttpError(400, "Bad request.")
            self._form = {k: v[0] for k, v in q.items()}
        return self._form

    def redirect(self, location):
        return 303, b"", "text/plain", [("Location", location)]


class _Handler(BaseHTTPRequestHandler):
    server_version = "pm-web"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    timeout = 15  # an idle kept-alive connection gives its worker back

    def do_GET(self):
        self._run("GET")

    def do_HEAD(self):
        self._run("GET", head=True)

    def do_POST(self):
        self._run("POST")

    def _run(self, method, head=False):
        app = self.server.app
        extra = []
        try:
            req = _Request(self, method)
            out = app.handle(req)
            status, body = out[0], out[1]
            ctype = out[2] if len(out) > 2 else "text/html; charset=utf-8"
            extra = list(out[3]) if len(out) > 3 else []
            if req.set_cookie:
                extra.append(("Set-Cookie", "%s=%s; Path=/; HttpOnly; SameSite=Strict%s"
                              % (COOKIE, req.set_cookie, "; Secure" if app.secure_cookie else "")))
        except HttpError as ex:
            status, ctype, extra = ex.status, "text/html; charset=utf-8", ex.headers
            body = page({400: "Bad request", 401: "Operator login", 403: "Not allowed", 404: "Not found",
                         405: "Not allowed", 413: "Too large"}.get(ex.status, "Error"),
                        '<section><p id="error-text">%s</p><p class="muted">HTTP %d</p></section>'
                        % (e(ex.text), ex.status))
        except Exception:  # noqa: BLE001 - the client sees a plain 500 page, the log the traceback
            log.exception("%s %s failed", method, self.path.split("?")[0])
            status, ctype = 500, "text/html; charset=utf-8"
            body = page("Something went wrong", '<section><p id="error-text">Something went wrong on our side. '
                        'Please try again later.</p><p class="muted">HTTP 500</p></section>')
        if isinstance(body, str):
            body = body.encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Security-Policy", CSP)
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "no-referrer")  # the ?t= link must not leak
            self.send_header("X-Frame-Options", "DENY")
            for k, v in extra:
                self.send_header(k, v)
            if status >= 400 and method == "POST":
                self.send_header("Connection", "close")  # the body may not have been read
                self.close_connection = True
            self.end_headers()
            if not head:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, fmt, *args):
        pass  # log_request below; the default would write the ?t= token to stderr

    def log_request(self, code="-", size="-"):
        log.info("%s %s %s", self.command, (self.path or "").split("?")[0], code)


class WebServer(ThreadingHTTPServer):
    """Requests run on a fixed pool of threads: the database keeps one connection per thread,
    so a thread per connection would open (and keep) a database connection per client."""

    def __init__(self, listen, handler, workers=WORKERS):
        super().__init__(listen, handler)
        self._pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="pm-web")

    def process_request(self, request, client_address):
        self._pool.submit(self.process_request_thread, request, client_address)

    def server_close(self):
        super().server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)


def make_server(db, service, listen=("127.0.0.1", 0), operator_password=None, payments=None,
                secure_cookie=False):
    """The web server (not yet serving: call serve_forever). `payments`: the payment provider,
    StandInPayments() when None. `secure_cookie`: mark the session cookie Secure (behind TLS)."""
    if not isinstance(operator_password, str) or not operator_password:
        raise ValueError("the operator pages need a password (operator_password); there is no default")
    server = WebServer(listen, _Handler)
    server.app = App(db, service, operator_password, payments or StandInPayments(), secure_cookie)
    return server
