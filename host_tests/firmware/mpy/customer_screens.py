# Every register of the display sequence, every banner and every reason the supply is off, read
# back from the emulated display's pixels; the function keys (A emergency credit, B next, D
# reconnect) and the entry keys (*, C, timeout) (host_tests/firmware/test_customer.py).
import sys
import mptest
import uikit
from uikit import press, wait, run, shows, lines, banner, money
import relay as relay_mod

flash = sys.argv[1]
toks = sys.argv[2].split(",")  # credit tokens for this meter: 12.50, 5.00

# -- the register sequence ------------------------------------------------------------------
b, m = uikit.meter(flash, {"opening_balance": 300}, load_w=2000)
wait(b, m, 3000)
shows(b, ["CREDIT", "KES", money(m.account.balance), "-- days left", "SUPPLY ON", "2000W"], "credit")
mptest.eq(banner(b), None, "no banner at a healthy balance")
press(b, m, "B")
shows(b, ["IMPORT kWh", money(m.metering.imp_wh, 3)], "import")
press(b, m, "B")
shows(b, ["EXPORT kWh", "0.000"], "export")
press(b, m, "B")
shows(b, ["PRICE per kWh", "0.25000"], "rate (25000 at scale 1000: 0.25000 a kWh)")
press(b, m, "B")
shows(b, ["POWER", "2000 W", money(m.metering.v_cv) + " V", money(m.metering.i_ma, 3) + " A"], "power")
press(b, m, "B")
shows(b, ["METER ID", "t-0001"], "id")
press(b, m, "B")
lc = m.tariff.t.tz
got = shows(b, ["DATE AND TIME", "%04d-%02d-%02d" % (lc.year, lc.month, lc.mday)], "time")
mptest.eq("not set" in got, m.timesrc.state != 3, "an untrusted clock is flagged, a trusted one not")
press(b, m, "B")
shows(b, ["WATER AND GAS", "water l", str(m.metering.pulses[0].value)], "the pulse inputs")
press(b, m, "B")
shows(b, ["CREDIT"], "the sequence wraps to the credit screen")
# Auto-scroll: key B holds the screen 30 s, then every scroll_s (10) it moves on.
m.ui.configure({"currency": "KES", "scroll_s": 10, "sequence": ["credit", "import", "export"]})
press(b, m, "BBB")
shows(b, ["CREDIT"], "B on the shorter sequence")
wait(b, m, 20000)
shows(b, ["CREDIT"], "held after key B")
wait(b, m, 12000)
shows(b, ["IMPORT kWh"], "scrolled on by itself")

# -- banners and the supply's state ----------------------------------------------------------
# 10.00 a kWh at 10 kW: 2.8 minor units a second.
PRICEY = {"v": 1, "kind": "flat", "price_per_kwh": 1000000, "scale": 1000}
b, m = uikit.meter(flash, {"opening_balance": 300, "tariff": PRICEY, "credit": {"low1": 290, "low2": 100}},
                   load_w=10000)
n = 0
while m.account.level == 0 and n < 100:
    run(b, m, 1)
    n += 1
mptest.eq(banner(b), "LOW CREDIT", "below low1")
while m.account.level == 1 and n < 200:
    run(b, m, 1)
    n += 1
mptest.eq(banner(b), "VERY LOW CREDIT", "below low2")
while m.relay.state == relay_mod.CONNECTED and n < 400:
    run(b, m, 1)
    n += 1
run(b, m, 1)
mptest.eq(banner(b), "NO CREDIT", "exhausted")
shows(b, ["SUPPLY OFF", "No credit"], "off for credit")
# A top-up typed on the keypad: the relay waits for the customer, who presses D.
press(b, m, toks[0] + "#")
shows(b, ["ACCEPTED", "+12.50", "Credit", money(m.account.balance)], "token")
wait(b, m, 9000)  # the result goes after result_s
shows(b, ["SUPPLY OFF", "Press D/button"], "ready for reconnection")
press(b, m, "D")
shows(b, ["RECONNECT", "SUPPLY RESTORED"], "D confirms")
wait(b, m, 3000)
mptest.eq(m.relay.state, relay_mod.CONNECTED, "the relay closed on key D")
shows(b, ["SUPPLY ON"], "on again")
press(b, m, "D")
shows(b, ["SUPPLY IS ON"], "D with the supply on")
# Remote disconnection: D cannot override it.
m.relay.remote_disconnect()
wait(b, m, 1000)
shows(b, ["SUPPLY OFF", "Remote off"], "remote")
press(b, m, "D")
shows(b, ["NOT ALLOWED NOW", "Remote off"], "D refused while remote")
m.relay.remote_reconnect(True)
wait(b, m, 10000)
# Tamper.
m.relay.set_reason(relay_mod.TAMPER)
wait(b, m, 1000)
shows(b, ["SUPPLY OFF", "Tamper"], "tamper")
m.relay.clear_reason(relay_mod.TAMPER)
m.relay.confirm_local()
wait(b, m, 5000)

# -- overload: the retry countdown --------------------------------------------------------
b, m = uikit.meter(flash, {"opening_balance": 100000, "protection": {"limiter": {"power_w": 1000, "retry_s": 100}}},
                   load_w=3000)
n = 0
while m.relay.state == relay_mod.CONNECTED and n < 200:
    run(b, m, 1)
    n += 1
got = shows(b, ["SUPPLY OFF", "Overload 1:"], "overload")
wait(b, m, 30000)
got2 = shows(b, ["Overload 1:"], "30 s later")
mptest.check(got != got2, "the countdown moves")
row = [r for r in got2 if r.startswith("Overload")][0]
left = int(row.split()[1].split(":")[0]) * 60 + int(row.split(":")[1])
mptest.check(68 <= left <= 71, "about 70 s left of 100: %r" % row)

# -- entry keys: delete, cancel, timeout ------------------------------------------------------
press(b, m, "1234")
shows(b, ["ENTER TOKEN", "1234", "digits", "#=OK *=DEL C=ESC"], "entry")
mptest.eq(banner(b), "ENTER TOKEN", "entry banner")
press(b, m, "*")
got = shows(b, ["123"], "deleted one")
mptest.check(not any("1234" in g for g in got), "the 4 went")
press(b, m, "C")
shows(b, ["SUPPLY"], "cancelled")
mptest.check(banner(b) != "ENTER TOKEN", "left the entry")
press(b, m, "56")
wait(b, m, 61000)
mptest.check(banner(b) != "ENTER TOKEN", "abandoned entry times out")
mptest.eq(m.ui._n, 0, "and its digits go")

# -- emergency credit, debt, friendly period --------------------------------------------------
b, m = uikit.meter(flash, {"opening_balance": 5000, "credit": {"ec_limit": 1000, "ec_threshold": 200, "low1": 300,
                                                              "low2": 100}}, load_w=0)
wait(b, m, 2000)
press(b, m, "A")
shows(b, ["EMERGENCY", "NOT OFFERED"], "EC above the threshold")
m.account.debit(4900)
wait(b, m, 9000)
press(b, m, "A")
shows(b, ["EMERGENCY", "CREDIT GRANTED"], "EC granted")
wait(b, m, 9000)
mptest.eq(banner(b), "EMERGENCY CREDIT", "EC banner")
press(b, m, "A")
shows(b, ["ALREADY ON"], "EC twice")
b, m = uikit.meter(flash, {"opening_balance": 5000}, load_w=0)
m.account.add_debt(700)
wait(b, m, 2000)
mptest.eq(banner(b), "DEBT RECOVERY", "debt banner")
shows(b, ["Debt", money(700)], "debt on the credit screen")
b, m = uikit.meter(flash, {"opening_balance": 10, "tariff": PRICEY, "credit": {"friendly": {"hours": [[0, 1439]]}}},
                   load_w=10000)
n = 0
while not m.account.exhausted() and n < 600:
    run(b, m, 1)
    n += 1
wait(b, m, 2000)
mptest.eq(banner(b), "FRIENDLY PERIOD", "exhausted in a friendly period")
shows(b, ["SUPPLY ON"], "still supplied")

# -- days of credit left from recent use --------------------------------------------------------
b, m = uikit.meter(flash, {"opening_balance": 20000, "customer": {"currency": "KES", "scroll_s": 0}}, load_w=500)
day = m.tariff.t.tz.day
start = m.account.charged
uses = []
for _ in range(3 * 24 * 60):
    b.advance(60000)
    m.step()
    if m.tariff.t.tz.day != day:
        day = m.tariff.t.tz.day
        uses.append(m.account.charged - start)
        start = m.account.charged
avg = 0
for u in uses[1:]:  # the first day was only counted from boot
    avg = u if not avg else (3 * avg + u) // 4
mptest.check(uses and avg > 0, "daily use seen")
shows(b, ["%d days left" % (m.account.balance // avg)], "days left at %d a day" % avg)

# -- warning sounds: the two levels, their repeats, quiet hours ----------------------------------
def warn_tones(b):
    return [t for t in b.beeper.tones() if t[2] == 2700 and t[1] == 200]


b, m = uikit.meter(flash, {"opening_balance": 300, "tariff": PRICEY, "credit": {"low1": 290, "low2": 100},
                           "customer": {"quiet": [0, 23], "warn_s": [60, 60]}}, load_w=3000)
hour = m.tariff.t.tz.minute(m.timesrc.bill_time(m.clock.time())) // 60
mptest.check(hour < 23, "the sim starts inside the quiet hours (%d)" % hour)
run(b, m, 20)
mptest.check(m.account.level == 1, "below low1 (%d)" % m.account.balance)
mptest.eq(m.ui.warnings, 0, "no warning in the quiet hours")
mptest.eq(b.oled.contrast, 0x10, "the display dimmed in the quiet hours")
mptest.eq(warn_tones(b), [], "nothing sounded")
m.ui.configure({"quiet": [], "warn_s": [60, 600]})
wait(b, m, 1000)
mptest.eq(m.ui.warnings, 1, "warned once the quiet hours are off")
mptest.eq(b.oled.contrast, 0xCF, "bright again")
wait(b, m, 1000)
got = warn_tones(b)
mptest.eq(len(got), 2, "low1: two 200 ms beeps")
mptest.eq(got[-1][0] - got[0][0], 400, "200 ms apart")
wait(b, m, 30000)
mptest.eq(m.ui.warnings, 1, "not repeated before warn_s[0]")
wait(b, m, 31000)
mptest.eq(m.ui.warnings, 2, "repeated after warn_s[0]")
w = m.ui.warnings
while m.account.level == 1:
    w = m.ui.warnings
    wait(b, m, 1000)
wait(b, m, 2000)
mptest.eq(m.ui.warnings, w + 1, "the second level warns at once")
t = [x for x in b.beeper.tones() if x[2] == 2700][-4:]
mptest.eq([x[1] for x in t], [200, 200, 200, 600], "low2: three beeps and a long one")

# -- a price whose scale is not a power of ten: to 1/100 of a minor unit ------------------------
b, m = uikit.meter(flash, {"tariff": {"v": 1, "kind": "flat", "price_per_kwh": 76, "scale": 3}}, load_w=0)
m.ui.configure({"currency": "KES", "scroll_s": 0, "sequence": ["rate"]})
wait(b, m, 1000)
shows(b, ["PRICE per kWh", "0.2533"], "76/3 minor units a kWh")

# -- two pulse inputs, each with its name and unit --------------------------------------------
b, m = uikit.meter(flash, {"pulses": [{"name": "water", "unit": "l", "per_pulse": 10},
                                      {"name": "gas", "unit": "m3/1000", "per_pulse": 10}],
                           "customer": {"scroll_s": 0, "sequence": ["meters"]}}, load_w=0)
for _ in range(3):  # the gas meter's contact closes three times
    for lvl in (0, 0, 1, 1):
        b.advance(30)
        m.metering.pulses[1].sample(lvl, b.clock.ticks_ms())
wait(b, m, 1000)
got = shows(b, ["WATER AND GAS", "water l", "gas m3/1000"], "both inputs")
mptest.eq(got[5].strip(), "30", "3 gas pulses of 10")

# -- a bad set-up is refused with its reason, the display still works ---------------------------
b, m = uikit.meter(flash, {"customer": {"decimals": 9}}, load_w=0)
mptest.check("decimals" in (m.ui.config_error or ""), "reason kept: %r" % m.ui.config_error)
wait(b, m, 2000)
mptest.eq(m.ui.sequence, bytes((0, 1, 3, 6, 5)), "the default sequence in force")
shows(b, ["SUPPLY ON"], "the display works")
mptest.done()
