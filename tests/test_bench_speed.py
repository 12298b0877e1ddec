"""The earnings benchmark's shortcuts compute what the plain code computed, draw for draw.

Each shortcut (`bench.shuffle`, the cached LNDg list and channel views, the original's lazy
cross product, the routing demand's cumulative weights, the sources alive per target) is
checked against the straightforward code it replaced, on the same seeds.
"""

from __future__ import annotations

import random
from dataclasses import replace
from itertools import pairwise

import pytest

from bench import earnings, shuffle
from bench.simulate import SimConfig, SimNode
from core.models import Channel
from core.pairing import PairView, build_pairs, is_usable
from sim.model import BUSY_HTLCS, BUSY_PERIOD_SECONDS
from sim.nodes import node_channels
from sim.routing import AR_OUT_WEIGHT, SOURCE_IN_WEIGHT, Demand, Request

CONFIG = SimConfig(channels=150, seed=3, htlc_busy_share=0.3, demand_sigma=1.0)


@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, 64, 65, 1000, 22_000])
def test_the_inlined_shuffle_is_random_shuffle_and_leaves_the_same_state(n: int) -> None:
    for seed in (1, "original:3", 99):
        ours, theirs = random.Random(seed), random.Random(seed)
        reference = list(range(n))
        theirs.shuffle(reference)
        assert shuffle.shuffled_range(ours, n) == reference
        # what the generator draws next is the same: the next cycle's shuffle is too
        assert ours.getstate() == theirs.getstate()


def test_a_generator_with_its_own_draws_gets_its_own_shuffle() -> None:
    class Skewed(random.Random):
        def random(self) -> float:  # Random.shuffle then draws by random(), not getrandbits
            return super().random() ** 2

    reference = list(range(500))
    Skewed(1).shuffle(reference)
    assert shuffle.shuffled_range(Skewed(1), 500) == reference
    plain = list(range(500))
    random.Random(1).shuffle(plain)
    assert reference != plain


def test_the_shuffled_lazy_cross_product_walks_the_shuffled_list() -> None:
    node = SimNode(node_channels(150, 5), CONFIG)
    channels = node.listed()
    view = PairView(channels)
    assert len(view) > 1000
    ours, theirs = random.Random("original:1"), random.Random("original:1")
    for _ in range(3):  # three cycles of one worker: the draws carry over
        pairs = build_pairs(channels)
        theirs.shuffle(pairs)
        assert [view[i] for i in shuffle.shuffled_range(ours, len(view))] == pairs


def fresh_view(node: SimNode, balances: dict[str, int], now: float) -> list[Channel]:
    """What `Node.snapshot` made before views were kept: a new copy of every channel."""
    return [
        channel.model_copy(
            update={
                "local_balance": balances[chan_id],
                "remote_balance": channel.capacity - balances[chan_id] - node._reserve[chan_id],
                "htlc_count": BUSY_HTLCS if node.busy(chan_id, now) else channel.htlc_count,
            }
        )
        for chan_id, channel in node.channels.items()
    ]


def test_lndgs_list_follows_syncs_busy_periods_and_live_balances() -> None:
    node = SimNode(node_channels(150, 5), CONFIG)
    busy_changes = [
        t * BUSY_PERIOD_SECONDS
        for t in range(1, 6)
        if any(node.busy(c, t * BUSY_PERIOD_SECONDS) for c in node.channels)
    ]
    assert busy_changes  # the HTLC counts do change between periods
    first = node.listed(0.0)
    assert first == fresh_view(node, node.synced, 0.0)
    source, target = node.plain[0], node.auto[0]
    node.move(source, target, 50_000)
    # LNDg shows the move only after its sync; the live view shows it at once
    assert node.listed(0.0) == first
    assert node.snapshot() == fresh_view(node, node.local, 0.0)
    assert node.view(target).local_balance == node.local[target]
    node.sync()
    for now in (0.0, *busy_changes, busy_changes[-1] + 1.0):
        assert node.listed(now) == fresh_view(node, node.synced, now)
    # a fresh list each call: a caller that sorts it does not reorder the next caller's
    shown = node.listed(0.0)
    shown.reverse()
    assert node.listed(0.0) == fresh_view(node, node.synced, 0.0)


def plain_requests(
    channels: list[Channel], seed: int, weights: dict[str, float], count: int
) -> list[Request]:
    """Demand.next as first written: the weights accumulated anew on every draw."""
    rng = random.Random(f"routing:{seed}:bench")
    outs = [c for c in channels if is_usable(c)]
    out_weights = [(AR_OUT_WEIGHT if c.auto_rebalance else 1) * weights[c.chan_id] for c in outs]
    in_weights = [1 if c.auto_rebalance else SOURCE_IN_WEIGHT for c in outs]
    found: list[Request] = []
    for _ in range(count):
        out = rng.choices(outs, out_weights)[0]
        ins = [(c, w) for c, w in zip(outs, in_weights, strict=True)]
        ins = [(c, w) for c, w in ins if c.remote_pubkey != out.remote_pubkey]
        into = rng.choices([c for c, _w in ins], [w for _c, w in ins])[0]
        amount = int(out.capacity * rng.uniform(1.0, 6.0) / 100) // 1000 * 1000
        found.append(Request(into.chan_id, out.chan_id, max(amount, 1_000)))
    return found


def test_demand_draws_the_requests_it_drew_before() -> None:
    channels = node_channels(150, 4)
    econ = random.Random(7)
    weights = {c.chan_id: econ.lognormvariate(0, 1.0) for c in channels}
    demand = Demand(channels, 4, "bench", weights)
    assert [demand.next() for _ in range(3000)] == plain_requests(channels, 4, weights, 3000)


def test_available_work_counts_targets_with_a_live_source_as_before() -> None:
    # most pairs dead, so whether a target has a live source turns on which sources are full
    node = SimNode(
        node_channels(150, 6), replace(CONFIG, dead_pair_share=0.97, routing_share_per_day=0.3)
    )

    def plain(node: SimNode) -> int:
        sources = [
            s
            for s in node.plain
            if node.local[s] * 100 // node.channels[s].capacity > node.channels[s].ar_out_target
        ]
        needy = sum(
            1
            for t in node.auto
            if not node.in_band(t) and any(node._pairs_alive(s, t) for s in sources)
        )
        return min(needy, len(sources))

    seen = []
    for step in range(40):
        node.forward(3600.0, step * 3600.0)  # routing drains and fills channels
        seen.append(node.available_work(step * 3600.0))
        assert seen[-1] == plain(node)
    assert any(a != b for a, b in pairwise(seen))  # the count moved with the balances


@pytest.mark.subprocess
def test_the_plan_in_one_pool_gives_each_row_what_it_gives_alone() -> None:
    small = SimConfig(channels=40, horizon_hours=0.5, routing_share_per_day=0.1, demand_sigma=1.0)
    plan = [(small, (1, 2)), (replace(small, channels=60, route_channel_share=0.0), (3,))]
    pooled = list(earnings.measure_all(plan, jobs=2))
    alone = [earnings.measure(config, seeds) for config, seeds in plan]
    assert [f.seeds for f in pooled] == [(1, 2), (3,)]
    assert [f.config for f in pooled] == [config for config, _ in plan]
    assert [f.sides for f in pooled] == [f.sides for f in alone]
    assert pooled[0].sides["daemon"][0] != pooled[0].sides["daemon"][1]  # the seeds differ
