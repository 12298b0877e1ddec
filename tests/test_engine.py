"""The engine's cycle with an injected runner and channel source (no processes, no HTTP)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from core.engine import Engine, Pacing
from core.events import (
    AlertCleared,
    AlertRaised,
    CycleFinished,
    Event,
    EventBus,
    RebalancesRecorded,
)
from core.models import Channel, Outcome, Pair, RunResult
from core.settings import Settings, load_settings
from core.state import StateStore
from tests.test_pairing import channel


class ScriptedRunner:
    """Records overlap; each pair's outcome comes from `outcomes` (default success)."""

    def __init__(self, delay: float = 0.02) -> None:
        self.delay = delay
        self.delays: dict[tuple[str, str], float] = {}
        self.outcomes: dict[tuple[str, str], Outcome] = {}
        self.ended: list[tuple[str, str]] = []
        self.on_success: list[Any] = []
        self.started: list[tuple[str, str]] = []
        self.active: set[tuple[str, str]] = set()
        self.max_active = 0
        self.overlaps: list[tuple[tuple[str, str], tuple[str, str]]] = []
        self.stopped = asyncio.Event()

    async def run(self, pair: Pair, worker: int) -> RunResult:
        for other in self.active:
            if set(other) & set(pair.key):
                self.overlaps.append((other, pair.key))
        self.active.add(pair.key)
        self.started.append(pair.key)
        self.max_active = max(self.max_active, len(self.active))
        outcome = self.outcomes.get(pair.key, Outcome.SUCCESS)
        try:
            if outcome is Outcome.STOPPED:  # hang until stop_all
                await self.stopped.wait()
            else:
                await asyncio.sleep(self.delays.get(pair.key, self.delay))
        finally:
            self.active.discard(pair.key)
            self.ended.append(pair.key)
        if outcome is Outcome.SUCCESS:
            for callback in self.on_success:
                callback(pair)
        return RunResult(pair.source.chan_id, pair.target.chan_id, 1.0, 2.0, 0, outcome, "")

    async def stop_all(self) -> None:
        self.stopped.set()


class Node:
    def __init__(self, channels: list[Channel]) -> None:
        self.channels = channels
        self.error: Exception | None = None
        self.calls = 0

    async def fetch(self) -> list[Channel]:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return list(self.channels)


def make_engine(
    tmp_path: Path,
    node: Node,
    runner: ScriptedRunner,
    pacing: Pacing | None = None,
    **settings: Any,
) -> tuple[Engine, list[Event]]:
    config: Settings = load_settings(None, data_dir=tmp_path, **settings)
    events: list[Event] = []
    bus = EventBus()
    bus.subscribe(events.append)
    store = StateStore(tmp_path / "state.sqlite3")
    return Engine(config, store, node.fetch, runner, bus, pacing=pacing), events


def star_node() -> list[Channel]:
    """3 sources (ids 1-3) and 4 targets (ids 11-14)."""
    sources = [channel(i, local_balance=900_000 + i) for i in (1, 2, 3)]
    targets = [channel(10 + i, local_balance=10_000 * i, auto_rebalance=True) for i in (1, 2, 3, 4)]
    return sources + targets


async def test_cycle_runs_one_pair_per_target_without_sharing_channels(tmp_path: Path) -> None:
    runner = ScriptedRunner(delay=0.05)
    engine, events = make_engine(tmp_path, Node(star_node()), runner, max_workers=4)
    report = await engine.cycle()
    # one run per target, most depleted first; sources by surplus, unused ones preferred
    assert runner.started == [("3", "11"), ("2", "12"), ("1", "13"), ("3", "14")]
    assert runner.overlaps == []
    assert runner.max_active == 3  # ("3", "14") waits for ("3", "11")
    assert [r.outcome for r in report.results] == [Outcome.SUCCESS] * 4
    assert len(engine.store.runs()) == 4
    assert isinstance(events[-1], CycleFinished)


async def test_workers_bounded_and_disjoint_pairs_run_together(tmp_path: Path) -> None:
    sources = [channel(i, local_balance=900_000) for i in range(1, 7)]
    targets = [channel(100 + i, local_balance=10_000, auto_rebalance=True) for i in range(1, 7)]
    runner = ScriptedRunner(delay=0.05)
    engine, _ = make_engine(tmp_path, Node(sources + targets), runner, max_workers=3)
    await engine.cycle()
    assert runner.overlaps == []
    assert runner.max_active == 3
    assert len(runner.started) == 6
    assert len({s for s, _ in runner.started}) == 6


async def test_failed_pair_backs_off_and_the_next_source_is_tried_at_once(
    tmp_path: Path,
) -> None:
    runner = ScriptedRunner()
    runner.outcomes[("3", "11")] = Outcome.NO_ROUTE
    node = Node([c for c in star_node() if c.chan_id in {"1", "2", "3", "11"}])
    engine, _ = make_engine(tmp_path, node, runner, failure_cooldown_seconds=600)
    first = await engine.cycle()
    # same cycle: the next source right after the failure, then the target waits for LNDg
    assert runner.started == [("3", "11"), ("2", "11")]
    assert [r.outcome for r in first.results] == [Outcome.NO_ROUTE, Outcome.SUCCESS]
    second = await engine.cycle()
    assert [p.key for p in second.planned] == [("2", "11")]  # (3, 11) still backs off
    assert runner.started[2:] == [("2", "11")]


async def test_dry_run_starts_nothing(tmp_path: Path) -> None:
    runner = ScriptedRunner()
    engine, _ = make_engine(tmp_path, Node(star_node()), runner)
    engine.store.dry_run = True
    report = await engine.cycle()
    assert runner.started == []
    assert [r.outcome for r in report.results] == [Outcome.DRY_RUN] * 4
    assert engine.store.runs() == []


async def test_dry_run_env_locks_it_on(tmp_path: Path) -> None:
    runner = ScriptedRunner()
    engine, _ = make_engine(tmp_path, Node(star_node()), runner, dry_run=True)
    engine.store.dry_run = False
    assert engine.dry_run
    await engine.cycle()
    assert runner.started == []


async def test_paused_cycle_is_skipped(tmp_path: Path) -> None:
    runner = ScriptedRunner()
    node = Node(star_node())
    engine, _ = make_engine(tmp_path, node, runner)
    engine.store.pause()
    report = await engine.cycle()
    assert report.skipped == "paused"
    assert node.calls == 0
    assert runner.started == []


async def test_lndg_outage_alerts_once_and_recovers(tmp_path: Path) -> None:
    node = Node(star_node())
    node.error = RuntimeError("unreachable at http://127.0.0.1:1")
    engine, events = make_engine(tmp_path, node, ScriptedRunner())
    first = await engine.cycle()
    await engine.cycle()
    assert first.skipped == "unreachable at http://127.0.0.1:1"
    alerts = [e for e in events if isinstance(e, AlertRaised)]
    assert [a.key for a in alerts] == ["lndg"]
    node.error = None
    await engine.cycle()
    assert [e.key for e in events if isinstance(e, AlertCleared)] == ["lndg"]


async def test_setup_failures_alert_hold_the_cycle_and_recover(tmp_path: Path) -> None:
    runner = ScriptedRunner()
    runner.outcomes[("3", "11")] = Outcome.LND_ERROR
    node = Node([c for c in star_node() if c.chan_id in {"3", "11", "12"}])
    engine, events = make_engine(tmp_path, node, runner, max_workers=1)
    await engine.cycle()
    # LND is down for every pair: the cycle starts nothing more after the first failure
    assert runner.started == [("3", "11")]
    assert [e.key for e in events if isinstance(e, AlertRaised)] == ["regolancer"]
    del runner.outcomes[("3", "11")]  # LND is back; the pair was not blamed (no backoff)
    await engine.cycle()
    assert runner.started[1] == ("3", "11")
    assert [e.key for e in events if isinstance(e, AlertCleared)] == ["regolancer"]


async def test_exclusions_seeded_from_environment_once(tmp_path: Path) -> None:
    runner = ScriptedRunner()
    engine, _ = make_engine(
        tmp_path, Node(star_node()), runner, exclude_channels=["peer3", "0x0x11", "unknown"]
    )
    await engine.cycle()
    assert engine.store.excluded_ids() == {"3", "11"}
    assert ("3", "12") not in runner.started
    assert all(t != "11" for _, t in runner.started)
    engine.store.include("3")
    await engine.cycle()
    assert engine.store.excluded_ids() == {"11"}  # /include sticks; seeding is once


async def test_stop_interrupts_runs_and_starts_nothing_more(tmp_path: Path) -> None:
    runner = ScriptedRunner()
    runner.outcomes[("3", "11")] = Outcome.STOPPED  # hangs until stop_all
    engine, _ = make_engine(tmp_path, Node(star_node()), runner, max_workers=1)
    cycle = asyncio.create_task(engine.cycle())
    while not runner.active:
        await asyncio.sleep(0.01)
    await engine.stop()
    report = await asyncio.wait_for(cycle, 2)
    assert runner.started == [("3", "11")]  # the three other planned pairs never started
    assert [r.outcome for r in report.results] == [Outcome.STOPPED]
    assert (await engine.cycle()).skipped == "stopping"


async def test_poll_ledger_records_each_line_once_with_aliases(tmp_path: Path) -> None:
    runner = ScriptedRunner()
    engine, events = make_engine(tmp_path, Node(star_node()), runner)
    await engine.channels()  # learn aliases
    stat = engine.settings.stat_path
    stat.write_text(
        "timestamp,from_channel,to_channel,amount_msat,fees_msat\n1764021421,3,11,50000000,12500\n"
    )
    assert [r.from_alias for r in engine.poll_ledger()] == ["peer3"]
    assert engine.poll_ledger() == []
    with stat.open("a") as f:
        f.write("garbage\n1764021433,3,12,100000000,25000\n1764021499,3,")
    added = engine.poll_ledger()
    assert [(r.line.to_channel, r.to_alias, r.line.ppm) for r in added] == [("12", "peer12", 250)]
    assert len(engine.store.ledger()) == 2
    recorded = [e for e in events if isinstance(e, RebalancesRecorded)]
    assert [len(e.rebalances) for e in recorded] == [1, 1]


async def test_every_ledger_row_is_queued_in_the_feed(tmp_path: Path) -> None:
    engine, _ = make_engine(tmp_path, Node([]), ScriptedRunner())
    engine.settings.stat_path.write_text("1764021421,3,11,50000000,12500\n")
    (added,) = engine.poll_ledger()
    assert [(m.kind, m.payload) for m in engine.store.pending_messages()] == [
        ("rebalance", {"ledger_id": added.id})
    ]


def moving_node(channels: list[Channel], runner: ScriptedRunner, amount: int = 50_000) -> Node:
    """A node whose balances follow the runner's successes, as LNDg would show them."""
    node = Node(channels)

    def move(pair: Pair) -> None:
        for i, c in enumerate(node.channels):
            if c.chan_id == pair.source.chan_id:
                node.channels[i] = c.model_copy(update={"local_balance": c.local_balance - amount})
            elif c.chan_id == pair.target.chan_id:
                node.channels[i] = c.model_copy(update={"local_balance": c.local_balance + amount})

    runner.on_success.append(move)
    return node


async def test_a_free_worker_starts_the_next_pair_without_waiting_for_the_slowest(
    tmp_path: Path,
) -> None:
    runner = ScriptedRunner(delay=0.02)
    runner.delays[("3", "11")] = 0.5  # one slow run must not hold the others back
    engine, _ = make_engine(tmp_path, Node(star_node()), runner, max_workers=2)
    report = await engine.cycle()
    assert runner.started == [("3", "11"), ("2", "12"), ("1", "13"), ("3", "14")]
    # 12 and 13 ran one after the other on the second worker while 11 was still running
    assert runner.ended[:2] == [("2", "12"), ("1", "13")]
    assert runner.overlaps == []
    assert len(report.results) == 4


async def test_a_target_is_served_again_once_lndg_shows_the_move(tmp_path: Path) -> None:
    runner = ScriptedRunner()
    sources = [channel(1, local_balance=1_000_000, remote_balance=0)]
    target = channel(11, local_balance=0, auto_rebalance=True)  # needs 200,000 to leave
    node = moving_node([*sources, target], runner, amount=50_000)
    pacing = Pacing(refresh_seconds=0)
    engine, _ = make_engine(tmp_path, node, runner, pacing=pacing, max_workers=2)
    report = await engine.cycle()
    # 0 -> 50k -> 100k -> 150k -> 200k (20%, no longer a target): four runs, one cycle
    assert runner.started == [("1", "11")] * 4
    assert len(report.results) == 4
    assert engine.next_cycle_delay() == engine.settings.sleep_seconds


async def test_pausing_mid_cycle_starts_nothing_new(tmp_path: Path) -> None:
    runner = ScriptedRunner(delay=0.1)
    engine, _ = make_engine(tmp_path, Node(star_node()), runner, max_workers=1)
    cycle = asyncio.create_task(engine.cycle())
    while not runner.active:
        await asyncio.sleep(0.01)
    engine.store.pause()
    report = await asyncio.wait_for(cycle, 2)
    assert runner.started == [("3", "11")]
    assert [r.outcome for r in report.results] == [Outcome.SUCCESS]


async def test_a_cycle_cut_by_its_budget_carries_runs_over(tmp_path: Path) -> None:
    runner = ScriptedRunner(delay=0.02)
    runner.delays[("3", "11")] = 0.45
    pacing = Pacing(round_budget=0.3)
    engine, _ = make_engine(tmp_path, Node(star_node()), runner, pacing, max_workers=3)
    first = await engine.cycle()
    assert ("3", "11") in runner.active  # still running, not waited for
    assert engine.next_cycle_delay() == 0
    assert {(r.source, r.target) for r in first.results} == {("2", "12"), ("1", "13")}
    second = await engine.cycle()
    # the new cycle adopted the run (its result is the new cycle's) and served 14 too
    assert ("3", "11") in {(r.source, r.target) for r in second.results}
    assert "14" in {target for _, target in runner.started}
    assert runner.overlaps == []
    assert len(engine.store.runs()) == len(runner.started)


async def test_busy_htlc_channels_are_skipped(tmp_path: Path) -> None:
    runner = ScriptedRunner()
    channels = star_node()
    channels[2] = channels[2].model_copy(update={"htlc_count": 30})  # source 3
    engine, _ = make_engine(tmp_path, Node(channels), runner, max_pending_htlcs=10)
    await engine.cycle()
    assert all("3" not in key for key in runner.started)


async def test_dry_run_switched_on_mid_cycle_starts_nothing_new(tmp_path: Path) -> None:
    runner = ScriptedRunner(delay=0.1)
    engine, _ = make_engine(tmp_path, Node(star_node()), runner, max_workers=1)
    cycle = asyncio.create_task(engine.cycle())
    while not runner.active:
        await asyncio.sleep(0.01)
    engine.store.dry_run = True
    await asyncio.wait_for(cycle, 2)
    assert runner.started == [("3", "11")]


async def test_a_pair_that_fails_at_once_is_not_restarted_in_a_tight_loop(tmp_path: Path) -> None:
    channels = [channel(1, local_balance=900_000), channel(11, local_balance=10_000)]
    channels[1] = channels[1].model_copy(update={"auto_rebalance": True})
    runner = ScriptedRunner(delay=0.0)
    runner.outcomes[("1", "11")] = Outcome.NO_ROUTE  # regolancer gives up at once
    engine, _ = make_engine(tmp_path, Node(channels), runner, sleep_seconds=1)
    await engine.cycle()  # fails; nothing else to do now: the cycle ends
    assert runner.started == [("1", "11")]
    await engine.cycle()  # in backoff, and failed less than SLEEP_SECONDS ago: not retried
    assert len(runner.started) == 1
    await asyncio.sleep(1.05)
    await engine.cycle()  # the idle worker retries it, once
    assert runner.started == [("1", "11")] * 2
