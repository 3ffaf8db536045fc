"""The headend CLI as a client of the service's database (--db): it and `headend serve` share the
meters, their keys, one command counter per meter and every uplink."""
import json
import os
import subprocess

import pytest

import headend
import service
import service_db
from fleet import start_meter, wait_online

METER = "hdb-1"


def cli(capsys, home, db, broker, *args):
    capsys.readouterr()
    rc = headend.main(["--home", str(home), "--db", db, "--broker", broker, "--timeout", "20",
                       "--ttl", str(20 * 86400)] + list(args))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.micropython
def test_cli_and_service_share_meters_commands_and_uplinks(tmp_path, capsys, broker):
    db_path = str(tmp_path / "headend.db")
    addr = "%s:%d" % (broker.host, broker.port)
    rc, out, err = cli(capsys, tmp_path, db_path, addr, "provision", METER, "--board", "esp32-atm90e26")
    assert rc == 0, err
    assert not (tmp_path / "meters").exists()  # the record is in the database, not in a JSON file
    rc, out, err = cli(capsys, tmp_path, db_path, addr, "customer", METER, "--name", "Ann",
                       "--email", "ann@example.net", "--phone", "+254700000001")
    assert rc == 0, err
    db = service_db.Db(db_path)
    row = db.meter(METER)
    assert (row["name"], row["email"], row["phone"]) == ("Ann", "ann@example.net", "+254700000001")
    assert row["web_token"] in out
    svc = service.Service(db, broker.host, broker.port, client_id="svc-hdb").start()
    proc = start_meter(METER, row["rec"]["key"], addr, tmp_path / "f.img")
    try:
        assert svc.subscribed.wait(10)
        assert wait_online(broker.host, broker.port, METER, timeout=30)
        # One counter per meter: a command from the service, then one from the CLI.
        first = svc.send(METER, "status", origin="operator")
        rc, out, err = cli(capsys, tmp_path, db_path, addr, "topup", METER, "5.00")
        assert rc == 0, err
        # (The simulated meter's clock is not ours: a first try may be refused exp_far, and the CLI
        # signs again in the meter's time, with a new id.)
        topups = sorted((c for c in db.commands(METER) if c["op"] == "topup"), key=lambda c: c["cmd_id"])
        assert [c["cmd_id"] for c in topups] == list(range(first + 1, first + 1 + len(topups)))
        assert topups[-1]["res"] == "applied" and all(c["res"] != "applied" for c in topups[:-1])
        # The meter's reply is in the database once, whether the CLI or the service stored it first.
        with db.tx() as c:
            c.execute("SELECT COUNT(*) FROM uplinks WHERE meter_id = ? AND kind = 'reply' AND doc LIKE ?",
                      (METER, '%"id": ' + str(topups[-1]["cmd_id"]) + ',%'))
            assert c.fetchone()[0] == 1
        rc, out, err = cli(capsys, tmp_path, db_path, addr, "list", "--wait", "1")
        assert rc == 0 and METER in out, err
        rc, out, err = cli(capsys, tmp_path, db_path, addr, "export-csv", METER, "--kind", "load",
                           "--out", str(tmp_path / "lp.csv"))
        assert rc == 0, err
        rows = (tmp_path / "lp.csv").read_text().splitlines()
        assert rows[0].startswith("interval_end_utc,") and len(rows) > 2  # the intervals the database holds
    finally:
        svc.stop()
        proc.terminate()
        proc.wait(10)


def test_cli_on_postgresql_and_its_errors(tmp_path, capsys, pg_url):
    rc, out, err = cli(capsys, tmp_path, pg_url, "127.0.0.1:1", "provision", "pg-1", "--board", "esp32-atm90e26")
    assert rc == 0, err
    rc, out, err = cli(capsys, tmp_path, pg_url, "127.0.0.1:1", "customer", "pg-1", "--phone", "12")
    assert rc == 2 and "--phone" in err
    assert service_db.Db(pg_url).meter("pg-1")["phone"] == ""  # refused: nothing changed
    rc, out, err = cli(capsys, tmp_path, pg_url, "127.0.0.1:1", "customer", "nope", "--name", "x")
    assert rc == 2 and "unknown meter" in err
    rc, out, err = cli(capsys, tmp_path, pg_url, "127.0.0.1:1", "provision", "pg-1", "--board", "esp32-atm90e26")
    assert rc == 2 and "force" in err  # provisioned already
    # Without --db there is no database to keep customers in.
    capsys.readouterr()
    rc = headend.main(["--home", str(tmp_path / "h2"), "customer", "pg-1", "--name", "x"])
    assert rc == 2 and "--db" in capsys.readouterr().err
