"""Planning time at 20, 150, 500 and 1,500 channels, against the original's cross product.

Two planning steps of the daemon are timed on an invented node (`sim.nodes`), with a
planner that has history (backoffs, records, a round under way, runs going):
- a cycle's start: the round plan (one pair per target) and the pair count /status shows;
- a worker freeing up: `next_pairs` for the free workers.
The original built every pair of the cross product each cycle; its time is shown alongside.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from core.models import Channel, Outcome, RunResult
from core.pairing import build_pairs, count_pairs
from core.planner import Planner
from sim.nodes import node_channels

SIZES = (20, 150, 500, 1500)
WORKERS = 4


@dataclass(frozen=True)
class PlanningFigures:
    """Milliseconds per planning step at one node size (median and worst of the repeats)."""

    channels: int
    targets: int
    sources: int
    cycle_start_ms: float
    cycle_start_max_ms: float
    next_pairs_ms: float
    next_pairs_max_ms: float
    cross_product_ms: float
    cross_product_pairs: int


def _experienced_planner(channels: Sequence[Channel], now: float) -> Planner:
    """A planner with a day behind it: failures and successes spread over the plan."""
    planner = Planner()
    rng = random.Random(5)
    plan = planner.plan(channels, now - 3600)
    planner.begin_round(plan)
    for pair in plan:
        planner.started(pair, now - 3600)
        outcome = Outcome.SUCCESS if rng.random() < 0.4 else Outcome.NO_ROUTE
        result = RunResult(pair.source.chan_id, pair.target.chan_id, 0, 1, 0, outcome, "")
        planner.finished(pair, result, now - 1800)
    planner.begin_round(planner.plan(channels, now))
    return planner


def _timed(step: Callable[[], object], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        times.append((time.perf_counter() - started) * 1000)
    return times


def measure(size: int, repeats: int = 20) -> PlanningFigures:
    """Time the planner's steps on a node of `size` channels."""
    channels = node_channels(size, seed=size)
    now = 1_767_225_600.0
    planner = _experienced_planner(channels, now)
    first = planner.next_pairs(channels, set(), WORKERS, now)
    busy: set[str] = set()
    for pair in first[:-1]:  # runs going; one worker just came free
        planner.started(pair, now)
        busy |= pair.channels

    def cycle_start() -> None:
        planner.plan(channels, now)
        count_pairs(channels)

    cycle = _timed(cycle_start, repeats)
    step = _timed(lambda: planner.next_pairs(channels, busy, 1, now), repeats)
    cross = _timed(lambda: build_pairs(channels), max(1, repeats // 10))
    sources, targets = planner.candidates(channels, now)
    return PlanningFigures(
        channels=size,
        targets=len(targets),
        sources=len(sources),
        cycle_start_ms=statistics.median(cycle),
        cycle_start_max_ms=max(cycle),
        next_pairs_ms=statistics.median(step),
        next_pairs_max_ms=max(step),
        cross_product_ms=statistics.median(cross),
        cross_product_pairs=count_pairs(channels),
    )


def main() -> int:
    for size in SIZES:
        f = measure(size)
        print(
            f"{size:5} channels ({f.targets} targets, {f.sources} sources): "
            f"cycle start {f.cycle_start_ms:.2f} ms (max {f.cycle_start_max_ms:.2f}), "
            f"next pairs {f.next_pairs_ms:.2f} ms (max {f.next_pairs_max_ms:.2f}); "
            f"original cross product {f.cross_product_pairs:,} pairs in "
            f"{f.cross_product_ms:.0f} ms"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
