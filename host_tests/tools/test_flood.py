"""tools/flood_mp.py: a flood of refused commands against the whole firmware, measured on the
flash. Refusals are counted in RAM and logged once an interval, and their answers never touch
the flash, so an hour of 100 refused commands a second writes within twice what a quiet hour
writes, while telemetry and genuine top-ups go on as in the quiet hour."""
import pytest


def flood(mpy, mode, rate, seconds):
    r = mpy("tools/flood_mp.py", mode, rate, seconds, heap="8m", timeout=900).result
    assert r and r["mode"] == mode and r["seconds"] == seconds, r
    return r


def same_service(quiet, fl):
    # What the backend gets is unchanged: every telemetry and load-profile message, every genuine
    # top-up applied and answered in the second it arrived, nothing dropped from the outbox.
    for k in ("tele", "lp"):
        assert fl["published"].get(k) == quiet["published"].get(k), (k, quiet, fl)
    assert fl["topups_sent"] == quiet["topups_sent"] >= 1
    assert fl["topups_applied"] == fl["topups_sent"] and fl["topups_late"] == 0, fl
    assert fl["balance_gain"] == quiet["balance_gain"] > 0
    assert fl["outbox_dropped"] == 0 and fl["step_errors"] == 0, fl


def test_an_hour_of_100_refused_commands_a_second_costs_the_flash_no_more_than_twice_a_quiet_hour(mpy):
    quiet = flood(mpy, "quiet", 0, 3600)
    fl = flood(mpy, "flood", 100, 3600)
    print("flash per hour: quiet %d bytes / %d erases, flood %d bytes / %d erases" % (
        quiet["flash_bytes"], quiet["flash_erases"], fl["flash_bytes"], fl["flash_erases"]))
    assert quiet["flash_bytes"] > 0 and quiet["refusals_counted"] == 0
    assert fl["flash_bytes"] <= 2 * quiet["flash_bytes"], (quiet, fl)
    assert fl["flash_erases"] <= 2 * quiet["flash_erases"], (quiet, fl)
    # Every message counted by reason (none lost silently), one summary for the hour, and at most
    # two events an interval more than the quiet hour (the first refusal, the summary).
    assert fl["flood_messages"] == 360000 and fl["refusals_counted"] == fl["flood_messages"], fl
    assert fl["summaries"] == 1, fl
    assert quiet["events"] < fl["events"] <= quiet["events"] + 2 * (fl["summaries"] + 1), (quiet, fl)
    # Answers come from their budgets: some, never one per message.
    assert 0 < fl["answers_published"] <= (8 + 3600 // 10) + (8 + 3600), fl
    same_service(quiet, fl)


@pytest.mark.runtimes("micropython")  # the 100/s hour above runs on both builds; this one is long
def test_1000_refused_commands_a_second(mpy):
    quiet = flood(mpy, "quiet", 0, 300)
    fl = flood(mpy, "flood", 1000, 300)
    assert fl["refusals_counted"] == fl["flood_messages"] == 300000, fl
    assert fl["flash_bytes"] <= 2 * quiet["flash_bytes"] + 4096, (quiet, fl)  # + the interval's first event
    assert fl["events"] <= quiet["events"] + 1, (quiet, fl)
    same_service(quiet, fl)
