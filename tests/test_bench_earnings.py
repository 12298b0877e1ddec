"""The simulation's node that earns and pays, and the earnings-first order it was used to test."""

from __future__ import annotations

from dataclasses import replace

from bench.simulate import EarningsFirstPlanner, Meter, SimConfig, SimNode
from bench.vclock import EPOCH
from core.planner import PlannerConfig, PolicySwitches
from tests.test_pairing import channel

CONFIG = SimConfig(channels=0, routing_share_per_day=0.0)


def two_channel_node(out_local: int) -> SimNode:
    """1: a plain channel (payments mostly come in), 2: an auto-rebalanced one (they leave)."""
    plain = channel(
        1, capacity=1_000_000, local_balance=100_000, remote_balance=900_000, local_fee_rate=50
    )
    auto = channel(
        2,
        capacity=1_000_000,
        local_balance=out_local,
        remote_balance=1_000_000 - out_local,
        auto_rebalance=True,
        local_fee_rate=800,
    )
    return SimNode([plain, auto], CONFIG)


def test_a_forward_earns_the_outgoing_fee_rate_and_moves_the_balance() -> None:
    node = two_channel_node(out_local=500_000)
    # 2 % of 2,000,000 sat a day is 40,000 sat: a day of demand is that, plus one request
    node.config = replace(CONFIG, routing_share_per_day=0.02)
    node.forward(86_400, now=10.0)
    volume = sum(f.amt_out_msat for f in node.forwards) // 1000
    assert 40_000 <= volume < 40_000 + 60_000
    # each forward earns its amount x the out channel's rate (msat); revenue is their sum
    rates = {"1": 50, "2": 800}
    assert all(
        round(f.fee_sat * 1000) == f.amt_out_msat // 1000 * rates[f.chan_id_out] // 1000
        for f in node.forwards
    )
    assert node.revenue_msat == sum(round(f.fee_sat * 1000) for f in node.forwards) > 0
    # the out channel gives the amount, the in channel gets it plus the fee (whole sats)
    assert node.local["1"] + node.local["2"] == 600_000 + sum(int(f.fee_sat) for f in node.forwards)
    assert all(f.forward_date.timestamp() == EPOCH + 10 for f in node.forwards)
    assert node.lost_msat == 0


def test_a_forward_that_finds_too_little_outbound_fails_and_its_fee_is_lost() -> None:
    node = two_channel_node(out_local=1_000)  # less than the smallest forward (10,000 sat)
    node.config = replace(CONFIG, routing_share_per_day=0.02)
    node.forward(3_600)  # an hour: too little comes in by 1 to refill 2 meanwhile
    assert all(f.chan_id_out != "2" for f in node.forwards)
    assert node.lost_msat > 0
    assert node.lost_msat % 800 == 0  # amount x 800 ppm / 1000, whole forwards lost
    assert sum(msat for _, msat in node.lost_log) == node.lost_msat


def test_a_rebalance_pays_its_pairs_route_fee() -> None:
    node = two_channel_node(out_local=100_000)
    plain = channel(3, capacity=1_000_000, local_balance=900_000, remote_balance=100_000)
    node = SimNode([plain, *node.channels.values()], CONFIG)
    node.rebalance("3", "2", 50_000, 5.0, Meter(1))
    assert node.fees_paid_sat == node.fee_sat("3", "2", 50_000) > 0
    assert node.local["2"] == 150_000


def test_planted_forwards_are_history_not_revenue() -> None:
    node = SimNode(
        list(two_channel_node(out_local=500_000).channels.values()),
        replace(CONFIG, routing_share_per_day=0.02, forward_history_days=7),
    )
    assert node.forwards
    assert all(f.forward_date.timestamp() < EPOCH for f in node.forwards)
    assert node.revenue_msat == 0
    assert node.local["2"] == 500_000  # history does not move today's balances


def test_earnings_first_serves_the_target_that_earned_most_per_sat_then_the_most_depleted() -> None:
    source = channel(1, capacity=4_000_000, local_balance=3_900_000, remote_balance=100_000)
    targets = [
        channel(10 + i, capacity=1_000_000, local_balance=10_000 * i, auto_rebalance=True)
        for i in (1, 2, 3)
    ]
    node = SimNode([source, *targets], CONFIG)
    # 13 (the least depleted) earned most per sat; 12 a little; 11 nothing
    node._record_forward("1", "13", 100_000, 50_000, EPOCH - 3600)
    node._record_forward("1", "12", 100_000, 1_000, EPOCH - 3600)
    node._record_forward("1", "12", 100_000, 99_000, EPOCH - 8 * 86_400)  # outside 7 days
    planner = EarningsFirstPlanner(PlannerConfig(), PolicySwitches(), node, lambda: EPOCH)
    _, ordered = planner.candidates(node.snapshot(), 0.0)
    assert [t.chan_id for t in ordered] == ["13", "12", "11"]
    assert planner.earned() == {"13": 0.05, "12": 0.001}
