"""The chart's inputs: LNDg's payments, rebalances and forwards and this daemon's ledger.

The chart never stops a report: what cannot be read is left out and the caption says so.
LNDg's payments unreadable: the bars hold this daemon's ledger only. Forwards unreadable:
no revenue bars. The state database unreadable: LNDg's view alone (this daemon's
rebalances then count as other tools').
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import Protocol

from core.chart import caption, render_chart_async
from core.chart_data import ChartData, ChartDay, chart_data, chart_span
from core.lndg import LndgError
from core.models import Rebalance
from core.node_records import Forward, LndgRebalance, Payment
from core.report_figures import DEFAULT_MATCH_WINDOW_SECONDS, DayReport, day_bounds, zone_name

logger = logging.getLogger(__name__)

NO_PAYMENTS = "LNDg not readable: this daemon's rebalances only, no routing revenue"
NO_FORWARDS = "LNDg's forwards not readable: no routing revenue"
NO_LEDGER = "state database not readable: this daemon's rebalances count as other tools'"


class ChartReader(Protocol):
    """What the chart needs from `core.lndg.LndgClient`."""

    async def fetch_payments(self, start: datetime, end: datetime) -> Sequence[Payment]: ...

    async def fetch_rebalances(self, stop_after: datetime) -> Sequence[LndgRebalance]: ...

    async def fetch_forwards(
        self, since: datetime, until: datetime | None = None
    ) -> Sequence[Forward]: ...


class LedgerReader(Protocol):
    """What the chart needs from `core.state.StateStore`."""

    def ledger(self, since: float = 0, until: float = float("inf")) -> list[Rebalance]: ...


@dataclass(frozen=True, slots=True)
class Chart:
    """A rendered chart and the chat caption that goes with it."""

    png: bytes
    caption: str
    data: ChartData


async def gather(
    lndg: ChartReader,
    store: LedgerReader,
    zone: tzinfo,
    last: date,
    days: int,
    *,
    match_window_seconds: float = DEFAULT_MATCH_WINDOW_SECONDS,
) -> ChartData:
    """The figures of the `days` local days ending with `last`; never raises for a source
    that cannot be read (see the module doc)."""
    first = last - timedelta(days=days - 1)
    start, end = day_bounds(first, zone)[0], day_bounds(last, zone)[1]
    margin = timedelta(seconds=match_window_seconds)
    notes: list[str] = []
    try:
        ledger = store.ledger(start.timestamp() - margin.total_seconds(), end.timestamp() + 1)
    except sqlite3.Error as exc:
        logger.warning("chart: cannot read the state database: %s", exc)
        ledger, notes = [], [NO_LEDGER]
    payments: Sequence[Payment] = ()
    rebalances: Sequence[LndgRebalance] = ()
    forwards: Sequence[Forward] | None = None
    try:
        payments = await lndg.fetch_payments(start - margin, end + margin)
        rebalances = await lndg.fetch_rebalances(start - margin)
        read = True
    except LndgError as exc:
        logger.warning("chart: cannot read LNDg's payments: %s", exc)
        read = False
        notes.append(NO_PAYMENTS)
    try:
        # LNDg down already cost one round of retries: not a second one for the forwards.
        if read:
            forwards = await lndg.fetch_forwards(start, end)
    except LndgError as exc:
        logger.warning("chart: cannot read LNDg's forwards: %s", exc)
        notes.append(NO_FORWARDS)
    # The figures in a worker thread: the chat keeps answering while a long period is built.
    return await asyncio.to_thread(
        chart_data,
        last,
        days,
        zone,
        payments,
        rebalances,
        ledger,
        forwards,
        match_window_seconds=match_window_seconds,
        rebalances_read=read,
        notes=notes,
    )


def chart_of_days(reports: Sequence[DayReport], zone: tzinfo) -> ChartData:
    """The chart's figures from the daily reports of its days (oldest first), so the chart
    and the text never disagree; a day without money lines leaves the revenue unknown."""
    forwards_read = all(report.money is not None for report in reports)
    days = tuple(
        ChartDay(
            report.day,
            report.daemon,
            report.lndg,
            report.other,
            report.money.revenue_msat if report.money is not None else 0,
        )
        for report in reports
    )
    notes = () if forwards_read else (NO_FORWARDS,)
    return ChartData(days, zone_name(zone), forwards_read=forwards_read, notes=notes)


async def render(data: ChartData) -> Chart:
    """The PNG (drawn in a worker thread) and caption of `data`."""
    return Chart(await render_chart_async(data), caption(data), data)


async def build_chart(
    lndg: ChartReader,
    store: LedgerReader,
    zone: tzinfo,
    last: date,
    report_days: int = 1,
    *,
    match_window_seconds: float = DEFAULT_MATCH_WINDOW_SECONDS,
) -> Chart:
    """The chart for a report of `report_days` days ending with `last` (see `chart_span`)."""
    data = await gather(
        lndg,
        store,
        zone,
        last,
        chart_span(report_days),
        match_window_seconds=match_window_seconds,
    )
    return await render(data)
