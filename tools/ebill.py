"""ebill: a customer's monthly electronic bill from the meter's own uplink messages.

    tools/ebill.py --month 2026-02 --uplinks UPLINKS.jsonl --meter METER.json --out DIR [--pdf]
                   [--tariff TARIFF.json]

UPLINKS.jsonl: one uplink message a line, {"k": kind, "d": document} (kinds as in
docs/protocol.md 3: snap, tele, lp and evt are read, the others skipped). METER.json:
{"meter_id", "name", "address" (optional), "currency", "decimals" (default 2),
"opening_balance" (optional: the balance provisioned on a new meter), "units" (optional:
{"water": "l"})}. TARIFF.json (optional): the tariff document in force, for the prices on the bill.

Writes DIR/bill-<meter>-<month>.html (and .pdf with --pdf, through headless Chromium) and prints
one JSON line of totals. Exit status: 0 done, 1 the PDF could not be made, 2 bad input.

The bill is the difference of two monthly billing snapshots (protocol 5.6): the one that closed
the month before and the one that closed this month. Everything is integers: money in minor
units, energy in Wh.
"""
import argparse
import calendar
import html
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

REG_MOD = 10 ** 9  # energy registers roll over here (protocol 5.5 register_rollover)
METER_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
MONTH = re.compile(r"^(\d{4})-(\d{2})$")
CHROMIUM_TIMEOUT_S = 90
_MONEY_KEYS = ("tm", "ss", "c", "b", "debt", "tu")


class BillError(Exception):
    """Bad or inconsistent input, or a PDF that could not be made; the message says which."""


# -- inputs -----------------------------------------------------------------------------------
def _is_int(v):
    return type(v) is int  # bool is not an integer here


def _parse_month(month):
    m = MONTH.match(month) if isinstance(month, str) else None
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise BillError("month must be YYYY-MM, got %r" % (month,))
    return int(m.group(1)), int(m.group(2))


def _month_before(y, mo):
    return (y - 1, 12) if mo == 1 else (y, mo - 1)


def check_meter(meter):
    """The meter description with its defaults, or BillError."""
    if not isinstance(meter, dict):
        raise BillError("meter: expected a JSON object")
    mid = meter.get("meter_id")
    if not isinstance(mid, str) or not METER_ID.match(mid):
        raise BillError("meter: meter_id must be 1..32 letters, digits, '-' or '_', got %r" % (mid,))
    for k in ("name", "currency"):
        if not isinstance(meter.get(k), str):
            raise BillError("meter: %s must be a string" % k)
    if not isinstance(meter.get("address", ""), str):
        raise BillError("meter: address must be a string")
    dec = meter.get("decimals", 2)
    if not _is_int(dec) or not 0 <= dec <= 6:
        raise BillError("meter: decimals must be an integer 0..6, got %r" % (dec,))
    ob = meter.get("opening_balance", 0)
    if not _is_int(ob):
        raise BillError("meter: opening_balance must be an integer (minor units), got %r" % (ob,))
    units = meter.get("units", {})
    if not isinstance(units, dict) or not all(isinstance(v, str) for v in units.values()):
        raise BillError("meter: units must map input names to unit names")
    return dict(meter, decimals=dec, opening_balance=ob, address=meter.get("address", ""), units=units)


def _regs(doc, key, what):
    v = doc.get(key)
    if not isinstance(v, list) or not 1 <= len(v) <= 8 or not all(_is_int(x) and 0 <= x < REG_MOD for x in v):
        raise BillError("%s: %s must be a list of 1..8 registers in 0..%d" % (what, key, REG_MOD - 1))
    return list(v)


def _snap(doc):
    """A snapshot document checked, without its seq and mac."""
    if not isinstance(doc, dict):
        raise BillError("snapshot: expected a JSON object, got %r" % (doc,))
    kind, date = doc.get("snap"), doc.get("date")
    if kind not in ("d", "m") or not isinstance(date, str):
        raise BillError("snapshot: snap must be \"d\" or \"m\" with a date, got %r" % (doc,))
    what = "snapshot %s %s" % (kind, date)
    if not re.match(r"^\d{4}-\d{2}-\d{2}$" if kind == "d" else r"^\d{4}-\d{2}$", date):
        raise BillError("%s: bad date" % what)
    out = {"snap": kind, "date": date, "e": _regs(doc, "e", what), "blk": _regs(doc, "blk", what)}
    for k in ("t",) + _MONEY_KEYS:
        if not _is_int(doc.get(k)):
            raise BillError("%s: %s must be an integer" % (what, k))
        out[k] = doc[k]
    return out


def snapshot_table(snaps):
    """{(snap, date): snapshot}. A snapshot sent again after a power cut is the same freeze (same
    figures); one that differs is refused, since either could be the truth."""
    table = {}
    for doc in snaps:
        s = _snap(doc)
        key = (s["snap"], s["date"])
        if key in table and table[key] != s:
            raise BillError("snapshot %s %s arrived twice with different figures" % key)
        table[key] = s
    return table


def _rollovers(readings):
    return sorted(d["t"] for d in readings
                  if isinstance(d, dict) and d.get("ev") == "register_rollover" and _is_int(d.get("t")))


def _reg_diff(what, a, b, t0, t1, rolls):
    """b - a for a cumulative energy register; modulo 10^9 only when the meter said it rolled
    over between t0 and t1 (t0 None: since manufacture)."""
    if b >= a:
        return b - a
    if any((t0 is None or t0 < t) and t <= t1 for t in rolls):
        return (b - a) % REG_MOD
    raise BillError("%s went backwards from %d to %d Wh with no register_rollover event between %s and %s"
                    % (what, a, b, _iso(t0) if t0 is not None else "manufacture", _iso(t1)))


def _pad(v, n):
    return v + [0] * (n - len(v))  # the meter leaves trailing zero registers out


def _iso(t):
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _zero_snapshot():
    return {"snap": "m", "date": None, "t": None, "e": [0], "blk": [0], "tm": 0, "ss": 0, "c": 0,
            "b": 0, "debt": 0, "tu": 0}


def _tariff_info(doc, ss, tariff_charge):
    if not isinstance(doc, dict):
        raise BillError("tariff: expected a JSON object")
    scale = doc.get("scale")
    if not _is_int(scale) or scale < 1:
        raise BillError("tariff: scale must be a positive integer")
    rates = doc.get("rates", [doc.get("price_per_kwh")] if "price_per_kwh" in doc else None)
    if not isinstance(rates, list) or not rates or not all(_is_int(r) and r >= 0 for r in rates):
        raise BillError("tariff: rates (or price_per_kwh) must be non-negative integers")
    standing = doc.get("standing_per_day", 0)
    if not _is_int(standing) or standing < 0:
        raise BillError("tariff: standing_per_day must be a non-negative integer")
    # The meter keeps one remainder for energy and standing charge together, so the standing part
    # is its exact value floored and the energy part is the rest of the tariff charge.
    sc = ss * standing // (86400 * scale)
    return {"scale": scale, "rates": list(rates), "blocks": "blocks" in doc, "standing_per_day": standing,
            "standing_charge": sc, "energy_charge": tariff_charge - sc}


# -- the bill ---------------------------------------------------------------------------------
def compute(meter, month, snaps, readings, tariff_doc=None):
    """The month's bill as a dict of integers (money in minor units, energy in Wh); no I/O.

    `snaps`: snapshot documents (any order, duplicates allowed). `readings`: telemetry and load
    profile documents; event documents among them are read for register_rollover. A meter with no
    snapshot before `month` is new: its registers started at zero, and the opening balance it was
    provisioned with (meter["opening_balance"]) was credited as a top-up (firmware/app.py), so it
    is moved from the top-ups to the opening balance. Raises BillError."""
    meter = check_meter(meter)
    y, mo = _parse_month(month)
    py, pmo = _month_before(y, mo)
    prev = "%04d-%02d" % (py, pmo)
    table = snapshot_table(snaps)
    readings = [d for d in readings if isinstance(d, dict)]
    rolls = _rollovers(readings)

    close = table.get(("m", month))
    if close is None:
        raise BillError("no monthly snapshot for %s: the month has not closed yet, or its snapshot has not "
                        "arrived (ask the meter for a backfill)" % month)
    # The last daily freeze of the month before is the same freeze as its monthly one.
    last_prev_day = "%s-%02d" % (prev, calendar.monthrange(py, pmo)[1])
    opening = table.get(("m", prev)) or table.get(("d", last_prev_day))
    older = sorted(d for (_, d) in table if d[:7] < month)
    new = opening is None
    if new and older:
        raise BillError("the snapshot that closed %s is missing (neither the monthly one nor the daily one of %s "
                        "arrived) though the meter has older ones (%s): ask the meter for a backfill"
                        % (prev, last_prev_day, older[-1]))
    if new:
        opening = _zero_snapshot()
    elif close["t"] <= opening["t"]:
        raise BillError("the snapshot closing %s (%s) is not after the one closing %s (%s)"
                        % (month, _iso(close["t"]), prev, _iso(opening["t"])))
    t0, t1 = opening["t"], close["t"]

    nr = max(len(opening["e"]), len(close["e"]))
    nb = max(len(opening["blk"]), len(close["blk"]))
    oe, ce = _pad(opening["e"], nr), _pad(close["e"], nr)
    ob, cb = _pad(opening["blk"], nb), _pad(close["blk"], nb)
    rate_wh = [_reg_diff("the rate %d register" % (i + 1), oe[i], ce[i], t0, t1, rolls) for i in range(nr)]
    block_wh = [_reg_diff("the block %d register" % (i + 1), ob[i], cb[i], t0, t1, rolls) for i in range(nb)]
    energy = sum(rate_wh)
    if sum(block_wh) != energy:
        raise BillError("energy per block (%d Wh) does not add up to energy per rate (%d Wh)" % (sum(block_wh), energy))

    diffs = {}
    for k, what in (("tm", "the tariff charge"), ("ss", "the standing-charge seconds"), ("c", "the money debited")):
        diffs[k] = close[k] - opening[k]
        if diffs[k] < 0:
            raise BillError("%s went backwards (%d to %d)" % (what, opening[k], close[k]))
    debited = diffs["c"]
    topups = close["tu"] - opening["tu"]  # may be negative: an authority may set the balance lower
    opening_balance, opening_debt = opening["b"], opening["debt"]
    if new:
        opening_balance = meter["opening_balance"]
        topups -= opening_balance
    # protocol 5.6: b = opening + tu - c - debt recovered; credit.md: recovery takes its share of
    # top-ups (counted whole in tu) and of the balance, without charging it.
    recovered = opening_balance + topups - debited - close["b"]
    if recovered < 0:
        raise BillError("the balance rose by %d more than the top-ups less the money debited allow (balance %d to %d,"
                        " top-ups %d, debited %d)" % (-recovered, opening_balance, close["b"], topups, debited))
    debt_added = close["debt"] - opening_debt + recovered
    if debt_added < 0:
        raise BillError("the debt fell by %d more than was recovered (debt %d to %d, recovered %d)"
                        % (-debt_added, opening_debt, close["debt"], recovered))

    bill = {
        "meter_id": meter["meter_id"], "month": month, "currency": meter["currency"], "decimals": meter["decimals"],
        "new_meter": new, "period_start": t0, "period_end": t1,
        "opening": {k: opening[k] for k in ("e", "blk") + _MONEY_KEYS},
        "closing": {k: close[k] for k in ("e", "blk") + _MONEY_KEYS},
        "rate_wh": rate_wh, "block_wh": block_wh, "energy_wh": energy,
        "tariff_charge": diffs["tm"], "standing_s": diffs["ss"], "debited": debited, "topups": topups,
        "debt_recovered": recovered, "debt_added": debt_added,
        "opening_balance": opening_balance, "closing_balance": close["b"],
        "opening_debt": opening_debt, "closing_debt": close["debt"],
        "pulses": _pulses(readings, t0, t1),
        "daily": _daily(table, y, mo, opening, new, rolls),
    }
    if tariff_doc is not None:
        bill["tariff"] = _tariff_info(tariff_doc, diffs["ss"], diffs["tm"])
    days = [wh for _, wh in bill["daily"]]
    if None not in days and sum(days) != energy:
        raise BillError("the daily snapshots add up to %d Wh, the monthly ones to %d Wh" % (sum(days), energy))
    return bill


def _pulses(readings, t0, t1):
    """First and last value of each pulse input (water, gas) in the readings of the period; the
    readings at both freezes count, so consecutive bills meet."""
    seen = {}
    for d in readings:
        u, t = d.get("u"), d.get("t")
        if not isinstance(u, dict) or not _is_int(t) or t > t1 or (t0 is not None and t < t0):
            continue
        for name, v in u.items():
            if _is_int(v):
                seen.setdefault(name, []).append((t, v))
    out = {}
    for name in sorted(seen):
        vals = sorted(seen[name])
        first, last = vals[0][1], vals[-1][1]
        if last < first:
            raise BillError("pulse input %r went backwards (%d to %d)" % (name, first, last))
        out[name] = {"first": first, "last": last, "used": last - first}
    return out


def _daily(table, y, mo, opening, new, rolls):
    """[(date, Wh or None)] for each day of the month: the difference of consecutive daily
    snapshots (the monthly one before the first day); None where one of them is missing."""
    earliest = min([d for (k, d) in table if k == "d"] or [""])
    out = []
    for day in range(1, calendar.monthrange(y, mo)[1] + 1):
        date = "%04d-%02d-%02d" % (y, mo, day)
        cur = table.get(("d", date))
        before = opening if day == 1 and not new else table.get(("d", _day_before(y, mo, day)))
        if before is None and new and date == earliest:
            # Taken as the day the meter started, from zero registers (were that day's snapshot
            # lost, this day would hold both).
            before = _zero_snapshot()
        if cur is None or before is None:
            out.append((date, None))
            continue
        n = max(len(cur["e"]), len(before["e"]))
        a, b = _pad(before["e"], n), _pad(cur["e"], n)
        out.append((date, sum(_reg_diff("the rate %d register on %s" % (i + 1, date), a[i], b[i], before["t"],
                                        cur["t"], rolls) for i in range(n))))
    return out


def _day_before(y, mo, day):
    if day > 1:
        return "%04d-%02d-%02d" % (y, mo, day - 1)
    py, pmo = _month_before(y, mo)
    return "%04d-%02d-%02d" % (py, pmo, calendar.monthrange(py, pmo)[1])


# -- load profile -----------------------------------------------------------------------------
def _interval_reports(readings):
    """[(t, e, lp)] of the reports that close load-profile intervals, by time. Revision 5 marks
    them with "lp"; `lp` topic records (with "de") state no length: it is the largest step that
    divides every gap between them."""
    marked = [d for d in readings if isinstance(d, dict) and "ev" not in d and _is_int(d.get("lp"))]
    records = [d for d in readings if isinstance(d, dict) and "ev" not in d and "lp" not in d and "de" in d]
    step = 0
    ts = sorted({d.get("t") for d in records if _is_int(d.get("t"))})
    for a, b in zip(ts, ts[1:]):
        step = math.gcd(step, b - a)
    by_t = {}
    for d, lp in [(d, d["lp"]) for d in marked] + [(d, step or 900) for d in records]:
        t, e = d.get("t"), d.get("e")
        if not _is_int(t) or not _is_int(e) or not 0 <= e < REG_MOD or lp <= 0:
            raise BillError("interval report: t, e and lp must be integers (e in 0..%d), got %r" % (REG_MOD - 1, d))
        if t in by_t and by_t[t][1] != e:
            raise BillError("two interval reports for %s with different registers (%d, %d Wh)"
                            % (_iso(t), by_t[t][1], e))
        by_t[t] = (t, e, lp)
    return [by_t[t] for t in sorted(by_t)]


def load_profile(readings, start_utc, end_utc):
    """(rows, missing): rows [(interval start, Wh)] between two freezes, and the number of
    intervals left out because a report that opens or closes them is missing (protocol 5.4).

    A freeze happens on the first meter step at or after local midnight; the report closing the
    interval that ends at that midnight goes out on the same step, so its registers are the
    snapshot's. The bounds are therefore taken down to the report grid. That is exact whenever
    local midnight is on the grid of lp (any whole quarter-hour offset with the default 900 s)."""
    rows = []
    skipped = 0
    reps = _interval_reports(readings)
    rolls = _rollovers(readings)
    inside = [r for r in reps if start_utc - start_utc % r[2] <= r[0] <= end_utc - end_utc % r[2]]
    for (ta, ea, _), (tb, eb, lp) in zip(inside, inside[1:]):
        if tb - ta != lp:
            skipped += 1
            continue
        # A rollover is raised on the step that sends the report, which may be up to a step after tb.
        rows.append((ta, _reg_diff("the import register", ea, eb, ta, tb + lp, rolls)))
    lps = {r[2] for r in inside}
    if len(lps) != 1:
        return rows, skipped if inside else 0
    lp = lps.pop()
    return rows, (end_utc - end_utc % lp - (start_utc - start_utc % lp)) // lp - len(rows)


def interval_csv(readings, month_start_utc, month_end_utc):
    """The month's load profile as the `timestamp,wh` CSV tools/billreplay.py reads: one row per
    interval (its start, UTC seconds), from differences of `e` between consecutive interval
    reports. Intervals that cannot be known on their own are left out and counted in a comment."""
    rows, missing = load_profile(readings, month_start_utc, month_end_utc)
    lines = ["timestamp,wh"]
    if missing:
        lines.append("# %d interval(s) left out: the report that opens or closes each is missing (lost, or the"
                     " meter was off)" % missing)
    lines += ["%d,%d" % r for r in rows]
    return "\n".join(lines) + "\n"


# -- presentation -----------------------------------------------------------------------------
def format_money(minor, decimals=2):
    """Minor units as a decimal string, exactly: (1250, 2) -> "12.50", (-5, 2) -> "-0.05"."""
    if not _is_int(minor) or not _is_int(decimals) or decimals < 0:
        raise BillError("money must be an integer number of minor units")
    sign = "-" if minor < 0 else ""
    whole, frac = divmod(abs(minor), 10 ** decimals)
    return "%s%d" % (sign, whole) + (".%0*d" % (decimals, frac) if decimals else "")


def _grouped(text):
    """Thousands separated for reading: "-1234567.89" -> "-1,234,567.89"."""
    sign = "-" if text.startswith("-") else ""
    whole, dot, frac = text.lstrip("-").partition(".")
    groups = []
    while len(whole) > 3:
        whole, groups = whole[:-3], [whole[-3:]] + groups
    return sign + ",".join([whole] + groups) + dot + frac


def format_kwh(wh):
    return format_money(wh, 3)  # Wh are thousandths of a kWh


def _format_price(price, scale, decimals):
    """A tariff price (minor units x scale per kWh) in major units, exactly when scale is a power
    of ten (the usual case), else as a fraction of minor units."""
    k = len(str(scale)) - 1
    if 10 ** k == scale:
        return format_money(price, decimals + k)
    return "%d/%d minor units" % (price, scale)


def _duration(s):
    d, r = divmod(s, 86400)
    return "%d d %02d:%02d:%02d" % (d, r // 3600, r // 60 % 60, r % 60)


_CSS = """
body{font-family:DejaVu Sans,Arial,sans-serif;color:#222;margin:24px;font-size:13px}
h1{font-size:20px;margin:0 0 4px}h2{font-size:15px;margin:18px 0 6px;border-bottom:1px solid #999}
table{border-collapse:collapse;margin:4px 0}td,th{padding:3px 10px;text-align:left}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}tr.total td{border-top:1px solid #444;font-weight:bold}
.head{display:flex;justify-content:space-between}.muted{color:#666}.chart{margin-top:6px}
"""


def _chart(daily):
    """An inline SVG bar chart of the daily Wh (integer geometry); a day without data is a grey stub."""
    w, h, left, bottom = 640, 180, 48, 22
    n = len(daily) or 1
    bw = (w - left - 8) // n
    top = max([wh for _, wh in daily if wh is not None] or [0]) or 1
    plot_h = h - bottom - 18
    parts = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img" '
             'aria-label="daily electricity use">' % (w, h, w, h),
             '<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#444"/>' % (left, h - bottom, w - 8, h - bottom),
             '<text x="%d" y="10" font-size="10">highest day %s kWh</text>' % (left, html.escape(format_kwh(top)))]
    for i, (date, wh) in enumerate(daily):
        x = left + i * bw + 1
        day = html.escape(date[8:])
        if wh is None:
            parts.append('<rect x="%d" y="%d" width="%d" height="3" fill="#ccc"><title>%s: no data</title></rect>'
                         % (x, h - bottom - 3, bw - 2, html.escape(date)))
        else:
            bh = wh * plot_h // top
            parts.append('<rect x="%d" y="%d" width="%d" height="%d" fill="#3b6ea5"><title>%s: %s kWh</title></rect>'
                         % (x, h - bottom - bh, bw - 2, bh, html.escape(date), html.escape(format_kwh(wh))))
        if i % 2 == 0:
            parts.append('<text x="%d" y="%d" font-size="9" text-anchor="middle">%s</text>'
                         % (x + bw // 2, h - bottom + 12, day))
    parts.append("</svg>")
    return "".join(parts)


def render_html(bill, meter):
    """A self-contained HTML bill: inline CSS and SVG, no scripts, no external resources; every
    text value escaped, money formatted exactly from minor units."""
    meter = check_meter(meter)
    e = html.escape
    dec = meter["decimals"]
    cur = e(meter["currency"])

    def money(v):
        return "%s %s" % (cur, e(_grouped(format_money(v, dec))))

    def row(label, value, cls=""):
        return '<tr%s><td>%s</td><td class="n">%s</td></tr>' % (' class="%s"' % cls if cls else "", e(label), value)

    y, mo = _parse_month(bill["month"])
    ndays = calendar.monthrange(y, mo)[1]
    period = "%04d-%02d-01 to %04d-%02d-%02d" % (y, mo, y, mo, ndays)
    if bill["new_meter"]:
        period = "from the meter's installation to %04d-%02d-%02d" % (y, mo, ndays)
    frozen = "readings frozen at %s%s (UTC)" % (
        "" if bill["period_start"] is None else _iso(bill["period_start"]) + " and ", _iso(bill["period_end"]))
    tariff = bill.get("tariff")

    energy_rows = []
    for i, wh in enumerate(bill["rate_wh"]):
        price = ""
        if tariff and i < len(tariff["rates"]) and not tariff["blocks"]:  # with blocks the price varies
            price = " at %s %s/kWh" % (cur, e(_format_price(tariff["rates"][i], tariff["scale"], dec)))
        energy_rows.append(row("Rate %d" % (i + 1), e(format_kwh(wh)) + " kWh" + price))
    energy_rows.append(row("Total", e(format_kwh(bill["energy_wh"])) + " kWh", "total"))
    block_rows = ""
    if len(bill["block_wh"]) > 1:
        block_rows = "<h2>Consumption blocks</h2><table>%s</table>" % "".join(
            row("Block %d" % (i + 1), e(format_kwh(wh)) + " kWh") for i, wh in enumerate(bill["block_wh"]))

    charge_rows = []
    if tariff:
        charge_rows.append(row("Energy", money(tariff["energy_charge"])))
        per_day = _format_price(tariff["standing_per_day"], tariff["scale"], dec)
        charge_rows.append(row("Standing charge, %s at %s %s/day" % (_duration(bill["standing_s"]), meter["currency"],
                                                                    per_day), money(tariff["standing_charge"])))
    else:
        charge_rows.append(row("Standing charge time", e(_duration(bill["standing_s"]))))
    charge_rows.append(row("Tariff charge", money(bill["tariff_charge"]), "total"))

    acct = [row("Opening balance" + (" (provisioned)" if bill["new_meter"] else ""), money(bill["opening_balance"])),
            row("Top-ups", money(bill["topups"])),
            row("Electricity debited", money(-bill["debited"]))]
    if bill["debt_recovered"] or bill["opening_debt"] or bill["closing_debt"]:
        acct.append(row("Debt recovered", money(-bill["debt_recovered"])))
    acct.append(row("Closing balance", money(bill["closing_balance"]), "total"))
    debt = ""
    if bill["opening_debt"] or bill["closing_debt"] or bill["debt_added"]:
        debt = "<h2>Debt</h2><table>%s</table>" % "".join([
            row("Outstanding at the start", money(bill["opening_debt"])),
            row("Added", money(bill["debt_added"])),
            row("Recovered", money(-bill["debt_recovered"])),
            row("Outstanding at the end", money(bill["closing_debt"]), "total")])
    pulses = ""
    if bill["pulses"]:
        units = meter["units"]
        pulses = "<h2>Water and gas</h2><table><tr><th>input</th><th class=\"n\">first reading</th>" \
                 "<th class=\"n\">last reading</th><th class=\"n\">used</th></tr>%s</table>" % "".join(
                     "<tr><td>%s</td><td class=\"n\">%d</td><td class=\"n\">%d</td><td class=\"n\">%d %s</td></tr>"
                     % (e(name), p["first"], p["last"], p["used"], e(units.get(name, "")))
                     for name, p in bill["pulses"].items())
    address = e(meter["address"]).replace("\n", "<br>") if meter["address"] else ""
    return "".join([
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<title>Electricity bill %s %s</title>" % (e(meter["meter_id"]), e(bill["month"])),
        "<style>%s</style></head><body>" % _CSS,
        "<div class=\"head\"><div><h1>Electricity bill, %s</h1>" % e(bill["month"]),
        "<div>%s</div><div>%s</div></div>" % (e(meter["name"]), address),
        "<div class=\"muted\">Meter %s<br>Period %s<br>%s</div></div>" % (e(meter["meter_id"]), e(period), e(frozen)),
        "<h2>Account</h2><table>%s</table>" % "".join(acct),
        debt,
        "<h2>Electricity used</h2><table>%s</table>" % "".join(energy_rows),
        block_rows,
        "<h2>Charges</h2><table>%s</table>" % "".join(charge_rows),
        pulses,
        "<h2>Daily use</h2><div class=\"chart\">%s</div>" % _chart(bill["daily"]),
        "</body></html>\n"])


# -- PDF --------------------------------------------------------------------------------------
def find_chromium():
    for c in (os.environ.get("CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser"),
              "/usr/bin/chromium"):
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


def render_pdf(html_text, out_path, timeout=CHROMIUM_TIMEOUT_S):
    """Print the HTML to a PDF with headless Chromium; BillError with the reason if it cannot."""
    exe = find_chromium()
    if exe is None:
        raise BillError("Chromium not found: install the Debian package chromium, or set $CHROMIUM to its path")
    out = Path(out_path).resolve()
    with tempfile.TemporaryDirectory(prefix="ebill-") as tmp:
        src = Path(tmp) / "bill.html"
        src.write_text(html_text, encoding="utf-8")
        if out.exists():
            out.unlink()  # so a stale file cannot pass for this run's output
        # A profile of its own: no user state is read or left behind, and runs do not collide.
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer",
               "--user-data-dir=" + str(Path(tmp) / "profile"), "--print-to-pdf=" + str(out), src.as_uri()]
        log_path = Path(tmp) / "chromium.log"
        # The log goes to a file, not a pipe: a helper that outlives the browser would hold a pipe
        # open and the wait would never see its end.
        with open(log_path, "wb") as log:
            try:
                p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True, env=dict(os.environ, HOME=tmp))
            except OSError as e:
                raise BillError("cannot start Chromium (%s): %s" % (exe, e))
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)  # its own session: the renderer and helpers go too
                p.wait()
                raise BillError("Chromium did not finish the PDF within %d s" % timeout)
        try:
            head = out.read_bytes()[:5]
        except OSError:
            head = b""
        if p.returncode != 0 or head != b"%PDF-":
            tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise BillError("Chromium made no PDF (exit %d): %s" % (p.returncode, tail[0]))
    return out


# -- command line -----------------------------------------------------------------------------
def read_uplinks(path):
    """(snaps, readings) from a JSON-lines file of {"k": kind, "d": document}."""
    snaps, readings = [], []
    try:
        f = open(path, encoding="utf-8")
    except OSError as e:
        raise BillError("uplinks %s: %s" % (path, e.strerror or e))
    with f:
        try:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    msg = json.loads(line)
                except ValueError:
                    raise BillError("uplinks line %d: not JSON" % n)
                if not isinstance(msg, dict) or not isinstance(msg.get("k"), str) or not isinstance(msg.get("d"), dict):
                    raise BillError("uplinks line %d: expected {\"k\": kind, \"d\": {...}}" % n)
                if msg["k"] == "snap":
                    snaps.append(msg["d"])
                elif msg["k"] in ("tele", "lp", "evt"):
                    readings.append(msg["d"])
        except UnicodeError:
            raise BillError("uplinks %s: not UTF-8 text" % path)
    return snaps, readings


def _read_json(path, what):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as e:
        raise BillError("%s %s: %s" % (what, path, e.strerror or e))
    except (ValueError, UnicodeError):
        raise BillError("%s %s: not valid JSON" % (what, path))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--month", required=True, help="YYYY-MM")
    p.add_argument("--uplinks", required=True, help="JSON lines of {\"k\": kind, \"d\": document}")
    p.add_argument("--meter", required=True, help="the meter and its customer, JSON")
    p.add_argument("--out", required=True, help="directory for the bill")
    p.add_argument("--pdf", action="store_true", help="also print it to PDF with headless Chromium")
    p.add_argument("--tariff", help="the tariff document in force (for the prices on the bill)")
    a = p.parse_args(argv)
    try:
        _parse_month(a.month)
        meter = check_meter(_read_json(a.meter, "meter"))
        tariff = _read_json(a.tariff, "tariff") if a.tariff else None
        snaps, readings = read_uplinks(a.uplinks)
        bill = compute(meter, a.month, snaps, readings, tariff)
        page = render_html(bill, meter)
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        base = out / ("bill-%s-%s" % (meter["meter_id"], a.month))
        base.with_suffix(".html").write_text(page, encoding="utf-8")
    except (BillError, OSError) as e:
        print("ebill: error: %s" % (e if isinstance(e, BillError) else "%s: %s" % (a.out, e.strerror or e)),
              file=sys.stderr)
        return 2
    totals = {k: bill[k] for k in ("meter_id", "month", "energy_wh", "tariff_charge", "debited", "topups",
                                   "debt_recovered", "opening_balance", "closing_balance", "closing_debt")}
    totals["html"] = str(base.with_suffix(".html"))
    if a.pdf:
        try:
            totals["pdf"] = str(render_pdf(page, base.with_suffix(".pdf")))
        except BillError as e:
            print("ebill: error: %s" % e, file=sys.stderr)
            return 1
    print(json.dumps(totals, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
