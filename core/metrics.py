"""What `/metrics` and `/healthz` say, read at scrape time from the running daemon.

One custom collector reads the figures when Prometheus asks, from the same places `/status`
and the daily report read them (the control surface, the state store, `daily-report.csv`),
so nothing is counted twice or drifts from the ledger, and the figures survive a restart.
It runs on the event loop (see core.metrics_server), the one thread that uses the state
store's SQLite connection.

Labels stay few: `tool` (3 values) and `outcome` (the closed `Outcome` set); never a channel.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from core.control import Control
from core.health import check_health
from core.models import Outcome
from core.report_csv import CSV_NAME, Row, read_days

log = logging.getLogger("core.metrics")

PREFIX = "regolancer_orchestrator"
# A run lasts from seconds (no route) to RUN_TIMEOUT_SECONDS (1800 by default).
DURATION_BUCKETS: tuple[float, ...] = (1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600)
# Runs that never started regolancer: their duration says nothing of a run.
NOT_STARTED = (Outcome.DRY_RUN, Outcome.BINARY_MISSING)
# The daily report's shares (core.report_figures) by their CSV column prefix.
TOOLS = {"orchestrator": "daemon", "lndg": "lndg", "other": "other"}
# A cycle may be this late (after its SLEEP_SECONDS, or its round budget) and still be fine.
CYCLE_GRACE_SECONDS = 120.0


@dataclass(frozen=True, slots=True)
class Reported:
    """One tool's share summed over the days of daily-report.csv."""

    rebalances: int = 0
    sats: int = 0
    fee_sat: float = 0.0


def _number(text: str) -> float:
    try:
        return float(text) if text else 0.0
    except ValueError:
        return 0.0


def reported_totals(rows: Iterable[Row]) -> dict[str, Reported]:
    """Each tool's rebalances, sats and fees over the reported days (empty cells count 0)."""
    totals = {tool: Reported() for tool in TOOLS}
    for row in rows:
        for tool, prefix in TOOLS.items():
            was = totals[tool]
            totals[tool] = Reported(
                was.rebalances + int(_number(row[f"{prefix}_rebalances"])),
                was.sats + int(_number(row[f"{prefix}_sats"])),
                was.fee_sat + _number(row[f"{prefix}_fee_sat"]),
            )
    return totals


class ReportFile:
    """daily-report.csv's totals, parsed again only when the file changed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int] | None = None
        self._totals = reported_totals(())

    def totals(self) -> dict[str, Reported]:
        try:
            info = self.path.stat()
        except FileNotFoundError:
            self._seen, self._totals = None, reported_totals(())
            return self._totals
        stamp = (info.st_mtime_ns, info.st_size)
        if stamp != self._seen:  # read_days warns of bad rows: once per change, not per scrape
            self._totals = reported_totals(read_days(self.path))
            self._seen = stamp
        return self._totals


def cycle_verdict(
    now: float,
    last_moment: float,
    running_since: float | None,
    sleep_seconds: float,
    round_budget: float,
) -> tuple[bool, str]:
    """Is the cycle loop on time? (ok, a few words).

    `last_moment`: when the last cycle ended (the start of the daemon before the first).
    A running cycle may last its round budget; between cycles the loop sleeps SLEEP_SECONDS.
    Either may run CYCLE_GRACE_SECONDS late (a slow LNDg read) before it counts as stuck.
    """
    if running_since is not None:
        age = now - running_since
        late = age > round_budget + CYCLE_GRACE_SECONDS
        return not late, f"cycle running for {age:.0f}s"
    age = now - last_moment
    late = age > sleep_seconds + CYCLE_GRACE_SECONDS
    return not late, (
        f"no cycle for {age:.0f}s (expected every {sleep_seconds:.0f}s)"
        if late
        else f"last cycle ended {age:.0f}s ago"
    )


class DaemonCollector(Collector):
    """The daemon's figures, read at each scrape (on the event loop)."""

    def __init__(
        self, control: Control, started_at: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.control = control
        self.started_at = started_at
        self.clock = clock
        engine = control.engine
        self.store = engine.store
        self.report = ReportFile(engine.settings.data_dir / CSV_NAME)

    def last_moment(self) -> float:
        """When the last cycle ended, or when the daemon started before the first."""
        last = self.control.engine.status.last_cycle
        return last[1] if last is not None else self.started_at

    def health(self) -> tuple[bool, str]:
        """`health`'s rule (heartbeat and standing alerts), and the cycle loop on time."""
        engine = self.control.engine
        beating, line = check_health(self.store.path, self.clock())
        running = engine.status.last_cycle_started if engine.cycle_running else None
        on_time, cycle = cycle_verdict(
            self.clock(),
            self.last_moment(),
            running,
            engine.settings.sleep_seconds,
            engine.pacing.round_budget,
        )
        if beating and not on_time:
            return False, f"unhealthy: {cycle}"
        return beating and on_time, f"{line}; {cycle}"

    def collect(self) -> Iterable[Metric]:
        yield from self._ledger()
        yield from self._reported(self.report.totals())
        yield from self._runs()
        yield from self._now()

    def _ledger(self) -> Iterable[Metric]:
        totals = self.store.totals()
        yield _counter("rebalances", "Rebalances this daemon made (ledger rows)", totals.count)
        yield _counter("rebalanced_sats", "Sats this daemon rebalanced (ledger)", totals.amount_sat)
        yield _counter(
            "rebalance_fees_sats", "Fees this daemon paid for rebalancing (ledger)", totals.fee_sat
        )

    def _reported(self, totals: Mapping[str, Reported]) -> Iterable[Metric]:
        what = "over the days in daily-report.csv, by tool (orchestrator, lndg, other)"
        families = (
            ("reported_rebalances", f"Node rebalances {what}", lambda r: r.rebalances),
            ("reported_rebalanced_sats", f"Sats rebalanced {what}", lambda r: r.sats),
            ("reported_rebalance_fees_sats", f"Rebalancing fees {what}", lambda r: r.fee_sat),
        )
        figure: Callable[[Reported], float]
        for name, text, figure in families:
            family = CounterMetricFamily(f"{PREFIX}_{name}", text, labels=["tool"])
            for tool, reported in totals.items():
                family.add_metric([tool], figure(reported))
            yield family

    def _runs(self) -> Iterable[Metric]:
        counts = self.store.outcome_counts()
        runs = CounterMetricFamily(
            f"{PREFIX}_runs", "regolancer runs by outcome", labels=["outcome"]
        )
        for outcome in Outcome:
            runs.add_metric([outcome.value], counts.get(outcome, 0))
        yield runs
        cumulative, count, seconds = self.store.run_durations(
            DURATION_BUCKETS, leave_out=NOT_STARTED
        )
        buckets = [(_bound(b), float(n)) for b, n in zip(DURATION_BUCKETS, cumulative, strict=True)]
        buckets.append(("+Inf", float(count)))
        yield HistogramMetricFamily(
            f"{PREFIX}_run_duration_seconds",
            "How long regolancer runs took (dry runs and a missing binary left out)",
            buckets=buckets,
            sum_value=seconds,
        )

    def _now(self) -> Iterable[Metric]:
        status = self.control.status()
        now = status.now
        yield _gauge("paused", "1 while paused (no new runs)", status.mode.paused(now))
        yield _gauge(
            "dry_run", "1 while in dry run (runs planned, never started)", status.mode.dry_run
        )
        yield _gauge("workers_busy", "regolancer runs going now", len(status.active))
        yield _gauge("workers_max", "MAX_WORKERS", self.control.engine.settings.max_workers)
        yield _gauge("cycle_running", "1 while a cycle runs", status.cycle_running)
        yield _gauge(
            "outbox_pending_messages",
            "Feed messages not delivered yet (chat or log)",
            self.store.pending_count(),
        )
        if status.lndg_ok is not None:  # unknown until the first read
            yield _gauge("lndg_up", "1 if the last LNDg read worked", status.lndg_ok)
        if status.last_cycle is not None:
            yield _gauge(
                "last_cycle_end_timestamp_seconds",
                "When the last cycle ended (Unix time)",
                status.last_cycle[1],
            )
        yield _gauge(
            "seconds_since_last_cycle",
            "Seconds since the last cycle ended (since start before the first)",
            max(0.0, now - self.last_moment()),
        )
        yield _gauge(
            "daily_fee_budget_sats",
            "DAILY_FEE_BUDGET_SATS (0: no budget)",
            status.daily_fee_budget_sat,
        )
        yield _gauge(
            "daily_fees_spent_sats",
            "Fees this daemon paid today (TIMEZONE), what the daily budget counts",
            status.today.fee_sat,
        )


def _bound(bound: float) -> str:
    return str(float(bound))


def _counter(name: str, text: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"{PREFIX}_{name}", text, value=value)


def _gauge(name: str, text: str, value: float | bool) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", text, value=float(value))


def daemon_registry(collector: Collector, *, process: bool = True) -> CollectorRegistry:
    """A registry of its own (never the global one): the daemon's figures, and the process's."""
    registry = CollectorRegistry()
    registry.register(collector)
    if process:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
    return registry


def metric_names(registry: CollectorRegistry) -> Sequence[str]:
    """Every sample name the registry serves now (`_total`, `_bucket` ... included)."""
    return sorted({sample.name for family in registry.collect() for sample in family.samples})
