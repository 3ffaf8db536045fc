"""The headend service's database (tools/service_db.py) on SQLite and PostgreSQL."""
import threading

import pytest

import service_db


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return "sqlite:///" + str(tmp_path / "headend.db")
    return request.getfixturevalue("pg_url")


def meter(db, mid="M1", **kw):
    db.put_meter({"meter_id": mid, "key": "11" * 32}, **kw)


def test_reopening_keeps_the_data_and_a_newer_schema_is_refused(db_url):
    db = service_db.Db(db_url)
    meter(db)
    assert db.store_uplink("M1", "tele", {"seq": 1, "t": 10, "b": 5})[0]
    db.close()
    db = service_db.Db(db_url)
    assert db.schema_version() == len(service_db.MIGRATIONS)
    assert db.uplinks("M1") == [{"seq": 1, "t": 10, "b": 5}]
    with db.tx() as c:
        c.execute("UPDATE schema_version SET version = ?", (len(service_db.MIGRATIONS) + 1,))
    db.close()
    with pytest.raises(service_db.DbError, match="newer headend"):
        service_db.Db(db_url)


def test_command_ids_only_grow_under_concurrent_writers(db_url):
    db = service_db.Db(db_url)
    meter(db)
    got, errors = [], []

    def take():
        try:
            for _ in range(25):
                got.append(db.next_cmd_id("M1"))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    ts = [threading.Thread(target=take) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert not errors
    assert sorted(got) == list(range(1, 101))  # no id given twice, none skipped


def test_an_uplink_its_state_and_its_notice_commit_together(db_url):
    db = service_db.Db(db_url)
    meter(db, email="a@example.net")  # no phone: e-mail only
    ev = {"seq": 7, "t": 100, "ev": "relay_open", "a": 1}
    stored, era, notices = db.store_uplink("M1", "evt", ev)
    assert stored and era == 0 and len(notices) == 1
    assert [(d["kind"], d["channel"], d["address"]) for d in db.deliveries("M1")] == [
        ("disconnected", "email", "a@example.net")]
    # Delivered again (QoS 1): nothing new.
    assert db.store_uplink("M1", "evt", ev) == (False, 0, [])
    assert len(db.deliveries("M1")) == 1
    # An event that is not for the customer raises no notice.
    assert db.store_uplink("M1", "evt", {"seq": 8, "t": 101, "ev": "chip_reset", "a": 0})[2] == []
    assert db.state("M1")["high"] == 8


def test_a_failing_statement_rolls_the_whole_uplink_back(db_url, monkeypatch):
    db = service_db.Db(db_url)
    meter(db, phone="+254700000001")
    real = db._notice

    def broken(*a):
        real(*a)
        raise RuntimeError("disk full")

    monkeypatch.setattr(db, "_notice", broken)
    with pytest.raises(RuntimeError):
        db.store_uplink("M1", "evt", {"seq": 1, "t": 5, "ev": "low_credit_1", "a": 90})
    assert db.uplinks("M1") == [] and db.deliveries("M1") == [] and db.state("M1")["high"] == 0
    monkeypatch.setattr(db, "_notice", real)
    assert db.store_uplink("M1", "evt", {"seq": 1, "t": 5, "ev": "low_credit_1", "a": 90})[0]
    assert len(db.deliveries("M1")) == 1


def test_snapshots_are_kept_once_per_period_and_replies_close_their_command(db_url):
    db = service_db.Db(db_url)
    meter(db)
    snap = {"t": 86400, "snap": "d", "date": "2026-01-01", "e": [700], "blk": [], "tm": 30, "ss": 86400,
            "c": 30, "b": 120, "debt": 0, "tu": 0}
    db.store_uplink("M1", "snap", dict(snap, seq=1))
    db.store_uplink("M1", "snap", dict(snap, seq=2))  # re-sent after a cut at midnight: a new number
    assert db.snapshots("M1") == [dict(snap, seq=1)]
    db.add_command("M1", 5, "topup", {"amt": 100}, 999, "web")
    db.store_uplink("M1", "reply", {"seq": 3, "id": 5, "res": "applied", "rep": 0, "b": 220})
    c = db.command("M1", 5)
    assert c["state"] == "answered" and c["res"] == "applied" and c["answer"]["b"] == 220
    assert db.commands(failed_only=True) == []


def test_unknown_meter_is_refused(db_url):
    db = service_db.Db(db_url)
    with pytest.raises(service_db.DbError, match="unknown meter"):
        db.store_uplink("NOPE", "tele", {"seq": 1})
    with pytest.raises(service_db.DbError, match="unknown meter"):
        db.next_cmd_id("NOPE")


def test_payments_are_recorded_once_per_reference(db_url):
    db = service_db.Db(db_url)
    meter(db)
    pid, new = db.add_payment("M1", 500, "ref-1")
    assert new
    assert db.add_payment("M1", 500, "ref-1") == (pid, False)
    db.payment_sent(pid, 9)
    assert [(p["amount"], p["state"], p["cmd_id"]) for p in db.payments("M1")] == [(500, "sent", 9)]


def test_a_database_of_an_older_schema_is_migrated_with_its_data(db_url):
    # The first schema, as a headend of that version made it.
    db = service_db.Db.__new__(service_db.Db)
    saved = service_db.MIGRATIONS[:]
    try:
        service_db.MIGRATIONS[:] = saved[:1]
        db = service_db.Db(db_url)
        meter(db)
        with db.tx() as c:
            c.execute("INSERT INTO commands (meter_id, cmd_id, op, args, origin, created, exp, state) "
                      "VALUES ('M1', 1, 'topup', '{}', 'cli', 5, 99, 'sent')")
        assert db.schema_version() == 1
        db.close()
    finally:
        service_db.MIGRATIONS[:] = saved
    db = service_db.Db(db_url)
    assert db.schema_version() == len(saved) >= 2
    c = db.command("M1", 1)
    assert c["op"] == "topup" and c["tries"] == 1  # the new column, with its default
    assert db.resend_due(10 ** 10) == []  # a command of the old schema has no payload to send again


def test_the_retained_birth_delivered_again_is_kept_once(db_url):
    db = service_db.Db(db_url)
    meter(db)
    birth = {"online": 1, "boot": 100, "last": 0, "rev": 5}
    assert db.store_uplink("M1", "status", birth)[0]
    assert not db.store_uplink("M1", "status", dict(birth))[0]  # a resubscription
    assert db.store_uplink("M1", "status", {"online": 0})[0]  # the last will: a new state
    assert db.store_uplink("M1", "status", birth)[0]  # the meter is back: a new birth
    assert [d.get("online") for _, k, d in db.scan("M1") if k == "status"] == [1, 0, 1]
