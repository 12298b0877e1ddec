"""The report's chart: its per-day figures (hand-computed, Berlin days), the drawing, the inputs
read from the loopback LNDg, and what it shows when LNDg cannot be read."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from matplotlib.axes import Axes
from matplotlib.container import BarContainer
from matplotlib.image import imread
from matplotlib.legend import Legend

from core.chart import draw_chart, period_text, render_chart, short_sats
from core.chart_data import ChartData, ChartDay, chart_data, chart_span, revenue_by_day
from core.lndg import LndgClient
from core.models import Rebalance, StatLine
from core.node_records import Forward, LndgRebalance, Payment
from core.report_chart import NO_FORWARDS, NO_LEDGER, NO_PAYMENTS, build_chart
from core.report_delivery import Reporter
from core.report_figures import Share
from core.state import StateStore
from sim.lndg import FakeLndg, forward_row, payment_row, rebalance_row

BERLIN = ZoneInfo("Europe/Berlin")  # CET in late November: UTC+1
A, B, C = "879609302301671425", "879609302301671426", "879609302301671427"
DAY = date(2026, 11, 24)
PNG = b"\x89PNG\r\n\x1a\n"


def berlin(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=BERLIN)


def payment(hash_: str, at: datetime, value: float, fee: float, out: str, into: str | None) -> dict:  # type: ignore[type-arg]
    return payment_row(hash_.ljust(64, "0"), creation_date=at, value=value, fee=fee,
                       chan_out=out, rebal_chan=into)  # fmt: skip


def node_rows() -> tuple[list[dict], list[dict], list[dict], list[StatLine]]:  # type: ignore[type-arg]
    """Two Berlin days, 23 and 24 Nov 2026, with rebalances and forwards near both midnights.

    23 Nov: LNDg 100,000 sat for 10.5 fees at 23:30 local (22:30 UTC); forward fee 1.5 at 23:30.
    24 Nov: another tool 40,000 for 4 at 00:30 local (still 23 Nov in UTC); this daemon
            200,000 for 30 at 13:00 local; forwards 2.25 at 00:10 and 0.001 at 23:59:59.
    Outside: a forward at 25 Nov 00:00 local, a plain payment, a rebalance on 10 Nov.
    """
    lndg_hash = "a1".ljust(64, "0")
    payments = [
        payment("a1", berlin("2026-11-23T23:30"), 100_000, 10.5, C, B),
        payment("b2", berlin("2026-11-24T00:30"), 40_000, 4, B, C),
        payment("c3", berlin("2026-11-24T13:00"), 200_000, 30, A, B),
        payment("d4", berlin("2026-11-24T14:00"), 7_777, 1, A, None),  # not a rebalance
        payment("e5", berlin("2026-11-10T12:00"), 999_000, 99, A, B),  # in 30 days, not 7
    ]
    rebalancer = [rebalance_row(payment_hash=lndg_hash, stop=berlin("2026-11-23T23:31"))]
    forwards = [
        forward_row(chan_id_in=A, chan_id_out=B, forward_date=berlin("2026-11-23T23:30"), fee=1.5),
        forward_row(chan_id_in=A, chan_id_out=C, forward_date=berlin("2026-11-24T00:10"), fee=2.25),
        forward_row(
            chan_id_in=C, chan_id_out=B, forward_date=berlin("2026-11-24T23:59:59"), fee=0.001
        ),
        forward_row(chan_id_in=A, chan_id_out=B, forward_date=berlin("2026-11-25T00:00"), fee=50),
    ]
    stamp = int(berlin("2026-11-24T13:00:40").timestamp())
    return payments, rebalancer, forwards, [StatLine(stamp, A, B, 200_000_000, 30_000)]


def parsed() -> tuple[list[Payment], list[LndgRebalance], list[Forward], list[Rebalance]]:
    payments, rebalancer, forwards, lines = node_rows()
    ledger = [Rebalance(i + 1, line, "", "") for i, line in enumerate(lines)]
    return (
        [Payment.model_validate(p) for p in payments],
        [LndgRebalance.model_validate(r) for r in rebalancer],
        [Forward.model_validate(f) for f in forwards],
        ledger,
    )


# -- figures ---------------------------------------------------------------------------------


def test_each_day_has_its_rebalances_by_tool_cost_and_revenue() -> None:
    payments, rebalancer, forwards, ledger = parsed()
    data = chart_data(DAY, 2, BERLIN, payments, rebalancer, ledger, forwards)

    first, second = data.days
    assert (first.day, second.day) == (date(2026, 11, 23), DAY)
    # 23:30 local is the 23rd, though 22:30 UTC; 00:30 local is the 24th, though 23:30 UTC.
    assert first.lndg == Share(1, 100_000_000, 10_500)
    assert (first.daemon, first.other) == (Share(), Share())
    assert first.revenue_msat == 1_500
    assert first.cost_msat == 10_500
    assert second.lndg == Share()
    assert second.daemon == Share(1, 200_000_000, 30_000)
    assert second.other == Share(1, 40_000_000, 4_000)
    assert second.revenue_msat == 2_250 + 1  # 2.25 sat + 0.001 sat; 25 Nov 00:00 is out
    assert second.cost_msat == 34_000
    assert (data.revenue_msat, data.cost_msat) == (3_751, 44_500)
    assert data.total("lndg").amount_msat == 100_000_000
    assert (data.zone_name, data.forwards_read, data.rebalances_read) == (
        "Europe/Berlin",
        True,
        True,
    )


def test_revenue_on_a_dst_day_counts_its_25_hours() -> None:
    # 25 Oct 2026: Berlin leaves summer time, the day runs 22:00Z on the 24th to 23:00Z.
    day = date(2026, 10, 25)
    forwards = [
        Forward.model_validate(
            forward_row(chan_id_in=A, chan_id_out=B, forward_date=at.replace(tzinfo=UTC), fee=1)
        )
        for at in (
            datetime(2026, 10, 24, 21, 59),
            datetime(2026, 10, 24, 22),
            datetime(2026, 10, 25, 22, 59),
        )
    ]
    assert revenue_by_day(forwards, [day - timedelta(days=1), day], BERLIN) == [1_000, 2_000]


def test_unreadable_forwards_are_unknown_not_zero() -> None:
    payments, rebalancer, _forwards, ledger = parsed()
    data = chart_data(DAY, 2, BERLIN, payments, rebalancer, ledger, None)
    assert not data.forwards_read
    assert data.revenue_msat == 0


def test_a_one_day_report_gets_30_days_and_a_period_its_own() -> None:
    assert [chart_span(n) for n in (1, 2, 7, 30, 90)] == [30, 2, 7, 30, 90]
    with pytest.raises(ValueError, match="at least 1"):
        chart_span(0)


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "0"), (950, "950"), (999.4, "999"), (1_000, "1k"), (12_345, "12.3k"), (99_960, "100k"),
     (150_000, "150k"), (999_600, "1M"), (1_500_000, "1.5M"), (12_340_000, "12.3M")],
)  # fmt: skip
def test_amounts_are_short_enough_for_a_phone(value: float, text: str) -> None:
    assert short_sats(value) == text


# -- drawing ---------------------------------------------------------------------------------


def data_of(days: int, *, forwards_read: bool = True, notes: tuple[str, ...] = ()) -> ChartData:
    span = [DAY - timedelta(days=back) for back in range(days - 1, -1, -1)]
    rows = tuple(
        ChartDay(
            day,
            daemon=Share(1, (i + 1) * 10_000_000, 5_000),
            lndg=Share(1, 50_000_000, 2_000),
            other=Share(),
            revenue_msat=3_000_000 if forwards_read else 0,
        )
        for i, day in enumerate(span)
    )
    return ChartData(rows, "Europe/Berlin", forwards_read=forwards_read, notes=notes)


def legend_of(axes: Axes) -> Legend:
    legend = axes.get_legend()
    assert legend is not None
    return legend


@pytest.mark.parametrize("days", [7, 30])
def test_the_chart_has_a_bar_per_day_and_names_the_period(days: int) -> None:
    data = data_of(days)
    figure = draw_chart(data)
    moved, money = figure.axes
    stacks = [c for c in moved.containers if isinstance(c, BarContainer)]
    assert [len(c.patches) for c in stacks] == [days, days, days]
    # The daemon's bar of the last day is days * 10,000 sats high, LNDg's stands on it.
    daemon, lndg, _other = stacks
    assert daemon.patches[-1].get_height() == pytest.approx(days * 10_000)
    assert lndg.patches[-1].get_y() == pytest.approx(days * 10_000)
    revenue, cost = (c for c in money.containers if isinstance(c, BarContainer))
    assert [p.get_height() for p in revenue.patches] == [3_000] * days
    assert [p.get_height() for p in cost.patches] == pytest.approx([7] * days)
    title = figure.get_suptitle()
    assert title == "L" + period_text(data)[1:]
    assert title.startswith(f"Last {days} days (")
    assert title.endswith("24 Nov 2026), Europe/Berlin")
    # Period totals in the legends: LNDg moved 50,000 a day.
    labels = [t.get_text() for t in legend_of(moved).get_texts()]
    assert labels[1] == f"LNDg {short_sats(50_000 * days)}"
    money_title = legend_of(money).get_title().get_text()
    assert money_title == f"Fees per day: net +{short_sats((3_000 - 7) * days)} sats"
    # At most 8 day labels, the last day's among them.
    ticks = money.get_xticks()
    assert len(ticks) <= 8
    assert ticks[-1] == days - 1


def test_the_png_is_phone_sized_portrait(tmp_path: Path) -> None:
    png = render_chart(data_of(7))
    assert png.startswith(PNG)
    path = tmp_path / "chart.png"
    path.write_bytes(png)
    height, width, _channels = imread(path).shape
    assert (width, height) == (900, 1170)


def test_without_forwards_only_the_cost_is_drawn_and_the_note_shown() -> None:
    figure = draw_chart(data_of(7, forwards_read=False, notes=(NO_FORWARDS,)))
    _moved, money = figure.axes
    bars = [c for c in money.containers if isinstance(c, BarContainer)]
    assert len(bars) == 1
    assert "revenue unknown" in legend_of(money).get_title().get_text()
    assert figure.get_supxlabel() == NO_FORWARDS


# -- read from LNDg --------------------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeLndg]:
    payments, rebalancer, forwards, _lines = node_rows()
    with FakeLndg(payments=payments, rebalancer=rebalancer, forwards=forwards) as server:
        yield server


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    with StateStore(tmp_path / "state.sqlite3") as opened:
        *_rows, lines = node_rows()
        opened.record_stat_lines([(line, "", "") for line in lines], (1, 99), read_from=None)
        yield opened


@pytest.fixture
async def client(fake: FakeLndg) -> AsyncIterator[LndgClient]:
    async with LndgClient(fake.url, password="secret", backoff=0.01, attempts=2) as opened:
        yield opened


async def test_a_7_day_report_charts_7_days_read_from_lndg(
    client: LndgClient, store: StateStore, tmp_path: Path
) -> None:
    reporter = Reporter(tmp_path, BERLIN, time(0, 5), store, client)
    chart = await reporter.chart(DAY, 7)
    assert chart.png.startswith(PNG)
    data = chart.data
    assert [d.day for d in data.days][-2:] == [date(2026, 11, 23), DAY]
    assert len(data.days) == 7
    assert data.notes == ()
    assert (data.revenue_msat, data.cost_msat) == (3_751, 44_500)
    assert data.days[-1].daemon == Share(1, 200_000_000, 30_000)
    assert data.days[-2].lndg.count == 1
    assert chart.caption == "Rebalancing and routing, last 7 days (18 – 24 Nov 2026), Europe/Berlin"

    month = await reporter.chart(DAY)  # a one-day report: 30 days, the 10th's rebalance too
    assert len(month.data.days) == 30
    assert month.data.total("other").amount_msat == 40_000_000 + 999_000_000


async def test_lndg_down_gives_a_chart_of_the_daemons_own_rebalances(
    fake: FakeLndg, client: LndgClient, store: StateStore
) -> None:
    fake.fault = "500"
    chart = await build_chart(client, store, BERLIN, DAY, 7)
    assert chart.png.startswith(PNG)
    assert chart.data.notes == (NO_PAYMENTS,)
    assert not chart.data.rebalances_read
    assert not chart.data.forwards_read
    # The ledger row is still this daemon's rebalance, on its Berlin day.
    assert chart.data.days[-1].daemon == Share(1, 200_000_000, 30_000)
    assert chart.data.total("lndg") == Share()
    assert chart.caption.endswith(NO_PAYMENTS)
    assert not [r for r in fake.requests if "/forwards/" in r.path]


async def test_unreadable_forwards_leave_the_rebalances(
    fake: FakeLndg, client: LndgClient, store: StateStore
) -> None:
    fake.forwards[:] = [
        {"id": 1, "forward_date": "2026-11-24T10:00:00", "fee": "lots"}
    ]  # nothing LNDg would send: unreadable
    chart = await build_chart(client, store, BERLIN, DAY, 7)
    assert chart.data.notes == (NO_FORWARDS,)
    assert chart.data.rebalances_read
    assert not chart.data.forwards_read
    assert chart.data.cost_msat == 44_500


class LockedLedger:
    """A state store whose database stays locked."""

    def ledger(self, since: float = 0, until: float = float("inf")) -> list[Rebalance]:
        raise sqlite3.OperationalError("database is locked")


async def test_a_locked_state_database_leaves_lndgs_view(client: LndgClient) -> None:
    chart = await build_chart(client, LockedLedger(), BERLIN, DAY, 7)
    assert chart.data.notes == (NO_LEDGER,)
    # this daemon's payment is then another tool's: node totals stay LNDg's
    assert chart.data.days[-1].daemon == Share()
    assert chart.data.days[-1].other == Share(2, 240_000_000, 34_000)
    assert chart.data.revenue_msat == 3_751
