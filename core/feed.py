"""The feed: what the operator hears of, durable, in order, delivered at most once each.

One path for every notice. Core writes typed notices (a rebalance landed, an alert was raised
or cleared, a daily report is ready, the daemon started or stops) as rows of the state
store's outbox; rebalance rows are written in the same transaction as their ledger rows
(`StateStore.record_stat_lines`), so none is lost or repeated. `FeedPump` hands pending rows,
decoded back into notices, to one `Sink`: the chat (bot/outbox.py) or the log (headless).

A row is marked sent only after the sink accepted it, so an outage delays it and a restart
resends what was not accepted; only a hard kill between the sink's answer and the mark can
repeat one (the one in flight). A mark the state database refuses (locked past busy_timeout,
disk full) is kept in memory and written first at the next flush; until it is written
nothing new is delivered, so an accepted notice never goes out twice from this process.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.events import (
    AlertCleared,
    AlertRaised,
    DaemonStarted,
    DaemonStopping,
    Event,
    Mode,
    Notice,
    RebalanceLanded,
    ReportReady,
    Text,
)
from core.fmt import fee, ppm, sats
from core.state import OutboxMessage, StateStore

log = logging.getLogger("core.feed")

# Rebalance rows that arrive together leave together, up to this many in one notice batch.
BATCH_REBALANCES = 30


class DeliveryHeld(Exception):
    """The sink cannot deliver now (an outage, a rate limit): try again in `seconds`."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"delivery held for {seconds:.0f}s")
        self.seconds = seconds


class Sink(Protocol):
    """Where notices go: the chat, or the log. Raises DeliveryHeld to be asked again later."""

    async def deliver(self, notices: Sequence[Notice]) -> None: ...


@dataclass
class Episodes:
    """Problems said once per episode in the log: one line as each begins, one as it ends.

    Shared by the feed and the face, so a refusal seen by both is one line.
    """

    logger: logging.Logger = field(default_factory=lambda: log)
    _began: dict[str, float] = field(default_factory=dict)  # key -> time.monotonic()

    def begin(self, key: str, message: str, level: int = logging.ERROR) -> None:
        if key not in self._began:
            self._began[key] = time.monotonic()
            self.logger.log(level, "%s", message)

    def end(self, key: str, message: str, asked_at: float) -> None:
        """End `key` by a request (asked at `asked_at`, monotonic) that worked.

        A request already in flight when the episode began (a long poll) proves nothing.
        """
        began = self._began.get(key)
        if began is not None and asked_at > began:
            del self._began[key]
            self.logger.info("%s", message)


# --- writing ----------------------------------------------------------------------------


def _mode(payload: dict[str, Any]) -> Mode:
    until = payload.get("paused_until")
    return Mode(bool(payload["dry_run"]), None if until is None else float(until))


class Feed:
    """Writes notices to the store's outbox; `listen` subscribes it to the engine's events."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def put(self, notice: Notice) -> None:
        """Queue one notice durably; raises sqlite3.Error when the store refuses it."""
        kind, payload = _encode(notice)
        self.store.enqueue(kind, payload)

    def listen(self, event: Event) -> None:
        """EventBus listener: alerts and the daemon's start and stop become notices.

        Rebalance rows are queued with their ledger rows; reports are `put` by whoever
        delivers them, so a refused write reaches it.
        """
        if isinstance(event, AlertRaised | AlertCleared | DaemonStarted | DaemonStopping):
            self.put(event)


def _encode(notice: Notice) -> tuple[str, dict[str, Any]]:
    match notice:
        case RebalanceLanded(rebalance):
            return "rebalance", {"ledger_id": rebalance.id}
        case AlertRaised(key, message):
            return "alert", {"key": key, "message": message}
        case AlertCleared(key, message):
            return "recovered", {"key": key, "message": message}
        case ReportReady(day, summary, chart):
            png = base64.b64encode(chart).decode("ascii")
            return "report", {"day": day.isoformat(), "summary": summary, "chart": png}
        case DaemonStarted(mode, sleep_seconds, workers):
            return "started", {
                "dry_run": mode.dry_run,
                "paused_until": mode.paused_until,
                "sleep_seconds": sleep_seconds,
                "workers": workers,
            }
        case DaemonStopping(mode):
            return "stopping", {"dry_run": mode.dry_run, "paused_until": mode.paused_until}
        case Text(text):
            return "text", {"text": text}


def decode(row: OutboxMessage, store: StateStore) -> Notice | None:
    """The notice a row holds; None for one that says nothing any more (logged)."""
    payload = row.payload
    try:
        match row.kind:
            case "rebalance":
                rebalance = store.rebalance(int(payload["ledger_id"]))
                return None if rebalance is None else RebalanceLanded(rebalance)
            case "alert":
                return AlertRaised(str(payload["key"]), str(payload["message"]))
            case "recovered":
                return AlertCleared(str(payload["key"]), str(payload["message"]))
            case "report":
                chart = base64.b64decode(str(payload["chart"]))
                day = dt.date.fromisoformat(str(payload["day"]))
                return ReportReady(day, str(payload["summary"]), chart)
            case "started":
                mode = _mode(payload)
                return DaemonStarted(mode, int(payload["sleep_seconds"]), int(payload["workers"]))
            case "stopping":
                return DaemonStopping(_mode(payload))
            case "text":  # queued by a version before the typed feed
                return Text(str(payload["text"]))
    except (KeyError, TypeError, ValueError) as exc:
        log.warning("feed row %d (%s) is unreadable (%r); dropped", row.id, row.kind, exc)
        return None
    log.warning("feed row %d has an unknown kind %r; dropped", row.id, row.kind)
    return None


# --- delivering -------------------------------------------------------------------------


class FeedPump:
    """Hands pending notices to one sink, in order, and marks them delivered."""

    def __init__(self, store: StateStore, sink: Sink, episodes: Episodes | None = None) -> None:
        self.store = store
        self.sink = sink
        self.episodes = episodes or Episodes()
        self._hold_until = 0.0
        # One flush at a time: the farewell flush at shutdown can meet the feed job's, and two
        # flushes reading the same pending rows would both deliver them.
        self._lock = asyncio.Lock()
        # Rows the sink accepted whose mark the database refused: never delivered again.
        self._unmarked: list[int] = []

    async def flush(self) -> int:
        """Deliver what is pending; returns how many rows were delivered (or dropped)."""
        async with self._lock:
            return await self._flush()

    async def _flush(self) -> int:
        if time.monotonic() < self._hold_until:
            return 0
        if not self._mark([]):  # the marks of an earlier flush first
            return 0
        done = 0
        unmarked = set(self._unmarked)
        pending = [m for m in self.store.pending_messages(limit=200) if m.id not in unmarked]
        for batch in _batches(pending):
            ids = [m.id for m in batch]
            notices = [n for n in (decode(m, self.store) for m in batch) if n is not None]
            if notices:
                try:
                    await self.sink.deliver(notices)
                except DeliveryHeld as held:
                    self._hold_until = time.monotonic() + held.seconds
                    return done
            done += len(ids)
            if not self._mark(ids):
                return done
        return done

    def _mark(self, ids: list[int]) -> bool:
        """Mark rows sent, with any the database refused before; False while it refuses."""
        marks = sorted({*self._unmarked, *ids})
        if not marks:
            return True
        try:
            self.store.mark_sent(marks)
        except sqlite3.Error as exc:
            self._unmarked = marks
            self.episodes.begin(
                "store",
                f"state database refuses to record {len(marks)} sent message(s) ({exc}): "
                "they are not sent again, and the outbox holds until it takes writes",
            )
            return False
        self._unmarked = []
        self.episodes.end(
            "store", "state database takes writes again; the outbox goes on", time.monotonic()
        )
        return True


def _batches(pending: Sequence[OutboxMessage]) -> Iterator[list[OutboxMessage]]:
    """Runs of rebalance rows become one batch; every other row stands alone."""
    run: list[OutboxMessage] = []
    for message in pending:
        if message.kind == "rebalance" and len(run) < BATCH_REBALANCES:
            run.append(message)
            continue
        if run:
            yield run
            run = []
        if message.kind == "rebalance":
            run.append(message)
        else:
            yield [message]
    if run:
        yield run


class LogSink:
    """Headless delivery: what the chat would show goes to the log.

    Alerts and the daemon's start and stop are logged where they happen; the log gets the
    rebalances and the reports (whose PNG is already next to the CSV).
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger("core.daemon")

    async def deliver(self, notices: Sequence[Notice]) -> None:
        for notice in notices:
            if isinstance(notice, RebalanceLanded):
                rebalance = notice.rebalance
                line = rebalance.line
                self.logger.info(
                    "rebalanced %s %s -> %s, fee %s (%s)",
                    sats(line.amount_sat),
                    rebalance.from_alias or line.from_channel,
                    rebalance.to_alias or line.to_channel,
                    fee(line.fee_sat),
                    ppm(line.ppm),
                )
            elif isinstance(notice, ReportReady):
                self.logger.info("daily report: %s", " | ".join(notice.summary.splitlines()))
            elif isinstance(notice, Text):
                self.logger.info("%s", notice.text)
