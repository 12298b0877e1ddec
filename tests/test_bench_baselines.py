"""The baselines of the earnings benchmark: LNDg's auto-rebalancer rules, the original's loop."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bench.baselines import Attempt, Last, LndgRebalancer, run_lndg, run_original
from bench.simulate import Meter, SimConfig, SimNode, _virtual
from tests.test_pairing import channel

CONFIG = SimConfig(channels=0, routing_share_per_day=0.0)
MIN = 60.0


def lndg_node(monkeypatch: pytest.MonkeyPatch, *, routes: bool, ppm: int = 100) -> LndgRebalancer:
    """A full source (1) and a depleted target (2) whose routes always or never work."""
    source = channel(1, capacity=10_000_000, local_balance=9_000_000, remote_balance=1_000_000)
    target = channel(
        2,
        local_balance=50_000,
        remote_balance=950_000,
        auto_rebalance=True,
        local_fee_rate=800,
        remote_fee_rate=10,
        ar_max_cost=65,
        ar_amt_target=100_000,
    )
    node = SimNode([source, target], CONFIG)
    monkeypatch.setattr(node, "finds_route", lambda *_a, **_k: routes)
    monkeypatch.setattr(node, "route_ppm", lambda *_a: ppm)
    return LndgRebalancer(node, Meter(1), CONFIG)


def play(lndg: LndgRebalancer, attempt: Attempt) -> Attempt | None:
    async def main() -> Attempt | None:
        return await lndg.run(attempt, 1)

    return _virtual(main())


def test_a_success_is_followed_by_an_attempt_of_121_percent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lndg = lndg_node(monkeypatch, routes=True)
    follow = play(lndg, Attempt("2", 100_000, 50.0, 5))
    assert follow == Attempt("2", 121_000, 60.5, 1)
    assert lndg.node.local["2"] == 150_000
    assert lndg.node.fees_paid_sat == 10  # 100 ppm of 100,000 sat


def test_a_failed_follow_up_is_halved_and_a_failed_first_attempt_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lndg = lndg_node(monkeypatch, routes=False)
    assert play(lndg, Attempt("2", 100_000, 50.0, 1)) == Attempt("2", 50_000, 25.0, 1)
    assert play(lndg, Attempt("2", 60_000, 30.0, 1)) is None  # not above 69,420 sat
    assert play(lndg, Attempt("2", 100_000, 50.0, 5)) is None
    assert lndg.node.fees_paid_sat == 0


def test_a_route_above_the_attempts_fee_limit_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    lndg = lndg_node(monkeypatch, routes=True, ppm=501)
    assert play(lndg, Attempt("2", 100_000, 50.0, 5)) is None  # 50 sat: 500 ppm
    assert lndg.node.local["2"] == 50_000
    assert lndg.node.fees_paid_sat == 0


def test_lndg_waits_its_wait_period_after_a_failure_not_after_a_success(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lndg = lndg_node(monkeypatch, routes=False)
    peer = lndg.node.channels["2"].remote_pubkey
    queued = lndg.schedule(0.0)
    # 65 % of 800 ppm = 520, capped at AR-MaxFeeRate 500: 50 sat for ar_amt_target 100,000
    assert queued == [Attempt("2", 100_000, 50.0, 5)]
    assert lndg.schedule(1.0) == []  # one attempt per peer at a time: it is pending
    lndg.pending.clear()
    lndg.last[peer] = Last(False, 0.0, 100.0, 5)
    assert lndg.schedule(100 + 30 * MIN) == []
    assert lndg.schedule(100 + 31 * MIN) == queued
    lndg.pending.clear()
    lndg.last[peer] = Last(True, 0.0, 100.0, 5)
    assert lndg.schedule(101.0) == queued
    lndg.pending.clear()
    lndg.last[peer] = Last(False, 0.0, None, 5)  # in flight for 26 + 5 minutes > 30
    assert lndg.schedule(25 * MIN) == []
    assert lndg.schedule(26 * MIN) == queued


def test_a_seed_plays_the_same_way_twice() -> None:
    config = replace(SimConfig(), channels=40, seed=3, horizon_hours=2.0, routing_share_per_day=0.1)
    for run in (run_original, run_lndg):
        one, two = _virtual(run(config)), _virtual(run(config))
        assert one.moves == two.moves
        assert one.moves
        assert one.paid_log == two.paid_log
        assert one.lost_log == two.lost_log
        assert one.futile == two.futile
