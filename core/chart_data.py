"""The chart's figures: per local day, rebalanced sats by tool, their cost and routing revenue.

Pure, no I/O. The split by tool is the daily report's own (`report_figures.compute_days`, so
the chart and the text above it never disagree); routing revenue is the `fee` of every forward
LNDg recorded, on the local day (TIMEZONE) of its `forward_date`, days half-open
`[00:00, next 00:00)` as `report_figures.day_bounds` cuts them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta, tzinfo

from core.models import Rebalance
from core.node_records import Forward, LndgRebalance, Payment
from core.report_figures import (
    DEFAULT_MATCH_WINDOW_SECONDS,
    DayIndex,
    Share,
    compute_days,
    zone_name,
)

DEFAULT_DAYS = 30


def chart_span(days: int) -> int:
    """How many days a chart for a report of `days` days shows.

    A one-day report (the daily one, `/report`, `/report yesterday`) gets the last 30 days for
    context; a longer period shows exactly that period (`/report 7d`: 7 bars).
    """
    if days < 1:
        raise ValueError("days must be at least 1")
    return DEFAULT_DAYS if days == 1 else days


@dataclass(frozen=True, slots=True)
class ChartDay:
    """One local day's bars: rebalances by tool (count, sats, fees) and routing revenue."""

    day: date
    daemon: Share = field(default_factory=Share)
    lndg: Share = field(default_factory=Share)
    other: Share = field(default_factory=Share)
    revenue_msat: int = 0

    @property
    def cost_msat(self) -> int:
        """Fees every tool paid for rebalancing that day."""
        return self.daemon.fee_msat + self.lndg.fee_msat + self.other.fee_msat


@dataclass(frozen=True, slots=True)
class ChartData:
    """The chart's days, oldest first, and what the caption must say about its sources.

    `rebalances_read` False: LNDg's payments could not be read, so the bars hold only this
    daemon's own ledger. `forwards_read` False: no routing revenue is known (zeros drawn as
    missing, not as a node that earned nothing). `notes` are short lines for the caption.
    """

    days: tuple[ChartDay, ...]
    zone_name: str
    rebalances_read: bool = True
    forwards_read: bool = True
    notes: tuple[str, ...] = ()

    @property
    def first(self) -> date:
        """The first day shown."""
        return self.days[0].day

    @property
    def last(self) -> date:
        """The last day shown."""
        return self.days[-1].day

    def total(self, tool: str) -> Share:
        """The period's sum for one tool: `daemon`, `lndg` or `other`."""
        total = Share()
        for day in self.days:
            total += getattr(day, tool)
        return total

    @property
    def revenue_msat(self) -> int:
        """The period's routing revenue."""
        return sum(day.revenue_msat for day in self.days)

    @property
    def cost_msat(self) -> int:
        """The period's rebalancing cost, all tools."""
        return sum(day.cost_msat for day in self.days)


def span_days(last: date, days: int) -> list[date]:
    """The `days` local days ending with `last`, oldest first."""
    return [last - timedelta(days=back) for back in range(days - 1, -1, -1)]


def revenue_by_day(forwards: Iterable[Forward], days: Sequence[date], zone: tzinfo) -> list[int]:
    """Routing revenue in msat of each of `days` (local days in `zone`); forwards outside drop.

    A forward's `fee` (sats, fractions kept) is rounded to the msat once, so sums stay exact.
    """
    index = DayIndex(days, zone)
    totals = [0] * len(days)
    for forward in forwards:
        slot = index.at(forward.forward_date)
        if slot is not None:
            totals[slot] += round(forward.fee_sat * 1000)
    return totals


def chart_data(
    last: date,
    days: int,
    zone: tzinfo,
    payments: Sequence[Payment],
    lndg_rebalances: Sequence[LndgRebalance],
    ledger_rows: Sequence[Rebalance],
    forwards: Sequence[Forward] | None,
    *,
    match_window_seconds: float = DEFAULT_MATCH_WINDOW_SECONDS,
    rebalances_read: bool = True,
    notes: Sequence[str] = (),
) -> ChartData:
    """The chart of the `days` local days ending with `last`.

    Inputs should reach `match_window_seconds` beyond the period, as for `compute_day`.
    `forwards` None: LNDg's forwards could not be read (revenue unknown, not zero).
    """
    if days < 1:
        raise ValueError("days must be at least 1")
    span = span_days(last, days)
    revenue = revenue_by_day(forwards or (), span, zone)
    reports = compute_days(
        span, zone, payments, lndg_rebalances, ledger_rows, (), match_window_seconds
    )
    rows = [
        ChartDay(day, report.daemon, report.lndg, report.other, revenue[index])
        for index, (day, report) in enumerate(zip(span, reports, strict=True))
    ]
    return ChartData(
        tuple(rows),
        zone_name(zone),
        rebalances_read=rebalances_read,
        forwards_read=forwards is not None,
        notes=tuple(notes),
    )
