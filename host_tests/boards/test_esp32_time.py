"""The meter's time after a power cut, on the real esp32-atm90e26 board and the ESP32 stand-ins
(issue 14, docs/time.md). The RTC has no battery: after a cut it is back at 2000-01-01, where
mbedTLS refuses the broker's certificate (ssl.py checks its dates against the RTC, as the port
does). The meter starts its clock from the time floor of its last commit, a time the certificate
was valid at, and asks the time server before each connect attempt, so it gets back online over
TLS by itself after an outage of any length, even one the certificate was renewed in."""
import json

import esp32_host

USES_MICROPYTHON = True
DAY = 86400
START = esp32_host.UTC_START
Y2000 = esp32_host.Y2000
EPOCH = 1735689600  # firmware/timebase.py: meter seconds count from 2025-01-01
TIME_SET = 55  # firmware/events.py
NETWORK, TRUSTED = 2, 3  # firmware/timesource.py


def tls_board(tmp_path, broker):
    """A provisioned board whose link speaks TLS (a CA on its flash), RTC set at the factory."""
    h = esp32_host.Esp32Host(tmp_path, "esp32-atm90e26", broker=(broker.host, broker.port), rtc_utc=START)
    h.provision()
    stage = h.stage()
    (stage / "ca.der").write_bytes(b"\x30\x82 test CA")  # the stand-in checks dates, not the chain
    sec = json.loads((stage / "secrets.json").read_text())
    sec.update(ca="/ca.der", wifi_ssid="meters", wifi_password="pw")  # the time server needs Wi-Fi
    (stage / "secrets.json").write_text(json.dumps(sec))
    h.install()
    return h


def cert(valid_from, years=2):
    return {"not_before": valid_from, "not_after": valid_from + years * 365 * DAY}


def run(h, seconds, **world):
    r = h.boot(seconds, **world)
    assert r["reason"] == "end", r.get("error") or r
    assert r["meter"]["step_errors"] == 0, r["meter"]
    return r


def test_back_online_over_tls_after_short_and_long_outages(tmp_path, broker):
    h = tls_board(tmp_path, broker)
    first = cert(START - 90 * DAY)
    # Commissioning: the RTC was set, the handshake passes, the meter commits its time floor.
    r = run(h, 2 * 3600, tls=first)
    assert r["meter"]["connects"] >= 1 and r["tls"]["refused"] == 0, r["tls"]
    assert r["meter"]["time_floor"] >= START - EPOCH + 3600, r["meter"]

    # Power off for three days, no time server reachable: the RTC restarts at 2000, the meter
    # starts from the floor, where the certificate is valid, and reconnects by itself.
    h.utc = r["utc_end"] + 3 * DAY
    r = run(h, 3600, tls=first)
    assert r["meter"]["connects"] >= 1, "offline after the cut: %r" % r["tls"]
    assert r["tls"]["refused"] == 0 and r["ntp_queries"] >= 1, (r["tls"], r["ntp_queries"])
    assert r["meter"]["time_state"] == 0, "no source: the time stays uncertain"
    assert r["rtc"] + Y2000 >= START + 2 * 3600, "the RTC runs from the floor, not from 2000"

    # Off for 400 days; the broker's certificate was renewed meanwhile (valid only from a month
    # ago, long after the floor). The time server answers: the meter sets its clock from it in the
    # connect phase and the handshake passes.
    h.utc = r["utc_end"] + 400 * DAY
    renewed = cert(h.utc - 30 * DAY)
    r = run(h, 3600, tls=renewed, sntp={"rtt_ms": 40})
    assert r["meter"]["connects"] >= 1, "offline after a long outage: %r" % r["tls"]
    assert r["meter"]["time_state"] == NETWORK, r["meter"]
    assert [TIME_SET, NETWORK] in r["meter"]["events"], r["meter"]["events"]
    assert abs(r["rtc"] + Y2000 - r["utc_end"]) <= 5, "the RTC holds the server's time"


def test_the_stand_in_refuses_a_clock_of_2000(tmp_path, broker):
    # The control: a board that never had its time (no floor, RTC at 2000) and no time server
    # cannot get past the handshake, as on the device.
    h = tls_board(tmp_path, broker)
    h.rtc = 0
    r = run(h, 1800, tls=cert(START - 90 * DAY))
    assert r["meter"]["connects"] == 0 and r["tls"]["refused"] >= 1, r["tls"]
    assert r["tls"]["handshakes"] == r["tls"]["refused"]
