# Every screen of the customer display, for docs/customer.md: one simulated meter with the
# emulated display, put into each state in turn; each screen is dumped as the display's pixels
# (DIR/frames/NNNN.bin) with its name and the text read back from the pixels (DIR/screens.jsonl).
# Run by tools/screen_gallery.py; argv: DIR FLASH.
import sys
import json
import simkit
import timebase
import customer
import relay as relay_mod
import limiter as limiter_mod
from simhw import screentext

out, flash = sys.argv[1], sys.argv[2]
index = open(out + "/screens.jsonl", "w")
n = [0]
TOU = {"v": 1, "kind": "tou", "scale": 1000, "rates": [30000, 15000], "standing_per_day": 25,
       "days": [[[0, 1], [420, 0], [1380, 1]]], "weeks": [[0, 0, 0, 0, 0, 0, 0]]}


def meter(config=None):
    cfg = {"opening_balance": 123456, "pulses": [{"name": "water", "unit": "l", "per_pulse": 10},
                                                 {"name": "gas", "unit": "m3/1000", "per_pulse": 10}], "customer": {"currency": "KES", "scroll_s": 0, "sequence": list(customer.SCREENS)}}
    cfg.update(config or {})
    b, m = simkit.meter(simkit.fresh_flash(flash), config=cfg, customer=True, meter_id="ke-0042-117")
    for _ in range(400):  # past the power-up delay, some energy counted
        b.advance(30000)
        m.step()
    return b, m


def dump(b, m, name):
    m.ui.refresh(b.clock.ticks_ms())
    frame = b.oled.visible()
    with open("%s/frames/%04d.bin" % (out, n[0]), "wb") as f:
        f.write(frame)
    json.dump({"n": n[0], "t": timebase.to_unix(b.clock.time()), "why": name, "text": screentext.lines(frame)}, index)
    index.write("\n")
    n[0] += 1


def reg(b, m, which, name=None):
    m.ui.mode = customer.HOME
    m.ui._idx = customer.SCREENS.index(which)
    dump(b, m, name or which)


b, m = meter()
m.ui.daily_use = 4100
for w in customer.SCREENS:
    reg(b, m, w)
m.account.add_debt(700)
reg(b, m, "credit", "banner-debt")
b, m = meter({"tariff": TOU})
reg(b, m, "import", "import-tou")
reg(b, m, "rate", "rate-tou")
# Banners by credit level, emergency credit and a friendly period.
b, m = meter({"credit": {"low1": 200000, "low2": 100, "ec_limit": 1000, "ec_threshold": 200000}})
m.account.debit(1)
reg(b, m, "credit", "banner-low-credit")
m.set_limits({"low2": 150000})
m.account.debit(1)
reg(b, m, "credit", "banner-very-low")
m.emergency_credit()
reg(b, m, "credit", "banner-emergency")
b, m = meter({"opening_balance": 5, "credit": {"friendly": {"hours": [[0, 1439]]}}})
reg(b, m, "credit", "banner-friendly")
# The supply off, and why.
b, m = meter({"opening_balance": 1})
reg(b, m, "credit", "off-credit")
m.account.topup(1000)
m._credit_rules()
m.step()
reg(b, m, "credit", "off-ready")
b, m = meter()
m.relay.remote_disconnect()
m.step()
reg(b, m, "credit", "off-remote")
m.relay.set_reason(relay_mod.TAMPER)
m.relay.remote_reconnect(True)
m.step()
reg(b, m, "credit", "off-tamper")
b, m = meter({"protection": {"limiter": {"power_w": 100}}})
lim = m.protection.limiter
lim._trip(b.clock.ticks_ms())
m.step()
reg(b, m, "credit", "off-overload")
# Token entry and every message.
b, m = meter()
m.ui.mode = customer.ENTRY
for i, c in enumerate(b"4412908733"):
    m.ui._digits[i] = c
m.ui._n = 10
dump(b, m, "entry")
for code in range(len(customer.MSG_TEXT)):
    val = 1250
    if customer.MSG_TEXT[code][2] == 2:  # a countdown: the lockout's end
        val = m.timesrc.lower() + 299
    m.ui._message(code, val, b.clock.ticks_ms())
    dump(b, m, "message-%02d" % code)
index.close()
print(json.dumps({"screens": n[0]}))
