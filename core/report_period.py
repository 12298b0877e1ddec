"""The figures of a run of local days: stored days from the state database, the others read
from LNDg and the store and attributed together (each run of consecutive days in one go),
off the event loop.

Only the days not stored (or no longer valid, see core.report_cache) are read from LNDg: for
`/report 30d` that is today, and yesterday until its figures settle. The event loop only
awaits LNDg's HTTP reads; the store is read in a worker thread through a read-only
connection of its own (one snapshot for the rows and the marks they are stored with), and
the attribution runs there too.

- LNDg's payments unreadable: `LndgError` (nothing stored).
- LNDg's forwards unreadable: the days get `money_error` instead of money lines (logged as a
  warning), and are not stored.
- The stored figures unreadable: every day is computed (a warning, once per episode).
- The chart asked right after the text (within RECENT_SECONDS, no new ledger row or run)
  takes the days the text just computed: one read and one attribution for both.
- The database refuses to store figures (locked past busy_timeout, disk full): the report
  goes out as computed; a warning once per episode; later reports compute those days again.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta, tzinfo

from core import report_cache
from core.gc_pause import no_collection
from core.lndg import LndgError
from core.models import Rebalance, RunResult
from core.node_records import Forward, LndgRebalance, Payment
from core.pnl import days_money
from core.report_cache import Marks
from core.report_chart import ChartReader
from core.report_figures import DayReport, compute_days, day_bounds
from core.state import StateStore, read_ledger, read_runs

logger = logging.getLogger(__name__)

MONEY_WINDOW_DAYS = report_cache.NETS_DAYS  # the worst and best nets cover this many days
# The report's text and then its chart share one read and one attribution of the open days
# when asked within this many seconds and no ledger row or run came meanwhile; LNDg itself
# copies LND only every ~20 s.
RECENT_SECONDS = 10.0


def span(first: date, last: date) -> list[date]:
    """The local days first..last, oldest first."""
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def runs_of(days: Sequence[date]) -> list[list[date]]:
    """Sorted distinct days grouped into runs of consecutive days."""
    runs: list[list[date]] = []
    for day in days:
        if runs and day - runs[-1][-1] == timedelta(days=1):
            runs[-1].append(day)
        else:
            runs.append([day])
    return runs


@dataclass(frozen=True, slots=True)
class _Inputs:
    """What LNDg gave for the days first..last (forwards None: unreadable, `error` says why)."""

    first: date
    last: date
    nets: bool
    payments: Sequence[Payment]
    rebalances: Sequence[LndgRebalance]
    forwards: Sequence[Forward] | None
    error: str = ""


@dataclass(frozen=True, slots=True)
class _Recent:
    """The days last computed, kept a few seconds for the chart drawn after the text."""

    at: float  # time.monotonic()
    made_from: Marks
    nets: bool
    reports: dict[date, DayReport]

    def serves(self, days: Sequence[date], nets: bool, marks: Marks | None, since: float) -> bool:
        """Whether these figures answer for `days`: made after `since` (monotonic), from the
        same rows of this daemon, with nets if asked."""
        return (
            self.at > since
            and marks == self.made_from
            and (self.nets or not nets)
            and all(day in self.reports for day in days)
        )


class PeriodFigures:
    """Daily reports with their money lines for any run of days; one per reporter."""

    def __init__(
        self,
        store: StateStore,
        lndg: ChartReader,
        zone: tzinfo,
        match_window_seconds: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.lndg = lndg
        self.zone = zone
        self.window = match_window_seconds
        self.clock = clock
        self._unreadable = False  # the stored figures cannot be read: said once per episode
        self._refused = False  # the database refuses to store figures: said once per episode
        self._recent: _Recent | None = None  # the last days computed, for the chart after
        self.recent_seconds = RECENT_SECONDS

    async def days(
        self, first: date, last: date, *, nets: bool, fresh: bool = False
    ) -> list[DayReport]:
        """The reports of first..last, each with its money lines (or `money_error`); with
        each day's worst and best nets if `nets`. `fresh`: every day read afresh (what LNDg
        learnt late shows) and stored again. Raises LndgError (payments unreadable)."""
        days = span(first, last)
        found, now_marks = await self._stored(days, days if nets else [], fresh=fresh)
        missing = [day for day in days if day not in found]
        recent = self._recent
        if (
            missing
            and not fresh
            and recent is not None
            and recent.serves(missing, nets, now_marks, time.monotonic() - self.recent_seconds)
        ):
            # The chart right after the report's text: the same open days, no new rows.
            found.update((day, recent.reports[day]) for day in missing)
            missing = []
        # Each run of consecutive missing days is read on its own: a late row weeks back
        # reads that day again, not every day from it to today.
        for run in runs_of(missing):
            inputs = await self._read_lndg(run[0], run[-1], nets)
            computed, made_from = await asyncio.to_thread(self._attribute, inputs)
            by_day = {report.day: report for report in computed}
            self._recent = _Recent(time.monotonic(), made_from, nets, by_day)
            found.update(by_day)
            now = self.clock()
            settled = [
                report
                for report in computed
                if report.money is not None
                and report_cache.frozen(report.day, self.zone, self.window, now)
            ]
            if settled:
                await self._store(settled, nets, made_from)
        return [found[day] for day in days]

    # -- stored days -------------------------------------------------------------------------

    async def _stored(
        self, days: list[date], nets_for: list[date], *, fresh: bool
    ) -> tuple[dict[date, DayReport], Marks | None]:
        """The valid stored days (none if `fresh`) and the marks now (None: unreadable)."""

        def load() -> tuple[dict[date, DayReport], Marks]:
            with self.store.reader() as db:
                now_marks = report_cache.marks(db)
                if fresh:
                    return {}, now_marks
                found = report_cache.load(db, days, self.zone, self.window, nets_for=nets_for)
                return found, now_marks

        try:
            found, now_marks = await asyncio.to_thread(load)
        except sqlite3.Error as exc:
            if not self._unreadable:
                self._unreadable = True
                logger.warning("report: stored day figures not readable, computing all: %s", exc)
            return {}, None
        self._unreadable = False
        return found, now_marks

    async def _store(self, reports: list[DayReport], nets: bool, made_from: Marks) -> None:
        def save() -> None:
            with self.store.writer() as db:
                entries = [(report, nets) for report in reports]
                report_cache.save(db, entries, self.zone, self.window, made_from, time.time())

        try:
            await asyncio.to_thread(save)
        except sqlite3.Error as exc:
            if not self._refused:
                self._refused = True
                logger.warning(
                    "report: the state database refuses to store the day figures (%s); "
                    "reports go out, computing those days each time",
                    exc,
                )
            return
        if self._refused:
            self._refused = False
            logger.info("report: day figures stored again")

    # -- computed days -----------------------------------------------------------------------

    def _reach(self, first: date, last: date, nets: bool) -> tuple[datetime, datetime, datetime]:
        """(start of the money window, start, end) of first..last as UTC instants."""
        start, end = day_bounds(first, self.zone)[0], day_bounds(last, self.zone)[1]
        week = timedelta(days=MONEY_WINDOW_DAYS - 1)
        money_start = day_bounds(first - week, self.zone)[0] if nets else start
        return money_start, start, end

    async def _read_lndg(self, first: date, last: date, nets: bool) -> _Inputs:
        """LNDg's rows for first..last, each read once: payments from a match window before
        the period (or the start of the first day's nets window) to one after it."""
        money_start, start, end = self._reach(first, last, nets)
        margin = timedelta(seconds=self.window)
        payments = await self.lndg.fetch_payments(min(start - margin, money_start), end + margin)
        # Only membership of hashes matters; an LNDg rebalance stops after its payment starts.
        rebalances = await self.lndg.fetch_rebalances(start - margin)
        try:
            forwards = await self.lndg.fetch_forwards(money_start, end)
        except LndgError as exc:
            logger.warning("daily report: forwards not read, money lines left out: %s", exc)
            return _Inputs(first, last, nets, payments, rebalances, None, str(exc))
        return _Inputs(first, last, nets, payments, rebalances, forwards)

    def _attribute(self, inputs: _Inputs) -> tuple[list[DayReport], Marks]:
        """In a worker thread: this daemon's rows from one snapshot, then the attribution,
        each input cut to the reach it always had (the same figures whichever days are
        computed together). No cyclic collection meanwhile (core.gc_pause: it would stall
        the event loop)."""
        with no_collection():
            return self._attribute_now(inputs)

    def _attribute_now(self, inputs: _Inputs) -> tuple[list[DayReport], Marks]:
        money_start, start, end = self._reach(inputs.first, inputs.last, inputs.nets)
        margin = self.window
        low, high = start.timestamp() - margin, end.timestamp() + margin
        with self.store.reader() as db:
            made_from = report_cache.marks(db)
            ledger = read_ledger(db, min(low, money_start.timestamp() - margin), high + 1)
            runs: list[RunResult] = read_runs(db, low, high)
        ours: list[Rebalance] = [row for row in ledger if row.line.timestamp >= low]
        reach = timedelta(seconds=margin)
        paid = [p for p in inputs.payments if start - reach <= p.creation_date <= end + reach]
        days = span(inputs.first, inputs.last)
        reports = compute_days(days, self.zone, paid, inputs.rebalances, ours, runs, self.window)
        if inputs.forwards is None:
            return [replace(r, money_error=inputs.error) for r in reports], made_from
        week_paid = [p for p in inputs.payments if money_start <= p.creation_date <= end]
        money = days_money(
            days,
            self.zone,
            inputs.forwards,
            week_paid,
            ledger,
            MONEY_WINDOW_DAYS,
            nets=inputs.nets,
        )
        priced = [replace(r, money=m) for r, m in zip(reports, money, strict=True)]
        return priced, made_from
