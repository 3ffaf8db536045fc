# The micropython half of tools/billreplay.py: runs the firmware tariff engine over a load
# profile. Usage: micropython tools/billreplay_mp.py TARIFF.json PROFILE.csv
# Prints one JSON line: {"ok": true, ...figures} or {"ok": false, "error": "..."}.
import sys
import json
import tariff
import localtime
import timebase


class ReplayError(Exception):
    pass


def parse_time(s, lineno):
    """UTC seconds from an integer or ISO 8601 'YYYY-MM-DDTHH:MM[:SS](Z|+hh:mm|-hh:mm)'."""
    if s.isdigit():
        return int(s)
    try:
        if len(s) < 17 or s[4] != "-" or s[7] != "-" or s[10] not in "T " or s[13] != ":":
            raise ValueError
        y, mo, d = int(s[0:4]), int(s[5:7]), int(s[8:10])
        h, mi = int(s[11:13]), int(s[14:16])
        rest = s[16:]
        sec = 0
        if rest.startswith(":"):
            sec = int(rest[1:3])
            rest = rest[3:]
        if rest == "Z":
            off = 0
        elif len(rest) == 6 and rest[0] in "+-" and rest[3] == ":":
            off = (int(rest[1:3]) * 60 + int(rest[4:6])) * (1 if rest[0] == "+" else -1)
        else:
            raise ValueError
        if not (1 <= mo <= 12 and 1 <= d <= 31 and h < 24 and mi < 60 and sec < 60):
            raise ValueError
    except ValueError:
        raise ReplayError("line %d: bad timestamp %r (UTC seconds or ISO 8601 with Z or an offset)" % (lineno, s))
    return localtime.days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - off * 60


def replay(tariff_path, csv_path):
    with open(tariff_path) as f:
        try:
            doc = json.load(f)
        except (ValueError, UnicodeError):
            raise ReplayError("tariff: not valid JSON")
    try:
        e = tariff.from_doc(doc)
    except tariff.TariffError as ex:
        raise ReplayError("tariff: %s" % ex)
    rows = 0
    energy = 0
    money = 0
    # The engine's registers roll over at tariff.REG_MOD (as on the meter): the replay adds up
    # each row's increments in plain integers, so a long or heavy profile is reported exactly.
    rate_wh = [0] * len(e.rate_wh)
    block_wh = [0] * len(e.block_wh)
    first = last = None
    gap = 0
    with open(csv_path) as f:
        lineno = 0
        while True:
            try:
                line = f.readline()
            except UnicodeError:
                raise ReplayError("line %d: not text (is this a CSV file?)" % (lineno + 1))
            if not line:
                break
            lineno += 1
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(",")
            if len(parts) != 2:
                raise ReplayError("line %d: expected 'timestamp,wh'" % lineno)
            ts, whs = parts[0].strip(), parts[1].strip()
            if lineno == 1 and not ts[:1].isdigit():
                continue  # header
            t = parse_time(ts, lineno)
            if not whs.isdigit():
                raise ReplayError("line %d: Wh must be a non-negative integer, got %r" % (lineno, whs))
            wh = int(whs)
            if wh >= tariff.REG_MOD:
                raise ReplayError("line %d: %d Wh in one interval is more than a meter register holds (%d)" % (
                    lineno, wh, tariff.REG_MOD - 1))
            if last is not None and t <= last:
                raise ReplayError("line %d: timestamps must increase" % lineno)
            dt = 0
            if last is not None:
                gap = t - last
                dt = gap * 1000
            # The standing charge for the interval before this row, then this row's energy at
            # the rate in force at its timestamp (the interval start).
            try:
                tm = timebase.from_unix(t)  # the engine counts meter seconds
            except ValueError as ex:
                raise ReplayError("line %d: %s" % (lineno, ex))
            money += e.charge(0, tm, dt)
            r0, b0 = list(e.rate_wh), list(e.block_wh)
            money += e.charge(wh, tm)
            for i in range(len(rate_wh)):
                rate_wh[i] += (e.rate_wh[i] - r0[i]) % tariff.REG_MOD
            for i in range(len(block_wh)):
                block_wh[i] += (e.block_wh[i] - b0[i]) % tariff.REG_MOD
            if first is None:
                first = t
            last = t
            rows += 1
            energy += wh
    if not rows:
        raise ReplayError("the load profile has no rows")
    money += e.charge(0, timebase.from_unix(last), gap * 1000)  # the last interval's standing charge (same length as the one before)
    t = e.t
    return {"ok": True, "rows": rows, "first": first, "end": last + gap, "energy_wh": energy,
            "rate_wh": rate_wh[:t.nr], "block_wh": block_wh[:t.nb],
            "standing_s": e.standing_s, "charged_minor": money, "remainder": e.rem, "den": t.den,
            "kind": t.kind}


def main():
    if len(sys.argv) != 3:
        print(json.dumps({"ok": False, "error": "usage: billreplay_mp.py TARIFF.json PROFILE.csv"}))
        sys.exit(2)
    try:
        out = replay(sys.argv[1], sys.argv[2])
    except (ReplayError, OSError) as ex:
        print(json.dumps({"ok": False, "error": str(ex)}))
        sys.exit(2)
    print(json.dumps(out))


main()
