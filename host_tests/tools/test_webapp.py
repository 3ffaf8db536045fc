"""tools/webapp.py in a real headless Chromium, driven over the DevTools protocol (a minimal
RFC 6455 client below): forms are typed into and clicked like a customer would.

The service is a stand-in that records each command and answers it in the database the way a
meter's reply and telemetry would arrive. Screenshots go to $PM_ARTEFACTS (else
host_tests/artefacts/webapp/).
"""
import base64
import hashlib
import http.server
import json
import logging
import os
import secrets
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

import headend
import service_db
import webapp

REPO = Path(__file__).resolve().parents[2]
ARTEFACTS = Path(os.environ.get("PM_ARTEFACTS") or REPO / "host_tests" / "artefacts" / "webapp")
TIMEOUT = 60  # every wait is bounded; generous for a busy CI machine
M1, M2 = "MTR-0001", "MTR-0002"
NAME = 'Amina "<b>Njeri</b>"'
T0 = 1767225600  # 2026-01-01 00:00 UTC
BALANCE = 1299
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, never a proxy


def chromium_path():
    for p in (shutil.which("chromium"), "/usr/bin/chromium"):
        if p and os.access(p, os.X_OK):
            return p
    return None


# -- a minimal websocket client (RFC 6455: masked client frames, no extensions) -----------------
class WebSocket:
    GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    def __init__(self, url, timeout=TIMEOUT):
        u = urllib.parse.urlsplit(url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
                           % (u.path, u.hostname, u.port, key)).encode())
        self.buf = bytearray()
        while b"\r\n\r\n" not in self.buf:
            self._fill(time.monotonic() + timeout)
        head, _, rest = bytes(self.buf).partition(b"\r\n\r\n")
        self.buf = bytearray(rest)
        lines = head.decode("latin-1").split("\r\n")
        assert lines[0].split()[1] == "101", "websocket upgrade refused: %s" % lines[0]
        accept = base64.b64encode(hashlib.sha1((key + self.GUID).encode()).digest()).decode()
        assert any(ln.lower().startswith("sec-websocket-accept:") and ln.split(":", 1)[1].strip() == accept
                   for ln in lines), "bad Sec-WebSocket-Accept"

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("websocket: nothing received in time")
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(1 << 16)
        except socket.timeout:
            raise TimeoutError("websocket: nothing received in time")
        if not chunk:
            raise ConnectionError("websocket closed")
        self.buf += chunk

    def _take(self, n, deadline):
        while len(self.buf) < n:
            self._fill(deadline)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def _frame(self, opcode, data):
        n = len(data)
        if n < 126:
            hdr = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 1 << 16:
            hdr = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            hdr = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        mask = os.urandom(4)
        self.sock.sendall(hdr + mask + bytes(b ^ mask[i & 3] for i, b in enumerate(data)))

    def send(self, text):
        self._frame(0x1, text.encode())

    def recv(self, deadline):
        parts = []
        while True:
            b0, b1 = self._take(2, deadline)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._take(2, deadline))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._take(8, deadline))[0]
            mask = self._take(4, deadline) if b1 & 0x80 else None
            data = self._take(n, deadline)
            if mask:
                data = bytes(b ^ mask[i & 3] for i, b in enumerate(data))
            op = b0 & 0x0F
            if op == 0x9:
                self._frame(0xA, data)
            elif op == 0x8:
                raise ConnectionError("websocket closed by the browser")
            elif op in (0x0, 0x1, 0x2):
                parts.append(data)
                if b0 & 0x80:
                    return b"".join(parts).decode()

    def close(self):
        try:
            self._frame(0x8, b"")
        except OSError:
            pass
        self.sock.close()


# -- Chromium over the DevTools protocol ------------------------------------------------------
class CdpError(Exception):
    pass


class Tab:
    def __init__(self, browser, target):
        self.browser, self.target = browser, target
        self.ws = WebSocket(target["webSocketDebuggerUrl"])
        self.n = 0
        self.events = []
        self.call("Page.enable")
        self.call("Network.enable")
        self.call("Runtime.enable")

    def call(self, method, timeout=TIMEOUT, **params):
        self.n += 1
        mid = self.n
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            msg = json.loads(self.ws.recv(deadline))
            if msg.get("id") == mid:
                if "error" in msg:
                    raise CdpError("%s: %s" % (method, msg["error"]))
                return msg["result"]
            if "method" in msg:
                self.events.append(msg)

    def _wait_event(self, method, since, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            for ev in self.events[since:]:
                if ev["method"] == method:
                    return ev
            msg = json.loads(self.ws.recv(deadline))
            if "method" in msg:
                self.events.append(msg)

    def _status(self, since):
        docs = [ev["params"]["response"] for ev in self.events[since:]
                if ev["method"] == "Network.responseReceived" and ev["params"].get("type") == "Document"]
        return docs[-1]["status"] if docs else None

    def navigate(self, url):
        """Load url; the HTTP status of the document."""
        mark = len(self.events)
        self.call("Page.navigate", url=url)
        self._wait_event("Page.loadEventFired", mark)
        return self._status(mark)

    def js(self, expr):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise CdpError("%s: %s" % (expr, r["exceptionDetails"]))
        return r["result"].get("value")

    def text(self, selector):
        return self.js("(() => { const el = document.querySelector(%s); return el ? el.textContent : null; })()"
                       % json.dumps(selector))

    def path(self):
        return urllib.parse.urlsplit(self.js("location.href")).path

    def type(self, selector, text):
        """Empty the field, focus it and type into it as a keyboard would."""
        self.js("(() => { const el = document.querySelector(%s); el.value = ''; el.focus(); })()"
                % json.dumps(selector))
        if text:
            self.call("Input.insertText", text=text)
        assert self.js("document.querySelector(%s).value" % json.dumps(selector)) == text

    def click(self, selector):
        """A real mouse click at the element's centre; waits for the page it leads to; its status."""
        x, y = self.js("(() => { const el = document.querySelector(%s); el.scrollIntoView({block: 'center'}); "
                       "const r = el.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()"
                       % json.dumps(selector))
        mark = len(self.events)
        self.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        self.call("Input.dispatchMouseEvent", type="mousePressed", x=x, y=y, button="left", clickCount=1)
        self.call("Input.dispatchMouseEvent", type="mouseReleased", x=x, y=y, button="left", clickCount=1)
        self._wait_event("Page.loadEventFired", mark)
        return self._status(mark)

    def screenshot(self, name):
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTEFACTS / ("webapp-%s.png" % name)
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))
        return path

    def cookies(self):
        return self.call("Network.getCookies")["cookies"]

    def close(self):
        self.ws.close()
        try:
            DIRECT.open("http://127.0.0.1:%d/json/close/%s" % (self.browser.port, self.target["id"]), timeout=10).read()
        except OSError:
            pass


class Browser:
    def __init__(self, exe):
        self.dir = tempfile.mkdtemp(prefix="pm-chromium-")
        self.log = open(os.path.join(self.dir, "chromium.log"), "wb")
        self.proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--remote-debugging-port=0", "--user-data-dir=" + self.dir, "--window-size=1024,1400",
             "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
             "--disable-component-update", "--disable-extensions", "--disable-sync", "--password-store=basic",
             "about:blank"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, start_new_session=True)
        active = Path(self.dir) / "DevToolsActivePort"
        deadline = time.monotonic() + TIMEOUT
        while True:
            if active.is_file() and active.read_text().count("\n") >= 1:
                self.port = int(active.read_text().split()[0])
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError("chromium did not start: %s" % Path(self.log.name).read_bytes()[-2000:])
            time.sleep(0.05)

    def new_tab(self):
        req = urllib.request.Request("http://127.0.0.1:%d/json/new?about:blank" % self.port, method="PUT")
        return Tab(self, json.loads(DIRECT.open(req, timeout=TIMEOUT).read()))

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)
        try:
            os.killpg(self.proc.pid, 9)  # its helper processes, in the group we started
        except (ProcessLookupError, PermissionError):
            pass
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    exe = chromium_path()
    if exe is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium); the web pages are tested "
                    "in a real browser")
    b = Browser(exe)
    yield b
    b.close()


@pytest.fixture
def tab(browser):
    t = browser.new_tab()
    t.call("Network.clearBrowserCookies")
    tabs = [t]
    t.another = lambda: tabs.append(browser.new_tab()) or tabs[-1]
    yield t
    for x in tabs:
        x.close()


# -- the service stand-in and the data --------------------------------------------------------
class FakeService:
    """Records every send and answers like the meter: its reply and a new telemetry report
    (at once, or when released while `hold` is set)."""

    def __init__(self, db, maxb=100000):
        self.db, self.maxb = db, maxb
        self.sent, self.held = [], []
        self.hold = False
        self.lock = threading.Lock()

    def send(self, meter_id, op, origin="service", **args):
        with self.lock:
            cmd_id = self.db.next_cmd_id(meter_id)
            self.db.add_command(meter_id, cmd_id, op, args, T0 + 86400, origin)
            self.sent.append({"meter_id": meter_id, "op": op, "origin": origin, "args": args, "cmd_id": cmd_id})
            if self.hold:
                self.held.append((meter_id, cmd_id, args))
            else:
                self.answer(meter_id, cmd_id, args)
        return cmd_id

    def answer(self, meter_id, cmd_id, args):
        st = self.db.state(meter_id)
        tele = dict(st["tele"])
        ok = tele["b"] + args["amt"] <= self.maxb
        b = tele["b"] + args["amt"] if ok else tele["b"]
        seq = st["high"] + 1
        self.db.store_uplink(meter_id, "reply", {"seq": seq, "id": cmd_id, "res": "applied" if ok else
                                                 "refused_max_balance", "rep": 0, "b": b, "r": tele["r"]})
        if ok:
            tele.update(seq=seq + 1, t=tele["t"] + 60, b=b)
            self.db.store_uplink(meter_id, "tele", tele)

    def release(self):
        with self.lock:
            for h in self.held:
                self.answer(*h)
            self.held.clear()


def daily_fixture():
    """20 days of daily snapshots (2026-01-01..20) without 01-05: (date, rates Wh, c) each.
    The last 8 snapshots' c differ by 90,110,100,95,105,120,80 (700 in 7 days: 1.00 a day);
    earlier days cost 5.00 a day, which the days-left figure must not see."""
    costs = {13: 90, 14: 110, 15: 100, 16: 95, 17: 105, 18: 120, 19: 80}
    out, e1, e2, c = [], 0, 0, 0
    for day in range(1, 21):
        e1 += 3000 + 150 * day
        e2 += 1000 + (day % 3) * 200
        c += costs.get(day - 1, 500) if day > 1 else 0
        if day != 5:
            out.append(("2026-01-%02d" % day, [e1, e2], c))
    return out


def seed(db):
    tokens = {}
    for mid, name in ((M1, NAME), (M2, "Second Customer")):
        tokens[mid] = secrets.token_urlsafe(18)
        rec = {"meter_id": mid, "key": "00" * 32, "decimals": 2, "currency": "KES", "next_cmd_id": 1}
        db.put_meter(rec, name=name, email="amina@example.org" if mid == M1 else "", phone="+254700000001",
                     address="Plot 7, Kisumu", web_token=tokens[mid], now=T0)
    db.store_uplink(M1, "status", {"online": 1, "v": 1, "rev": 5, "boot": T0, "last": 0}, now=T0)
    seq = 0
    for i, (date, rates, c) in enumerate(daily_fixture()):
        seq += 1
        db.store_uplink(M1, "snap", {"seq": seq, "t": T0 + 86400 * (i + 1), "snap": "d", "date": date, "e": rates,
                                     "c": c, "b": 5000, "debt": 0, "tu": 0}, now=T0)
    seq += 1
    db.store_uplink(M1, "evt", {"seq": seq, "t": T0 + 20 * 86400, "ev": "low_credit_1", "a": 198}, now=T0)
    notice = db.due_deliveries(T0 + 10**6)[0]
    db.delivery_sent(notice["notice_id"], notice["channel"], T0 + 20 * 86400 + 5)
    db.add_command(M1, db.next_cmd_id(M1), "tariff", {"tariff": {"v": 1}}, T0 + 86400 * 30, "operator", now=T0)
    seq += 1
    db.store_uplink(M1, "reply", {"seq": seq, "id": 1, "res": "bad_args", "rep": 0, "b": BALANCE, "r": 0})
    seq += 1
    db.store_uplink(M1, "tele", {"seq": seq, "t": T0 + 20 * 86400 + 3600, "e": 123456, "x": 0, "b": BALANCE,
                                 "c": 9000, "v": 23000, "i": 500, "p": 115, "r": 0, "rs": 0})
    db.put_bill(M1, "2026-01", {"kwh": 100}, "<html><body><h1 id='bill-title'>Bill for January 2026</h1>"
                "</body></html>", pdf=b"%PDF-1.4\n% a stand-in\n%%EOF\n", now=T0)
    return tokens


class Web:
    def __init__(self, url, payments=None):
        self.db = service_db.Db(url)
        self.tokens = seed(self.db)
        self.svc = FakeService(self.db)
        self.password = "op-" + secrets.token_hex(6)
        self.payments = payments or webapp.StandInPayments()
        self.server = webapp.make_server(self.db, self.svc, operator_password=self.password, payments=self.payments)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base = "http://127.0.0.1:%d" % self.server.server_address[1]

    def url(self, path):
        return self.base + path

    def login(self, tab, mid=M1):
        assert tab.navigate(self.url("/c/%s?t=%s" % (mid, self.tokens[mid]))) == 200

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.db.close()


@pytest.fixture
def web(request, tmp_path):
    """The web server on a fresh database: SQLite, or PostgreSQL for tests parametrized so."""
    engine = getattr(request, "param", "sqlite")
    w = Web(request.getfixturevalue("pg_url") if engine == "postgresql" else str(tmp_path / "web.db"))
    yield w
    w.close()


BOTH_ENGINES = pytest.mark.parametrize("web", ["sqlite", "postgresql"], indirect=True)


def fmt(minor):
    return headend.fmt_money(minor, 2)


def wait_until(cond, what, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        assert time.monotonic() < deadline, "timed out waiting for " + what
        time.sleep(0.05)


def check_png(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    w, h = struct.unpack("!II", data[16:24])
    assert w >= 800 and h >= 600, (path, w, h)
    from PIL import Image

    with Image.open(path) as im:
        colours = im.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is None or len(colours) > 50, "%s looks blank (%d colours)" % (path, len(colours))
    assert len(data) > 15000, "%s is only %d bytes" % (path, len(data))


# -- tests -------------------------------------------------------------------------------------
@BOTH_ENGINES
def test_customer_page_balance_days_left_usage_bills(web, tab):
    web.login(tab)
    assert tab.text("#balance") == fmt(BALANCE) == "12.99"
    assert tab.text("#currency") == "KES"
    # 12.99 / (7.00 in the last 7 days) * 7 days = 12.99 days: whole days, rounded down
    assert tab.text("#days-left") == "12"
    assert tab.text("#relay") == "on"
    # escaped: the name's markup is text, not an element
    assert NAME in tab.text("header")
    assert tab.js("document.querySelectorAll('header b').length") == 0
    # the chart: one bar per day that has both its snapshot and the day before's
    snaps = {d: sum(r) for d, r, _ in daily_fixture()}
    expect = []
    for day in range(1, 21):
        a, b = snaps.get("2026-01-%02d" % (day - 1)), snaps.get("2026-01-%02d" % day)
        if a is not None and b is not None:
            expect.append(b - a)
    assert len(expect) == 17
    bars = tab.js("[...document.querySelectorAll('#usage rect.bar')].map(r => +r.dataset.wh)")
    assert bars == expect
    assert tab.js("document.querySelectorAll('#usage rect').length") == 30
    assert tab.js("[...document.querySelectorAll('#usage text')].map(t => t.textContent)") == [
        "0", "2", "4", "6", "8", "10", "26 Dec", "31 Dec", "05 Jan", "10 Jan", "15 Jan", "20 Jan", "kWh"]
    assert tab.text("#usage-total") == "%s kWh on 17 days with readings" % webapp.kwh(sum(expect), 1)
    # the token link set an HttpOnly SameSite=Strict cookie: plain /c/<meter> works from now on
    cookie = [c for c in tab.cookies() if c["name"] == webapp.COOKIE]
    assert cookie and cookie[0]["httpOnly"] and cookie[0]["sameSite"] == "Strict"
    assert tab.navigate(web.url("/c/" + M1)) == 200 and tab.text("#balance") == "12.99"
    shot = tab.screenshot("customer")
    # bills: the HTML one in the browser, the PDF's bytes with the session's cookie
    assert tab.click("#bills a[href$='.html']") == 200
    assert tab.path() == "/c/%s/bill/2026-01.html" % M1 and tab.text("#bill-title") == "Bill for January 2026"
    pdf = DIRECT.open(urllib.request.Request(web.url("/c/%s/bill/2026-01.pdf" % M1),
                                             headers={"Cookie": "%s=%s" % (webapp.COOKIE, cookie[0]["value"])}))
    assert pdf.headers["Content-Type"] == "application/pdf" and pdf.read() == web.db.bill(M1, "2026-01")["pdf"]
    check_png(shot)


def test_days_left_unknown_without_readings(web, tab):
    web.login(tab, M2)
    assert tab.text("#balance") == "—" and tab.text("#days-left") == "—"
    assert tab.text("#usage-none") == "No daily readings yet."
    assert webapp.days_left(500, {}) == (None, None)
    # a zero or negative balance has no days left, not a negative count
    daily = webapp.daily_snapshots([{"snap": "d", "date": d, "c": c} for d, _, c in daily_fixture()])
    assert webapp.days_left(-5, daily) == (0, 100)
    assert webapp.days_left(699, daily) == (6, 100)


@BOTH_ENGINES
def test_top_up_through_the_payment_step_once(web, tab):
    web.login(tab)
    old = web.db.state(M1)["tele"]["b"]
    tab.type("#amount", "5.05")
    assert tab.click("#topup-submit") == 200
    assert tab.path().startswith("/pay/SI-")
    ref = tab.text("#pay-ref")
    assert tab.text("#pay-amount") == "KES 5.05"
    assert web.svc.sent == [] and web.db.payments(M1) == []  # nothing before the provider confirms
    pay_shot = tab.screenshot("payment")
    # the same checkout open in a second tab: confirming it again must not top up twice
    tab2 = tab.another()
    assert tab2.navigate(web.url("/pay/" + ref)) == 200 and tab2.text("#pay-ref") == ref

    assert tab.click("#pay-confirm") == 200
    assert tab.path() == "/c/" + M1
    assert tab.text("#balance") == fmt(old + 505) == "18.04"
    assert "Payment %s of KES 5.05 received." % ref in tab.text("#flash")
    row = tab.js("[...document.querySelectorAll('#payments tr')].map(r => r.textContent)")[1]
    assert ref in row and "KES 5.05" in row and "applied" in row
    assert [(s["op"], s["origin"], s["args"]) for s in web.svc.sent] == [("topup", "web", {"amt": 505})]

    assert tab2.click("#pay-confirm") == 200
    assert tab2.path() == "/c/" + M1 and "was already received" in tab2.text("#flash")
    assert len(web.svc.sent) == 1
    pays = web.db.payments(M1)
    assert len(pays) == 1 and pays[0]["ref"] == ref and pays[0]["amount"] == 505
    assert pays[0]["cmd_id"] == web.svc.sent[0]["cmd_id"] and pays[0]["res"] == "applied"
    assert tab2.text("#balance") == "18.04"
    # confirms racing each other: the database's unique reference lets one through
    go = threading.Barrier(8)
    results = []

    def confirm():
        go.wait(TIMEOUT)
        results.append(web.server.app.settle(M1, 100, "SI-race"))
    racers = [threading.Thread(target=confirm) for _ in range(8)]
    for t in racers:
        t.start()
    for t in racers:
        t.join(TIMEOUT)
    assert sorted(r[1] for r in results) == [False] * 7 + [True]
    assert len(web.svc.sent) == 2 and len(web.db.payments(M1)) == 2
    shot = tab.screenshot("customer-after-topup")
    check_png(pay_shot)
    check_png(shot)


def test_top_up_pending_then_applied_and_refused(web, tab):
    web.login(tab)
    web.svc.hold = True
    tab.type("#amount", "3")
    tab.click("#topup-submit")
    assert tab.click("#pay-confirm") == 200
    result = "#payments tr:nth-child(2) .result"
    assert tab.text(result) == "pending" and tab.text("#balance") == "12.99"
    web.svc.release()

    def applied():
        tab.navigate(web.url("/c/" + M1))
        return tab.text(result) == "applied"
    wait_until(applied, "the top-up to show as applied")
    assert tab.text("#balance") == "15.99"
    # over the meter's maximum balance: the meter refuses, the page says so
    web.svc.hold, web.svc.maxb = False, 2000
    tab.type("#amount", "10.00")
    tab.click("#topup-submit")
    tab.click("#pay-confirm")
    assert tab.text(result) == "refused (refused_max_balance)"
    assert tab.text("#balance") == "15.99"
    # a cancelled checkout sends nothing
    tab.type("#amount", "1.00")
    tab.click("#topup-submit")
    assert tab.click("#pay-cancel") == 200
    assert "cancelled" in tab.text("#flash") and len(web.svc.sent) == 2 and len(web.db.payments(M1)) == 2


@pytest.mark.parametrize("amount", ["5.001", "abc", "0", "", "-5", "1e3", "5,00"])
def test_bad_amount_shows_the_form_again(web, tab, amount):
    web.login(tab)
    tab.type("#amount", amount)
    assert tab.click("#topup-submit") == 400
    assert tab.path() == "/c/%s/topup" % M1
    assert "at most 2 decimals" in tab.text("#topup-error")
    assert tab.js("document.querySelector('#amount').value") == amount
    assert web.payments.checkouts == {} and web.db.payments(M1) == [] and web.svc.sent == []


def test_repair_request(web, tab):
    web.login(tab)
    tab.type("#request-text", "")
    assert tab.click("#request-submit") == 400 and tab.text("#request-error") == "Please say what is wrong."
    assert web.db.requests(M1) == []
    text = "Display is blank <script>alert(1)</script>"
    tab.type("#request-text", text)
    tab.type("#request-contact", "+254 700 000 001")
    assert tab.click("#request-submit") == 200
    assert tab.path() == "/c/" + M1
    reqs = web.db.requests(M1)
    assert [(r["text"], r["contact"]) for r in reqs] == [(text, "+254 700 000 001")]
    assert tab.text("#flash") == "Thank you: your request #%d was received." % reqs[0]["id"]
    assert text in tab.text("#requests") and tab.js("document.querySelectorAll('main script').length") == 0


def test_csrf_token_is_required(web, tab):
    web.login(tab)
    # the page's own form with the token replaced
    tab.js("document.querySelector('#topup input[name=csrf]').value = 'forged'")
    tab.type("#amount", "5.00")
    assert tab.click("#topup-submit") == 403
    assert "could not be checked" in tab.text("#error-text")
    # a form on another site of this host (the session cookie goes along: same site) without it
    evil = ('<html><body><form id="f" method="post" action="%s"><input name="text" value="forged">'
            '<button id="go" type="submit">go</button></form></body></html>' % web.url("/c/%s/request" % M1)).encode()

    class Evil(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(evil)))
            self.end_headers()
            self.wfile.write(evil)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Evil)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        assert tab.navigate("http://127.0.0.1:%d/" % srv.server_address[1]) == 200
        assert tab.click("#go") == 403
        assert "could not be checked" in tab.text("#error-text")  # refused by the token, not the session
    finally:
        srv.shutdown()
        srv.server_close()
    assert web.db.requests(M1) == [] and web.payments.checkouts == {} and web.svc.sent == []


def test_customer_access_is_refused(web, tab):
    assert tab.navigate(web.url("/c/" + M1)) == 403
    assert "open the link" in tab.text("#error-text")
    assert tab.navigate(web.url("/c/%s?t=wrong" % M1)) == 403
    assert tab.navigate(web.url("/c/%s?t=%s" % (M1, web.tokens[M2]))) == 403
    assert tab.navigate(web.url("/c/%s/bill/2026-01.html" % M1)) == 403
    web.login(tab, M2)
    assert tab.navigate(web.url("/c/" + M1)) == 403  # a session sees only the meters it opened
    assert tab.navigate(web.url("/c/NOPE?t=x")) == 404
    for path in ("/", "/c/", "/c/%s/nothing" % M1, "/c/%s/bill/2026-13x.html" % M1, "/pay/SI-" + "0" * 20,
                 "/c/" + "x" * 40, "/etc/passwd", "/c/%s/bill/2025-01.html" % M2):
        assert tab.navigate(web.url(path)) == 404, path
    web.login(tab)
    assert tab.navigate(web.url("/c/%s/bill/2025-01.html" % M1)) == 404
    # a meter without a token has no customer page at all
    web.db.put_meter(web.db.meter(M2)["rec"], name="x", web_token="")
    assert tab.navigate(web.url("/c/%s?t=" % M2)) == 403


@BOTH_ENGINES
def test_operator_pages(web, tab):
    web.db.add_request(M1, "Sparks at the meter <b>now</b>", "amina@example.org")
    assert tab.navigate(web.url("/op/")) == 401
    bad = base64.b64encode(b"operator:wrong").decode()
    tab.call("Network.setExtraHTTPHeaders", headers={"Authorization": "Basic " + bad})
    assert tab.navigate(web.url("/op/")) == 401
    good = base64.b64encode(("operator:" + web.password).encode()).decode()
    tab.call("Network.setExtraHTTPHeaders", headers={"Authorization": "Basic " + good})
    assert tab.navigate(web.url("/op/")) == 200
    meters = tab.js("[...document.querySelectorAll('#meters tr')].slice(1).map(r => "
                    "[...r.cells].map(c => c.textContent))")
    assert [m[0] for m in meters] == [M1, M2]
    assert meters[0][1] == NAME and meters[0][2] == "online" and meters[0][3] == "KES 12.99"
    assert meters[0][4] == "on" and meters[0][6] == "0 / %d" % web.db.state(M1)["high"]
    assert meters[1][2] == "offline" and meters[1][3] == "—"
    assert "low_credit_1" in tab.text("#events") and "198" in tab.text("#events")
    failed = tab.text("#failed-commands")
    assert "tariff" in failed and "bad_args" in failed
    deliveries = tab.text("#deliveries")
    assert "low_credit" in deliveries and "amina@example.org" in deliveries and "sent" in deliveries
    assert "Sparks at the meter <b>now</b>" in tab.text("#op-requests")
    assert tab.js("document.querySelectorAll('#op-requests b').length") == 0
    shot = tab.screenshot("operator")
    assert tab.click("#meters a[href='/op/m/%s']" % M1) == 200
    assert "low_credit_1" in tab.text("#op-events") and "bad_args" in tab.text("#op-commands")
    assert tab.navigate(web.url("/op/m/NOPE")) == 404
    check_png(shot)


def test_errors_are_logged_not_shown(web, tab, caplog):
    caplog.set_level(logging.ERROR, logger="pm.web")

    def broken():
        raise RuntimeError("secret detail 7f3a")
    web.db.overview = broken
    good = base64.b64encode(("operator:" + web.password).encode()).decode()
    tab.call("Network.setExtraHTTPHeaders", headers={"Authorization": "Basic " + good})
    assert tab.navigate(web.url("/op/")) == 500
    body = tab.js("document.documentElement.outerHTML")
    assert "Something went wrong" in body and "secret detail" not in body and "Traceback" not in body
    wait_until(lambda: any(r.exc_info and "secret detail 7f3a" in str(r.exc_info[1]) for r in caplog.records),
               "the traceback in the log")


def test_make_server_needs_an_operator_password(tmp_path):
    db = service_db.Db(str(tmp_path / "x.db"))
    for pw in (None, ""):
        with pytest.raises(ValueError, match="password"):
            webapp.make_server(db, None, operator_password=pw)
    db.close()
