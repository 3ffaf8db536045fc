"""The technician REPL kit (firmware/repl.py), driven through stdin under micropython on a sim meter."""
import mprun
import pytest

SESSION = "host_tests/firmware/repl_session.py"


def session(mpy, tmp_path, commands, ticks=2000, config=None, broker=None, board=None):
    import json
    args = [str(tmp_path / "flash.img"), ticks]
    if board:
        args.insert(0, "--board=" + board)
    if config is not None or broker:
        args.append(json.dumps(config or {"opening_balance": 1000}))
    if broker:
        args.append(broker)
    r = mpy(SESSION, *args, heap=mprun.APP_HEAP, stdin="\n".join(commands) + "\n")
    blocks = {}
    cur = None
    for line in r.stdout.splitlines():
        if line.startswith(">>> "):
            cur = line[4:]
            blocks[cur] = []
        elif cur is not None and not line.startswith("{"):
            blocks[cur].append(line)
    return blocks, r.result


def test_status_shows_units_and_matches_the_meter(mpy, tmp_path):
    out, res = session(mpy, tmp_path, ["status()"])
    text = "\n".join(out["status()"])
    kwh = res["imp_wh"] // 1000, res["imp_wh"] % 1000
    assert "import %d.%03d kWh" % kwh in text
    assert "balance %d.%02d" % (res["balance"] // 100, res["balance"] % 100) in text
    for unit in (" V ", " A ", " W ", " Hz"):
        assert unit in text, unit
    assert "relay     connected" in text
    assert "network   no broker configured" in text
    assert any(ln.startswith("time") and ln.endswith("(trusted)") for ln in out["status()"]), text
    assert "commands  REFUSED" not in text


def test_status_says_when_the_clock_or_the_replay_window_cannot_be_trusted(mpy, tmp_path):
    # After a power cut (the time source uncertain) and a lost record (replay_lost), the
    # technician's status says what is wrong and what fixes it (docs/time.md, docs/protocol.md).
    setup = "import app; app.current.timesrc.state = 0; app.current.commands.lose(12345)"
    out, res = session(mpy, tmp_path, [setup, "status()"])
    lines = out["status()"]
    assert any(ln.startswith("time") and ": since a power cut; set_time(...)" in ln for ln in lines), lines
    assert any(ln.startswith("commands  REFUSED") and "nonce 12345" in ln for ln in lines), lines


def test_selftest_clicks_the_relay_and_confirms_with_current(mpy, tmp_path):
    out, res = session(mpy, tmp_path, ["selftest()"])
    lines = out["selftest()"]
    by = {ln.split()[0]: ln for ln in lines}
    assert by["spi"].split()[1] == "ok" and "atm90e26:" in by["spi"] and "CS1 0x" in by["spi"]
    assert by["relay"].split()[1] == "ok" and "-> 0.000 A" in by["relay"]
    assert by["storage"].split()[1] == "ok"
    assert by["clock"].split()[1] == "ok"
    assert by["broker"].split()[1] == "--"
    assert lines[-1] == "True"
    assert res["relay_ops"] - res["relay_ops_boot"] == 2  # opened once, closed again
    assert res["relay"] == 0 and res["closed"]  # connected, contacts closed


def test_selftest_leaves_a_relay_waiting_for_its_reconnect_delay_open(mpy, tmp_path):
    # Right after power-up the relay is CONNECTED but its contacts close only after the
    # randomised reconnect delay: the click must not close them early.
    cfg = {"opening_balance": 1000, "protection": {"relay": {"reconnect_delay_s": 600}}}
    out, res = session(mpy, tmp_path, ["selftest()"], ticks=1, config=cfg)
    assert res["relay_ops_boot"] == 0  # precondition: still waiting (seeded delay > 1 s)
    relay = [ln for ln in out["selftest()"] if ln.startswith("relay")][0]
    assert relay.split()[1] == "--" and "reconnect delay" in relay
    assert res["relay"] == 0 and not res["closed"] and res["relay_ops"] == 0


def test_selftest_reports_a_broken_chip(mpy, tmp_path):
    # MISO stuck high: every read is 0xFFFF, as with an unplugged chip.
    dead = (r'exec("class Dead:\n def write_readinto(self, tx, rx):\n  rx[0] = rx[1] = rx[2] = 0xFF\n'
            r'__import__(\'app\').current.metering._chip._spi = Dead()")')
    out, res = session(mpy, tmp_path, [dead, "selftest()", "status()"])
    lines = out["selftest()"]
    spi = [ln for ln in lines if ln.startswith("spi")][0]
    assert "FAIL" in spi and "chip absent" in spi
    assert any(ln.startswith("chip      FAULT") for ln in out["status()"])
    relay = [ln for ln in lines if ln.startswith("relay")][0]
    assert relay.split()[1] == "--" and "chip not answering" in relay
    assert res["relay_ops"] == res["relay_ops_boot"]  # no click without a way to confirm it
    assert lines[-1] == "False"


def test_relay_test_does_not_close_a_relay_that_is_open_for_credit(mpy, tmp_path):
    out, res = session(mpy, tmp_path, ["relay_test()"], config={"opening_balance": 1})
    text = "\n".join(out["relay_test()"])
    assert "not tested: relay is" in text and "credit" in text
    assert res["relay"] != 0 and not res["closed"]
    assert res["relay_ops"] == res["relay_ops_boot"]  # relay_test did not move the contacts


def test_config_validates_saves_and_survives_a_restart(mpy, tmp_path):
    out, res = session(mpy, tmp_path, ['config("telemetry_s", 300)', 'config("telemetry_s", 5)',
                                      'config("low2", 500)', 'config("nope", 1)', 'config("auto_reconnect", 1)'])
    assert out['config("telemetry_s", 300)'] == ["telemetry_s = 300 (saved)", "300"]
    assert out['config("telemetry_s", 5)'] == ["error: telemetry_s must be a whole number in 60..86400, got 5"]
    assert "must not be above low1" in out['config("low2", 500)'][0]
    assert out['config("nope", 1)'][0].startswith("error: unknown setting 'nope'")
    assert out['config("auto_reconnect", 1)'] == ["error: auto_reconnect must be True or False"]
    assert res["tele_ms"] == 300000
    # A reboot on the same flash applies the saved setting (main.apply_settings).
    out, res = session(mpy, tmp_path, ['config("telemetry_s")'], ticks=1)
    assert out['config("telemetry_s")'][0] == "telemetry_s = 300"
    assert res["tele_ms"] == 300000


def _tokens(amount=500):
    import token_issue
    key = bytes(range(32))  # simkit.TEST_KEY, meter t-0001
    good = token_issue.issue(key, "t-0001", 1, amount)
    typo = good[:-1] + str((int(good[-1]) + 1) % 10)  # check digit off by one
    forged = token_issue.issue(bytes(32), "t-0001", 2, amount)  # another meter's key
    return token_issue.grouped(good), good.replace(" ", "")[:8] + "-" + good[8:], typo, forged


def test_token_enters_issued_tokens_once_and_refuses_typos(mpy, tmp_path):
    good, good_dashed, typo, forged = _tokens(500)
    cmds = ["status()['balance']", 'token("%s")' % good, 'token("%s")' % good_dashed, 'token("%s")' % typo,
            'token("%s")' % forged, 'token("1234-5678")', "token(12345678901234567890)"]
    out, res = session(mpy, tmp_path, cmds)
    before = int(out[cmds[0]][-1])
    first = out[cmds[1]]
    assert first[-1] == "'applied'"
    assert first[0].startswith("token %s: applied" % good)
    assert first[0].endswith("balance %d.%02d" % ((before + 500) // 100, (before + 500) % 100))
    assert out[cmds[2]][-1] == "'used'"  # same token again (dashes are fine): nothing added
    assert out[cmds[3]][-1] == "'check_digit'" and "mistyped" in out[cmds[3]][0]
    assert out[cmds[4]][-1] == "'bad_mac'"
    assert "a token has 20 digits" in out[cmds[5]][0]
    assert "give the token as text" in out[cmds[6]][0]
    assert res["topups"] == 1 and res["balance"] == before + 500


def test_config_lists_every_setting_and_auto_reconnect_is_live(mpy, tmp_path):
    # Issue 20: config() raised AttributeError ('RelayControl' has no 'auto_reconnect'), and
    # config("auto_reconnect", True) said "saved" but changed nothing until a reboot.
    relay = "app.current.relay"
    cmds = ["import app, repl", "sorted(repl._SETTINGS)", "config()", relay + ".confirm_mask > 0",
            'config("auto_reconnect", True)', relay + ".auto_reconnect, %s.confirm_mask" % relay,
            'config("auto_reconnect", False)', relay + ".confirm_mask > 0", 'config("commit_s", 120)',
            "app.current.commit_ms"]
    out, res = session(mpy, tmp_path, cmds)
    names = eval(out[cmds[1]][-1])
    listed = out["config()"]
    assert len(names) == 8 and [ln.split()[0] for ln in listed] == names, listed
    assert all(len(ln.split()) >= 3 for ln in listed), listed
    assert out[cmds[3]] == ["True"], "the board's default: credit needs a confirmation"
    assert out[cmds[4]][0] == "auto_reconnect = True (saved)"
    assert out[cmds[5]] == ["(True, 0)"], "live: nothing needs a confirmation now"
    assert out[cmds[7]] == ["True"], "and back"
    assert out[cmds[9]] == ["120000"], "commit_s is live too"


def test_openpaygo_tokens_at_the_repl_on_a_meter_that_takes_them(mpy, tmp_path):
    import token_issue
    key = bytes(range(32))  # simkit.TEST_KEY
    _, t5 = token_issue.issue_openpaygo(key, 0, 5)
    cmds = ["status()['balance']", 'token("%s")' % t5, 'token("%s-%s")' % (t5[:4], t5[4:]), 'token("12345")']
    out, res = session(mpy, tmp_path, cmds, config={"opening_balance": 1000, "tokens": ["pm", "openpaygo"],
                                                    "openpaygo": {"unit_minor": 100}})
    before = int(out[cmds[0]][-1])
    assert out[cmds[1]][-1] == "'applied'" and "(credit added)" in out[cmds[1]][0], out[cmds[1]]
    assert out[cmds[2]][-1] == "'used'", out[cmds[2]]
    assert "or 9 or 12 for OpenPAYGO" in out[cmds[3]][0]
    assert res["balance"] >= before + 500 - 5  # (minus what the load used meanwhile)
    # A meter not configured for them says a token has 20 digits.
    out, res = session(mpy, tmp_path, ['token("%s")' % t5])
    assert out['token("%s")' % t5][0].startswith("error: a token has 20 digits, got")


def test_debt_and_test_tokens_say_what_they_did(mpy, tmp_path):
    # Issue 20: a debt token and a test token were both reported as "applied (credit added)".
    import token_issue
    key = bytes(range(32))
    debt, test = token_issue.issue(key, "t-0001", 1, 700, "debt"), token_issue.issue(key, "t-0001", 2, 0, "test")
    cmds = ["status()['balance']", 'token("%s")' % debt, 'token("%s")' % test, "app.current.account.debt",
            "import app"]
    out, res = session(mpy, tmp_path, cmds[-1:] + cmds[:-1])
    before = int(out[cmds[0]][-1])
    assert out[cmds[1]][-1] == "'applied'" and "(added to the debt to recover)" in out[cmds[1]][0], out[cmds[1]]
    assert out[cmds[2]][-1] == "'applied'" and "(test token:" in out[cmds[2]][0] and "credit added" not in out[cmds[2]][0]
    assert out[cmds[3]] == ["700"] and res["balance"] <= before, "no credit from either"


def test_paper_tokens_stay_good_out_of_order_and_after_commands(mpy, tmp_path):
    # Issue 20: token 3 was refused after token 5 (stale_id), and a token issued as id 18 was
    # refused once command 19 had reached the meter. Tokens have ids of their own now.
    import token_issue
    key = bytes(range(32))
    t = {i: token_issue.issue(key, "t-0001", i, 100 * i) for i in (3, 5, 18)}
    cmd19 = ('app.current.on_message(b"cmd", simkit.sign(simkit.TEST_KEY, {"m": "t-0001", "id": 19, '
             '"exp": timebase.to_unix(app.current.clock.time()) + 600, "op": "status"}))')
    cmds = ["import app, simkit, timebase", "status()['balance']", 'token("%s")' % t[5], 'token("%s")' % t[3],
            cmd19, "app.current.commands.last_id", 'token("%s")' % t[18], 'token("%s")' % token_issue.grouped(t[3])]
    out, res = session(mpy, tmp_path, cmds)
    before = int(out[cmds[1]][-1])
    assert out[cmds[2]][-1] == "'applied'" and out[cmds[3]][-1] == "'applied'", out
    assert out[cmds[5]] == ["19"], out[cmds[5]]
    assert out[cmds[6]][-1] == "'applied'", out[cmds[6]]
    assert out[cmds[7]][-1] == "'used'", out[cmds[7]]
    assert res["topups"] == 3 and res["balance"] == before + 300 + 500 + 1800


def test_log_lists_events_with_times_and_names(mpy, tmp_path):
    out, res = session(mpy, tmp_path, ["log(3)", "log(0)"], config={"opening_balance": 1})
    lines = out["log(3)"]
    assert len(lines) == 4 and lines[-1] == "3"  # three events, then the count returned
    assert any("credit_exhausted" in ln or "relay_open" in ln for ln in lines)
    assert all(" UTC " in ln for ln in lines[:3])
    assert out["log(0)"] == ["error: log(n): n must be a positive whole number"]


def test_log_shows_events_logged_before_the_last_reboot(mpy, tmp_path):
    out, first = session(mpy, tmp_path, ["log(500)"], config={"opening_balance": 1})
    before = out["log(500)"]
    assert int(before[-1]) == first["logged"] > 0
    assert any(" credit_exhausted " in ln for ln in before)
    # Reboot on the same flash: the RAM ring starts again, the log on flash goes on.
    out, res = session(mpy, tmp_path, ["log(500)", "log(2)"], ticks=1, config={"opening_balance": 1})
    lines = out["log(500)"]
    assert int(lines[-1]) == res["logged"] > first["logged"] > res["events"]
    assert lines[:len(before) - 1] == before[:-1]  # same numbers, times, names as before the reboot
    assert [ln.split()[4] for ln in lines[:-1]].count("boot") == 2
    assert out["log(2)"][:2] == lines[-3:-1] and out["log(2)"][2] == "2"  # the newest two


def test_set_time_sets_the_clock_and_refuses_bad_dates(mpy, tmp_path):
    out, res = session(mpy, tmp_path, ["set_time(2026, 11, 27, 10, 30, 0)", "set_time(2026, 2, 30)",
                                      "set_time(1999, 1, 1)", "set_time(2059, 1, 1)", "set_time(2900000000)",
                                      "set_time('now')"], ticks=1)
    # The REPL speaks Unix time and dates; the meter clock beyond 2058 cannot be held (timebase.py).
    assert out["set_time(2026, 11, 27, 10, 30, 0)"] == ["clock set: 2026-11-27 10:30:00 UTC", "1795775400"]
    assert out["set_time(2059, 1, 1)"] == ["error: year must be a whole number in 2024..2058"]
    assert out["set_time(2900000000)"] == ["error: time must be between 2024 and 2058"]
    assert out["set_time(2026, 2, 30)"] == ["error: no such date 2026-02-30"]
    assert out["set_time(1999, 1, 1)"] == ["error: year must be a whole number in 2024..2058"]
    assert out["set_time('now')"][0].startswith("error: set_time(unix_seconds)")
    assert res["time"] == 1795775400


def test_calibration_check_reports_error_against_a_reference(mpy, tmp_path):
    # The emulated chip reads exactly 230.00 V, so a reference of 230.0 V is 0.0 % and 200 V is +15.0 %.
    out, res = session(mpy, tmp_path, ['cal_check("200", "1", 1)', 'cal_check("abc", 1, 1)', "calibrate()"])
    lines = out['cal_check("200", "1", 1)']
    assert lines[0].startswith("meter reads 230.00 V")
    assert lines[1] == "voltage  error 15.0 %"
    assert "is not a number" in out['cal_check("abc", 1, 1)'][0]
    # This firmware has gain calibration (firmware/calibration.py): without a step it lists them.
    assert "step is one of voltage, current, neutral, power, phase, offset" in out["calibrate()"][0]


def test_resume_runs_the_loop_again(mpy, tmp_path):
    out, res = session(mpy, tmp_path, ["resume(720)"], ticks=1)
    assert out["resume(720)"] == ["resuming the meter loop", "720"]
    assert res["time"] == 1767225600 + 721  # 1 + 720 ticks of 1 s (tick_ms 1000)


def test_selftest_checks_the_broker(mpy, tmp_path, broker):
    out, res = session(mpy, tmp_path, ["selftest()", "status()"], ticks=50, broker="%s:%d" % (broker.host, broker.port))
    line = [ln for ln in out["selftest()"] if ln.startswith("broker")][0]
    assert line.split()[1] == "ok" and "%s:%d" % (broker.host, broker.port) in line
    assert any(ln.startswith("network") and " up " in ln for ln in out["status()"])


def test_selftest_reports_an_unreachable_broker(mpy, tmp_path):
    import mpbroker
    port = mpbroker.free_port()
    out, res = session(mpy, tmp_path, ["selftest()"], ticks=5, broker="127.0.0.1:%d" % port)
    line = [ln for ln in out["selftest()"] if ln.startswith("broker")][0]
    assert line.split()[1] == "FAIL" and "unreachable" in line
    assert out["selftest()"][-1] == "False"


# -- every metering chip: the sim boards of the ATM90E26, ATM90E32 (three phases) and ADE7953 (two channels)
BOARDS = ("sim-atm90e26", "sim-atm90e32", "sim-ade7953")
CHANNELS = {"sim-atm90e26": 1, "sim-atm90e32": 3, "sim-ade7953": 2}
LABELS = {"sim-atm90e32": ("phase A", "phase B", "phase C"), "sim-ade7953": ("channel A", "channel B")}
NO_DELAY = {"opening_balance": 1000, "protection": {"relay": {"reconnect_delay_s": 0}}}
EMU = "__import__('app').current.board.emu"
CHIP = "__import__('app').current.metering._chip"
ADVANCE = "__import__('app').current.board.advance(1000)"  # time passes: the chip starts up again


def _amps(ma):
    return "%d.%03d" % (ma // 1000, ma % 1000)


def _steady(board):
    """Channel k draws 1000 * (k + 1) W at 230 V, unity power factor: (watts, milliamps) per channel."""
    watts = [1000 * (k + 1) for k in range(CHANNELS[board])]
    return "steady_loads(%s)" % ", ".join(map(str, watts)), watts, [w * 100000 // 23000 for w in watts]


@pytest.mark.parametrize("board", ["sim-atm90e32", "sim-ade7953"])
def test_status_shows_each_phase_on_multichannel_meters(mpy, tmp_path, board):
    load, watts, ma = _steady(board)
    out, res = session(mpy, tmp_path, [load, "status()"], ticks=5, config=NO_DELAY, board=board)
    text = out["status()"]
    now = [ln for ln in text if ln.startswith("now ")][0]
    assert "%s A  %d W" % (_amps(sum(ma)), sum(watts)) in now  # all channels together
    for k, label in enumerate(LABELS[board]):
        line = [ln for ln in text if ln.strip().startswith(label)]
        assert line == ["  %-9s 230.00 V  %s A  %d W" % (label, _amps(ma[k]), watts[k])]


def test_status_has_no_phase_lines_on_a_single_channel_meter(mpy, tmp_path):
    out, res = session(mpy, tmp_path, ["status()"], ticks=5, config=NO_DELAY)
    assert not any(ln.strip().startswith(("phase", "channel")) for ln in out["status()"])


@pytest.mark.parametrize("board", BOARDS)
def test_selftest_and_relay_test_on_every_chip(mpy, tmp_path, board):
    load, watts, ma = _steady(board)
    out, res = session(mpy, tmp_path, [load, "selftest()", "relay_test()"], ticks=5, config=NO_DELAY, board=board)
    by = {ln.split()[0]: ln for ln in out["selftest()"]}
    chip = board[4:]
    assert by["spi"].split()[1:3] == ["ok", chip + ":"], by["spi"]
    # The relay click is confirmed by the current of all channels: the total falls to zero.
    total = "%s A -> 0.000 A" % _amps(sum(ma))
    assert by["relay"].split()[1] == "ok" and total in by["relay"], by["relay"]
    relay = out["relay_test()"][0]
    assert relay.split()[1] == "ok" and total in relay, relay
    assert out["selftest()"][-1] == "True" and out["relay_test()"][-1] == "True"
    assert res["relay_ops"] - res["relay_ops_boot"] == 4  # two clicks, each opened and closed again
    assert res["relay"] == 0 and res["closed"]


@pytest.mark.parametrize("board", BOARDS)
def test_selftest_reports_an_absent_chip_on_every_board(mpy, tmp_path, board):
    out, res = session(mpy, tmp_path, [EMU + '.inject("absent")', "selftest()", "status()", "cal_read(1)"],
                       ticks=5, config=NO_DELAY, board=board)
    lines = out["selftest()"]
    by = {ln.split()[0]: ln for ln in lines}
    assert by["spi"].split()[1] == "FAIL" and "chip absent: MISO reads all ones" in by["spi"]
    assert by["relay"].split()[1] == "--" and "chip not answering" in by["relay"]
    assert any(ln.startswith("chip      FAULT") for ln in out["status()"])
    assert res["relay_ops"] == res["relay_ops_boot"] and lines[-1] == "False"
    assert out["cal_read(1)"] == ["error: the metering chip is not answering: see selftest()"]


@pytest.mark.parametrize("board", BOARDS)
def test_selftest_after_a_silent_chip_reset_says_the_meter_recovered(mpy, tmp_path, board):
    # The meter step before the test sees the reset and re-initialises the chip: the chip is
    # healthy again, and the selftest says it had to be re-initialised.
    out, res = session(mpy, tmp_path, [EMU + '.inject("resets")', ADVANCE, "selftest()", "status()"],
                       ticks=5, config=NO_DELAY, board=board)
    spi = [ln for ln in out["selftest()"] if ln.startswith("spi")][0]
    assert spi.split()[1] == "ok" and spi.endswith("re-initialised after 1 silent reset(s) since boot"), spi
    assert any(ln.startswith("chip      ok   resets 1") for ln in out["status()"])


# A fault only that chip can tell, left in place by a command in the session, and what selftest says.
CHIP_FAULTS = {
    # a wrong CS1 in the driver and a reset: the re-init is refused by the chip's checksum check
    "sim-atm90e26": ([CHIP + ".cs1 ^= 0x0100", EMU + '.inject("resets")', ADVANCE], "CS1 (metering bank) mismatch"),
    # the configuration left writable (CfgRegAccEn 0x55AA)
    "sim-atm90e32": ([CHIP + ".write_verified(0x7F, 0x55AA)"], "configuration not locked (CfgRegAccEn still 0x55aa)"),
    # LCYCMODE RSTREAD cleared (the energy registers would be counted again every poll), and the
    # registers write-protected so the re-init that the configuration checksum triggers cannot repair it
    "sim-ade7953": ([CHIP + ".write_verified(0x004, 0)", CHIP + ".write_verified(0x040, 7)"],
                    "energy registers not read-with-reset"),
}


@pytest.mark.parametrize("board", BOARDS)
def test_selftest_names_a_chip_specific_fault(mpy, tmp_path, board):
    cmds, expect = CHIP_FAULTS[board]
    out, res = session(mpy, tmp_path, cmds + ["selftest()"], ticks=5, config=NO_DELAY, board=board)
    spi = [ln for ln in out["selftest()"] if ln.startswith("spi")][0]
    assert spi.split()[1] == "FAIL" and expect in spi, spi
    assert out["selftest()"][-1] == "False"


@pytest.mark.parametrize("board", BOARDS)
def test_cal_read_and_cal_check_on_every_chip(mpy, tmp_path, board):
    load, watts, ma = _steady(board)
    n = CHANNELS[board]
    k = n - 1  # the last channel: a mix-up of channels shows
    check = 'cal_check("230", "%s", %d, %d)' % (_amps(ma[k]), watts[k], k)
    off = 'cal_check("200", "1", %d, %d, 2)' % (watts[k] * 2, k)
    cmds = [load, "cal_read(2)", check, off, 'cal_check("230", "1", 1, 3)', 'cal_check("230", "1", 1, "x")']
    out, res = session(mpy, tmp_path, cmds, ticks=5, config=NO_DELAY, board=board)
    total = (23000, sum(ma), sum(watts))
    chans = tuple((23000, ma[j], watts[j]) for j in range(n))
    read = out["cal_read(2)"]
    if n == 1:
        # unchanged single-channel form: one line, (v, i, p)
        assert read[0] == "meter reads 230.00 V  %s A  %d W  (mean of 2 s)" % (_amps(ma[0]), watts[0])
        assert read[-1] == repr(total)
    else:
        assert read[0] == "meter reads (mean of 2 s):"
        for j, label in enumerate(LABELS[board]):
            assert read[1 + j] == "  %-9s 230.00 V  %s A  %d W" % (label, _amps(ma[j]), watts[j])
        assert read[1 + n].split() == ["total", _amps(sum(ma)), "A", str(sum(watts)), "W"]
        assert read[-1] == repr(total + chans)  # (v, i, p) of all channels, then one (v, i, p) per channel
    assert out[check][-1] == "(0, 0, 0)"  # the reference agrees with channel k exactly
    if n > 1:
        assert "%s against the reference:" % LABELS[board][k] in out[check]
    # 230 V against 200 V: +15.0 %; the current against 1 A: (ma - 1000) tenths of a percent;
    # the power against twice the load: -50.0 %
    e_i = ma[k] - 1000
    assert out[off][-4:] == ["voltage  error 15.0 %", "current  error %d.%d %%" % (e_i // 10, e_i % 10),
                             "power    error -50.0 %", repr((150, e_i, -500))]
    assert out['cal_check("230", "1", 1, 3)'][0].startswith("error: ")
    assert out['cal_check("230", "1", 1, "x")'][0].startswith("error: ")


def test_utc_text_shows_meter_seconds_and_older_unix_log_entries(mpy):
    # Times on the meter are meter seconds; a log entry written before the meter epoch firmware
    # holds Unix seconds, which are beyond the meter clock's range and shown at their date too.
    res = mpy(r'''
import mptest, repl
from billtest import mt, utc
mptest.eq(repl.utc_text(mt(2026, 11, 27, 10, 30, 5)), "2026-11-27 10:30:05 UTC", "meter seconds")
mptest.eq(repl.utc_text(mt(2045, 2, 28, 23, 59, 59)), "2045-02-28 23:59:59 UTC", "twenty years on")
mptest.eq(repl.utc_text(mt(2024, 12, 31)), "2024-12-31 00:00:00 UTC", "before the epoch")
mptest.eq(repl.utc_text(utc(2026, 1, 2, 3, 4, 5)), "2026-01-02 03:04:05 UTC", "an older Unix entry")
mptest.done()
''', heap="384k")  # repl imports the app, compiled from source here (frozen on a device)
    assert res.result["ok"] and res.result["checks"] == 4
