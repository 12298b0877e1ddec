"""The feed: what the operator hears of, durable, in order, delivered at most once each.

One path for every notice. Core writes typed notices (a rebalance landed, an alert was raised
or cleared, a daily report is ready, the daemon started or stops) as rows of the state
store's outbox; rebalance rows are written in the same transaction as their ledger rows
(`StateStore.record_stat_lines`), so none is lost or repeated. `FeedPump` hands pending rows,
decoded back into notices, to one `Sink`: the chat (bot/outbox.py) or the log (headless).

Rebalances are folded: the stat lines of one run (rapid rebalancing pays several times on
one route) are one notice, sent once the run has ended and been recorded, so its rows wait
in the outbox while their run goes on and survive a restart there. Lines no recorded run
explains (another regolancer, a run cut by a crash) go one notice each. With
NOTIFY_DIGEST_MINUTES they wait further, for one digest per window.

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
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.events import (
    AlertCleared,
    AlertRaised,
    DaemonStarted,
    DaemonStopping,
    Digest,
    Event,
    Mode,
    Notice,
    RebalanceLanded,
    ReportReady,
    Text,
)
from core.fmt import fee, ppm, sats
from core.fold import grand_total, pair_totals, window_start
from core.models import Rebalance
from core.state import OutboxMessage, StateStore

log = logging.getLogger("core.feed")

# Rebalances that arrive together leave together, up to this many in one notice batch.
BATCH_REBALANCES = 30
# Pending rows looked at per flush (rows of runs still going included).
PENDING_PAGE = 500

# A run going on now: (source chan_id, target chan_id, started at, Unix time).
ActiveRun = tuple[str, str, float]


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
    simulated = bool(payload.get("simulated", False))
    return Mode(bool(payload["dry_run"]), None if until is None else float(until), simulated)


def _mode_payload(mode: Mode) -> dict[str, Any]:
    payload: dict[str, Any] = {"dry_run": mode.dry_run, "paused_until": mode.paused_until}
    if mode.simulated:
        payload["simulated"] = True
    return payload


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
        case RebalanceLanded() | Digest():  # rows written with their ledger rows
            raise ValueError("rebalances are queued by StateStore.record_stat_lines")
        case AlertRaised(key, message):
            return "alert", {"key": key, "message": message}
        case AlertCleared(key, message):
            return "recovered", {"key": key, "message": message}
        case ReportReady(day, summary, chart):
            png = base64.b64encode(chart).decode("ascii")
            return "report", {"day": day.isoformat(), "summary": summary, "chart": png}
        case DaemonStarted(mode, sleep_seconds, workers):
            return "started", {
                **_mode_payload(mode),
                "sleep_seconds": sleep_seconds,
                "workers": workers,
            }
        case DaemonStopping(mode):
            return "stopping", _mode_payload(mode)
        case Text(text):
            return "text", {"text": text}


def decode(row: OutboxMessage, store: StateStore) -> Notice | None:
    """The notice a row holds; None for one that says nothing any more (logged)."""
    payload = row.payload
    try:
        match row.kind:
            case "rebalance":
                rebalance = store.rebalance(int(payload["ledger_id"]))
                return None if rebalance is None else RebalanceLanded((rebalance,))
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


@dataclass
class _Batch:
    """Rebalances leaving together: their rows, grouped by run (or alone), in order."""

    ids: list[int] = field(default_factory=list)
    runs: dict[tuple[str, int], list[Rebalance]] = field(default_factory=dict)
    oldest: float = float("inf")  # the earliest row's created_at


Delivery = tuple[list[int], list[Notice]]


class FeedPump:
    """Hands pending notices to one sink, in order, and marks them delivered.

    `running` says which runs are going on (the engine's); their rows wait for the run's
    end. `digest_minutes` > 0 holds rebalances for one `Digest` per window instead.
    """

    def __init__(
        self,
        store: StateStore,
        sink: Sink,
        episodes: Episodes | None = None,
        *,
        running: Callable[[], Collection[ActiveRun]] = tuple,
        digest_minutes: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.sink = sink
        self.episodes = episodes or Episodes()
        self.running = running
        self.digest_minutes = digest_minutes
        self.clock = clock
        self._hold_until = 0.0
        # One flush at a time: the farewell flush at shutdown can meet the feed job's, and two
        # flushes reading the same pending rows would both deliver them.
        self._lock = asyncio.Lock()
        # Rows the sink accepted whose mark the database refused: never delivered again.
        self._unmarked: list[int] = []

    async def flush(self) -> int:
        """Deliver what is due; returns how many rows were delivered (or dropped)."""
        async with self._lock:
            return await self._flush()

    async def _flush(self) -> int:
        if time.monotonic() < self._hold_until:
            return 0
        if not self._mark([]):  # the marks of an earlier flush first
            return 0
        done = 0
        unmarked = set(self._unmarked)
        pending = self.store.pending_messages(limit=PENDING_PAGE)
        for ids, notices in self._deliveries([m for m in pending if m.id not in unmarked]):
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

    def _deliveries(self, pending: Sequence[OutboxMessage]) -> list[Delivery]:
        """What is due, in order: other notices one each, rebalances folded into batches.

        A run's rows join the batch of its first row; rows of a run still going, and in
        digest mode rows of the window still open, stay pending.
        """
        now = self.clock()
        cutoff = window_start(now, self.digest_minutes) if self.digest_minutes else None
        running = self.running()
        out: list[_Batch | Delivery] = []
        homes: dict[tuple[str, int], _Batch] = {}
        current: _Batch | None = None
        for message in pending:
            if message.kind != "rebalance":
                notice = decode(message, self.store)
                out.append(([message.id], [] if notice is None else [notice]))
                if cutoff is None:  # a digest is one message wherever its rows are
                    current = None
                continue
            landed = decode(message, self.store)
            if not isinstance(landed, RebalanceLanded):
                out.append(([message.id], []))  # its ledger row is gone: nothing to say
                continue
            rebalance = landed.first
            if _going_on(rebalance, running):
                continue  # said when its run ends, with the run's other payments
            if cutoff is not None and message.created_at >= cutoff:
                continue  # the window is still open: the next digest
            key = self._run_of(rebalance, message.id)
            batch = homes.get(key)
            if batch is None:
                if current is None or (cutoff is None and len(current.runs) >= BATCH_REBALANCES):
                    current = _Batch()
                    out.append(current)
                batch = homes[key] = current
                batch.runs[key] = []
            batch.ids.append(message.id)
            batch.runs[key].append(rebalance)
            batch.oldest = min(batch.oldest, message.created_at)
        return [self._notices(item, cutoff) if isinstance(item, _Batch) else item for item in out]

    def _run_of(self, rebalance: Rebalance, row_id: int) -> tuple[str, int]:
        """The recorded run that paid this row; a row no run explains stands alone."""
        line = rebalance.line
        run_id = self.store.run_covering(line.from_channel, line.to_channel, line.timestamp)
        return ("line", row_id) if run_id is None else ("run", run_id)

    def _notices(self, batch: _Batch, cutoff: float | None) -> Delivery:
        landed = [RebalanceLanded(tuple(rows)) for rows in batch.runs.values()]
        if cutoff is None:
            return batch.ids, list(landed)
        length = self.digest_minutes * 60
        start = min(window_start(batch.oldest, self.digest_minutes), cutoff - length)
        return batch.ids, [Digest(start, cutoff, tuple(landed))]

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


def _going_on(rebalance: Rebalance, running: Collection[ActiveRun]) -> bool:
    """Whether a run going on now, on this row's pair, started before its payment."""
    line = rebalance.line
    return any(
        source == line.from_channel and target == line.to_channel and line.timestamp >= int(start)
        for source, target, start in running
    )


def describe(rebalance: RebalanceLanded) -> str:
    """One rebalance for the log: `132,000 sat Src -> Tgt in 2 payments, fee 35 sat (265 ppm)`."""
    first = rebalance.first
    payments = len(rebalance.payments)
    return (
        f"{sats(rebalance.amount_sat)} {first.from_alias or first.line.from_channel} -> "
        f"{first.to_alias or first.line.to_channel}"
        f"{f' in {payments} payments' if payments > 1 else ''}, "
        f"fee {fee(rebalance.fee_sat)} ({ppm(rebalance.ppm)})"
    )


class LogSink:
    """Headless delivery: what the chat would show goes to the log.

    Alerts and the daemon's start and stop are logged where they happen; the log gets the
    rebalances (folded per run, or the digest) and the reports (whose PNG is already next to
    the CSV).
    """

    def __init__(self, logger: logging.Logger | None = None, zone: dt.tzinfo = dt.UTC) -> None:
        self.logger = logger or logging.getLogger("core.daemon")
        self.zone = zone

    async def deliver(self, notices: Sequence[Notice]) -> None:
        for notice in notices:
            if isinstance(notice, RebalanceLanded):
                self.logger.info("rebalanced %s", describe(notice))
            elif isinstance(notice, Digest):
                self._digest(notice)
            elif isinstance(notice, ReportReady):
                self.logger.info("daily report: %s", " | ".join(notice.summary.splitlines()))
            elif isinstance(notice, Text):
                self.logger.info("%s", notice.text)

    def _digest(self, digest: Digest) -> None:
        pairs = pair_totals(digest.rebalances)
        if not pairs:
            return
        total = grand_total(pairs)
        parts = [
            f"{sats(p.amount_sat)} {p.from_alias or p.from_channel} -> "
            f"{p.to_alias or p.to_channel} in {_payments(p.payments)}, "
            f"fee {fee(p.fee_sat)} ({ppm(p.ppm)})"
            for p in pairs
        ]
        parts.append(
            f"total {sats(total.amount_sat)} in {_payments(total.payments)}, "
            f"fee {fee(total.fee_sat)} ({ppm(total.ppm)})"
        )
        start, end = (dt.datetime.fromtimestamp(t, self.zone) for t in (digest.start, digest.end))
        self.logger.info(
            "rebalances %s-%s: %s", f"{start:%H:%M}", f"{end:%H:%M}", " | ".join(parts)
        )


def _payments(count: int) -> str:
    return f"{count} payment{'' if count == 1 else 's'}"
