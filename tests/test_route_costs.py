"""What routes cost, learned from ledger lines, and how the planner and the guard use it."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import pytest

from core.engine import Engine
from core.events import EventBus
from core.history import Observation
from core.models import Channel, Outcome, Pair, RunResult, StatLine
from core.planner import Planner, PolicySwitches
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


async def test_an_unreadable_ledger_leaves_the_price_unknown_and_the_run_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    runner = ScriptedRunner()
    engine, _ = make_engine(tmp_path, Node(star_node()), runner, max_workers=1)

    def locked(*args: object, **kwargs: object) -> list[object]:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(engine.store, "ledger", locked)
    await engine.cycle()
    assert runner.started
    assert [r.outcome for r in engine.store.runs()] == [Outcome.SUCCESS] * len(runner.started)
    source, target = runner.started[0]
    assert engine.planner.costs.ppm(source, target) is None
    assert "ledger not read for the price of run" in caplog.text


async def test_route_prices_survive_a_restart_from_the_ledger_of_the_history_days(
    tmp_path: Path,
) -> None:
    settings = load_settings(None, data_dir=tmp_path, max_workers=1, history_days=7)
    store = StateStore(tmp_path / "state.sqlite3")
    now = time.time()
    store.record_stat_lines(
        [
            (line("1", "11", 30, at=int(now - 86_400)), "", ""),  # 300 ppm, yesterday
            (line("2", "11", 5, at=int(now - 8 * 86_400)), "", ""),  # older than 7 days
        ],
        (1, 2),
        read_from=None,
    )

    async def nothing(channels: Sequence[Channel]) -> list[Observation]:
        return []

    engine = Engine(
        settings, store, Node(star_node()).fetch, ScriptedRunner(), EventBus(), history=nothing
    )
    await engine.cycle(dry_run=True)
    assert engine.planner.costs.ppm("1", "11") == 300
    assert engine.planner.costs.ppm("2", "11") is None


async def test_an_unreadable_ledger_at_start_begins_without_prices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    settings = load_settings(None, data_dir=tmp_path, max_workers=1)
    store = StateStore(tmp_path / "state.sqlite3")
    learnt: list[int] = []

    async def history(channels: Sequence[Channel]) -> list[Observation]:
        learnt.append(len(channels))
        return [Observation(1.0, "11", "1", won=True)]

    def locked(*args: object, **kwargs: object) -> list[object]:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(store, "ledger", locked)
    engine = Engine(
        settings, store, Node(star_node()).fetch, ScriptedRunner(), EventBus(), history=history
    )
    report = await engine.cycle(dry_run=True)
    assert learnt == [7]  # LNDg's history is still learnt
    assert report.planned[0].key == ("1", "11")
    assert "route prices not read from the ledger, starting without them" in caplog.text
