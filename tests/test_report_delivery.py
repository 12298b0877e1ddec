"""The daily report end to end: the fake LNDg over a real socket, a real state store, real files."""

from __future__ import annotations

import asyncio
import csv
import stat
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
from matplotlib.image import imread

from core.lndg import LndgClient, LndgServerError, LndgUnreachable
from core.models import Outcome, RunResult, StatLine
from core.node_records import Payment
from core.report_csv import COLUMNS, read_days, write_day
from core.report_delivery import FIRST_DAY_KEY, Reporter, ReportUnavailable
from core.report_figures import DayReport, compute_day
from core.state import StateStore
from sim.lndg import FakeLndg, payment_row, rebalance_row

BERLIN = ZoneInfo("Europe/Berlin")
A, B, C = "879609302301671425", "879609302301671426", "879609302301671427"
DAY = date(2026, 11, 24)  # Berlin: 2026-11-23T23:00Z .. 2026-11-24T23:00Z
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def berlin(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=BERLIN)


def day_rows(
    day: date, *, ours: int = 200_000
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[StatLine]]:
    """Payments, LNDg rows and stat lines for one Berlin day, at 10:00-12:00 UTC.

    LNDg: 100,000 sats / 10 fees; ours: `ours` sats / 30 fees (matched); other: 50,000 / 5.
    """
    noon = datetime.combine(day, time(10), tzinfo=UTC)
    tag = day.isoformat()
    lndg_hash = f"{day:%Y%m%d}".ljust(64, "a")
    payments = [
        payment_row(lndg_hash, creation_date=noon, value=100_000, fee=10, chan_out=C, rebal_chan=B),
        payment_row(
            f"{day:%Y%m%d}".ljust(64, "b"),
            creation_date=noon + timedelta(hours=1),
            value=ours,
            fee=30,
            chan_out=A,
            rebal_chan=B,
        ),
        payment_row(
            f"{day:%Y%m%d}".ljust(64, "c"),
            creation_date=noon + timedelta(hours=2),
            value=50_000,
            fee=5,
            chan_out=B,
            rebal_chan=C,
        ),
        # A plain payment, not a rebalance.
        payment_row(
            f"{day:%Y%m%d}".ljust(64, "d"),
            creation_date=noon,
            value=7_777,
            fee=1,
            chan_out=A,
            chan_out_alias=tag,
        ),
    ]
    rebalancer = [
        rebalance_row(payment_hash=lndg_hash, stop=noon + timedelta(minutes=1), value=100_000)
    ]
    stamp = int((noon + timedelta(hours=1, seconds=30)).timestamp())
    lines = [StatLine(stamp, A, B, ours * 1000, 30_000)]
    return payments, rebalancer, lines


@pytest.fixture
def fake() -> Iterator[FakeLndg]:
    with FakeLndg(payments=[], rebalancer=[]) as server:
        yield server


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    with StateStore(tmp_path / "state.sqlite3") as opened:
        yield opened


@pytest.fixture
async def client(fake: FakeLndg) -> AsyncIterator[LndgClient]:
    async with LndgClient(fake.url, password="secret", backoff=0.01, attempts=2) as opened:
        yield opened


@pytest.fixture
def reporter(tmp_path: Path, store: StateStore, client: LndgClient) -> Reporter:
    return Reporter(tmp_path / "data", BERLIN, time(0, 5), store, client)


def add_days(fake: FakeLndg, store: StateStore, days: list[date]) -> None:
    lines: list[StatLine] = []
    for day in days:
        payments, rebalancer, stat_lines = day_rows(day)
        fake.payments.extend(payments)
        fake.rebalancer.extend(rebalancer)
        lines.extend(stat_lines)
    position = store.stat_position()
    store.record_stat_lines(
        [(line, "", "") for line in lines],
        (1, (position or (1, 0))[1] + 100),
        read_from=position,
    )


class Outbox:
    """A `send` that records what it was given."""

    def __init__(self) -> None:
        self.sent: list[tuple[DayReport, bytes]] = []

    async def __call__(self, report: DayReport, png: bytes) -> None:
        self.sent.append((report, png))

    @property
    def days(self) -> list[date]:
        return [report.day for report, _png in self.sent]


def csv_lines(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# ---------------------------------------------------------------------------------------------
# build


async def test_build_writes_the_csv_row_and_a_readable_png(
    fake: FakeLndg, store: StateStore, reporter: Reporter
) -> None:
    add_days(fake, store, [DAY])
    # Not matched to any LNDg payment: counted for us, flagged.
    position = store.stat_position()
    store.record_stat_lines(
        [(StatLine(int(utc("2026-11-24T15:00:00").timestamp()), A, C, 70_000_000, 14_000), "", "")],
        (1, 999),
        read_from=position,
    )
    for outcome in (Outcome.SUCCESS, Outcome.NO_ROUTE, Outcome.NO_ROUTE, Outcome.DRY_RUN):
        started = utc("2026-11-24T09:00:00").timestamp()
        store.record_run(RunResult(A, B, started, started + 30, 0, outcome, ""))

    report = await reporter.build(DAY)

    # Node: 100k + 200k + 50k + 70k (unmatched) = 420,000 sats; 10 + 30 + 5 + 14 = 59 fees.
    assert (report.node.count, report.node.sats, report.node.fee_sat) == (4, 420_000, 59.0)
    assert (report.lndg.count, report.lndg.sats) == (1, 100_000)
    assert (report.daemon.count, report.daemon.sats, report.daemon.fee_sat) == (2, 270_000, 44.0)
    assert (report.other.count, report.other.sats) == (1, 50_000)
    assert report.unmatched.count == 1

    # LNDg was asked once for the Berlin days of the 7-day nets ending with DAY in naive UTC,
    # to the day's end widened by the 300 s match window.
    payment_queries = [
        parse_qs(urlsplit(r.path).query) for r in fake.requests if "/payments/" in r.path
    ]
    assert payment_queries[0]["creation_date__gte"] == ["2026-11-17T23:00:00.000000"]
    assert payment_queries[0]["creation_date__lte"] == ["2026-11-24T23:05:00.000000"]
    assert payment_queries[0]["status"] == ["2"]
    # The chart then reads the 29 Berlin days before DAY (26 Oct is CET again): DAY is closed,
    # its figures were stored by the report.
    assert len(payment_queries) == 2
    assert payment_queries[-1]["creation_date__gte"] == ["2026-10-25T22:55:00.000000"]
    assert payment_queries[-1]["creation_date__lte"] == ["2026-11-23T23:05:00.000000"]

    rows = csv_lines(reporter.csv_path)
    assert list(rows[0]) == list(COLUMNS)
    assert rows == [
        {
            "date": "2026-11-24",
            "node_rebalances": "4",
            "daemon_rebalances": "2",
            "daemon_share_pct": "50.00",
            "daemon_share_sats_pct": "64.29",  # 270,000 / 420,000
            "node_sats": "420000",
            "node_fee_sat": "59.000",
            "node_ppm": "140",  # 59,000 msat * 1e6 // 420,000,000 msat
            "lndg_rebalances": "1",
            "lndg_sats": "100000",
            "lndg_fee_sat": "10.000",
            "lndg_ppm": "100",
            "daemon_sats": "270000",
            "daemon_fee_sat": "44.000",
            "daemon_ppm": "162",  # 44,000 * 1e6 // 270,000,000
            "other_rebalances": "1",
            "other_sats": "50000",
            "other_fee_sat": "5.000",
            "other_ppm": "100",
            "daemon_unmatched": "1",
            "runs_attempted": "3",
            "runs_succeeded": "1",
            "runs_failed": "2",
            # No forwards: nothing earned, so no share of it; the 7-day nets are costs only:
            # B 10 + 30 sat (LNDg's, ours), C 5 (other) + 14 (ours, not in LNDg).
            "revenue_sat": "0.000",
            "forwards": "0",
            "cost_pct_of_revenue": "",
            "worst_net_7d": "800000x1234x2 -40.000; 800000x1234x3 -19.000",
            "best_net_7d": "",
        }
    ]
    assert stat.S_IMODE(reporter.csv_path.stat().st_mode) == 0o600

    png = reporter.chart_path.read_bytes()
    assert png.startswith(PNG_SIGNATURE)
    assert reporter.chart_path.parent == reporter.csv_path.parent
    height, width, _channels = imread(reporter.chart_path).shape
    assert (width, height) == (900, 1170)
    assert not [p for p in reporter.csv_path.parent.iterdir() if p.name.startswith(".")]


async def test_building_a_day_again_updates_its_row(
    fake: FakeLndg, store: StateStore, reporter: Reporter
) -> None:
    add_days(fake, store, [DAY, DAY - timedelta(days=2)])
    await reporter.build(DAY)
    await reporter.build(DAY - timedelta(days=2))
    # LNDg catches up late: another other-tool rebalance on DAY appears.
    fake.payments.append(
        payment_row(
            creation_date=utc("2026-11-24T20:00:00"), value=30_000, fee=3, chan_out=B, rebal_chan=A
        )
    )
    report = await reporter.build(DAY)
    assert report.other.count == 2

    rows = read_days(reporter.csv_path)
    assert [r["date"] for r in rows] == ["2026-11-22", "2026-11-24"]
    assert [r["node_rebalances"] for r in rows] == ["3", "4"]
    assert rows[1]["other_sats"] == "80000"
    assert len(reporter.csv_path.read_text().splitlines()) == 3  # header + 2 days


async def test_build_range_sums_days_and_writes_nothing(
    fake: FakeLndg, store: StateStore, reporter: Reporter
) -> None:
    add_days(fake, store, [DAY - timedelta(days=n) for n in range(3)])
    total = await reporter.build_range(DAY, 7)
    assert (total.first_day, total.day, total.days) == (DAY - timedelta(days=6), DAY, 7)
    # Three days of (LNDg 100k, ours 200k, other 50k).
    assert (total.node.count, total.node.sats) == (9, 1_050_000)
    assert (total.daemon.count, total.daemon.sats) == (3, 600_000)
    assert (total.lndg.count, total.other.count) == (3, 3)
    assert not reporter.csv_path.exists()
    assert not reporter.chart_path.exists()
    with pytest.raises(ValueError, match="at least 1"):
        await reporter.build_range(DAY, 0)


async def test_lndg_down_at_build_writes_nothing(
    fake: FakeLndg, store: StateStore, reporter: Reporter
) -> None:
    add_days(fake, store, [DAY])
    fake.set_fault("500")
    with pytest.raises(LndgServerError):
        await reporter.build(DAY)
    assert not reporter.csv_path.exists()


# ---------------------------------------------------------------------------------------------
# deliver_due


async def test_catch_up_after_downtime_then_never_twice(
    fake: FakeLndg, store: StateStore, reporter: Reporter
) -> None:
    add_days(fake, store, [DAY - timedelta(days=n) for n in range(10)])
    outbox = Outbox()

    # A fresh install sends only the newest ended day, not a week of history.
    assert await reporter.deliver_due(berlin("2026-11-21T00:05:00"), outbox) == [date(2026, 11, 20)]
    assert store.get_value(FIRST_DAY_KEY) == "2026-11-20"
    assert await reporter.deliver_due(berlin("2026-11-21T18:00:00"), outbox) == []

    # Down from the 21st until the 25th at 09:00: the 21st..24th are caught up, oldest first.
    delivered = await reporter.deliver_due(berlin("2026-11-25T09:00:00"), outbox)
    assert delivered == [date(2026, 11, d) for d in (21, 22, 23, 24)]
    assert outbox.days == [date(2026, 11, d) for d in (20, 21, 22, 23, 24)]
    for report, png in outbox.sent:
        assert png.startswith(PNG_SIGNATURE)
        assert (report.node.count, report.daemon.count) == (3, 1)
    assert all(store.report_sent(f"2026-11-{d}") for d in (20, 21, 22, 23, 24))

    # Asked again (a restart, a second timer): nothing more.
    assert await reporter.deliver_due(berlin("2026-11-25T09:00:00"), outbox) == []
    assert await reporter.deliver_due(berlin("2026-11-26T00:04:59"), outbox) == []
    assert len(outbox.sent) == 5
    assert [r["date"] for r in read_days(reporter.csv_path)] == [
        f"2026-11-{d}" for d in (20, 21, 22, 23, 24)
    ]


async def test_catch_up_is_bounded_to_seven_days(
    fake: FakeLndg, store: StateStore, reporter: Reporter
) -> None:
    store.put_value(FIRST_DAY_KEY, "2026-10-01")
    store.mark_report_sent("2026-10-01")
    outbox = Outbox()
    assert await reporter.deliver_due(berlin("2026-11-25T09:00:00"), outbox) == [
        date(2026, 11, d) for d in range(18, 25)
    ]


async def test_concurrent_rounds_send_each_day_once(
    fake: FakeLndg, store: StateStore, reporter: Reporter
) -> None:
    add_days(fake, store, [DAY])
    store.put_value(FIRST_DAY_KEY, "2026-11-23")
    outbox = Outbox()
    now = berlin("2026-11-25T09:00:00")
    first, second = await asyncio.gather(
        reporter.deliver_due(now, outbox), reporter.deliver_due(now, outbox)
    )
    assert sorted(first + second) == [date(2026, 11, 23), DAY]
    assert outbox.days == [date(2026, 11, 23), DAY]


async def test_lndg_error_stops_the_round_and_recovery_sends(
    fake: FakeLndg, store: StateStore, reporter: Reporter
) -> None:
    add_days(fake, store, [DAY, DAY - timedelta(days=1)])
    store.put_value(FIRST_DAY_KEY, "2026-11-23")
    sent: list[date] = []

    async def send_then_break_lndg(report: DayReport, png: bytes) -> None:
        sent.append(report.day)
        fake.set_fault("500")  # LNDg falls over after the first day went out

    now = berlin("2026-11-25T09:00:00")
    with pytest.raises(ReportUnavailable) as caught:
        await reporter.deliver_due(now, send_then_break_lndg)
    assert caught.value.day == DAY
    assert caught.value.delivered == [date(2026, 11, 23)]
    assert isinstance(caught.value.cause, LndgServerError)
    assert "2026-11-24" in str(caught.value)
    assert sent == [date(2026, 11, 23)]
    assert store.report_sent("2026-11-23")
    assert not store.report_sent("2026-11-24")

    # Still down: the same single day is postponed again, nothing is sent or marked.
    with pytest.raises(ReportUnavailable):
        await reporter.deliver_due(now, send_then_break_lndg)
    assert sent == [date(2026, 11, 23)]

    fake.set_fault(None)
    outbox = Outbox()
    assert await reporter.deliver_due(now + timedelta(minutes=10), outbox) == [DAY]
    assert outbox.days == [DAY]
    assert store.report_sent("2026-11-24")


async def test_lndg_stopped_at_report_time(tmp_path: Path, store: StateStore) -> None:
    payments, rebalancer, lines = day_rows(DAY)
    store.record_stat_lines([(line, "", "") for line in lines], (1, 10))
    store.put_value(FIRST_DAY_KEY, DAY.isoformat())
    server = FakeLndg(payments=payments, rebalancer=rebalancer).start()
    port = server.port
    server.stop()  # LNDg is down when the report is due
    async with LndgClient(f"http://127.0.0.1:{port}", password="secret", backoff=0.01) as client:
        reporter = Reporter(tmp_path, BERLIN, time(0, 5), store, client)
        outbox = Outbox()
        now = berlin("2026-11-25T00:05:00")
        with pytest.raises(ReportUnavailable) as caught:
            await reporter.deliver_due(now, outbox)
        assert isinstance(caught.value.cause, LndgUnreachable)
        assert outbox.sent == []
        assert not store.report_sent(DAY.isoformat())
        assert not (tmp_path / "daily-report.csv").exists()

        with FakeLndg(payments=payments, rebalancer=rebalancer, port=port):
            assert await reporter.deliver_due(now + timedelta(minutes=5), outbox) == [DAY]
        assert outbox.days == [DAY]
        assert outbox.sent[0][0].daemon.count == 1


async def test_failed_send_is_not_marked_and_is_retried(
    fake: FakeLndg, store: StateStore, reporter: Reporter
) -> None:
    add_days(fake, store, [DAY])
    store.put_value(FIRST_DAY_KEY, DAY.isoformat())

    async def telegram_down(report: DayReport, png: bytes) -> None:
        raise ConnectionError("api.telegram.org unreachable")

    now = berlin("2026-11-25T00:05:00")
    with pytest.raises(ConnectionError):
        await reporter.deliver_due(now, telegram_down)
    assert not store.report_sent(DAY.isoformat())
    outbox = Outbox()
    assert await reporter.deliver_due(now, outbox) == [DAY]
    assert len(read_days(reporter.csv_path)) == 1  # built twice, one row


# ---------------------------------------------------------------------------------------------
# CSV and chart


def report_for(day: date, node_sats: int) -> DayReport:
    """A day with one other-tool rebalance of `node_sats`."""
    row = payment_row(
        creation_date=datetime.combine(day, time(12), tzinfo=UTC),
        value=node_sats,
        chan_out=A,
        rebal_chan=B,
    )
    return compute_day(day, BERLIN, [Payment.model_validate(row)], [], [], [])


def test_csv_tolerates_missing_and_bad_files(tmp_path: Path) -> None:
    path = tmp_path / "daily-report.csv"
    assert read_days(path) == []
    write_day(path, report_for(DAY, 1_000))
    assert [r["node_sats"] for r in read_days(path)] == ["1000"]

    # Damage: a torn line, garbage and a blank line around a good row.
    good = path.read_text().splitlines()[1]
    path.write_text(
        path.read_text().splitlines()[0]
        + "\n2026-11-2\nnot,a,row\n\n"
        + good.replace("2026-11-24", "2026-11-20")
        + "\n"
    )
    assert [r["date"] for r in read_days(path)] == ["2026-11-20"]
    write_day(path, report_for(DAY, 2_000))
    assert [(r["date"], r["node_sats"]) for r in read_days(path)] == [
        ("2026-11-20", "1000"),
        ("2026-11-24", "2000"),
    ]
    assert path.read_text().count("\n") == 3


def test_csv_keeps_the_original_tools_four_columns(tmp_path: Path) -> None:
    path = tmp_path / "daily-report.csv"
    path.write_text("Date,Node rebalances,Bot rebalances,Share %\n2026-11-01,10,4,40.00\n")
    write_day(path, report_for(DAY, 5_000))
    rows = read_days(path)
    assert [r["date"] for r in rows] == ["2026-11-01", "2026-11-24"]
    old = rows[0]
    assert (old["node_rebalances"], old["daemon_rebalances"], old["daemon_share_pct"]) == (
        "10",
        "4",
        "40.00",
    )
    assert old["node_sats"] == ""
    assert path.read_text().splitlines()[0] == ",".join(COLUMNS)


def test_csv_empty_share_when_the_node_did_nothing(tmp_path: Path) -> None:
    path = tmp_path / "daily-report.csv"
    row = write_day(path, compute_day(DAY, BERLIN, [], [], [], []))
    assert (row["node_rebalances"], row["daemon_share_pct"], row["node_ppm"]) == ("0", "", "0")
