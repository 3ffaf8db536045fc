"""The headend service's database: meters, every uplink, commands and their answers, reminders
to send, bills, payments and repair requests (docs/service.md).

One SQL dialect for two engines: SQLite by default (one file, WAL) and PostgreSQL when a utility
outgrows one machine. Open with a URL:

    Db("sqlite:///var/lib/pm/headend.db")   or   Db("/var/lib/pm/headend.db")
    Db("postgresql://user:pass@host:5432/pm")            (needs the `psycopg` package)

The schema is created and migrated on open (`schema_version`, numbered migrations below). Every
write that belongs together is one transaction (`with db.tx() as c:`): an uplink, the meter state
it changes and the notices it raises commit together or not at all, so a crash between them
loses nothing and a redelivered message adds nothing (uplinks are unique per meter, numbering era
and seq).
"""
import json
import sqlite3
import threading
import time
from contextlib import contextmanager

# Notices the customer is told about, by the meter event that raises them (protocol.md 5.5).
NOTICE_OF_EVENT = {
    "low_credit_1": "low_credit",
    "low_credit_2": "low_credit",
    "ec_invoked": "emergency_credit",
    "relay_open": "disconnected",
    "relay_closed": "reconnected",
}
CHANNELS = ("email", "sms")  # a notice goes to each channel the customer has a contact for

# Each migration is a list of statements; {id} and {blob} differ between the engines.
MIGRATIONS = [
    [
        """CREATE TABLE meters (
            meter_id TEXT PRIMARY KEY,
            rec TEXT NOT NULL,              -- the headend record: key, credentials, counters (JSON)
            name TEXT NOT NULL DEFAULT '',
            email TEXT NOT NULL DEFAULT '',
            phone TEXT NOT NULL DEFAULT '',
            address TEXT NOT NULL DEFAULT '',
            web_token TEXT NOT NULL DEFAULT '',
            created BIGINT NOT NULL)""",
        """CREATE TABLE meter_state (
            meter_id TEXT PRIMARY KEY REFERENCES meters(meter_id),
            era INTEGER NOT NULL DEFAULT 0, -- numbering restarts seen (protocol.md 5.1)
            boot BIGINT,
            high BIGINT NOT NULL DEFAULT 0, -- newest seq of this era
            last BIGINT NOT NULL DEFAULT 0, -- newest seq the meter says it used
            online INTEGER NOT NULL DEFAULT 0,
            rev INTEGER NOT NULL DEFAULT 1,
            t BIGINT NOT NULL DEFAULT 0,    -- the meter's clock in its newest message
            seen_at BIGINT NOT NULL DEFAULT 0,
            tele TEXT NOT NULL DEFAULT '{}' -- newest telemetry document
        )""",
        """CREATE TABLE uplinks (
            id {id},
            meter_id TEXT NOT NULL,
            era INTEGER NOT NULL,
            seq BIGINT,                     -- NULL: a birth or last will (unnumbered)
            kind TEXT NOT NULL,
            t BIGINT,
            doc TEXT NOT NULL,
            received BIGINT NOT NULL,
            UNIQUE (meter_id, era, seq))""",
        "CREATE INDEX uplinks_kind ON uplinks (meter_id, kind, t)",
        """CREATE TABLE gone (
            meter_id TEXT NOT NULL, era INTEGER NOT NULL, seq BIGINT NOT NULL,
            PRIMARY KEY (meter_id, era, seq))""",
        """CREATE TABLE snapshots (
            meter_id TEXT NOT NULL, snap TEXT NOT NULL, period TEXT NOT NULL, t BIGINT NOT NULL,
            doc TEXT NOT NULL, PRIMARY KEY (meter_id, snap, period))""",
        """CREATE TABLE commands (
            meter_id TEXT NOT NULL, cmd_id BIGINT NOT NULL, op TEXT NOT NULL, args TEXT NOT NULL,
            origin TEXT NOT NULL, created BIGINT NOT NULL, exp BIGINT NOT NULL,
            state TEXT NOT NULL,            -- sent | answered | expired (never answered)
            res TEXT, answer TEXT, answered BIGINT,
            PRIMARY KEY (meter_id, cmd_id))""",
        """CREATE TABLE notices (
            id {id},
            meter_id TEXT NOT NULL, kind TEXT NOT NULL,
            ukey TEXT NOT NULL UNIQUE,      -- meter, era, seq of the event: one notice per event
            t BIGINT NOT NULL, created BIGINT NOT NULL, data TEXT NOT NULL)""",
        """CREATE TABLE deliveries (
            notice_id BIGINT NOT NULL REFERENCES notices(id), channel TEXT NOT NULL,
            address TEXT NOT NULL,
            state TEXT NOT NULL,            -- pending | sent | failed (gave up)
            attempts INTEGER NOT NULL DEFAULT 0, next_try BIGINT NOT NULL,
            last_error TEXT NOT NULL DEFAULT '', sent_at BIGINT,
            PRIMARY KEY (notice_id, channel))""",
        "CREATE INDEX deliveries_due ON deliveries (state, next_try)",
        """CREATE TABLE bills (
            meter_id TEXT NOT NULL, month TEXT NOT NULL, created BIGINT NOT NULL,
            totals TEXT NOT NULL, html TEXT NOT NULL, pdf {blob},
            PRIMARY KEY (meter_id, month))""",
        """CREATE TABLE payments (
            id {id},
            meter_id TEXT NOT NULL, amount BIGINT NOT NULL, ref TEXT NOT NULL UNIQUE,
            created BIGINT NOT NULL, state TEXT NOT NULL, cmd_id BIGINT)""",
        """CREATE TABLE requests (
            id {id},
            meter_id TEXT NOT NULL, created BIGINT NOT NULL, text TEXT NOT NULL,
            contact TEXT NOT NULL DEFAULT '', state TEXT NOT NULL DEFAULT 'open')""",
    ],
    [  # 2: the service sends a command again until the meter answers or it expires
        "ALTER TABLE commands ADD COLUMN payload TEXT",
        "ALTER TABLE commands ADD COLUMN tries INTEGER NOT NULL DEFAULT 1",
        "ALTER TABLE commands ADD COLUMN last_sent BIGINT NOT NULL DEFAULT 0",
        "CREATE INDEX commands_open ON commands (state, last_sent)",
    ],
]


class DbError(Exception):
    pass


class Db:
    def __init__(self, url):
        self.url = url
        if url.startswith(("postgresql://", "postgres://")):
            try:
                import psycopg
            except ImportError:
                raise DbError("a PostgreSQL database needs the psycopg package (pip install psycopg)")
            self._psycopg = psycopg
            self.engine = "postgresql"
            self._subst = {"id": "BIGSERIAL PRIMARY KEY", "blob": "BYTEA"}
        else:
            self.path = url[len("sqlite:///") - 1:] if url.startswith("sqlite:///") else url
            self.engine = "sqlite"
            self._subst = {"id": "INTEGER PRIMARY KEY AUTOINCREMENT", "blob": "BLOB"}
        self._local = threading.local()
        self._all = []
        self._lock = threading.Lock()
        self.migrate()

    # -- connections: one per thread (sqlite3 and psycopg connections are not shared) ----------
    def _conn(self):
        c = getattr(self._local, "conn", None)
        if c is None:
            if self.engine == "sqlite":
                c = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
                c.execute("PRAGMA journal_mode=WAL")
                c.execute("PRAGMA synchronous=FULL")  # a committed uplink survives a power cut
                c.execute("PRAGMA foreign_keys=ON")
            else:
                try:
                    c = self._psycopg.connect(self.url, autocommit=True)
                except self._psycopg.Error as e:
                    raise DbError("cannot reach the database: %s" % e)
            self._local.conn = c
            with self._lock:
                self._all.append(c)
        return c

    @contextmanager
    def tx(self):
        """One transaction; yields a cursor whose execute() takes `?` placeholders."""
        conn = self._conn()
        cur = _Cursor(conn.cursor(), self.engine)
        if self.engine == "sqlite":
            cur.execute("BEGIN IMMEDIATE")  # writers queue here, not deadlock at their first write
            try:
                yield cur
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        else:
            with conn.transaction():
                yield cur

    def close(self):
        with self._lock:
            for c in self._all:
                c.close()
            self._all.clear()
        self._local = threading.local()

    def migrate(self):
        with self.tx() as c:
            c.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            c.execute("SELECT version FROM schema_version")
            row = c.fetchone()
            have = row[0] if row else 0
            if have > len(MIGRATIONS):
                raise DbError("the database has schema version %d; this headend knows up to %d: "
                              "run a newer headend" % (have, len(MIGRATIONS)))
            for stmts in MIGRATIONS[have:]:
                for s in stmts:
                    c.execute(s.replace("{id}", self._subst["id"]).replace("{blob}", self._subst["blob"]))
            if not row:
                c.execute("INSERT INTO schema_version (version) VALUES (?)", (len(MIGRATIONS),))
            elif have < len(MIGRATIONS):
                c.execute("UPDATE schema_version SET version = ?", (len(MIGRATIONS),))

    def schema_version(self):
        with self.tx() as c:
            c.execute("SELECT version FROM schema_version")
            return c.fetchone()[0]

    # -- meters -----------------------------------------------------------------------------
    def put_meter(self, rec, name="", email="", phone="", address="", web_token="", now=None):
        """Add or replace a meter: `rec` is the headend record (meter_id, key, ...)."""
        now = int(time.time() if now is None else now)
        with self.tx() as c:
            c.execute("INSERT INTO meters (meter_id, rec, name, email, phone, address, web_token, created) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (meter_id) DO UPDATE SET rec = excluded.rec, "
                      "name = excluded.name, email = excluded.email, phone = excluded.phone, "
                      "address = excluded.address, web_token = excluded.web_token",
                      (rec["meter_id"], json.dumps(rec, sort_keys=True), name, email, phone, address, web_token, now))
            c.execute("INSERT INTO meter_state (meter_id) VALUES (?) ON CONFLICT (meter_id) DO NOTHING",
                      (rec["meter_id"],))

    def put_rec(self, rec):
        """Add a meter or replace its headend record, keeping its customer's details."""
        with self.tx() as c:
            c.execute("INSERT INTO meters (meter_id, rec, created) VALUES (?, ?, ?) ON CONFLICT (meter_id) "
                      "DO UPDATE SET rec = excluded.rec", (rec["meter_id"], json.dumps(rec, sort_keys=True),
                                                           int(time.time())))
            c.execute("INSERT INTO meter_state (meter_id) VALUES (?) ON CONFLICT (meter_id) DO NOTHING",
                      (rec["meter_id"],))

    def set_customer(self, meter_id, **fields):
        """Change name, email, phone, address or web_token of a meter's customer."""
        bad = set(fields) - {"name", "email", "phone", "address", "web_token"}
        if bad:
            raise DbError("no such customer field: %s" % ", ".join(sorted(bad)))
        with self.tx() as c:
            for k, v in sorted(fields.items()):
                c.execute("UPDATE meters SET %s = ? WHERE meter_id = ?" % k, (v, meter_id))

    def meter(self, meter_id):
        """The meter's row as a dict (rec decoded), or None."""
        with self.tx() as c:
            c.execute("SELECT meter_id, rec, name, email, phone, address, web_token, created FROM meters "
                      "WHERE meter_id = ?", (meter_id,))
            row = c.fetchone()
        return _meter_row(row) if row else None

    def meters(self):
        with self.tx() as c:
            c.execute("SELECT meter_id, rec, name, email, phone, address, web_token, created FROM meters "
                      "ORDER BY meter_id")
            return [_meter_row(r) for r in c.fetchall()]

    def overview(self):
        """Every meter with its state in one query (the operator's list), by meter id."""
        with self.tx() as c:
            c.execute("SELECT m.meter_id, m.name, m.rec, s.era, s.high, s.last, s.online, s.t, s.seen_at, s.tele "
                      "FROM meters m LEFT JOIN meter_state s ON s.meter_id = m.meter_id ORDER BY m.meter_id")
            rows = c.fetchall()
        keys = ("meter_id", "name", "rec", "era", "high", "last", "online", "t", "seen_at", "tele")
        out = [dict(zip(keys, r)) for r in rows]
        for d in out:
            d["rec"] = json.loads(d["rec"])
            d["tele"] = json.loads(d["tele"] or "{}")
        return out

    def update_rec(self, meter_id, change):
        """Read-modify-write the headend record under the transaction's lock; returns change()'s value."""
        with self.tx() as c:
            c.execute("SELECT rec FROM meters WHERE meter_id = ?" + self._for_update(), (meter_id,))
            row = c.fetchone()
            if not row:
                raise DbError("unknown meter %r" % meter_id)
            rec = json.loads(row[0])
            out = change(rec)
            c.execute("UPDATE meters SET rec = ? WHERE meter_id = ?", (json.dumps(rec, sort_keys=True), meter_id))
            return out

    def next_cmd_id(self, meter_id):
        """Reserve the next command id (the counter only grows: a crash never reuses one)."""
        def take(rec):
            n = rec.get("next_cmd_id", 1)
            rec["next_cmd_id"] = n + 1
            return n
        return self.update_rec(meter_id, take)

    def _for_update(self):
        return "" if self.engine == "sqlite" else " FOR UPDATE"

    def state(self, meter_id):
        with self.tx() as c:
            c.execute("SELECT era, boot, high, last, online, rev, t, seen_at, tele FROM meter_state "
                      "WHERE meter_id = ?", (meter_id,))
            r = c.fetchone()
        if not r:
            return None
        keys = ("era", "boot", "high", "last", "online", "rev", "t", "seen_at", "tele")
        d = dict(zip(keys, r))
        d["tele"] = json.loads(d["tele"])
        return d

    # -- uplinks ----------------------------------------------------------------------------
    def store_uplink(self, meter_id, kind, doc, now=None):
        """Store one verified uplink message and what follows from it, in one transaction.
        Returns (stored, era, notices): stored False for a duplicate (same era and seq), which
        changes nothing; notices: ids of the notices it raised."""
        now = int(time.time() if now is None else now)
        seq = doc.get("seq") if isinstance(doc.get("seq"), int) else None
        t = doc.get("t") if isinstance(doc.get("t"), int) else None
        with self.tx() as c:
            c.execute("SELECT era, boot, high, last, t FROM meter_state WHERE meter_id = ?" + self._for_update(),
                      (meter_id,))
            row = c.fetchone()
            if row is None:
                raise DbError("unknown meter %r" % meter_id)
            era, boot, high, last, mt = row
            if kind == "status" and doc.get("online") == 1 and isinstance(doc.get("last"), int):
                if boot is not None and doc.get("boot") != boot and doc["last"] < max(high, last):
                    era, high, last = era + 1, 0, 0  # the meter restarted its numbering (5.1)
                boot = doc.get("boot")
                last = max(last, doc["last"])
            if seq is not None:
                c.execute("INSERT INTO uplinks (meter_id, era, seq, kind, t, doc, received) "
                          "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (meter_id, era, seq) DO NOTHING RETURNING id",
                          (meter_id, era, seq, kind, t, json.dumps(doc, sort_keys=True), now))
                if c.fetchone() is None:
                    return False, era, []
                high = max(high, seq)
            else:
                text = json.dumps(doc, sort_keys=True)
                if kind == "status":
                    # The retained birth comes again at every (re)subscription: keep it once.
                    c.execute("SELECT doc FROM uplinks WHERE meter_id = ? AND kind = 'status' ORDER BY id DESC "
                              "LIMIT 1", (meter_id,))
                    prev = c.fetchone()
                    if prev is not None and prev[0] == text:
                        return False, era, []
                c.execute("INSERT INTO uplinks (meter_id, era, seq, kind, t, doc, received) "
                          "VALUES (?, ?, NULL, ?, ?, ?, ?)", (meter_id, era, kind, t, text, now))
            sets = ["era = ?", "boot = ?", "high = ?", "last = ?", "t = ?", "seen_at = ?"]
            vals = [era, boot, high, max(last, high), max(mt, t or 0), now]
            if kind == "status":
                sets.append("online = ?")
                vals.append(1 if doc.get("online") == 1 else 0)
                if doc.get("online") == 1:
                    sets.append("rev = ?")
                    vals.append(doc.get("rev", 1))
            if kind == "tele":
                sets.append("tele = ?")
                vals.append(json.dumps(doc, sort_keys=True))
            c.execute("UPDATE meter_state SET %s WHERE meter_id = ?" % ", ".join(sets), vals + [meter_id])
            if kind == "snap" and doc.get("snap") in ("d", "m") and isinstance(doc.get("date"), str):
                c.execute("INSERT INTO snapshots (meter_id, snap, period, t, doc) VALUES (?, ?, ?, ?, ?) "
                          "ON CONFLICT (meter_id, snap, period) DO NOTHING",
                          (meter_id, doc["snap"], doc["date"], t or 0, json.dumps(doc, sort_keys=True)))
            notices = []
            if kind == "evt" and doc.get("ev") in NOTICE_OF_EVENT and seq is not None:
                notices.append(self._notice(c, meter_id, NOTICE_OF_EVENT[doc["ev"]],
                                            "%s/%d/%d" % (meter_id, era, seq), t or 0, now, doc))
            if kind == "reply" and isinstance(doc.get("id"), int) and doc.get("res") is not None:
                c.execute("UPDATE commands SET state = 'answered', res = ?, answer = ?, answered = ? "
                          "WHERE meter_id = ? AND cmd_id = ? AND state <> 'answered'",
                          (doc["res"], json.dumps(doc, sort_keys=True), now, meter_id, doc["id"]))
            return True, era, [n for n in notices if n is not None]

    def _notice(self, c, meter_id, kind, ukey, t, now, doc):
        c.execute("SELECT email, phone FROM meters WHERE meter_id = ?", (meter_id,))
        email, phone = c.fetchone()
        data = {"ev": doc.get("ev"), "a": doc.get("a"), "t": t}
        c.execute("INSERT INTO notices (meter_id, kind, ukey, t, created, data) VALUES (?, ?, ?, ?, ?, ?) "
                  "ON CONFLICT (ukey) DO NOTHING RETURNING id", (meter_id, kind, ukey, t, now, json.dumps(data)))
        row = c.fetchone()
        if row is None:
            return None
        for channel, address in (("email", email), ("sms", phone)):
            if address:
                c.execute("INSERT INTO deliveries (notice_id, channel, address, state, next_try) "
                          "VALUES (?, ?, ?, 'pending', ?)", (row[0], channel, address, now))
        return row[0]

    def uplinks(self, meter_id, kind=None, era=None, since_t=None, until_t=None):
        """Stored uplink documents (numbered ones once each), oldest first."""
        q, args = "SELECT doc FROM uplinks WHERE meter_id = ?", [meter_id]
        for col, op, v in (("kind", "=", kind), ("era", "=", era), ("t", ">=", since_t), ("t", "<", until_t)):
            if v is not None:
                q += " AND %s %s ?" % (col, op)
                args.append(v)
        with self.tx() as c:
            c.execute(q + " ORDER BY era, COALESCE(seq, 0), id", args)
            return [json.loads(r[0]) for r in c.fetchall()]

    def scan(self, meter_id):
        """(era, kind, doc) of every stored message, in the order stored (births included)."""
        with self.tx() as c:
            c.execute("SELECT era, kind, doc FROM uplinks WHERE meter_id = ? ORDER BY id", (meter_id,))
            return [(r[0], r[1], json.loads(r[2])) for r in c.fetchall()]

    def seen_seqs(self, meter_id, era):
        with self.tx() as c:
            c.execute("SELECT seq FROM uplinks WHERE meter_id = ? AND era = ? AND seq IS NOT NULL", (meter_id, era))
            seen = {r[0] for r in c.fetchall()}
            c.execute("SELECT seq FROM gone WHERE meter_id = ? AND era = ?", (meter_id, era))
            return seen, {r[0] for r in c.fetchall()}

    def mark_gone(self, meter_id, era, seqs):
        with self.tx() as c:
            for s in seqs:
                c.execute("INSERT INTO gone (meter_id, era, seq) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                          (meter_id, era, s))

    def snapshots(self, meter_id):
        with self.tx() as c:
            c.execute("SELECT doc FROM snapshots WHERE meter_id = ? ORDER BY t, snap", (meter_id,))
            return [json.loads(r[0]) for r in c.fetchall()]

    # -- commands ---------------------------------------------------------------------------
    def add_command(self, meter_id, cmd_id, op, args, exp, origin, now=None, payload=None):
        """Record a command before it is published; with its `payload` (the signed bytes as text)
        the service sends it again until it is answered or expires (resend_due)."""
        now = int(time.time() if now is None else now)
        with self.tx() as c:
            c.execute("INSERT INTO commands (meter_id, cmd_id, op, args, origin, created, exp, state, payload, "
                      "last_sent) VALUES (?, ?, ?, ?, ?, ?, ?, 'sent', ?, ?)",
                      (meter_id, cmd_id, op, json.dumps(args, sort_keys=True), origin, now, exp, payload, now))

    def resend_due(self, before, limit=100):
        """Unanswered commands with a payload last sent before `before`: (meter_id, cmd_id, exp, payload)."""
        with self.tx() as c:
            c.execute("SELECT meter_id, cmd_id, exp, payload FROM commands WHERE state = 'sent' AND "
                      "payload IS NOT NULL AND last_sent < ? ORDER BY last_sent LIMIT %d" % int(limit),
                      (int(before),))
            return c.fetchall()

    def command_resent(self, meter_id, cmd_id, now):
        with self.tx() as c:
            c.execute("UPDATE commands SET tries = tries + 1, last_sent = ? WHERE meter_id = ? AND cmd_id = ? "
                      "AND state = 'sent'", (int(now), meter_id, cmd_id))

    def command_expired(self, meter_id, cmd_id):
        """Never answered and past its expiry in the meter's time: the meter refuses it if it ever
        arrives, so a new command (a new id) is safe."""
        with self.tx() as c:
            c.execute("UPDATE commands SET state = 'expired' WHERE meter_id = ? AND cmd_id = ? AND state = 'sent'",
                      (meter_id, cmd_id))

    def command(self, meter_id, cmd_id):
        with self.tx() as c:
            c.execute("SELECT op, args, origin, created, exp, state, res, answer, tries FROM commands "
                      "WHERE meter_id = ? AND cmd_id = ?", (meter_id, cmd_id))
            r = c.fetchone()
        if not r:
            return None
        return {"op": r[0], "args": json.loads(r[1]), "origin": r[2], "created": r[3], "exp": r[4],
                "state": r[5], "res": r[6], "answer": json.loads(r[7]) if r[7] else None, "tries": r[8]}

    def commands(self, meter_id=None, failed_only=False, limit=200):
        q, args = "SELECT meter_id, cmd_id, op, args, origin, created, state, res FROM commands", []
        conds = []
        if meter_id:
            conds.append("meter_id = ?")
            args.append(meter_id)
        if failed_only:
            conds.append("(state <> 'answered' OR res NOT IN ('applied', 'ok'))")
        if conds:
            q += " WHERE " + " AND ".join(conds)
        with self.tx() as c:
            c.execute(q + " ORDER BY created DESC, cmd_id DESC LIMIT %d" % int(limit), args)
            keys = ("meter_id", "cmd_id", "op", "args", "origin", "created", "state", "res")
            return [dict(zip(keys, r)) for r in c.fetchall()]

    # -- reminders: the outbox the dispatcher works from ------------------------------------
    def due_deliveries(self, now, limit=50, channels=None):
        """Pending deliveries due by `now`, oldest first; `channels`: only those channels (a
        dispatcher without one of them must not have its deliveries fill every batch)."""
        q, args = "", [int(now)]
        if channels is not None:
            if not channels:
                return []
            q = " AND d.channel IN (%s)" % ", ".join("?" * len(channels))
            args += list(channels)
        with self.tx() as c:
            c.execute("SELECT d.notice_id, d.channel, d.address, d.attempts, n.meter_id, n.kind, n.ukey, n.t, "
                      "n.data, m.name FROM deliveries d JOIN notices n ON n.id = d.notice_id "
                      "JOIN meters m ON m.meter_id = n.meter_id "
                      "WHERE d.state = 'pending' AND d.next_try <= ?%s ORDER BY d.next_try, d.notice_id LIMIT %d"
                      % (q, int(limit)), args)
            keys = ("notice_id", "channel", "address", "attempts", "meter_id", "kind", "ukey", "t", "data", "name")
            out = [dict(zip(keys, r)) for r in c.fetchall()]
        for d in out:
            d["data"] = json.loads(d["data"])
        return out

    def delivery_sent(self, notice_id, channel, now):
        with self.tx() as c:
            c.execute("UPDATE deliveries SET state = 'sent', sent_at = ?, attempts = attempts + 1 "
                      "WHERE notice_id = ? AND channel = ? AND state = 'pending'", (int(now), notice_id, channel))

    def delivery_retry(self, notice_id, channel, next_try, error, give_up=False, count=True):
        """A failed attempt (count) or a postponement (quiet hours: count False)."""
        with self.tx() as c:
            c.execute("UPDATE deliveries SET state = ?, next_try = ?, last_error = ?, "
                      "attempts = attempts + ? WHERE notice_id = ? AND channel = ? AND state = 'pending'",
                      ("failed" if give_up else "pending", int(next_try), error[:500], 1 if count else 0,
                       notice_id, channel))

    def deliveries(self, meter_id=None, limit=200):
        q = ("SELECT n.meter_id, n.kind, d.channel, d.address, d.state, d.attempts, d.sent_at, d.last_error, n.t "
             "FROM deliveries d JOIN notices n ON n.id = d.notice_id")
        args = []
        if meter_id:
            q += " WHERE n.meter_id = ?"
            args.append(meter_id)
        with self.tx() as c:
            c.execute(q + " ORDER BY n.id DESC, d.channel LIMIT %d" % int(limit), args)
            keys = ("meter_id", "kind", "channel", "address", "state", "attempts", "sent_at", "last_error", "t")
            return [dict(zip(keys, r)) for r in c.fetchall()]

    # -- bills, payments, repair requests --------------------------------------------------
    def put_bill(self, meter_id, month, totals, html, pdf=None, now=None):
        now = int(time.time() if now is None else now)
        with self.tx() as c:
            c.execute("INSERT INTO bills (meter_id, month, created, totals, html, pdf) VALUES (?, ?, ?, ?, ?, ?) "
                      "ON CONFLICT (meter_id, month) DO UPDATE SET created = excluded.created, "
                      "totals = excluded.totals, html = excluded.html, pdf = excluded.pdf",
                      (meter_id, month, now, json.dumps(totals, sort_keys=True), html, pdf))

    def bills(self, meter_id):
        with self.tx() as c:
            c.execute("SELECT month, created, totals, pdf IS NOT NULL FROM bills WHERE meter_id = ? "
                      "ORDER BY month DESC", (meter_id,))
            return [{"month": r[0], "created": r[1], "totals": json.loads(r[2]), "has_pdf": bool(r[3])}
                    for r in c.fetchall()]

    def bill(self, meter_id, month):
        with self.tx() as c:
            c.execute("SELECT totals, html, pdf FROM bills WHERE meter_id = ? AND month = ?", (meter_id, month))
            r = c.fetchone()
        return None if r is None else {"totals": json.loads(r[0]), "html": r[1],
                                       "pdf": bytes(r[2]) if r[2] is not None else None}

    def add_payment(self, meter_id, amount, ref, now=None):
        """Record a payment once per provider reference; returns (id, new)."""
        now = int(time.time() if now is None else now)
        with self.tx() as c:
            c.execute("INSERT INTO payments (meter_id, amount, ref, created, state) VALUES (?, ?, ?, ?, 'paid') "
                      "ON CONFLICT (ref) DO NOTHING RETURNING id", (meter_id, amount, ref, now))
            row = c.fetchone()
            if row:
                return row[0], True
            c.execute("SELECT id FROM payments WHERE ref = ?", (ref,))
            return c.fetchone()[0], False

    def payment_sent(self, pay_id, cmd_id):
        with self.tx() as c:
            c.execute("UPDATE payments SET cmd_id = ?, state = 'sent' WHERE id = ?", (cmd_id, pay_id))

    def payments(self, meter_id):
        with self.tx() as c:
            c.execute("SELECT p.id, p.amount, p.ref, p.created, p.state, p.cmd_id, c.res FROM payments p "
                      "LEFT JOIN commands c ON c.meter_id = p.meter_id AND c.cmd_id = p.cmd_id "
                      "WHERE p.meter_id = ? ORDER BY p.id DESC", (meter_id,))
            keys = ("id", "amount", "ref", "created", "state", "cmd_id", "res")
            return [dict(zip(keys, r)) for r in c.fetchall()]

    def add_request(self, meter_id, text, contact="", now=None):
        now = int(time.time() if now is None else now)
        with self.tx() as c:
            c.execute("INSERT INTO requests (meter_id, created, text, contact) VALUES (?, ?, ?, ?) RETURNING id",
                      (meter_id, now, text, contact))
            return c.fetchone()[0]

    def requests(self, meter_id=None):
        q, args = "SELECT id, meter_id, created, text, contact, state FROM requests", []
        if meter_id:
            q += " WHERE meter_id = ?"
            args.append(meter_id)
        with self.tx() as c:
            c.execute(q + " ORDER BY id DESC", args)
            keys = ("id", "meter_id", "created", "text", "contact", "state")
            return [dict(zip(keys, r)) for r in c.fetchall()]

    def events(self, meter_id=None, limit=200):
        q, args = "SELECT meter_id, seq, t, doc FROM uplinks WHERE kind = 'evt'", []
        if meter_id:
            q += " AND meter_id = ?"
            args.append(meter_id)
        with self.tx() as c:
            c.execute(q + " ORDER BY id DESC LIMIT %d" % int(limit), args)
            return [{"meter_id": r[0], "seq": r[1], "t": r[2], **json.loads(r[3])} for r in c.fetchall()]


def _meter_row(r):
    return {"meter_id": r[0], "rec": json.loads(r[1]), "name": r[2], "email": r[3], "phone": r[4],
            "address": r[5], "web_token": r[6], "created": r[7]}


class _Cursor:
    """A cursor that takes `?` placeholders on both engines."""

    def __init__(self, cur, engine):
        self._c = cur
        self._pg = engine == "postgresql"

    def execute(self, sql, args=()):
        if self._pg:
            sql = sql.replace("%", "%%").replace("?", "%s")
        self._c.execute(sql, args)

    def fetchone(self):
        return self._c.fetchone()

    def fetchall(self):
        return self._c.fetchall()
