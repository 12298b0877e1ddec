"""A compressed in-process soak: thousands of cycles and runs through the real engine.

The real engine, planner, state store and stat CSV tail; a runner that answers at once with a
random outcome (a success appends a real stat line) and an LNDg that fails now and then. A
virtual clock lets backoffs expire between cycles. Afterwards nothing may have grown beyond
a stated bound: Python heap, file descriptors, threads, asyncio tasks.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import threading
import tracemalloc
from pathlib import Path

import pytest

from core.engine import Engine, Pacing
from core.events import EventBus
from core.models import Channel, Outcome, Pair, RunResult
from core.settings import load_settings
from core.state import StateStore
from tests.test_pairing import channel

pytestmark = pytest.mark.soak  # in-process, but thousands of cycles

CYCLES = 2000
WARM_UP = 200
HEAP_GROWTH_BYTES = 2 * 1024 * 1024
OUTCOMES = [Outcome.SUCCESS] * 5 + [
    Outcome.NO_ROUTE,
    Outcome.NO_ROUTE,
    Outcome.ROUTE_TIMEOUT,
    Outcome.REBALANCE_TIMEOUT,
    Outcome.CRASHED,
    Outcome.LND_ERROR,
]


class RandomRunner:
    def __init__(self, stat: Path, rng: random.Random, clock: list[float]) -> None:
        self.stat, self.rng, self.clock = stat, rng, clock
        self.runs = 0
        self.lines = 0

    async def run(self, pair: Pair, worker: int) -> RunResult:
        self.runs += 1
        await asyncio.sleep(0)
        outcome = self.rng.choice(OUTCOMES)
        if outcome is Outcome.SUCCESS:
            with self.stat.open("a") as f:
                f.write(f"{int(self.clock[0])},{pair.source.chan_id},{pair.target.chan_id},")
                f.write(
                    f"{self.rng.randint(10_000, 90_000) * 1000},{self.rng.randint(0, 50_000)}\n"
                )
            self.lines += 1
        code = 0 if outcome is Outcome.SUCCESS else 1
        now = self.clock[0]
        return RunResult(pair.source.chan_id, pair.target.chan_id, now, now, code, outcome, "")

    async def stop_all(self) -> None:
        return None


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_thousands_of_cycles_grow_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # pytest keeps every captured log record in memory: that would be the only growth
    caplog.set_level(logging.CRITICAL + 1, logger="core")
    rng = random.Random(7)
    clock = [1_800_000_000.0]
    channels: list[Channel] = [channel(i, local_balance=900_000) for i in range(1, 9)]
    channels += [channel(100 + i, local_balance=20_000, auto_rebalance=True) for i in range(1, 9)]

    async def fetch() -> list[Channel]:
        if rng.random() < 0.05:
            raise ConnectionError("LNDg flapped")
        return channels

    settings = load_settings(
        None, data_dir=tmp_path, max_workers=4, failure_cooldown_max_seconds=1200
    )
    store = StateStore(tmp_path / "state.sqlite3")
    runner = RandomRunner(settings.stat_path, rng, clock)
    pacing = Pacing(refresh_seconds=0, max_snapshot_age=0, replan_seconds=0.01, round_budget=60)
    engine = Engine(
        settings, store, fetch, runner, EventBus(), clock=lambda: clock[0], pacing=pacing
    )

    async def cycles(count: int) -> None:
        for _ in range(count):
            await engine.cycle()
            engine.poll_ledger()
            clock[0] += 600

    tracemalloc.start()
    await cycles(WARM_UP)
    before = (
        tracemalloc.get_traced_memory()[0],
        _fds(),
        threading.active_count(),
        len(asyncio.all_tasks()),
    )
    await cycles(CYCLES - WARM_UP)
    after = (
        tracemalloc.get_traced_memory()[0],
        _fds(),
        threading.active_count(),
        len(asyncio.all_tasks()),
    )
    tracemalloc.stop()
    print(
        f"\nin-process soak: {CYCLES} cycles, {runner.runs} runs, {runner.lines} stat lines; "
        f"heap {before[0]} -> {after[0]} B, fds {before[1]} -> {after[1]}, "
        f"threads {before[2]} -> {after[2]}, tasks {before[3]} -> {after[3]}"
    )
    assert runner.runs >= CYCLES  # thousands of runs, not a handful
    assert len(store.ledger()) == runner.lines  # every stat line became one ledger row
    assert after[0] - before[0] <= HEAP_GROWTH_BYTES
    assert after[1] <= before[1]
    assert after[2] <= before[2]
    assert after[3] <= before[3]
    store.close()
