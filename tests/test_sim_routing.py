"""The demo's node routes payments: forwards move balances and earn fees, a depleted channel
fails them, the month before the demo fills the first chart, all deterministic for a seed."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from core.lndg import LndgClient
from core.models import Channel
from core.node_records import Forward
from core.pairing import is_usable
from core.report_delivery import Reporter
from core.state import StateStore
from sim.lndg import FakeLndg
from sim.model import Node
from sim.nodes import demo_rows
from sim.routing import Demand, Request, fee_msat, route
from sim.simulation import EARNINGS_DAYS, ROUTES, Simulation

AUCKLAND = ZoneInfo("Pacific/Auckland")  # 13 h ahead of UTC in December
NOW = datetime(2026, 12, 6, 9, 30, tzinfo=AUCKLAND)


def simulation(fake: FakeLndg, tmp_path: Path, seed: int = 1) -> Simulation:
    return Simulation(fake, tmp_path / "stat.csv", tmp_path / "scenario.json", seed=seed)


def two_channels(sim: Simulation) -> tuple[Channel, Channel]:
    """An AR channel with outbound and a channel to another peer with room to receive."""
    usable = [c for c in sim.channels() if is_usable(c)]
    out = next(c for c in usable if c.auto_rebalance and c.local_balance > 100_000)
    into = next(
        c
        for c in usable
        if c.remote_pubkey != out.remote_pubkey and sim.node.remote(c.chan_id) > 200_000
    )
    return out, into


def shape(row: dict[str, Any]) -> tuple[Any, ...]:
    """A forward row without its running id (a process-wide counter)."""
    return tuple(v for k, v in sorted(row.items()) if k not in ("id", "url"))


def test_a_forward_moves_the_balances_earns_its_fee_and_is_recorded(tmp_path: Path) -> None:
    with FakeLndg(channels=demo_rows(1), payments=[], rebalancer=[]) as fake:
        sim = simulation(fake, tmp_path)
        out, into = two_channels(sim)
        local_out, local_in = sim.node.local[out.chan_id], sim.node.local[into.chan_id]

        move = sim.route(Request(into.chan_id, out.chan_id, 100_000))

        assert move is not None
        # 100,000 sat at the out channel's own rate, e.g. 700 ppm: 70 sat, in msat 70,000.
        earned = 100_000 * out.local_fee_rate // 1_000_000
        assert out.local_fee_rate > 0
        assert move.fee_sat == earned
        assert sim.node.local[out.chan_id] == local_out - 100_000
        assert sim.node.local[into.chan_id] == local_in + 100_000 + earned
        (row,) = fake.forwards
        forward = Forward.model_validate(row)
        assert (forward.chan_id_in, forward.chan_id_out) == (into.chan_id, out.chan_id)
        assert (forward.amt_out_msat, forward.amt_in_msat) == (
            100_000_000,
            100_000_000 + earned * 1000,
        )
        assert forward.fee_sat == earned
        assert (forward.chan_out_alias, forward.chan_in_alias) == (out.alias, into.alias)
        # LNDg's channel rows show the new balances
        shown = {r["chan_id"]: r["local_balance"] for r in fake.channels}
        assert shown[out.chan_id] == local_out - 100_000
        assert sim.summary().forwards == 1


def test_a_forward_a_depleted_channel_cannot_carry_fails_and_records_nothing(
    tmp_path: Path,
) -> None:
    with FakeLndg(channels=demo_rows(1), payments=[], rebalancer=[]) as fake:
        sim = simulation(fake, tmp_path)
        out, into = two_channels(sim)
        before = dict(sim.node.local)
        too_much = sim.node.local[out.chan_id] + 1

        assert sim.route(Request(into.chan_id, out.chan_id, too_much)) is None

        assert sim.node.local == before
        assert fake.forwards == []
        summary = sim.summary()
        assert (summary.forwards, summary.forwards_failed) == (0, 1)
        assert summary.fees_lost_sat == fee_msat(too_much, out.local_fee_rate) / 1000


def test_route_needs_the_in_channels_peer_to_pay_amount_and_fee() -> None:
    channels = [Channel.model_validate(r) for r in demo_rows(1)]
    node = Node(channels, ROUTES, 1)
    out = next(c for c in channels if is_usable(c) and c.local_balance > 50_000)
    into = next(c for c in channels if c.remote_pubkey != out.remote_pubkey and is_usable(c))
    node.local[into.chan_id] = into.capacity - 1_000  # its peer can send only about 1,000
    before = dict(node.local)
    assert route(node, Request(into.chan_id, out.chan_id, 50_000)) is None
    assert node.local == before
    assert route(node, Request(out.chan_id, out.chan_id, 1_000)) is None  # one channel: no


def test_demand_is_the_same_for_a_seed_and_asks_refilled_channels_most() -> None:
    channels = [Channel.model_validate(r) for r in demo_rows(1)]
    one, two = Demand(channels, 7), Demand(channels, 7)
    drawn = [one.next() for _ in range(400)]
    assert drawn == [two.next() for _ in range(400)]
    assert drawn != [Demand(channels, 8).next() for _ in range(400)]
    by_id = {c.chan_id: c for c in channels}
    requests = [r for r in drawn if r is not None]
    assert all(by_id[r.chan_in].remote_pubkey != by_id[r.chan_out].remote_pubkey for r in requests)
    assert all(is_usable(by_id[r.chan_out]) and is_usable(by_id[r.chan_in]) for r in requests)
    ar_out = sum(by_id[r.chan_out].auto_rebalance for r in requests)
    assert ar_out > len(requests) / 2  # 4x the weight of the others, fewer channels


def test_live_forwards_are_deterministic_for_a_seed(tmp_path: Path) -> None:
    results = []
    for run in range(2):
        with FakeLndg(channels=demo_rows(1), payments=[], rebalancer=[]) as fake:
            sim = simulation(fake, tmp_path / str(run))
            (tmp_path / str(run)).mkdir()
            moves = [sim.forward() for _ in range(60)]
            results.append(([m and m.describe() for m in moves], dict(sim.node.local)))
    assert results[0] == results[1]
    # demand asks depleted targets too: some forwards pass, some fail for lack of outbound
    assert None in results[0][0]
    assert any(m is not None for m in results[0][0])


def test_the_month_before_the_demo_fills_the_first_chart(tmp_path: Path) -> None:
    rows = []
    for _run in range(2):
        with FakeLndg(channels=demo_rows(1), payments=[], rebalancer=[], password="pw") as fake:
            sim = simulation(fake, tmp_path)
            balances = dict(sim.node.local)
            sim.seed_history(NOW)
            month = sim.seed_earnings(NOW)
            assert sim.node.local == balances  # history is rows only
            rows.append([shape(r) for r in fake.forwards])
    assert rows[0] == rows[1]

    forwards = [Forward.model_validate(r) for r in fake.forwards]
    assert month.forwards == len(forwards)
    assert round(month.revenue_sat * 1000) == sum(round(f.fee_sat * 1000) for f in forwards)
    # every forward on one of the 30 Auckland days before today, each day some
    midnight = NOW.replace(hour=0, minute=0)
    days = {f.forward_date.astimezone(AUCKLAND).date() for f in forwards}
    assert days == {(midnight - timedelta(days=n)).date() for n in range(1, EARNINGS_DAYS + 1)}
    # each earned the out channel's rate
    rates = {r["chan_id"]: r["local_fee_rate"] for r in fake.channels}
    for f in forwards:
        assert round(f.fee_sat * 1000) == fee_msat(f.amt_out_msat // 1000, rates[f.chan_id_out])
    assert month.lndg_paid > 0
    assert month.other > 0


async def test_the_first_report_of_the_demo_charts_30_days(tmp_path: Path) -> None:
    with FakeLndg(channels=demo_rows(1), payments=[], rebalancer=[], password="pw") as fake:
        sim = simulation(fake, tmp_path)
        sim.seed_history(NOW)
        sim.seed_earnings(NOW)
        yesterday = NOW.date() - timedelta(days=1)
        with StateStore(tmp_path / "state.sqlite3") as store:
            async with LndgClient(fake.url, password="pw") as lndg:
                reporter = Reporter(tmp_path, AUCKLAND, time(0, 5), store, lndg)
                chart = await reporter.chart(yesterday)
    data = chart.data
    assert len(data.days) == 30
    assert data.notes == ()
    assert all(day.revenue_msat > 0 for day in data.days)
    assert all(day.lndg.count > 0 for day in data.days)
    assert data.total("other").count > 0
    assert data.revenue_msat > data.cost_msat > 0
    assert chart.caption.endswith("Pacific/Auckland")
