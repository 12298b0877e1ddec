"""What the engine reports to whoever listens: the chat, or the log in headless mode.

Plain values; the engine never knows how they are shown.
"""

from __future__ import annotations

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


Event = RebalancesRecorded | RunStarted | RunFinished | CycleFinished | AlertRaised | AlertCleared
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
