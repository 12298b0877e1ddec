"""The daily report's chart: the node's rebalanced sats per day over the last 30 days.

Stacked bars split into this daemon / LNDg / other tools, and the daemon's share of the sats
as a line on a second axis. Drawn with matplotlib's object API on an Agg canvas (no pyplot:
no global figure state, so it is safe in a worker thread). CPU-bound: from the event loop use
`render_chart_async`.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, PercentFormatter

from core.report_csv import atomic_write

CHART_NAME = "daily-report.png"
DEFAULT_DAYS = 30

_DAEMON_COLOUR = "#1f77b4"
_LNDG_COLOUR = "#ff7f0e"
_OTHER_COLOUR = "#b0b0b0"
_SHARE_COLOUR = "#2ca02c"


def _number(row: Mapping[str, str], column: str) -> float | None:
    try:
        value = float(row.get(column, "") or "nan")
    except ValueError:
        return None
    return None if value != value else value  # NaN: empty or unreadable cell


def _sats_label(value: float, _position: object) -> str:
    magnitude = abs(value)
    if magnitude >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if magnitude >= 1_000:
        return f"{value / 1_000:g}k"
    return f"{value:g}"


def render_chart(
    rows: Sequence[Mapping[str, str]],
    path: Path | None = None,
    *,
    end: date | None = None,
    days: int = DEFAULT_DAYS,
) -> bytes:
    """A PNG of the `days` days ending with `end` (default: the newest row's date).

    `rows` are `daily-report.csv` rows (`core.report_csv.read_days`); days without a row show
    no bar. When `path` is given the PNG is also written there (atomically). Returns the PNG.
    """
    by_day: dict[date, Mapping[str, str]] = {}
    for row in rows:
        try:
            by_day[date.fromisoformat(row.get("date", ""))] = row
        except ValueError:
            continue
    if end is None:
        end = max(by_day) if by_day else date.today()
    span = [end - timedelta(days=back) for back in range(days - 1, -1, -1)]

    def series(column: str) -> list[float]:
        return [_number(by_day[d], column) or 0.0 if d in by_day else 0.0 for d in span]

    daemon = series("daemon_sats")
    lndg = series("lndg_sats")
    other = series("other_sats")
    share = [_number(by_day[d], "daemon_share_sats_pct") if d in by_day else None for d in span]

    figure = Figure(figsize=(10, 5.2), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    positions = list(range(len(span)))
    axes.bar(positions, daemon, color=_DAEMON_COLOUR, label="this daemon", width=0.75)
    axes.bar(positions, lndg, bottom=daemon, color=_LNDG_COLOUR, label="LNDg", width=0.75)
    lower = [a + b for a, b in zip(daemon, lndg, strict=True)]
    axes.bar(positions, other, bottom=lower, color=_OTHER_COLOUR, label="other tools", width=0.75)
    axes.set_ylabel("rebalanced sats per day")
    axes.yaxis.set_major_formatter(FuncFormatter(_sats_label))
    axes.set_ylim(bottom=0)
    axes.grid(axis="y", alpha=0.3)
    axes.set_axisbelow(True)
    axes.set_xlim(-0.6, len(span) - 0.4)

    # Label every day when it fits, else every second/third one, always including the last.
    step = 1 if days <= 16 else 2 if days <= 31 else max(1, days // 15)
    ticks = [i for i in positions if (len(span) - 1 - i) % step == 0]
    axes.set_xticks(ticks, [span[i].strftime("%d %b") for i in ticks], rotation=45, ha="right")
    axes.set_xlabel("day")

    share_axes = axes.twinx()
    # NaN breaks the line, so a day without data is a gap rather than a bridged slope.
    share_axes.plot(
        positions,
        [float("nan") if value is None else value for value in share],
        color=_SHARE_COLOUR,
        marker="o",
        markersize=4,
        linewidth=2,
        label="this daemon's share of sats (right axis)",
    )
    share_axes.set_ylim(0, 105)
    share_axes.yaxis.set_major_formatter(PercentFormatter(decimals=0))
    share_axes.set_ylabel("this daemon's share of rebalanced sats", color=_SHARE_COLOUR)
    share_axes.tick_params(axis="y", colors=_SHARE_COLOUR)

    # Legend outside the plot, so it never hides a bar.
    handles, labels = axes.get_legend_handles_labels()
    line_handles, line_labels = share_axes.get_legend_handles_labels()
    figure.legend(
        handles + line_handles,
        labels + line_labels,
        loc="outside lower center",
        ncols=4,
        fontsize="small",
        frameon=False,
    )
    figure.suptitle(f"Node rebalancing, last {days} days ({span[0]:%d %b} – {span[-1]:%d %b %Y})")

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    png = buffer.getvalue()
    if path is not None:
        atomic_write(path, png)
    return png


async def render_chart_async(
    rows: Sequence[Mapping[str, str]],
    path: Path | None = None,
    *,
    end: date | None = None,
    days: int = DEFAULT_DAYS,
) -> bytes:
    """`render_chart` in a worker thread, so the event loop keeps serving."""
    return await asyncio.to_thread(render_chart, rows, path, end=end, days=days)
