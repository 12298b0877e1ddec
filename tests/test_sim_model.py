"""The one model of a node and a regolancer run that the demo and the benchmark share."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from core.models import Channel, Outcome
from sim.model import ROUTE_PPM_MAX, Node, RouteModel
from tests.test_pairing import channel

ALWAYS = RouteModel(source_quality=(1.0, 1.0), target_quality=(1.0, 1.0))
NEVER = RouteModel(source_quality=(1.0, 1.0), target_quality=(1.0, 1.0), dead_pair_share=1.0)
PFROM, PTO = 25, 20  # the pair's thresholds for ar_out_target 75 and ar_in_target 80


def chan(chan_id: int, local: int, *, capacity: int = 1_000_000, auto: bool = False) -> Channel:
    return channel(
        chan_id,
        capacity=capacity,
        local_balance=local,
        remote_balance=capacity - local,
        auto_rebalance=auto,
    )


def node(source_local: int, target_local: int, routes: RouteModel = ALWAYS, **target: int) -> Node:
    return Node([chan(1, source_local), chan(11, target_local, auto=True, **target)], routes, 1)


def test_a_run_sends_the_wanted_amount_capped_by_the_live_balances() -> None:
    full = node(900_000, 50_000)
    assert full.amount("1", "11", PFROM, PTO, 50_000) == 50_000
    # the source's local, the target's remote less 2 % of the source's capacity
    assert full.amount("1", "11", PFROM, PTO, 5_000_000) == 900_000
    assert node(990_000, 50_000).amount("1", "11", PFROM, PTO, 5_000_000) == 930_000


@pytest.mark.parametrize(
    ("source_local", "target_local", "target_capacity"),
    [
        (700_000, 50_000, 1_000_000),  # the source no longer passes pfrom
        (900_000, 250_000, 1_000_000),  # the target no longer passes pto
        (900_000, 1_000, 30_000),  # what is left to send is below min_amount
    ],
)
def test_a_pair_that_no_longer_qualifies_moves_nothing(
    source_local: int, target_local: int, target_capacity: int
) -> None:
    model = node(source_local, target_local, capacity=target_capacity)
    assert model.amount("1", "11", PFROM, PTO, 50_000) is None
    verdict = model.attempt("1", "11", PFROM, PTO, 50_000, random.Random(1))
    assert verdict.outcome == Outcome.NOT_QUALIFIED
    assert verdict.amount_sat == 0


def test_a_run_pays_at_the_pairs_fee_rate_or_finds_no_route() -> None:
    paid = node(900_000, 50_000).attempt("1", "11", PFROM, PTO, 100_000, random.Random(1))
    assert paid.outcome == Outcome.SUCCESS
    assert paid.amount_sat == 100_000
    assert paid.fee_sat == 100_000 * node(900_000, 50_000).route_ppm("1", "11") // 1_000_000
    assert 1 <= paid.fee_sat <= 100_000 * ROUTE_PPM_MAX // 1_000_000
    dead = node(900_000, 50_000, NEVER).attempt("1", "11", PFROM, PTO, 100_000, random.Random(1))
    assert dead.outcome == Outcome.NO_ROUTE


def test_a_pair_finds_a_route_as_often_as_its_odds_say() -> None:
    routes = RouteModel(source_quality=(0.5, 1.0), target_quality=(0.5, 1.0))
    model = node(900_000, 50_000, routes)
    odds = model.quality["1"] * model.quality["11"]
    assert model.odds("1", "11") == odds
    rng = random.Random(7)
    found = sum(model.finds_route("1", "11", rng) for _ in range(4000))
    assert abs(found / 4000 - odds) < 0.03


def test_a_move_shifts_what_the_balances_allow_and_shows_in_the_snapshot() -> None:
    model = node(900_000, 50_000)
    assert model.move("1", "11", 100_000, fee=25.0) == 100_000
    assert model.local == {"1": 799_975, "11": 150_000}
    assert model.move("1", "11", 5_000_000) == 799_975  # all the source had
    source, target = model.snapshot()
    assert (source.local_balance, source.remote_balance) == (0, 1_000_000)
    assert (target.local_balance, target.remote_balance) == (949_975, 50_025)


def test_lndg_pays_through_the_first_offered_channel_with_a_route() -> None:
    channels = [chan(i, 900_000) for i in (1, 2, 3)] + [chan(11, 50_000, auto=True)]
    offered, paid = Node(channels, ALWAYS, 1).lndg_attempt(
        "11", ["1", "2", "3"], 2, random.Random(1)
    )
    assert len(offered) == 2
    assert paid == offered[0]
    offered, paid = Node(channels, NEVER, 1).lndg_attempt(
        "11", ["1", "2", "3"], 5, random.Random(1)
    )
    assert sorted(offered) == ["1", "2", "3"]
    assert paid is None


def test_a_route_costs_at_least_the_target_peers_fee_and_is_drawn_per_pair() -> None:
    model = Node(
        [chan(1, 900_000), chan(2, 900_000), channel(11, auto_rebalance=True, remote_fee_rate=250)],
        ALWAYS,
        1,
    )
    one, two = model.route_ppm("1", "11"), model.route_ppm("2", "11")
    assert one > 250
    assert two > 250
    assert one != two  # each pair draws its own hops before the last
    assert model.route_ppm("1", "11") == one  # once per pair


def test_a_run_whose_route_costs_more_than_its_cap_finds_no_route() -> None:
    model = node(900_000, 50_000)
    ppm = model.route_ppm("1", "11")
    rng = random.Random(1)
    above = model.attempt("1", "11", PFROM, PTO, 100_000, rng, fee_limit_ppm=ppm - 1)
    assert above.outcome == Outcome.NO_ROUTE
    within = model.attempt("1", "11", PFROM, PTO, 100_000, rng, fee_limit_ppm=ppm)
    assert within.outcome == Outcome.SUCCESS
    assert within.fee_sat * 1_000_000 // 100_000 <= ppm


def test_route_success_per_pair_does_not_follow_the_channels_qualities() -> None:
    sources = [chan(n, 900_000) for n in range(1, 41)]
    targets = [chan(n, 50_000, auto=True) for n in range(101, 104)]
    spread = RouteModel(source_quality=(0.2, 1.0), target_quality=(0.5, 1.0))
    per_channel = Node([*sources, *targets], spread, 3)
    per_pair = Node([*sources, *targets], replace(spread, channel_share=0.0), 3)
    # per channel: a source's odds into two targets keep its rank; per pair they do not
    ranks = []
    for model in (per_channel, per_pair):
        into_a = sorted(range(1, 41), key=lambda s: model.odds(str(s), "101"))
        into_b = sorted(range(1, 41), key=lambda s: model.odds(str(s), "102"))
        ranks.append(into_a == into_b)
    assert ranks == [True, False]
    # per pair, the odds are drawn from the same ranges as the channels' product
    assert all(0.1 <= per_pair.odds(str(s), "101") <= 1.0 for s in range(1, 41))
    half = replace(spread, channel_share=0.5)
    mixed = Node([*sources, *targets], half, 3).odds("1", "101")
    assert mixed == pytest.approx((per_channel.odds("1", "101") + per_pair.odds("1", "101")) / 2)
