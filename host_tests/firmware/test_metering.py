"""Metering layer + drivers + register-level emulators, under MicroPython: energy exactness,
reset detection and recovery, every injected fault kind, overflow safety at maximum current,
reverse-energy and live/neutral tamper events, zero allocation per read cycle, and a simulated
year of a household."""

import pytest

CHIPS = ("atm90e26", "atm90e32", "ade7953")
# Source modules are compiled on the test heap (on the device they are .mpy): give them room.
HEAP = "160k"

PRELUDE = """
import sys, mptest, chipkit, events
name = sys.argv[1]
k = chipkit.Kit(name)
mptest.check(k.m.start(), "init")
"""


@pytest.mark.parametrize("chip", CHIPS)
def test_energy_matches_truth_within_resolution(mpy, chip):
    res = mpy(PRELUDE + """
k.load(1234)
k.run(3600, 1)
ok, d = k.balance_ok()
mptest.check(ok, "truth - metered = %d mJ" % d)
mptest.check(k.m.imp_wh > 0, "metered something")
# 1234 W per channel for an hour
mptest.eq(k.emu.truth_mj, 1234 * 3600 * 1000 * k.emu.n, "truth integrator")
if k.m.channels > 1:
    for ch in range(k.m.channels):
        mptest.check(abs(k.m.ch_wh[2 * ch] - 1234) <= 1, "channel %d Wh %d" % (ch, k.m.ch_wh[2 * ch]))
mptest.eq(k.m.faults, 0, "no faults")
mptest.done(wh=k.m.imp_wh)
""", chip, heap=HEAP)
    assert res.result["wh"] in (1234 * (3 if chip == "atm90e32" else 2 if chip == "ade7953" else 1),
                                1234 * (3 if chip == "atm90e32" else 2 if chip == "ade7953" else 1) - 1)


@pytest.mark.parametrize("chip", CHIPS)
def test_silent_reset_detected_and_recovered_without_losing_read_energy(mpy, chip):
    mpy(PRELUDE + """
from meterchip import OK, RESET, NO_ANSWER
k.load(2000)
k.run(600, 1)
before = k.m.imp_wh
k.emu.inject("resets")
mptest.eq(k.chip.state(), NO_ANSWER, "silent while it starts up again")
k.emu.sleep_ms(k.emu.STARTUP_MS)
mptest.eq(k.chip.state(), RESET, "state after a silent reset")
k.run(1, 1)
mptest.eq(k.m.resets, 1, "reset counted")
mptest.check(events.CHIP_RESET in k.codes(), "chip_reset event")
mptest.eq(k.chip.state(), OK, "re-initialised")
mptest.check(k.m.imp_wh >= before, "nothing already read was lost")
k.run(600, 1)
ok, d = k.balance_ok()
mptest.check(ok, "truth - metered - lost = %d mJ" % d)
mptest.done()
""", chip, heap=HEAP)


@pytest.mark.parametrize("chip", CHIPS)
def test_configuration_upset_detected_by_the_chips_own_check_and_repaired(mpy, chip):
    # One bit of a checked configuration register flips without a reset (random register and
    # bit, five times): each chip's own digest (ATM90E26 CS1/CS2 read-back, ATM90E32 CRC status,
    # ADE7953 CRC register) gives it away at the next poll; the driver re-initialises.
    mpy(PRELUDE + """
from meterchip import OK, UPSET
k.load(2000)
k.run(120, 1)
for n in range(1, 6):
    before = k.m.imp_wh
    k.emu.inject("upset")
    mptest.eq(k.chip.state(), UPSET, "upset %d seen" % n)
    k.run(1, 1)
    mptest.eq(k.m.upsets, n, "counted")
    mptest.eq(k.chip.state(), OK, "re-initialised")
    mptest.check(k.m.imp_wh >= before, "nothing already read was lost")
    k.run(120, 1)
mptest.eq(k.codes().count(events.CHIP_UPSET), 5, "chip_upset events")
mptest.eq(k.m.resets, 0, "not taken for resets")
ok, d = k.balance_ok()
mptest.check(ok, "truth - metered - lost = %d mJ" % d)
mptest.done()
""", chip, heap=HEAP)


@pytest.mark.parametrize("chip,marker", [("atm90e26", "FUNC_EN"), ("ade7953", "AP_NOLOAD")])
def test_a_corrupted_marker_register_is_configured_again_after_ten_minutes(mpy, chip, marker):
    # The register a driver recognises its configuration by gets a flipped bit: that reads like
    # a bus fault (neither ours nor power-on). After ten minutes of it the chip is re-initialised.
    mpy(PRELUDE + """
from meterchip import OK, NO_ANSWER
R = __import__(name)
addr = getattr(R, sys.argv[2])
k.load(1000)
k.run(60, 1)
k.emu.regs[addr] ^= 0x100
mptest.eq(k.chip.state(), NO_ANSWER, "corrupted marker: looks like a bus fault")
k.run(540, 1)
mptest.check(not k.m.ok, "still in the fault episode after 9 min")
k.run(61, 1)
mptest.eq(k.chip.state(), OK, "configured again at 10 min")
mptest.check(k.m.ok, "metering again")
mptest.eq(k.codes().count(events.CHIP_FAULT), 1, "one fault episode reported")
ok, d = k.balance_ok()
mptest.check(ok, "truth - metered - lost = %d mJ" % d)
mptest.check(k.emu.lost_in_chip_mj < 3600000, "what the chip counted meanwhile was read: lost %d mJ" % k.emu.lost_in_chip_mj)
mptest.done()
""", chip, marker, heap=HEAP)


@pytest.mark.parametrize("chip", CHIPS)
def test_bus_faults_are_never_taken_for_upsets(mpy, chip):
    # A stuck MISO bit, flipped and dropped frames, and an absent chip garble answers,
    # digests included: none of it may pass for an upset (whose repair is a soft reset).
    mpy(PRELUDE + """
k.load(2000)
k.run(60, 1)
for kind in ("flip", "drop", "stuck", "flip", "drop", "absent"):
    for _ in range(3 if kind in ("flip", "drop") else 1):
        k.emu.inject(kind)
    k.run(90, 1)
mptest.eq(k.m.upsets, 0, "no upsets")
mptest.eq(k.m.resets, 0, "no resets")
ok, d = k.balance_ok()
mptest.check(ok, "truth - metered - lost = %d mJ" % d)
mptest.done()
""", chip, heap=HEAP)


@pytest.mark.parametrize("chip", CHIPS)
@pytest.mark.parametrize("kind", ("flip", "drop"))
def test_single_bus_faults_are_recovered_exactly(mpy, chip, kind):
    # A flipped or dropped transaction anywhere in the cycle costs nothing: verified reads
    # recover the value from the last-data register, or repeat a read the chip never saw.
    mpy(PRELUDE + """
kind = sys.argv[2]
k.load(3000)
for i in range(300):
    k.emu.inject(kind)       # one bad transaction per poll, at a different place each time
    for _ in range(i % 23):
        k.chip.read_sure(0)  # shift where in the cycle the fault lands
    k.run(1, 1)
ok, d = k.balance_ok()
mptest.check(ok, "truth - metered = %d mJ" % d)
mptest.eq(k.emu.lost_in_chip_mj, 0, "nothing lost")
mptest.check(k.chip.bus_errors >= 250, "bus errors counted: %d" % k.chip.bus_errors)
mptest.eq(k.m.resets, 0, "no false reset")
mptest.eq(k.m.upsets, 0, "no false configuration upset")
mptest.done()
""", chip, kind, heap=HEAP)


@pytest.mark.parametrize("chip", CHIPS)
def test_absent_chip_is_a_fault_never_energy(mpy, chip):
    mpy(PRELUDE + """
k.load(1500)
k.run(60, 1)
wh = k.m.imp_wh
k.emu.inject("absent")
k.run(30, 1)
mptest.eq(k.m.imp_wh, wh, "no energy from an absent chip")
mptest.check(k.m.faults >= 30, "faults counted")
mptest.eq(k.codes().count(events.CHIP_FAULT), 1, "one event per episode")
k.run(60, 1)  # back after 60 s: the chip kept counting, so nothing is lost
ok, d = k.balance_ok()
mptest.check(ok, "truth - metered = %d mJ" % d)
mptest.check(k.m.imp_wh > wh, "metering resumed")
mptest.done()
""", chip, heap=HEAP)


@pytest.mark.parametrize("chip", CHIPS)
def test_stuck_bit_garbage_is_rejected_and_accounted(mpy, chip):
    mpy(PRELUDE + """
k.load(4000)
k.run(60, 1)
k.emu.inject("stuck")
k.run(31, 1)
k.run(60, 1)
mptest.check(k.m.faults > 0, "stuck bus seen as a fault")
mptest.eq(k.m.resets, 0, "not mistaken for a chip reset")
ok, d = k.balance_ok()
mptest.check(ok, "truth - metered - lost = %d mJ (lost %d)" % (d, k.emu.lost_in_chip_mj))
mptest.done()
""", chip, heap=HEAP)


@pytest.mark.parametrize("chip", CHIPS)
def test_garbage_energy_read_is_never_energy(mpy, chip):
    # A consistent but impossible count (e.g. MISO stuck high on the energy read only) is dropped.
    mpy(PRELUDE + """
k.load(100)
k.run(10, 1)
wh, rem = k.m.imp_wh, k.m.imp_rem
e = k.chip.energy
k.chip.read_energy = lambda: None   # the chip "answers" a full register on every read
for i in range(len(e)):
    e[i] = k.chip.E_MAX
k.m.poll(1000)
mptest.eq((k.m.imp_wh, k.m.imp_rem), (wh, rem), "import untouched")
mptest.eq(k.m.rejected, 1, "rejected")
mptest.check(events.CHIP_FAULT in k.codes(), "fault event")
mptest.done()
""", chip, heap=HEAP)


@pytest.mark.parametrize("chip", CHIPS)
def test_no_register_overflows_at_max_current_within_derived_poll_interval(mpy, chip):
    mpy(PRELUDE + """
m = k.m
per_ch = chipkit.MAX_W[name] // k.emu.n
k.load(per_ch)
tick_s = m.max_poll_ms // 1000
mptest.check(tick_s >= 1, "derived interval %d ms" % m.max_poll_ms)
k.run(tick_s * 5, tick_s)
mptest.eq(k.emu.overflows, 0, "no overflow at %d s polls" % tick_s)
mptest.eq(m.rejected, 0, "max power is plausible")
ok, d = k.balance_ok()
mptest.check(ok, "exact at max power: %d mJ" % d)
# Polling much slower than derived does overflow the emulated register: the bound is real.
k2 = chipkit.Kit(name)
k2.m.start()
k2.load(per_ch)
k2.run(3 * tick_s, 3 * tick_s)
mptest.check(k2.emu.overflows > 0 or k2.m.rejected > 0, "3x the interval is unsafe")
mptest.done(max_poll_ms=m.max_poll_ms)
""", chip, heap=HEAP)


def test_board_poll_intervals_are_within_the_derived_bound(mpy):
    res = mpy("""
import mptest, chipkit
import esp32_atm90e26, esp32_atm90e32, esp32_ade7953
out = {}
for name, board in (("atm90e26", esp32_atm90e26), ("atm90e32", esp32_atm90e32), ("ade7953", esp32_ade7953)):
    k = chipkit.Kit(name, max_power_w=board.CONFIG["max_power_w"])
    out[name] = k.m.max_poll_ms
    mptest.check(board.CONFIG["tick_ms"] * 2 <= k.m.max_poll_ms, "%s tick %d vs %d" % (name, board.CONFIG["tick_ms"], k.m.max_poll_ms))
    mptest.check(5000 * 2 <= k.m.max_poll_ms, "%s sim tick" % name)
mptest.done(bounds=out)
""", heap=HEAP)
    b = res.result["bounds"]
    # 65535 counts / (13800 W * 3200 / 360000 + 1 counts/s); 3 phases at 0.01 pulse; 2^23 / (27600 W * 23716 / 3600)
    assert b == {"atm90e26": 65535 * 1000 // 123, "atm90e32": 65535 * 1000 // 3681,
                 "ade7953": 0x7FFFFF * 1000 // (27600 * 23716 // 3600 + 1)}


@pytest.mark.parametrize("chip", CHIPS)
def test_reverse_energy_raises_event_and_counts_export(mpy, chip):
    mpy(PRELUDE + """
k.load(-800)
k.run(120, 1)
mptest.check(events.REVERSE_ENERGY in k.codes(), "reverse_energy event")
mptest.eq(k.codes().count(events.REVERSE_ENERGY), 1, "once per episode")
mptest.eq(k.m.imp_wh, 0, "no import")
mptest.check(k.m.exp_wh >= 26 * k.emu.n - 1, "export %d Wh" % k.m.exp_wh)
mptest.done()
""", chip, heap=HEAP)


def test_live_neutral_mismatch_is_a_tamper_event(mpy):
    mpy(PRELUDE + """
k.load(2300)
k.run(10, 1)
mptest.eq(k.m.tampers, 0, "balanced")
k.emu.n_ratio_milli = 400   # 60 % of the current returns another way
k.run(10, 1)
mptest.eq(k.m.tampers, 1, "tamper once")
mptest.check(events.TAMPER_LN in k.codes(), "tamper_ln event")
k.emu.n_ratio_milli = 1000
k.run(5, 1)
k.emu.n_ratio_milli = 1000 - 50  # 5 %: within tolerance
k.run(10, 1)
mptest.eq(k.m.tampers, 1, "small mismatch tolerated")
mptest.done()
""", "atm90e26", heap=HEAP)


@pytest.mark.parametrize("chip", CHIPS)
def test_read_cycle_allocates_nothing(mpy, chip):
    res = mpy(PRELUDE + """
import micropython
k.load(2500)
k.run(5, 1)
emu, m = k.emu, k.m
emu.advance(1000)
i = err = 0  # globals exist before the lock (a new module global may grow its dict)
micropython.heap_lock()
try:
    m.poll(1000)
    m.poll(1000)
    err = None
except MemoryError as e:
    err = "allocated"
finally:
    micropython.heap_unlock()
for i in range(10):
    # The emulated chip's analogue side (truth in mJ: big ints on a 32-bit build) stands for
    # silicon and runs outside the lock; its SPI answers inside poll() are under it.
    emu.advance(1000)
    micropython.heap_lock()
    try:
        m.poll(1000)
    except MemoryError as e:
        err = "allocated"
    micropython.heap_unlock()
mptest.eq(err, None, "poll under heap_lock")
mptest.check(m.imp_wh > 0 or m.imp_rem > 0, "it did meter")
mptest.done()
""", chip, heap=HEAP)
    assert res.result["ok"]


def test_a_year_of_household_metered_exactly(mpy):
    res = mpy("""
import mptest, chipkit
from simhw.household import Household
k = chipkit.Kit("atm90e26")
mptest.check(k.m.start(), "init")
h = Household(3)
tick = 300  # 5 min: coarse, and still inside the 532 s overflow bound
utc = 1767225600
for _ in range(365 * 86400 // tick):
    k.emu.set_channel(0, h.power_w(utc, tick))
    k.emu.advance(tick * 1000)
    k.m.poll(tick * 1000)
    utc += tick
ok, d = k.balance_ok()
mptest.check(ok, "truth - metered = %d mJ" % d)
mptest.check(k.m.imp_wh > 1000000, "a household year is MWh-scale: %d Wh" % k.m.imp_wh)
mptest.done(wh=k.m.imp_wh, truth_wh=k.emu.truth_mj // 3600000)
""", timeout=120, heap=HEAP)
    r = res.result
    assert r["truth_wh"] - r["wh"] in (0, 1)


@pytest.mark.parametrize("chip", CHIPS)
def test_instantaneous_values_at_power_factor_0_8(mpy, chip):
    res = mpy(PRELUDE + """
k.load(1840, 800)   # 1840 W at PF 0.8 lagging, 230 V: 10 A, 1380 var
k.run(2, 1)
c = k.chip
mptest.eq(c.v_cv[0], 23000, "voltage")
mptest.check(abs(c.i_ma[0] - 10000) <= 1, "current %d" % c.i_ma[0])
mptest.check(abs(c.p_w[0] - 1840) <= 1, "active %d" % c.p_w[0])
mptest.check(abs(c.q_var[0] - 1380) <= 1, "reactive %d" % c.q_var[0])
mptest.check(abs(c.pf_milli[0] - 800) <= 1, "pf %d" % c.pf_milli[0])
mptest.check(abs(c.f_chz - 5000) <= 1, "frequency %d" % c.f_chz)
mptest.done()
""", chip, heap=HEAP)


@pytest.mark.parametrize("chip", CHIPS)
def test_chip_vanishing_mid_read_never_yields_all_ones(mpy, chip):
    # The energy read is delivered, then the chip goes absent before its echo can be read:
    # the answer is "no answer" (-1), never the all-ones word.
    mpy(PRELUDE + """
emu, c = k.emu, k.chip
real = emu._transact
state = {"n": 0}
def vanish(tx, rx):
    real(tx, rx)
    state["n"] += 1
    if state["n"] == 1:
        emu.absent = True
        emu._absent_until = 10 ** 9
emu._transact = vanish
addr = {"atm90e26": 0x40, "atm90e32": 0x80, "ade7953": 0x21E}[name]
mptest.eq(c.read_sure(addr), -1, "no answer")
mptest.done()
""", chip, heap=HEAP)


def test_atm90e26_checksum_error_stops_metering_and_is_repaired(mpy):
    # The chip found its calibration bank corrupted (CalErr) and stopped metering: re-init.
    mpy(PRELUDE + """
k.load(2000)
k.run(10, 1)
k.emu.regs[0x01] |= 0xC000
mptest.check(not k.emu.metering_on(), "chip stopped")
k.run(1, 1)
mptest.eq(k.m.resets, 1, "handled as a reset")
mptest.check(k.emu.metering_on(), "metering again")
mptest.eq(k.emu.regs[0x01] & 0xF000, 0, "errors cleared by the re-init")
mptest.done()
""", "atm90e26", heap=HEAP)


@pytest.mark.parametrize("chip", CHIPS)
def test_ok_says_whether_the_readings_are_fresh(mpy, chip):
    # Protection acts on v/i/p only while `ok`: a chip that stopped answering must say so.
    mpy(PRELUDE + """
k.load(1000)
k.run(3, 1)
mptest.check(k.m.ok, "fresh")
k.emu.inject("absent")
k.run(2, 1)
mptest.check(not k.m.ok, "not while the chip is absent")
k.run(60, 1)
mptest.check(k.m.ok, "fresh again")
mptest.eq(k.m.resets, 0, "the chip was not re-initialised for an absence")
mptest.done()
""", chip, heap=HEAP)
