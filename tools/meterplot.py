"""A meter's load profile and balance as a PNG, drawn with matplotlib (pinned in requirements.txt):
two panels on one time axis, round value ticks, a tick per day, units on both axes, and marks
where the meter was topped up or its relay opened and closed (`headend plot`)."""
from datetime import datetime, timezone

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

DPI = 100
# Event marks: the meter's event name -> (legend label, colour, line style).
MARKS = {"topup_applied": ("top-up", "tab:purple", "-"), "relay_open": ("relay opened", "tab:red", "--"),
         "relay_closed": ("relay closed", "tab:blue", ":")}


def _dt(t):
    return datetime.fromtimestamp(t, timezone.utc)


def plot(path, title, rows, balance, events, decimals=2, currency="", width=900, height=560):
    """rows: (interval end UTC, seconds, Wh, mean W, ...); balance: (UTC, minor units);
    events: (UTC, event name). Writes `path`; returns what was drawn (for checks): the two
    axes' x limits, their y tick values, the x tick times and the marks drawn by kind."""
    fig, (load, bal) = plt.subplots(2, 1, sharex=True, figsize=(width / DPI, height / DPI), dpi=DPI,
                                    gridspec_kw={"height_ratios": (3, 2)})
    try:
        # Each interval as a bar from its start to its end: the mean power over it.
        starts = [_dt(r[0] - r[1]) for r in rows]
        widths = [r[1] / 86400 for r in rows]  # in days: matplotlib's date unit
        load.bar(starts, [r[3] for r in rows], width=widths, align="edge", color="tab:blue", linewidth=0)
        load.set_ylabel("mean power (W)")
        unit = currency or "currency units"
        scale = 10 ** decimals
        bal.step([_dt(t) for t, _ in balance], [b / scale for _, b in balance], where="post", color="tab:green")
        bal.set_ylabel("balance (%s)" % unit)
        bal.axhline(0, color="grey", linewidth=0.8)
        drawn = {}
        for t, name in events:
            if name not in MARKS:
                continue
            label, colour, style = MARKS[name]
            first = name not in drawn
            drawn[name] = drawn.get(name, 0) + 1
            for ax in (load, bal):
                ax.axvline(_dt(t), color=colour, linestyle=style, linewidth=1,
                           label=label if first and ax is load else None)
        if drawn:
            load.legend(loc="upper right", fontsize="small")
        for ax in (load, bal):
            ax.yaxis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]))  # round values
            ax.grid(True, axis="both", linewidth=0.3)
        t0 = min([s for s in starts] + [_dt(t) for t, _ in balance])
        t1 = max([_dt(r[0]) for r in rows] + [_dt(t) for t, _ in balance])
        bal.set_xlim(t0, t1)
        days = (t1 - t0).total_seconds() / 86400
        # A tick per day (every few days on a long span), hours between them on a short one.
        bal.xaxis.set_major_locator(mdates.DayLocator(interval=max(1, int(days // 10))))
        bal.xaxis.set_major_formatter(mdates.DateFormatter("%d %b"))
        if days <= 3:
            bal.xaxis.set_minor_locator(mdates.HourLocator(byhour=range(0, 24, 6)))
            bal.xaxis.set_minor_formatter(mdates.DateFormatter("%H:%M"))
            bal.tick_params(axis="x", which="minor", labelsize="x-small")
        bal.set_xlabel("UTC")
        load.set_title(title, fontsize="medium")
        fig.align_ylabels((load, bal))
        fig.tight_layout()
        fig.savefig(path, format="png", dpi=DPI)
        return {"xlim": (load.get_xlim(), bal.get_xlim()),
                "yticks": (list(load.get_yticks()), list(bal.get_yticks())),
                "xticks": [mdates.num2date(x) for x in bal.get_xticks()],
                "ylabels": (load.get_ylabel(), bal.get_ylabel()), "marks": drawn}
    finally:
        plt.close(fig)
