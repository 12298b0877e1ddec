"""What routes cost, learned from ledger lines, and when a run may double its amount."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, cast

from core.models import Outcome, Pair, RunResult, StatLine
from core.planner import Planner, PlannerConfig, PolicySwitches
from core.prefill import rapid_allowed
from core.route_costs import RouteCosts
from core.settings import load_settings
from core.spend_guard import SpendGuard, SpendingReads
from core.state import StateStore
from tests.test_engine import Node, ScriptedRunner, make_engine, star_node
from tests.test_pairing import channel
from tests.test_planner import by_id, keys, pair_of, star


def line(source: str, target: str, fee_sat: int, at: int = 0, amount: int = 100_000) -> StatLine:
    return StatLine(at, source, target, amount * 1000, fee_sat * 1000)


def test_a_pairs_price_is_its_newest_payment_whatever_the_order_lines_arrive_in() -> None:
    costs = RouteCosts()
    costs.learn([line("1", "11", 30, at=20), line("1", "11", 10, at=10)])
    assert costs.ppm("1", "11") == 300  # 30 sat on 100,000 sat, the newer line
    costs.learn([line("1", "11", 5, at=30)])
    assert costs.ppm("1", "11") == 50
    assert costs.ppm("2", "11") is None
    costs.learn([StatLine(40, "1", "11", 0, 1000)])  # no amount: says nothing of the price
    assert costs.ppm("1", "11") == 50


def test_cheapest_picks_the_lowest_price_among_the_sources_that_may_run() -> None:
    costs = RouteCosts()
    costs.learn([line("1", "11", 40), line("2", "11", 20), line("3", "11", 20), line("3", "12", 1)])
    assert costs.cheapest("11", lambda s: True) == "2"  # 200 ppm; "3" ties and came later
    assert costs.cheapest("11", lambda s: s != "2") == "3"
    assert costs.cheapest("11", lambda s: s == "1") == "1"
    assert costs.cheapest("11", lambda s: False) is None
    assert costs.cheapest("13", lambda s: True) is None


def test_a_target_goes_by_its_cheapest_known_source_not_its_last_success() -> None:
    channels = star()
    planner = Planner(switches=PolicySwitches(follow_plan=False, explore_cheaper=False))
    planner.paid([line("1", "11", 10, at=1), line("3", "11", 40, at=2)])
    assert keys(planner.next_pairs(channels, set(), 1, 0.0)) == [("1", "11")]
    # busy cheapest: the next cheapest known source is not assumed, the usual order applies
    assert keys(planner.next_pairs(channels, {"1"}, 1, 0.0)) == [("3", "11")]
    plain = Planner(
        switches=PolicySwitches(follow_plan=False, cheapest_known=False, explore_cheaper=False)
    )
    plain.paid([line("1", "11", 10, at=1)])
    assert keys(plain.next_pairs(channels, set(), 1, 0.0)) == [("3", "11")]  # by surplus


def test_a_cheap_source_in_backoff_is_passed_over() -> None:
    channels = star()
    planner = Planner(switches=PolicySwitches(follow_plan=False, explore_cheaper=False))
    planner.paid([line("1", "11", 10), line("2", "11", 30)])
    failed = pair_of(channels, 1, 11)
    planner.finished(failed, RunResult("1", "11", 0.0, 1.0, 1, Outcome.NO_ROUTE, ""), 1.0)
    assert keys(planner.next_pairs(channels, set(), 1, 2.0)) == [("2", "11")]
    assert by_id(channels, 11).auto_rebalance


def test_rapid_only_on_a_route_cheap_against_the_targets_fee_rate() -> None:
    target = channel(11, auto_rebalance=True, local_fee_rate=800)
    assert rapid_allowed(None, target, 50)  # never paid: the first payment tells the price
    assert rapid_allowed(400, target, 50)  # exactly half of 800
    assert not rapid_allowed(401, target, 50)
    assert rapid_allowed(5_000, target, 0)  # 0: the rule is off
    assert not rapid_allowed(1, channel(12, auto_rebalance=True, local_fee_rate=0), 50)


def test_a_few_runs_a_day_look_below_the_cheapest_known_price_through_unpaid_sources() -> None:
    channels = star()  # sources 1-3 (3 has the most surplus), targets 11-14; peers charge 0
    config = PlannerConfig(explore_runs=2, explore_period_seconds=1000.0)
    planner = Planner(config, PolicySwitches(follow_plan=False))
    planner.paid([line("1", "11", 30)])  # 300 ppm through source 1
    first = planner.next_pairs(channels, set(), 1, 0.0)
    assert [(p.key, p.fee_limit_ppm) for p in first] == [(("3", "11"), 299)]
    planner.started(first[0], 0.0)
    planner.finished(first[0], RunResult("3", "11", 0.0, 1.0, 1, Outcome.NO_ROUTE, ""), 10.0)
    second = planner.next_pairs(channels, set(), 1, 20.0)  # 3 backs off: the next unpaid
    assert [(p.key, p.fee_limit_ppm) for p in second] == [(("2", "11"), 299)]
    planner.started(second[0], 20.0)
    planner.finished(second[0], RunResult("2", "11", 20.0, 21.0, 1, Outcome.NO_ROUTE, ""), 30.0)
    # two explorations in the period: the known route, at the usual cap
    third = planner.next_pairs(channels, set(), 1, 40.0)
    assert [(p.key, p.fee_limit_ppm) for p in third] == [(("1", "11"), None)]
    planner.started(third[0], 40.0)  # a run of a paid source is no exploration
    planner.finished(third[0], RunResult("1", "11", 40.0, 41.0, 0, Outcome.SUCCESS, ""), 50.0)
    planner.paid([line("1", "11", 20, at=50)])
    # the period over: exploring again, below the new price (backoffs still hold 2 and 3)
    assert planner.next_pairs(channels, set(), 1, 1001.0)[0].fee_limit_ppm is None
    assert planner.costs.lowest("11") == 200


def test_no_exploring_where_the_peers_own_fee_leaves_no_cheaper_route() -> None:
    channels = [
        *star()[:3],
        channel(11, local_balance=10_000, auto_rebalance=True, remote_fee_rate=299),
    ]
    planner = Planner(switches=PolicySwitches(follow_plan=False))
    planner.paid([line("1", "11", 30)])  # 300 ppm; the peer alone charges 299
    assert [(p.key, p.fee_limit_ppm) for p in planner.next_pairs(channels, set(), 1, 0.0)] == [
        (("1", "11"), None)
    ]


def guard_for(tmp_path: Path, **settings: Any) -> SpendGuard:
    tmp_path.mkdir(exist_ok=True)
    store = StateStore(tmp_path / "state.sqlite3")
    loaded = load_settings(None, data_dir=tmp_path, **settings)
    return SpendGuard(loaded, store, cast(SpendingReads, None), {"amount": 50_000}, clock=lambda: 0)


def test_a_run_gets_the_planners_lower_cap_never_a_higher_one(tmp_path: Path) -> None:
    guard = guard_for(tmp_path)
    source = channel(1, local_balance=900_000)
    target = channel(
        11, local_balance=10_000, auto_rebalance=True, local_fee_rate=1000, ar_max_cost=65
    )
    cap = 500  # LNDg's: min(AR-MaxFeeRate 500, 65 % of 1,000 ppm)
    plain = guard.for_run(Pair(source, target, 50, 50))
    assert isinstance(plain, Pair)
    assert plain.fee_limit_ppm == cap
    lower = guard.for_run(Pair(source, target, 50, 50, fee_limit_ppm=cap - 100))
    assert isinstance(lower, Pair)
    assert lower.fee_limit_ppm == cap - 100
    higher = guard.for_run(Pair(source, target, 50, 50, fee_limit_ppm=cap + 100))
    assert isinstance(higher, Pair)
    assert higher.fee_limit_ppm == cap


def test_a_run_on_a_route_known_to_be_dear_does_not_double(tmp_path: Path) -> None:
    source = channel(1, local_balance=900_000)
    target = channel(
        11, local_balance=10_000, auto_rebalance=True, local_fee_rate=1000, ar_max_cost=65
    )
    costs = RouteCosts()
    costs.learn([line("1", "11", 45)])  # 450 ppm: 45 % of the target's 1,000 ppm
    pair = Pair(source, target, 50, 50)
    assert _rapid(guard_for(tmp_path / "a", rapid_max_cost_pct=50), pair, costs) is None
    assert _rapid(guard_for(tmp_path / "b", rapid_max_cost_pct=40), pair, costs) is False
    assert _rapid(guard_for(tmp_path / "c", rapid_max_cost_pct=40), pair, RouteCosts()) is None
    assert _rapid(guard_for(tmp_path / "d", rapid_max_cost_pct=0), pair, costs) is None
    template = guard_for(tmp_path / "e", rapid_max_cost_pct=40, fee_policy="template")
    assert _rapid(template, pair, costs) is None  # the template's keys as written


def _rapid(guard: SpendGuard, pair: Pair, costs: RouteCosts) -> bool | None:
    ready = guard.for_run(pair, costs)
    assert isinstance(ready, Pair)
    return ready.rapid


async def test_the_engine_teaches_the_planner_what_each_successful_run_paid(
    tmp_path: Path,
) -> None:
    runner = ScriptedRunner()
    engine, _ = make_engine(tmp_path, Node(star_node()), runner, max_workers=1)
    stat = engine.settings.stat_path

    def paid(pair: Pair) -> None:  # regolancer's stat line: 30 sat on 100,000 sat
        now = int(time.time())
        with stat.open("a") as f:
            f.write(f"{now},{pair.source.chan_id},{pair.target.chan_id},100000000,30000\n")

    runner.on_success.append(paid)
    await engine.cycle()
    assert runner.started
    for source, target in runner.started:
        assert engine.planner.costs.ppm(source, target) == 300
