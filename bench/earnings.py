"""What an operator buys: net earnings of the daemon against each baseline, from one run.

On each seed's node, in one process: the daemon as shipped (its engine, planner and
SpendGuard, FEE_POLICY=lndg) cold and with LNDg's week of history, the daemon with
EARNINGS_BUDGET_RATIO=1, and the three baselines (`bench.baselines`). Every side plays the
same node, demand and route model (`bench.simulate`, `sim.model`, `sim.routing`). Figures at
24 h and at the end of the horizon; means over the seeds with their standard deviation.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from bench.baselines import run_early, run_lndg, run_original
from bench.simulate import SideResult, SimConfig, _virtual, run_daemon

BASELINES = ("original", "lndg", "early")
LABELS = {
    "daemon": "daemon",
    "daemon+history": "daemon with history",
    "budget": "daemon, EARNINGS_BUDGET_RATIO=1",
    "original": "original (current)",
    "lndg": "LNDg AR",
    "early": "original (early)",
}


def run_seed(config: SimConfig) -> dict[str, SideResult]:
    """Every side on the node of `config.seed` (cold: no LNDg history, except daemon+history)."""
    cold = replace(config, history_attempts=0, forward_history_days=0.0)
    warm = replace(
        config, history_attempts=max(config.history_attempts, 10), forward_history_days=7.0
    )
    daemons: dict[str, SimConfig] = {
        "daemon": cold,
        "daemon+history": warm,
        "budget": replace(cold, earnings_budget_ratio=1.0),
    }
    sides: dict[str, SideResult] = {}
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        for name, variant in daemons.items():
            with tempfile.TemporaryDirectory(prefix="bench-earn-") as tmp:
                sides[name] = _virtual(run_daemon(variant, Path(tmp)))
        for name, run in (("original", run_original), ("lndg", run_lndg), ("early", run_early)):
            sides[name] = _virtual(run(cold))
    finally:
        logging.disable(previous)
    return sides


@dataclass
class Figures:
    """Sides by name, one result per seed each."""

    config: SimConfig
    seeds: tuple[int, ...]
    sides: dict[str, list[SideResult]]

    def values(self, side: str, figure: Callable[[SideResult], float]) -> list[float]:
        return [figure(s) for s in self.sides[side]]

    def mean(self, side: str, figure: Callable[[SideResult], float]) -> float:
        return statistics.fmean(self.values(side, figure))

    def spread(self, side: str, figure: Callable[[SideResult], float]) -> float:
        values = self.values(side, figure)
        return statistics.stdev(values) if len(values) > 1 else 0.0


def measure(config: SimConfig, seeds: Sequence[int], jobs: int = 1) -> Figures:
    """Every side on each seed's node; `jobs` > 1 runs seeds in that many processes."""
    return next(measure_all([(config, seeds)], jobs))


def measure_all(
    plan: Sequence[tuple[SimConfig, Sequence[int]]], jobs: int = 1
) -> Iterator[Figures]:
    """`measure` of each (config, seeds) of `plan`, in order, each as soon as it is complete.

    With `jobs` > 1 every seed of the whole plan goes to one pool of that many processes,
    the biggest nodes first: no process waits for the last seed of a row while seeds of the
    next row are left, and the longest seeds do not come last.
    """
    rows = [[replace(config, seed=seed) for seed in seeds] for config, seeds in plan]
    if jobs <= 1 or sum(map(len, rows)) <= 1:
        for (config, seeds), configs in zip(plan, rows, strict=True):
            yield _figures(config, seeds, [run_seed(c) for c in configs])
        return
    pool = ProcessPoolExecutor(min(jobs, sum(map(len, rows))))
    try:
        biggest_first = sorted(
            (c for row in rows for c in row), key=lambda c: (-c.channels, -c.horizon_hours)
        )
        futures = {id(c): pool.submit(run_seed, c) for c in biggest_first}
        for (config, seeds), configs in zip(plan, rows, strict=True):
            yield _figures(config, seeds, [futures[id(c)].result() for c in configs])
    finally:
        pool.shutdown(cancel_futures=True)  # a failed seed or Ctrl-C: start no more


def _figures(
    config: SimConfig, seeds: Sequence[int], results: Sequence[dict[str, SideResult]]
) -> Figures:
    found: dict[str, list[SideResult]] = {}
    for sides in results:
        for name, side in sides.items():
            found.setdefault(name, []).append(side)
    return Figures(config, tuple(seeds), found)


def _band(side: SideResult) -> float:
    """Hours until every first target was within its band (inf: not within the horizon)."""
    return side.band_reached / 3600 if side.band_reached is not None else float("inf")


def figure_table(hours: float) -> dict[str, tuple[str, Callable[[SideResult], float]]]:
    """The figures at `hours` from the start, by name: (unit, how to read it)."""
    t = hours * 3600
    return {
        "net earnings": ("sat", lambda s: s.net_until(t)),
        "routing revenue": ("sat", lambda s: s.revenue_until(t)),
        "revenue lost to depleted channels": ("sat", lambda s: s.lost_until(t)),
        "rebalancing fees paid": ("sat", lambda s: s.fees_until(t)),
        "sats moved into deficits": ("sat", lambda s: s.needed_until(t)),
        "worker-hours on runs that moved nothing": ("h", lambda s: s.futile_hours_until(t)),
    }


def _fmt(value: float, unit: str) -> str:
    if unit == "h":
        return f"{value:,.1f} h"
    return f"{value:,.0f}"


def lines(figures: Figures, head: str, hours: float) -> list[str]:
    """One line per figure: every side's mean ± spread, and the daemon's ratio to each."""
    out = []
    for name, (unit, read) in figure_table(hours).items():
        parts = []
        for side in figures.sides:
            mean, spread = figures.mean(side, read), figures.spread(side, read)
            parts.append(f"{LABELS[side]} {_fmt(mean, unit)} ± {_fmt(spread, unit)}")
        out.append(f"{head}, {hours:g} h: {name} ({unit}, mean ± sd): " + "; ".join(parts))
    return out


def band_line(figures: Figures, head: str) -> str:
    """Hours until every first target was within its band: median over the nodes."""
    parts = []
    for side, results in figures.sides.items():
        reached = sorted(_band(s) for s in results)
        done = sum(h != float("inf") for h in reached)
        median = statistics.median(reached)
        shown = f"{median:.1f} h" if median != float("inf") else "-"
        parts.append(f"{LABELS[side]} {shown} ({done}/{len(results)} nodes)")
    horizon = figures.config.horizon_hours
    return (
        f"{head}: time until every target was within its band (median, within {horizon:g} h): "
        + "; ".join(parts)
    )


def ratio(figures: Figures, hours: float, side: str = "daemon") -> tuple[float, str, float]:
    """The daemon's mean net earnings over the best baseline's: (ratio, best, best's net)."""
    read = figure_table(hours)["net earnings"][1]
    best = max(BASELINES, key=lambda b: figures.mean(b, read))
    ours, theirs = figures.mean(side, read), figures.mean(best, read)
    if theirs > 0:
        return ours / theirs, best, theirs
    # Ratios of negative or zero earnings mean nothing: above when ahead, else 0.
    return (float("inf") if ours > theirs else 0.0), best, theirs


def best_lost(figures: Figures, hours: float) -> tuple[str, float]:
    read = figure_table(hours)["revenue lost to depleted channels"][1]
    best = min(BASELINES, key=lambda b: figures.mean(b, read))
    return best, figures.mean(best, read)
