"""What the engine and the runtime report to whoever listens: the feed, the log, metrics.

Plain values; core never knows how they are shown. The ones the operator hears of
(`Notice`) are also written to the durable feed (`core.feed`), which the face delivers.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from core.models import Pair, Rebalance, RunResult


@dataclass(frozen=True, slots=True)
class RebalancesRecorded:
    """New stat lines became ledger rows."""

    rebalances: tuple[Rebalance, ...]


@dataclass(frozen=True, slots=True)
class RunStarted:
    pair: Pair
    worker: int


@dataclass(frozen=True, slots=True)
class RunFinished:
    pair: Pair
    worker: int
    result: RunResult


@dataclass(frozen=True, slots=True)
class CycleFinished:
    started_at: float
    finished_at: float
    channels: int
    pairs: int
    planned: tuple[Pair, ...]
    results: tuple[RunResult, ...]
    dry_run: bool
    skipped: str | None = None


@dataclass(frozen=True, slots=True)
class AlertRaised:
    """A problem began (once per episode): `key` names the episode, e.g. `lndg`."""

    key: str
    message: str


@dataclass(frozen=True, slots=True)
class AlertCleared:
    key: str
    message: str


@dataclass(frozen=True, slots=True)
class Mode:
    """The switches the operator sets: dry run, and a pause (None: not paused)."""

    dry_run: bool
    paused_until: float | None = None
    # The demo: the node and regolancer are loopback stand-ins, so nothing is ever LIVE.
    simulated: bool = False

    def paused(self, now: float) -> bool:
        return self.paused_until is not None and self.paused_until > now

    def headline(self, now: float) -> str:
        """The mode in a word or two, as the log and the start-up message say it."""
        words = ["SIMULATION"] if self.simulated else []
        if self.dry_run:
            words.append("DRY RUN")
        elif not self.simulated:
            words.append("LIVE")
        if self.paused(now):
            words.append("PAUSED")
        return ", ".join(words)


@dataclass(frozen=True, slots=True)
class DaemonStarted:
    mode: Mode
    sleep_seconds: int
    workers: int


@dataclass(frozen=True, slots=True)
class DaemonStopping:
    mode: Mode


@dataclass(frozen=True, slots=True)
class ReportReady:
    """A due daily report: its summary (`report_figures.format_summary`) and chart PNG."""

    day: dt.date
    summary: str
    chart: bytes


@dataclass(frozen=True, slots=True)
class RebalanceLanded:
    """One rebalance as the operator hears of it: the payments of one run, folded.

    Rapid rebalancing pays several times on one route, one stat line each; they are one
    rebalance. A line no run of ours explains (another regolancer, a line from before this
    daemon) is a rebalance of one payment.
    """

    payments: tuple[Rebalance, ...]

    @property
    def first(self) -> Rebalance:
        return self.payments[0]

    @property
    def amount_sat(self) -> int:
        return sum(p.line.amount_msat for p in self.payments) // 1000

    @property
    def fee_sat(self) -> float:
        return sum(p.line.fees_msat for p in self.payments) / 1000

    @property
    def ppm(self) -> int:
        """Total fees over total amount, as one payment's ppm is."""
        amount = sum(p.line.amount_msat for p in self.payments)
        fees = sum(p.line.fees_msat for p in self.payments)
        return fees * 1_000_000 // amount if amount > 0 else 0


@dataclass(frozen=True, slots=True)
class Digest:
    """NOTIFY_DIGEST_MINUTES: the rebalances of the window [start, end) (Unix times)."""

    start: float
    end: float
    rebalances: tuple[RebalanceLanded, ...]


@dataclass(frozen=True, slots=True)
class Text:
    """A ready text, delivered as it is (the demo's banner; rows of versions before 2)."""

    text: str


# What the operator hears of, in the feed's order.
Notice = (
    RebalanceLanded
    | Digest
    | AlertRaised
    | AlertCleared
    | ReportReady
    | DaemonStarted
    | DaemonStopping
    | Text
)

Event = (
    RebalancesRecorded
    | RunStarted
    | RunFinished
    | CycleFinished
    | AlertRaised
    | AlertCleared
    | ReportReady
    | DaemonStarted
    | DaemonStopping
)
Listener = Callable[[Event], None]


@dataclass
class EventBus:
    """Fan events out to listeners; a failing listener is logged, never breaks the engine."""

    listeners: list[Listener] = field(default_factory=list)

    def subscribe(self, listener: Listener) -> None:
        self.listeners.append(listener)

    def emit(self, event: Event) -> None:
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:
                logging.getLogger(__name__).exception(
                    "event listener failed on %s", type(event).__name__
                )
