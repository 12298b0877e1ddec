"""The report's chart, drawn for a phone: what was rebalanced each day and whether it paid.

Two panels over the same local days (`core.chart_data.ChartData`): rebalanced sats per day
stacked by tool (this daemon / LNDg / other tools), then routing revenue beside rebalancing
cost per day. Sized to be read in a chat on a phone (~400 px wide): portrait, large fonts, at
most 4 value ticks and 8 day labels, values as `12.3k` / `1.5M`, period totals in the legends
and a title naming the period and the time zone.

Drawn with matplotlib's object API on an Agg canvas (no pyplot: no global figure state, so it
is safe in a worker thread). CPU-bound: from the event loop use `render_chart_async`.
matplotlib is imported at the first drawing, not at start: a daemon that has drawn no chart
yet stays ~30 MB smaller.
"""

from __future__ import annotations

import asyncio
import io
import math
from datetime import date
from typing import TYPE_CHECKING

from core.chart_data import ChartData

if TYPE_CHECKING:  # matplotlib (with numpy and PIL, ~30 MB) is loaded at the first chart
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

CHART_NAME = "daily-report.png"

# Portrait, 900 x 1170 px: a phone shows it across the screen's width.
FIGSIZE = (6.0, 7.8)
DPI = 150
MAX_DAY_LABELS = 8
FONT = 13  # points; at 150 dpi shown 400 px wide, about 12 px high

_DAEMON_COLOUR = "#1f77b4"
_LNDG_COLOUR = "#ff7f0e"
_OTHER_COLOUR = "#a0a0a0"
_REVENUE_COLOUR = "#2ca02c"
_COST_COLOUR = "#d62728"
_NOTE_COLOUR = "#b00020"


def short_sats(value: float) -> str:
    """A sat amount in at most 4 characters of digits: `950`, `12.3k`, `1.5M`."""
    magnitude = abs(value)
    for size, suffix in ((1_000_000_000, "B"), (1_000_000, "M"), (1_000, "k")):
        if magnitude >= size * 0.9995:
            scaled = value / size
            digits = 0 if abs(scaled) >= 99.95 else 1 if abs(scaled) >= 9.995 else 2
            text = f"{scaled:.{digits}f}"
            if "." in text:
                text = text.rstrip("0").rstrip(".")
            return text + suffix
    return f"{value:,.0f}"


def _tick(value: float, _position: object) -> str:
    return short_sats(value)


def period_text(data: ChartData) -> str:
    """`last 7 days (18 – 24 Nov 2026), Europe/Berlin`: the period the chart shows."""
    count = len(data.days)
    first, last = data.first, data.last
    end = f"{last.day} {last:%b %Y}"
    if count == 1:
        dates = end
    elif first.year != last.year:
        dates = f"{first.day} {first:%b %Y} – {end}"
    elif first.month != last.month:
        dates = f"{first.day} {first:%b} – {end}"
    else:
        dates = f"{first.day} – {end}"
    days = "1 day" if count == 1 else f"last {count} days"
    return f"{days} ({dates}), {data.zone_name}"


def caption(data: ChartData) -> str:
    """A one-line chat caption for the chart: what it shows, the period, what is missing."""
    text = f"Rebalancing and routing, {period_text(data)}"
    return "; ".join((text, *data.notes))


def _day_labels(days: list[date]) -> tuple[list[int], list[str]]:
    """Positions and labels of at most MAX_DAY_LABELS days, always the last one.

    The day of the month, with the month under it on the first label and where it changes.
    """
    step = max(1, math.ceil(len(days) / MAX_DAY_LABELS))
    positions = [i for i in range(len(days)) if (len(days) - 1 - i) % step == 0]
    labels: list[str] = []
    month_shown: tuple[int, int] | None = None
    for i in positions:
        day = days[i]
        month = (day.year, day.month)
        labels.append(f"{day.day}\n{day:%b}" if month != month_shown else f"{day.day}\n")
        month_shown = month
    return positions, labels


def _value_axis(axes: Axes, label: str) -> None:
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    axes.yaxis.set_major_locator(MaxNLocator(nbins=3, min_n_ticks=2, steps=[1, 2, 2.5, 5, 10]))
    axes.yaxis.set_major_formatter(FuncFormatter(_tick))
    axes.set_ylim(bottom=0)
    axes.set_ylabel(label, fontsize=FONT)
    axes.tick_params(labelsize=FONT)
    axes.grid(axis="y", alpha=0.35)
    axes.set_axisbelow(True)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)


def _legend(axes: Axes, title: str, columns: int) -> None:
    """The panel's title and its series (with their totals) as one block above the panel."""
    axes.legend(
        title=title,
        alignment="left",
        title_fontproperties={"weight": "bold", "size": FONT + 1},
        fontsize=FONT,
        loc="lower left",
        bbox_to_anchor=(0, 1.01),
        ncols=columns,
        frameon=False,
        borderaxespad=0,
        borderpad=0,
        handlelength=1,
        columnspacing=1,
        handletextpad=0.4,
    )


def draw_chart(data: ChartData) -> Figure:
    """The chart as a Figure (on an Agg canvas), not saved: `render_chart` saves it.

    The first axes holds the stacked rebalance bars (three containers, one bar per day), the
    second the revenue and cost bars (revenue only when the forwards were read).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    days = [row.day for row in data.days]
    positions = list(range(len(days)))
    figure = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    moved, money = figure.subplots(2, 1, sharex=True, height_ratios=(1.1, 1))

    # Rebalanced sats per day, stacked by tool; the legend carries the period's totals.
    width = 0.8
    bottom = [0.0] * len(days)
    for tool, colour, name in (
        ("daemon", _DAEMON_COLOUR, "this daemon"),
        ("lndg", _LNDG_COLOUR, "LNDg"),
        ("other", _OTHER_COLOUR, "other"),
    ):
        values = [getattr(row, tool).amount_msat / 1000 for row in data.days]
        total = short_sats(data.total(tool).amount_msat / 1000)
        moved.bar(
            positions, values, bottom=bottom, width=width, color=colour, label=f"{name} {total}"
        )
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    _value_axis(moved, "sats")
    _legend(moved, "Rebalanced per day", 3)

    # Revenue beside cost, per day; the net over the period in the panel's title.
    cost = [row.cost_msat / 1000 for row in data.days]
    cost_label = f"rebalancing cost {short_sats(data.cost_msat / 1000)}"
    if data.forwards_read:
        half = 0.4
        revenue = [row.revenue_msat / 1000 for row in data.days]
        money.bar(
            [p - half / 2 for p in positions],
            revenue,
            width=half,
            color=_REVENUE_COLOUR,
            label=f"earned {short_sats(data.revenue_msat / 1000)}",
        )
        money.bar(
            [p + half / 2 for p in positions],
            cost,
            width=half,
            color=_COST_COLOUR,
            label=cost_label,
        )
        net = (data.revenue_msat - data.cost_msat) / 1000
        sign = "+" if net > 0 else "−" if net < 0 else ""
        title = f"Fees per day: net {sign}{short_sats(abs(net))} sats"
    else:
        money.bar(positions, cost, width=width, color=_COST_COLOUR, label=cost_label)
        title = "Fees per day (routing revenue unknown)"
    _value_axis(money, "sats")
    _legend(money, title, 2)

    ticks, labels = _day_labels(days)
    money.set_xticks(ticks, labels)
    money.set_xlim(-0.6, len(days) - 0.4)
    money.tick_params(axis="x", length=0)

    period = period_text(data)
    figure.suptitle(
        period[0].upper() + period[1:], fontsize=FONT + 1, fontweight="bold", x=0.02, ha="left"
    )
    if data.notes:
        figure.supxlabel("\n".join(data.notes), fontsize=FONT - 1, color=_NOTE_COLOUR)
    return figure


def render_chart(data: ChartData) -> bytes:
    """The chart as PNG bytes."""
    figure = draw_chart(data)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


async def render_chart_async(data: ChartData) -> bytes:
    """`render_chart` in a worker thread, so the event loop keeps serving."""
    return await asyncio.to_thread(render_chart, data)
