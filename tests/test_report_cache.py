"""Closed days' report figures kept in the state database (core.report_cache, report_period).

A real SQLite store seeded by bench/reports.py (ledger rows, runs) and LNDg's rows in memory,
filtered as LNDg filters them. A report from stored days must equal one read afresh.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sqlite3
import threading
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

import core.state
from bench.reports import MemoryLndg, seed_node
from core import report_cache
from core.gc_pause import no_collection
from core.models import Outcome, RunResult, StatLine
from core.node_records import Payment
from core.report_delivery import Reporter
from core.report_figures import DayReport, combine, day_bounds
from core.report_period import RECENT_SECONDS
from core.state import StateStore
from tests.fakes.state import RefusingStore

# The 30 days ending 10 Nov 2026 hold Berlin's 25-hour 25 Oct and New York's 1 Nov.
LAST = date(2026, 11, 10)
FIRST = LAST - timedelta(days=29)
ROWS = 2_000
BERLIN = ZoneInfo("Europe/Berlin")


class Recording(MemoryLndg):
    """Remembers the ranges of payments asked for."""

    asked: list[tuple[datetime, datetime]]

    async def fetch_payments(self, start: datetime, end: datetime) -> Sequence[Payment]:
        self.asked.append((start, end))
        return await super().fetch_payments(start, end)


def recording(memory: MemoryLndg) -> Recording:
    lndg = Recording(memory.payments, memory.rebalances, memory.forwards)
    lndg.asked = []
    return lndg


def noon(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(12), tzinfo=zone)


def reporter_for(tmp_path: Path, store: StateStore, lndg: MemoryLndg, zone: ZoneInfo) -> Reporter:
    # At noon of LAST: LAST is open, the 29 days before it are closed.
    reporter = Reporter(tmp_path, zone, time(0, 5), store, lndg, clock=lambda: noon(LAST, zone))
    reporter.figures.recent_seconds = 0  # each report reads the open day (but the last test)
    return reporter


def stored(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT zone, day FROM report_days ORDER BY zone, day").fetchall()


async def afresh(reporter: Reporter, first: date = FIRST, last: date = LAST) -> list[DayReport]:
    return await reporter.figures.days(first, last, nets=False, fresh=True)


def add_stat_line(store: StateStore, line: StatLine) -> None:
    position = store.stat_position()
    assert position is not None
    moved = (position[0], position[1] + 100)
    assert store.record_stat_lines([(line, "", "")], moved, read_from=position)


@pytest.mark.parametrize("zone_key", ["Europe/Berlin", "America/New_York", "Pacific/Auckland"])
@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_a_report_from_stored_days_equals_one_read_afresh(
    tmp_path: Path, zone_key: str, seed: int
) -> None:
    zone = ZoneInfo(zone_key)
    path = tmp_path / "state.sqlite3"
    with StateStore(path) as store:
        lndg = recording(seed_node(store, path, rows=ROWS, last_day=LAST, zone=zone, seed=seed))
        reporter = reporter_for(tmp_path, store, lndg, zone)
        cold = await reporter.build_range(LAST, 30)
        assert [day for _zone, day in stored(path)] == [
            (FIRST + timedelta(days=n)).isoformat() for n in range(29)
        ]  # the open day is not stored
        lndg.asked.clear()
        warm = await reporter.build_range(LAST, 30)
        # Only the open day was read from LNDg, from a match window before it.
        assert lndg.asked == [
            (
                day_bounds(LAST, zone)[0] - timedelta(seconds=300),
                day_bounds(LAST, zone)[1] + timedelta(seconds=300),
            )
        ]
        days = await afresh(reporter)
        assert warm == cold == combine(days)
        assert warm.daemon.count > 0
        assert warm.lndg.count > 0
        assert warm.runs.attempts > 0
        assert await reporter.figures.days(FIRST, LAST, nets=False) == days
        # The chart's bars are the report's own days.
        chart = await reporter.chart(LAST, 30)
        assert [(d.day, d.daemon, d.lndg, d.other) for d in chart.data.days] == [
            (r.day, r.daemon, r.lndg, r.other) for r in days
        ]
        assert [d.revenue_msat for d in chart.data.days] == [
            r.money.revenue_msat for r in days if r.money is not None
        ]


@pytest.mark.parametrize("seed", [4, 5])
async def test_days_stored_one_by_one_sum_to_the_period_read_at_once(
    tmp_path: Path, seed: int
) -> None:
    path = tmp_path / "state.sqlite3"
    with StateStore(path) as store:
        lndg = seed_node(store, path, rows=ROWS, last_day=LAST, zone=BERLIN, seed=seed)
        reporter = reporter_for(tmp_path, store, lndg, BERLIN)
        for n in range(29):  # as the daily reports store them: each day alone, with its nets
            day = FIRST + timedelta(days=n)
            await reporter.figures.days(day, day, nets=True, fresh=True)
        assert len(stored(path)) == 29
        one = LAST - timedelta(days=3)
        with_nets = await reporter.figures.days(one, one, nets=True)  # stored, nets and all
        summed = await reporter.build_range(LAST, 30)
        # Read afresh without nets, the days are stored again without them ...
        assert summed == combine(await afresh(reporter))
        # ... so a daily report does not take that day's stored figures (no nets there).
        again = await reporter.figures.days(one, one, nets=True)
        assert again == with_nets == await reporter.figures.days(one, one, nets=True, fresh=True)
        assert again[0].money is not None
        assert again[0].money.worst


async def test_a_late_ledger_row_or_run_reads_its_day_afresh(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    with StateStore(path) as store:
        lndg = seed_node(store, path, rows=ROWS, last_day=LAST, zone=BERLIN)
        reporter = reporter_for(tmp_path, store, lndg, BERLIN)
        before = await reporter.build_range(LAST, 30)
        late_day = LAST - timedelta(days=10)
        at = int(noon(late_day, BERLIN).timestamp())
        # A stat line written late (after a restart): LNDg has no payment for it.
        add_stat_line(store, StatLine(at, "11", "22", 7_000_000, 3_000))
        store.record_run(RunResult("11", "22", at - 30.0, at + 5.0, 0, Outcome.SUCCESS, ""))
        asking = recording(lndg)
        reporter.figures.lndg = asking
        after = await reporter.build_range(LAST, 30)
        # That day is read again on its own (not every day from it to today), and today.
        assert [start for start, _end in asking.asked] == [
            day_bounds(day, BERLIN)[0] - timedelta(seconds=300) for day in (late_day, LAST)
        ]
        assert after.unmatched.count == before.unmatched.count + 1
        assert after.daemon.amount_msat == before.daemon.amount_msat + 7_000_000
        assert after.runs.successes == before.runs.successes + 1
        assert after == combine(await afresh(reporter))
        # The day was stored again with the new rows: the next report reads no LNDg for it.
        late = recording(lndg)
        reporter.figures.lndg = late
        assert await reporter.build_range(LAST, 30) == after
        assert [start for start, _end in late.asked] == [
            day_bounds(LAST, BERLIN)[0] - timedelta(seconds=300)
        ]


async def test_a_timezone_change_computes_its_own_days(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    new_york = ZoneInfo("America/New_York")
    with StateStore(path) as store:
        lndg = seed_node(store, path, rows=ROWS, last_day=LAST, zone=BERLIN)
        berlin = await reporter_for(tmp_path, store, lndg, BERLIN).build_range(LAST, 30)
        there = reporter_for(tmp_path, store, lndg, new_york)
        moved = await there.build_range(LAST, 30)
        assert moved == combine(await afresh(there))
        assert moved.zone_name == "America/New_York"
        assert (moved.node, moved.daemon) != (berlin.node, berlin.daemon)  # days cut elsewhere
        zones = {zone for zone, _day in stored(path)}
        assert zones == {"Europe/Berlin", "America/New_York"}


async def test_a_database_that_refuses_writes_still_gives_the_report_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="core.report_period")
    path = tmp_path / "state.sqlite3"
    store = RefusingStore(path)
    try:
        lndg = seed_node(store, path, rows=ROWS, last_day=LAST, zone=BERLIN)
        reporter = reporter_for(tmp_path, store, lndg, BERLIN)
        store.refusing = True
        first = await reporter.build_range(LAST, 30)
        second = await reporter.build_range(LAST, 30)
        assert first == second == combine(await afresh(reporter))
        assert store.refused >= 3
        assert stored(path) == []
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "refuses to store the day figures" in warnings[0].getMessage()
        store.refusing = False
        assert await reporter.build_range(LAST, 30) == first
        assert len(stored(path)) == 29
        assert "day figures stored again" in caplog.text
    finally:
        store.close()


async def test_stored_days_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    with StateStore(path) as store:
        memory = seed_node(store, path, rows=ROWS, last_day=LAST, zone=BERLIN)
        before = await reporter_for(tmp_path, store, memory, BERLIN).build_range(LAST, 30)
    with StateStore(path) as store:
        lndg = recording(memory)
        after = await reporter_for(tmp_path, store, lndg, BERLIN).build_range(LAST, 30)
    assert after == before
    assert [start for start, _end in lndg.asked] == [
        day_bounds(LAST, BERLIN)[0] - timedelta(seconds=300)
    ]


async def test_pruned_runs_keep_the_figures_stored_for_their_days(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    with StateStore(path) as store:
        lndg = seed_node(store, path, rows=ROWS, last_day=LAST, zone=BERLIN)
        reporter = reporter_for(tmp_path, store, lndg, BERLIN)
        before = await reporter.build_range(LAST, 30)
        assert store.prune_runs(day_bounds(LAST - timedelta(days=5), BERLIN)[0].timestamp()) > 0
        assert await reporter.build_range(LAST, 30) == before
        # Read afresh, the pruned runs are gone: the stored figures are what kept them.
        assert combine(await afresh(reporter)).runs.attempts < before.runs.attempts


async def test_a_damaged_or_older_entry_is_read_afresh(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    with StateStore(path) as store:
        lndg = seed_node(store, path, rows=ROWS, last_day=LAST, zone=BERLIN)
        reporter = reporter_for(tmp_path, store, lndg, BERLIN)
        before = await reporter.build_range(LAST, 30)
        with sqlite3.connect(path) as db:
            db.execute(
                "UPDATE report_days SET figures = '{\"v\": 0}' WHERE day = ?", ("2026-10-20",)
            )
            db.execute("UPDATE report_days SET figures = 'not json' WHERE day = ?", ("2026-10-21",))
        assert await reporter.build_range(LAST, 30) == before


async def test_two_reports_at_once_agree(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    with StateStore(path) as store:
        lndg = seed_node(store, path, rows=ROWS, last_day=LAST, zone=BERLIN)
        reporter = reporter_for(tmp_path, store, lndg, BERLIN)
        one, two = await asyncio.gather(
            reporter.build_range(LAST, 30), reporter.build_range(LAST, 30)
        )
        assert one == two == await reporter.build_range(LAST, 30)
        assert len(stored(path)) == 29


def test_a_day_is_stored_once_settled() -> None:
    end = day_bounds(date(2026, 10, 25), BERLIN)[1]  # the 25-hour day
    settle = timedelta(seconds=300 + report_cache.SETTLE_SECONDS)
    assert report_cache.frozen(date(2026, 10, 25), BERLIN, 300, end + settle)
    assert not report_cache.frozen(
        date(2026, 10, 25), BERLIN, 300, end + settle - timedelta(microseconds=1)
    )
    assert end == datetime(2026, 10, 25, 23, 0, tzinfo=UTC)


def test_a_schema_v2_database_opens_with_no_figures_stored(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    db = sqlite3.connect(path)
    with db:  # the store as version 2 left it
        for migration in core.state.MIGRATIONS[:2]:
            for statement in migration.split(";"):
                db.execute(statement)
        db.execute("PRAGMA user_version = 2")
    db.close()
    with StateStore(path) as store:
        assert store.schema_version == core.state.SCHEMA_VERSION == 3
        with store.reader() as reader:
            assert report_cache.load(reader, [LAST], BERLIN, 300) == {}


def test_no_collection_holds_the_collector_until_the_last_holder_leaves() -> None:
    assert gc.isenabled()
    inside = threading.Event()
    leave = threading.Event()

    def hold() -> None:
        with no_collection():
            inside.set()
            leave.wait(5)

    other = threading.Thread(target=hold)
    other.start()
    inside.wait(5)
    with no_collection():
        assert not gc.isenabled()
    assert not gc.isenabled()  # the other thread still holds it
    leave.set()
    other.join(5)
    assert gc.isenabled()


async def test_the_chart_after_the_text_shares_its_read_unless_a_row_came_between(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.sqlite3"
    with StateStore(path) as store:
        lndg = recording(seed_node(store, path, rows=ROWS, last_day=LAST, zone=BERLIN))
        reporter = reporter_for(tmp_path, store, lndg, BERLIN)
        reporter.figures.recent_seconds = RECENT_SECONDS
        text = await reporter.build_range(LAST, 30)
        chart = await reporter.chart(LAST, 30)
        assert len(lndg.asked) == 1  # one read of LNDg (and one attribution) for both
        assert chart.data.total("daemon") == text.daemon
        # A stat line of today between the text and the chart: the chart reads today again.
        at = int(noon(LAST, BERLIN).timestamp()) - 60
        add_stat_line(store, StatLine(at, "11", "22", 9_000_000, 1_000))
        again = await reporter.chart(LAST, 30)
        assert len(lndg.asked) == 2
        assert again.data.total("daemon").amount_msat == text.daemon.amount_msat + 9_000_000
