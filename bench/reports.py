"""`/report 30d` at 100,000 ledger rows: the text and the chart's figures, and how long the
event loop stalls meanwhile.

Measured at noon of the last day (so it is open and read afresh; the 29 before it are closed),
twice per repeat: cold, with no day figures stored (the first report after an upgrade), and
warm, the 29 closed days stored by the cold one (every report after).

A real SQLite state store holds the ledger rows (one per rebalance of this daemon over 30
days) and the runs; LNDg's side is held in memory, parsed as `core.lndg.LndgClient` returns
it: a payment for most ledger rows (a few seconds before the stat line, as LNDg records it),
LNDg's own rebalances with their rebalancer rows, other tools' payments, and forwards.
Reading LNDg over HTTP is not timed here (bench/fetch.py measures the client); the figure
is what the daemon does with the rows, store reads included. Seeded: every run builds the
same node.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import tempfile
import time
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

from core.models import Outcome, StatLine
from core.node_records import Forward, LndgRebalance, Payment
from core.report_chart import chart_of_days
from core.report_delivery import Reporter
from core.report_figures import day_bounds, format_summary
from core.state import StateStore

ZONE = ZoneInfo("Europe/Berlin")
LAST_DAY = date(2026, 11, 24)
ROWS = 100_000
DAYS = 30
SOURCES = 60
TARGETS = 140
AMOUNTS = (50_000, 100_000, 200_000, 250_000, 500_000)
UNSEEN_SHARE = 0.03  # ledger rows whose payment LNDg no longer lists


@dataclass
class MemoryLndg:
    """LNDg's answers from lists in memory, filtered as LNDg filters them."""

    payments: list[Payment]
    rebalances: list[LndgRebalance]
    forwards: list[Forward]
    _paid_at: list[datetime] = field(init=False)
    _forwarded_at: list[datetime] = field(init=False)

    def __post_init__(self) -> None:
        self.payments.sort(key=lambda p: p.creation_date)
        self.forwards.sort(key=lambda f: f.forward_date)
        self._paid_at = [p.creation_date for p in self.payments]
        self._forwarded_at = [f.forward_date for f in self.forwards]

    async def fetch_payments(self, start: datetime, end: datetime) -> Sequence[Payment]:
        low, high = bisect_left(self._paid_at, start), bisect_right(self._paid_at, end)
        return self.payments[low:high]

    async def fetch_rebalances(self, stop_after: datetime) -> Sequence[LndgRebalance]:
        return [r for r in self.rebalances if r.stop is not None and r.stop > stop_after]

    async def fetch_forwards(
        self, since: datetime, until: datetime | None = None
    ) -> Sequence[Forward]:
        low = bisect_left(self._forwarded_at, since)
        high = len(self.forwards) if until is None else bisect_right(self._forwarded_at, until)
        return self.forwards[low:high]


def _chan(n: int) -> str:
    return str(879_609_302_301_671_425 + n)


def seed_node(
    store: StateStore,
    path: Path,
    *,
    rows: int = ROWS,
    last_day: date = LAST_DAY,
    zone: tzinfo = ZONE,
    seed: int = 1,
) -> MemoryLndg:
    """`rows` ledger rows and 1.5 runs per row in `store` (at `path`) over the 30 days ending
    with `last_day`, and LNDg's matching side in memory."""
    rng = random.Random(seed)
    start = day_bounds(last_day - timedelta(days=DAYS + 6), zone)[0].timestamp()
    end = day_bounds(last_day, zone)[1].timestamp()
    lines: list[tuple[StatLine, str, str]] = []
    payments: list[Payment] = []

    def payment(n: int, at: float, source: str, target: str, sats: int) -> Payment:
        return Payment(
            payment_hash=f"{n:064x}",
            creation_date=datetime.fromtimestamp(at, UTC),
            value=sats,
            fee=round(sats * rng.uniform(50, 900) / 1e6, 3),
            chan_out=source,
            rebal_chan=target,
        )

    for n in range(rows):
        at = rng.uniform(start, end)
        source, target = _chan(rng.randrange(SOURCES)), _chan(SOURCES + rng.randrange(TARGETS))
        sats = rng.choice(AMOUNTS)
        paid = payment(n, at - rng.uniform(2, 90), source, target, sats)
        lines.append(
            (StatLine(int(at), source, target, sats * 1000, round(paid.fee * 1000)), "", "")
        )
        if rng.random() >= UNSEEN_SHARE:
            payments.append(paid)
    rebalances: list[LndgRebalance] = []
    for n in range(rows, rows + rows // 10):  # LNDg's own, and as many of other tools'
        at = rng.uniform(start, end)
        source, target = _chan(rng.randrange(SOURCES)), _chan(SOURCES + rng.randrange(TARGETS))
        paid = payment(n, at, source, target, rng.choice(AMOUNTS))
        payments.append(paid)
        if n % 2 == 0:
            stop = datetime.fromtimestamp(at + 30, UTC)
            rebalances.append(
                LndgRebalance(
                    id=n, status=2, stop=stop, payment_hash=paid.payment_hash, value=int(paid.value)
                )
            )
    forwards = [
        Forward(
            id=n,
            forward_date=datetime.fromtimestamp(rng.uniform(start, end), UTC),
            chan_id_in=_chan(rng.randrange(SOURCES)),
            chan_id_out=_chan(SOURCES + rng.randrange(TARGETS)),
            amt_out_msat=rng.randrange(10_000, 2_000_000) * 1000,
            fee_sat=round(rng.uniform(0, 300), 3),
        )
        for n in range(rows // 2)
    ]
    store.record_stat_lines(lines, (1, rows))
    outcomes = [Outcome.SUCCESS, Outcome.SUCCESS, Outcome.NO_ROUTE]
    with sqlite3.connect(path) as db:  # one transaction: record_run writes one per run
        db.executemany(
            "INSERT INTO runs (source, target, started_at, ended_at, exit_code, outcome, "
            "last_line) VALUES (?, ?, ?, ?, 0, ?, '')",
            [
                (_chan(1), _chan(SOURCES), at, at + 60, rng.choice(outcomes).value)
                for at in (rng.uniform(start, end) for _ in range(rows * 3 // 2))
            ],
        )
    return MemoryLndg(payments, rebalances, forwards)


@dataclass(frozen=True)
class ReportFigures:
    rows: int
    payments: int
    seconds: float  # median, warm: report text + chart figures
    max_seconds: float
    stall_ms: float  # warm: the longest the event loop did not answer while a report was built
    summary: str
    cold_seconds: float  # median, nothing stored yet
    cold_stall_ms: float


NOON = datetime.combine(LAST_DAY, datetime.min.time().replace(hour=12), tzinfo=ZONE)


async def _build(reporter: Reporter) -> str:
    """What `/report 30d` computes: the summed text, then the chart's days (as
    `Reporter.chart` gets them, without drawing the PNG)."""
    report = await reporter.build_range(LAST_DAY, DAYS)
    first = LAST_DAY - timedelta(days=DAYS - 1)
    chart_of_days(await reporter.figures.days(first, LAST_DAY, nets=False), ZONE)
    return format_summary(report)


async def _timed(reporter: Reporter) -> tuple[float, float, str]:
    """One build; the longest gap of a 10 ms ticker on the loop meanwhile (a stand-in for
    `/status`, which needs nothing but the loop)."""
    stall = 0.0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal stall
        while not done.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            stall = max(stall, time.perf_counter() - before - 0.01)

    ticking = asyncio.create_task(ticker())
    began = time.perf_counter()
    summary = await _build(reporter)
    took = time.perf_counter() - began
    done.set()
    await ticking
    return took, stall, summary


def _reporter(data_dir: Path, store: StateStore, lndg: MemoryLndg) -> Reporter:
    return Reporter(data_dir, ZONE, datetime.min.time(), store, lndg, clock=lambda: NOON)


def measure(rows: int = ROWS, repeats: int = 3) -> ReportFigures:
    """Seed a node with `rows` ledger rows, build `/report 30d` `repeats` times."""
    cold: list[tuple[float, float, str]] = []
    warm: list[tuple[float, float, str]] = []
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        path = Path(tmp, "state.sqlite3")
        with StateStore(path) as store:
            lndg = seed_node(store, path, rows=rows)
            for _ in range(repeats):
                with sqlite3.connect(path) as db:
                    db.execute("DELETE FROM report_days")
                cold.append(asyncio.run(_timed(_reporter(Path(tmp), store, lndg))))
                # A new reporter: a later report, not the one a few seconds after (whose
                # open day would come from the one before, core.report_period.RECENT_SECONDS).
                warm.append(asyncio.run(_timed(_reporter(Path(tmp), store, lndg))))
    if {text for _took, _stall, text in cold + warm} != {cold[0][2]}:
        raise AssertionError("stored day figures changed the report")
    times = sorted(took for took, _stall, _text in warm)
    cold_times = sorted(took for took, _stall, _text in cold)
    return ReportFigures(
        rows=rows,
        payments=len(lndg.payments),
        seconds=times[len(times) // 2],
        max_seconds=times[-1],
        stall_ms=max(stall for _took, stall, _text in warm) * 1000,
        summary=warm[0][2],
        cold_seconds=cold_times[len(cold_times) // 2],
        cold_stall_ms=max(stall for _took, stall, _text in cold) * 1000,
    )
