"""The daily report's I/O: fetch from LNDg and the state store, write the CSV and chart, deliver.

No Telegram here: `deliver_due` hands each report and its PNG to a `send` callback (the chat,
or the log in headless mode) and remembers, in the state store, which days went out.

- A day is marked sent only after `send` returned, so a crash in between may repeat that one
  day after a restart (at least once), but a day that was marked is never sent again.
- A mark the state database refuses (locked past busy_timeout, disk full) is kept in memory:
  this process never sends that day again, and the next round writes the mark before it
  sends anything (logged once per episode).
- An LNDg failure stops the round at that day with `ReportUnavailable` (days before it are
  delivered and marked); call `deliver_due` again later and it carries on where it stopped.
  Alerting once per episode is the caller's business.
- On a fresh state store the first round reports only the newest due day and remembers it as
  the start (`report_first_day`), so a new install is not greeted by a week of reports.
- CSV or chart files that cannot be written are logged as errors and the report still goes
  out: the chat is what the operator reads.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Protocol

from core.chart import CHART_NAME
from core.chart_data import chart_span
from core.lndg import LndgError
from core.node_records import Forward, LndgRebalance, Payment
from core.report_chart import Chart, ChartReader, build_chart, chart_of_days, render
from core.report_csv import CSV_NAME, atomic_write, write_day
from core.report_figures import (
    DEFAULT_MATCH_WINDOW_SECONDS,
    DEFAULT_MAX_CATCH_UP,
    DayReport,
    combine,
    due_days,
    latest_due_day,
)
from core.report_period import PeriodFigures
from core.settings import Settings
from core.state import StateStore

logger = logging.getLogger(__name__)

FIRST_DAY_KEY = "report_first_day"


class LndgReader(Protocol):
    """What the reporter needs from `core.lndg.LndgClient`."""

    async def fetch_payments(self, start: datetime, end: datetime) -> Sequence[Payment]: ...

    async def fetch_rebalances(self, stop_after: datetime) -> Sequence[LndgRebalance]: ...

    async def fetch_forwards(
        self, since: datetime, until: datetime | None = None
    ) -> Sequence[Forward]: ...


SendReport = Callable[[DayReport, bytes], Awaitable[None]]


class ReportUnavailable(Exception):
    """LNDg could not be read for `day`; `delivered` lists the days sent before it."""

    def __init__(self, day: date, cause: LndgError, delivered: Sequence[date] = ()) -> None:
        super().__init__(f"daily report for {day.isoformat()} is waiting for LNDg: {cause}")
        self.day = day
        self.cause = cause
        self.delivered = list(delivered)


class _Unreadable:
    """LNDg as it just failed: every read raises that error again at once."""

    def __init__(self, error: LndgError) -> None:
        self.error = error

    async def fetch_payments(self, start: datetime, end: datetime) -> Sequence[Payment]:
        raise self.error

    async def fetch_rebalances(self, stop_after: datetime) -> Sequence[LndgRebalance]:
        raise self.error

    async def fetch_forwards(
        self, since: datetime, until: datetime | None = None
    ) -> Sequence[Forward]:
        raise self.error


class Reporter:
    """Builds daily reports and delivers the due ones; one per daemon."""

    def __init__(
        self,
        data_dir: Path,
        zone: tzinfo,
        report_time: time,
        store: StateStore,
        lndg: LndgReader,
        *,
        match_window_seconds: float = DEFAULT_MATCH_WINDOW_SECONDS,
        max_catch_up: int = DEFAULT_MAX_CATCH_UP,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """Keep the collaborators; nothing is read or written yet. `clock` tells which
        days are closed for good (their figures are stored, core.report_cache)."""
        self.data_dir = data_dir
        self.zone = zone
        self.report_time = report_time
        self.store = store
        self.lndg = lndg
        self.match_window_seconds = match_window_seconds
        self.max_catch_up = max_catch_up
        self.figures = PeriodFigures(store, lndg, zone, match_window_seconds, clock)
        # One round at a time: the schedule and a chat command must not both send a day.
        self._lock = asyncio.Lock()
        # Days the chat accepted whose mark the database refused: never sent again.
        self._unmarked: set[str] = set()
        self._refused = False  # the database refuses marks: said once per episode

    @classmethod
    def from_settings(cls, settings: Settings, store: StateStore, lndg: LndgReader) -> Reporter:
        """A reporter using DATA_DIR, TIMEZONE and REPORT_TIME."""
        return cls(settings.data_dir, settings.zone, settings.report_time, store, lndg)

    @property
    def csv_path(self) -> Path:
        """`daily-report.csv` in DATA_DIR."""
        return self.data_dir / CSV_NAME

    @property
    def chart_path(self) -> Path:
        """`daily-report.png` next to the CSV (rewritten by every `build`)."""
        return self.data_dir / CHART_NAME

    # -- building ------------------------------------------------------------------------------

    async def _compute(
        self, first: date, last: date, *, nets: bool = True, fresh: bool = False
    ) -> list[DayReport]:
        """Daily reports for first..last with their money lines: closed days from the state
        database, the rest from one read of LNDg and the store (core.report_period).

        Raises LndgError. `nets` False leaves out each day's worst and best nets (a summed
        report drops them). `fresh`: all read afresh, as for the CSV rows of `build_days`.
        """
        return await self.figures.days(first, last, nets=nets, fresh=fresh)

    async def build_with_chart(self, day: date) -> tuple[DayReport, bytes]:
        """`build`, also returning the chart PNG (sent even when the file could not be written)."""
        reports, png = await self.build_days(day, day)
        return reports[0], png

    async def build_days(self, first: date, last: date) -> tuple[list[DayReport], bytes]:
        """The reports of first..last from one attribution, each written to the CSV, and the
        chart of the last (written as `daily-report.png`). Raises LndgError (nothing written).

        The days themselves are read afresh (a rebuilt CSV row shows what LNDg caught up on
        late, and refreshes the stored figures); the chart's other days may be stored ones.
        """
        reports = await self._compute(first, last, fresh=True)
        for report in reports:
            try:
                write_day(self.csv_path, report)
            except OSError as exc:
                logger.error("daily report: cannot write %s: %s", self.csv_path, exc)
                break
        chart = await self.chart(last)
        try:
            atomic_write(self.chart_path, chart.png)
        except OSError as exc:
            logger.error("daily report: cannot write %s: %s", self.chart_path, exc)
        return reports, chart.png

    async def chart(self, last_day: date, days: int = 1) -> Chart:
        """The chart for a report of `days` days ending with `last_day` (a one-day report
        shows 30 days), from the same day figures as the report's text. Never raises for
        LNDg or the state database: what could not be read is left out and the caption says
        so (core.report_chart). Writes nothing.
        """
        first = last_day - timedelta(days=chart_span(days) - 1)
        try:
            reports = await self.figures.days(first, last_day, nets=False)
        except (LndgError, sqlite3.Error) as exc:
            # LNDg already had its round of retries: the fallback does not ask it again.
            lndg: ChartReader = _Unreadable(exc) if isinstance(exc, LndgError) else self.lndg
            return await build_chart(
                lndg,
                self.store,
                self.zone,
                last_day,
                days,
                match_window_seconds=self.match_window_seconds,
            )
        return await render(chart_of_days(reports, self.zone))

    async def build(self, day: date) -> DayReport:
        """The report of local day `day`; writes its CSV row and `daily-report.png`.

        Raises LndgError when LNDg cannot be read (nothing is written then).
        """
        report, _png = await self.build_with_chart(day)
        return report

    async def build_range(self, last_day: date, days: int) -> DayReport:
        """A summed report of the `days` days ending with `last_day` (e.g. 7 or 30).

        For on-demand summaries: writes nothing. Raises LndgError.
        """
        if days < 1:
            raise ValueError("days must be at least 1")
        first = last_day - timedelta(days=days - 1)
        # A sum of several days keeps no one window for the nets: not computed for it.
        return combine(await self._compute(first, last_day, nets=days == 1))

    # -- delivering ----------------------------------------------------------------------------

    def due(self, now: datetime) -> list[date]:
        """The days `deliver_due(now)` would send, oldest first."""
        first = self.store.get_value(FIRST_DAY_KEY)
        earliest = (
            date.fromisoformat(first) if first else latest_due_day(now, self.zone, self.report_time)
        )
        return due_days(
            now,
            self.zone,
            self.report_time,
            self._was_sent,
            self.max_catch_up,
            earliest=earliest,
        )

    async def deliver_due(self, now: datetime, send: SendReport) -> list[date]:
        """Build and `send` every due day, oldest first; returns the days sent.

        Each day is marked sent right after its `send` returned. Raises ReportUnavailable at
        the first day LNDg cannot be read (earlier days stay delivered); an exception from
        `send` propagates and leaves that day unsent. While the database refuses a mark the
        round stops after that day, and later rounds send nothing until the mark is written.
        """
        async with self._lock:
            if not self._write_marks():
                return []
            self.begin(now)
            delivered: list[date] = []
            for day in self.due(now):
                if self._was_sent(day.isoformat()):
                    continue
                try:
                    report, png = await self.build_with_chart(day)
                except LndgError as exc:
                    logger.warning("daily report for %s postponed: %s", day, exc)
                    raise ReportUnavailable(day, exc, delivered) from exc
                await send(report, png)
                delivered.append(day)
                logger.info("daily report for %s delivered", day)
                self._unmarked.add(day.isoformat())
                if not self._write_marks():
                    break
            return delivered

    def begin(self, now: datetime) -> None:
        """On a fresh state store, remember the newest due day as the first to report.

        The runtime calls it at start, so the minutely `deliver_due` writes nothing (and
        waits on no lock) until a report is due.
        """
        if self.store.get_value(FIRST_DAY_KEY) is None:
            newest = latest_due_day(now, self.zone, self.report_time)
            self.store.put_value(FIRST_DAY_KEY, newest.isoformat())

    def _was_sent(self, day: str) -> bool:
        return day in self._unmarked or self.store.report_sent(day)

    def _write_marks(self) -> bool:
        """Record the delivered days not recorded yet; False while the database refuses."""
        for day in sorted(self._unmarked):
            try:
                self.store.mark_report_sent(day)
            except sqlite3.Error as exc:
                if not self._refused:
                    self._refused = True
                    logger.error(
                        "daily report for %s was delivered but the state database refuses to "
                        "record it (%s); it is not sent again, and no report goes out until "
                        "the database takes writes",
                        day,
                        exc,
                    )
                return False
            self._unmarked.discard(day)
        if self._refused:
            self._refused = False
            logger.info("state database takes writes again: delivered daily reports recorded")
        return True
