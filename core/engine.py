"""The engine: cycles that read channels, plan runs and keep the workers busy.

A cycle (a planning round) takes the channels, logs the round plan (one pair per target, see
`core.planner`) and then dispatches continuously: whenever a worker is free it asks the
planner for the next pairs. Never more than MAX_WORKERS runs, never two sharing a channel.

With LNDg's channel detail reader (`fetch_channel`, as the daemon runs) LNDg's whole channel
list is read at most every CHANNEL_LIST_SECONDS, at a manual cycle (/run, `cycle`) and when
the operator asks (/pairs, /dryrun); in between the planner works on `core.channel_book`: the
last list moved by the forwards LNDg recorded since (one read at each cycle start) and by the
rows read one by one. Before a run starts its two channels are read fresh and the pairing rule
and the spending rules are applied to them again (`core.fresh_pair`); after a success they are
read until LNDg shows the move (`core.confirm`). A channel LNDg no longer knows (404) is
dropped and the list read at the next cycle; a read that fails otherwise skips that target for
the cycle. Without a detail reader (the benchmark's "before") the list is read at each cycle
start, whenever the snapshot is `Pacing.max_snapshot_age` old, and every
`Pacing.refresh_seconds` while a success waits to show.
The cycle ends when nothing is running and nothing more can be started, or when its time
budget is used up: then runs still going carry over into the next cycle, which the daemon
starts at once (`next_cycle_delay`).

It also turns new stat CSV lines into ledger rows. It knows nothing of Telegram or of
scheduling: the runtime (`core.runtime`) calls `cycle()` and `poll_ledger()` on its timers.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import json
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.channel_book import ChannelBook
from core.channel_ref import ChannelLookupError, ChannelRef, resolve_channel
from core.confirm import Confirmations, listed
from core.events import (
    AlertCleared,
    AlertRaised,
    CycleFinished,
    EventBus,
    RebalancesRecorded,
    RunFinished,
    RunStarted,
)
from core.fresh_pair import requalify, unfit
from core.history import Observation
from core.lndg import LndgNotFound
from core.logs import Episode
from core.models import Channel, Outcome, Pair, Rebalance, RunResult
from core.node_records import Forward
from core.pairing import PairView, count_pairs
from core.planner import Planner, PlannerConfig
from core.settings import Settings
from core.spend_guard import SpendGuard
from core.spending import OverEarningsBudget, Skip
from core.state import StateStore
from core.statfile import StatFileError, StatPosition, read_new_lines

log = logging.getLogger("core.engine")

FetchChannels = Callable[[], Awaitable[list[Channel]]]
# One channel by chan_id from LNDg's detail endpoint (core.lndg.LndgClient.fetch_channel).
FetchChannel = Callable[[str], Awaitable[Channel]]
# Forwards LNDg recorded since a moment (core.lndg.LndgClient.fetch_forwards).
FetchForwards = Callable[[dt.datetime], Awaitable[Sequence[Forward]]]
# Past attempts to learn from at start (see core.history), given the channels LNDg lists.
LoadHistory = Callable[[Sequence[Channel]], Awaitable[list[Observation]]]

HEARTBEAT_SECONDS = 10.0
# Runs our side cannot start (disk full, no file descriptors): wait this long, doubling.
START_RETRY_SECONDS = 5.0
START_RETRY_MAX = 300.0
START_ALERT = "start"
BUDGET_ALERT = "budget"
DETAIL_ALERT = "lndg-detail"  # the list shows a channel its detail read calls gone
STOP_CANCEL_WAIT = 2.0
ALERTS_KEY = "alerts"  # standing alerts in the store, for `health`
PLAN_LOG_LINES = 5  # planned pairs logged at INFO each cycle; the rest at DEBUG
# Planning again after pairs that no longer qualified on fresh rows: at most this many times
# per free worker slot, so a stale estimate costs a bounded number of detail reads.
FRESH_ROUNDS = 3
# A row read this recently (a confirmation just now) counts as read fresh for a run's start.
FRESH_SECONDS = 1.0
# Outcomes that say nothing of whether this host can start runs.
_NOT_STARTED = (Outcome.STOPPED, Outcome.START_FAILED, Outcome.DRY_RUN, Outcome.BINARY_MISSING)
# Outcomes that say something is wrong with the node or the setup, not with one route.
_SETUP_FAILURES = (Outcome.LND_ERROR, Outcome.BINARY_MISSING)


class Runner(Protocol):
    """Runs regolancer for one pair (see core.runner.RegolancerRunner)."""

    async def run(self, pair: Pair, worker: int) -> RunResult: ...

    async def stop_all(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Pacing:
    """How often a cycle looks at LNDg and how long it may last (seconds)."""

    # Least time between two channel list fetches within a cycle, and from a success to the
    # first detail read of its channels (LNDg syncs every ~20 s anyway).
    refresh_seconds: float = 10.0
    # Least time between two detail reads of one channel: LNDg's sync period.
    detail_seconds: float = 20.0
    # A snapshot older than this is fetched again before planning, successes or not.
    max_snapshot_age: float = 120.0
    # With idle workers, plan again at least this often (backoffs expire, pauses end).
    replan_seconds: float = 30.0
    # A cycle starts no new run after this long; runs still going carry over.
    round_budget: float = 1800.0


@dataclass(frozen=True, slots=True)
class ActiveRun:
    pair: Pair
    worker: int
    started_at: float


def log_plan(planned: Sequence[Pair], shown: int = PLAN_LOG_LINES) -> None:
    """The first `shown` planned pairs at INFO, the rest at DEBUG with one line counting them:
    at 1,500 channels a cycle plans hundreds of pairs, too many for every cycle's log."""
    for pair in planned[:shown]:
        log.info("%s pfrom=%d pto=%d", pair.log_line(), pair.pfrom, pair.pto)
    rest = planned[shown:]
    if not rest:
        return
    log.info("… and %d more (LOG_LEVEL=DEBUG shows all)", len(rest))
    for pair in rest:
        log.debug("%s pfrom=%d pto=%d", pair.log_line(), pair.pfrom, pair.pto)


@dataclass
class EngineStatus:
    """What /status shows; kept in memory, rebuilt at start."""

    last_cycle_started: float | None = None
    last_cycle_finished: float | None = None
    last_cycle: tuple[float, float] | None = None  # (started, finished) of the last one
    last_cycle_pairs: int = 0
    last_cycle_runs: int = 0
    lndg_ok: bool | None = None
    lndg_error: str = ""
    active: dict[int, ActiveRun] = field(default_factory=dict)
    # Pairs of the last (or running) cycle not started because their channels, read fresh
    # right before the run, no longer qualified.
    last_cycle_stale: int = 0


class _Read(enum.Enum):
    """A detail read that gave no row: the channel is gone (404), or LNDg did not answer."""

    GONE = "gone"
    FAILED = "failed"


class Engine:
    """Plans and runs rebalances; reads the ledger. Every I/O edge is injected."""

    def __init__(
        self,
        settings: Settings,
        store: StateStore,
        fetch_channels: FetchChannels,
        runner: Runner,
        events: EventBus | None = None,
        *,
        clock: Callable[[], float] = time.time,
        planner: Planner | None = None,
        pacing: Pacing | None = None,
        history: LoadHistory | None = None,
        guard: SpendGuard | None = None,
        fetch_channel: FetchChannel | None = None,
        fetch_forwards: FetchForwards | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self._fetch_channels = fetch_channels
        self._fetch_channel = fetch_channel
        self._fetch_forwards = fetch_forwards
        # The channels between two list reads (used with a detail reader only).
        self.book = ChannelBook(settings.channel_list_seconds)
        self.runner = runner
        self.events = events or EventBus()
        self.clock = clock
        self.planner = planner or Planner(PlannerConfig.from_settings(settings))
        self.pacing = pacing or Pacing()
        self._history = history
        self.guard = guard
        # Targets not rebalanced now and why (core.spending), as of the last channel fetch.
        self.skipped: dict[str, Skip] = {}
        self.status = EngineStatus()
        self._cycle_lock = asyncio.Lock()
        self._pool: dict[asyncio.Task[RunResult], ActiveRun] = {}
        self._aliases: dict[str, str] = {}
        self._alerts: dict[str, str] = {}  # standing alerts by key (also in the store)
        self._save_alerts()  # a new daemon starts with none: forget an earlier one's
        self._stopping = False
        # A manual cycle (/run, `cycle`) starts while paused; a pause given after it started
        # (`pause()`) ends the override: "stop" always wins over "run now".
        self._pause_override = False
        self._cycle_task: asyncio.Task[Any] | None = None
        self._start_faults = 0  # runs in a row that could not be started (see `_run`)
        self._start_retry_at = 0.0
        self._hold = False  # a setup failure: start nothing more this cycle
        self._moved = False  # a run succeeded since the last channel fetch (no detail reader)
        self._confirms = Confirmations(
            first_read=self.pacing.refresh_seconds,
            spacing=self.pacing.detail_seconds,
            give_up=self.planner.config.confirm_seconds,
        )
        # The last detail or forwards read failed (its line was logged): one per episode.
        self._detail_failing = Episode(log)
        self._unread: set[str] = set()  # targets whose channels could not be read this cycle
        self._forwards_failing = Episode(log)
        self._list_failing = Episode(log)  # the list read between cycles, while LNDg is down
        # Channels a detail read called gone (404): one the list then still shows means the
        # detail endpoint does not answer (a proxy blocking the path?): said, not left silent.
        self._vanished: set[str] = set()
        self._contradicted: set[str] = set()
        self._next_delay = float(settings.sleep_seconds)
        self._last_beat = 0.0

    # --- switches -----------------------------------------------------------------------

    @property
    def dry_run(self) -> bool:
        """DRY_RUN=true in the environment locks dry run on; else the chat switch decides."""
        return self.settings.dry_run or self.store.dry_run

    def pause(self, until: float = float("inf")) -> None:
        """Start no new run until `until` (a Unix time; infinity: until `resume`), at once.

        Takes effect in every kind of cycle, a manual one included; runs in flight finish.
        """
        self._pause_override = False
        self.store.pause(until)
        log.info("paused%s", "" if until == float("inf") else f" until {until:.0f}")

    def resume(self) -> None:
        """Lift a pause: the next planning step may start runs again."""
        self.store.resume()
        log.info("resumed")

    @property
    def stopping(self) -> bool:
        """True once `stop` was called: no cycle or run starts any more."""
        return self._stopping

    @property
    def cycle_running(self) -> bool:
        return self._cycle_lock.locked()

    def next_cycle_delay(self) -> float:
        """Seconds the daemon should wait before the next cycle, as the last one ended.

        0 when the last cycle was cut by its time budget (work is waiting), else
        SLEEP_SECONDS.
        """
        return self._next_delay

    # --- channels and pairs -------------------------------------------------------------

    async def channels(self) -> list[Channel]:
        """Channels from LNDg; raises the client's error after raising the LNDg alert."""
        try:
            channels = await self._fetch_channels()
        except Exception as exc:
            if self._stopping:  # abandoned at shutdown: not news for the operator
                raise
            self.status.lndg_ok, self.status.lndg_error = False, str(exc)
            self.alert("lndg", f"LNDg: {exc}")
            raise
        self.status.lndg_ok, self.status.lndg_error = True, ""
        self.clear("lndg", f"LNDg is reachable again ({len(channels)} channels)")
        self.book.reset(channels, self.clock())
        self._check_vanished(channels)
        return await self._adopt(channels)

    def _check_vanished(self, channels: Sequence[Channel]) -> None:
        """Alert when the list shows a channel its detail read called gone."""
        listed_ids = {c.chan_id for c in channels}
        shown = self._vanished & listed_ids
        self._vanished -= listed_ids
        self._contradicted = (self._contradicted & listed_ids) | shown
        if shown:
            self.alert(
                DETAIL_ALERT,
                f"LNDg lists channel {min(shown)} but answers 404 for its detail "
                f"(/api/channels/{min(shown)}/): runs on it wait for whole-list reads, heavy on "
                "LNDg; is a proxy in front of LNDg blocking that path?",
            )
        elif not self._contradicted:
            self.clear(DETAIL_ALERT, "LNDg's channel detail reads answer again")

    async def _adopt(self, channels: list[Channel]) -> list[Channel]:
        """The channels to plan on: aliases, exclusions to seed, the spending rules' skips."""
        self._aliases.update((c.chan_id, c.alias) for c in channels)
        self._seed_exclusions(channels)
        if self.guard is not None:
            await self.guard.refresh()
            self._note_skips(self.guard.skips(channels, self.clock()), channels)
        return channels

    def _note_skips(self, skipped: dict[str, Skip], channels: Sequence[Channel]) -> None:
        """Keep the skip reasons; one alert per target as its earnings budget runs out."""
        labels = {c.chan_id: c.label for c in channels}
        for chan_id, skip in skipped.items():
            if isinstance(skip, OverEarningsBudget):
                self.alert(f"earnings:{chan_id}", f"{labels[chan_id]}: {skip.describe()}: paused")
        for chan_id in labels:
            if chan_id not in skipped or not isinstance(skipped[chan_id], OverEarningsBudget):
                self.clear(
                    f"earnings:{chan_id}",
                    f"{labels[chan_id]} is within its earnings budget again",
                )
        self.skipped = skipped

    def excluded(self) -> frozenset[str]:
        """Channels no run may use now: the operator's exclusions and the skipped targets."""
        return self.store.excluded_ids() | self.skipped.keys()

    async def pairs(self) -> tuple[list[Channel], PairView]:
        """The channels and every pair the rule gives now (built lazily), exclusions applied."""
        channels = await self.channels()
        return channels, PairView(channels, self.excluded())

    def plan(self, channels: Sequence[Channel], now: float | None = None) -> list[Pair]:
        """The round plan: one run per target, most depleted first, each with its best source.

        Sources no other target of the plan has are preferred, so the runs can go side by
        side; pairs in backoff after failures are skipped (see `Planner.plan`).
        """
        now = self.clock() if now is None else now
        return self.planner.plan(channels, now, self.excluded())

    def _seed_exclusions(self, channels: Sequence[Channel]) -> None:
        # EXCLUDE_CHANNELS seeds the list once per entry, so a later /include sticks.
        fresh = [t for t in self.settings.exclude_channels if t not in self.store.seeded_tokens()]
        if not fresh:
            return
        done: list[str] = []
        for token in fresh:
            try:
                ref = ChannelRef.parse(token)
                if ref.chan_id is not None:  # an id applies even to a channel not seen yet
                    chan_id, label = ref.chan_id, self._aliases.get(ref.chan_id, "")
                else:
                    found = resolve_channel(token, channels)
                    chan_id, label = found.chan_id, found.alias
            except ChannelLookupError as exc:
                log.warning("EXCLUDE_CHANNELS entry %r not applied: %s", token, exc)
                continue
            self.store.exclude(chan_id, label, added_by="EXCLUDE_CHANNELS")
            done.append(token)
        self.store.mark_seeded(done)

    # --- cycles -------------------------------------------------------------------------

    async def cycle(
        self, *, dry_run: bool | None = None, ignore_pause: bool = False
    ) -> CycleFinished:
        """One cycle: read channels, plan, keep workers busy. Never two at once: a second waits."""
        async with self._cycle_lock:
            self._cycle_task = asyncio.current_task()
            try:
                return await self._cycle(self.dry_run if dry_run is None else dry_run, ignore_pause)
            finally:
                self._cycle_task = None

    async def _cycle(self, dry_run: bool, ignore_pause: bool) -> CycleFinished:
        started = self.clock()
        self._pause_override = ignore_pause
        self._next_delay = float(self.settings.sleep_seconds)
        if self._stopping:
            return self._finish(started, 0, 0, [], [], dry_run, skipped="stopping")
        self.status.last_cycle_started = started
        mode = "dry run" if dry_run else "live"
        log.info("cycle start (%s)", mode)
        if self.store.is_paused(started) and not ignore_pause:
            log.info("cycle skipped: paused")
            return self._finish(started, 0, 0, self._reap(), [], dry_run, skipped="paused")
        try:
            channels = await self._cycle_channels(started, manual=ignore_pause)
        except Exception as exc:
            log.log(logging.INFO if self._stopping else logging.ERROR, "cycle skipped: %s", exc)
            return self._finish(started, 0, 0, self._reap(), [], dry_run, skipped=str(exc))
        self._moved = False
        self._unread.clear()
        self.status.last_cycle_stale = 0
        self._confirms.clear()  # a new round: the planner waits on no earlier success
        await self._learn_history(channels)
        excluded = self.excluded()
        self.planner.prune(started)
        planned = self.planner.plan(channels, started, excluded)
        count = count_pairs(channels, excluded)
        log.info("%d channels, %d pairs, %d planned", len(channels), count, len(planned))
        log_plan(planned)
        if dry_run:
            results = [*self._reap(), *self._dry(planned)]
        else:
            results = await self._dispatch(channels, planned, started)
        self.poll_ledger()
        return self._finish(started, len(channels), count, results, planned, dry_run)

    async def _cycle_channels(self, now: float, *, manual: bool) -> list[Channel]:
        """The whole list when due (or asked for by a manual cycle, or without a detail
        reader); else the book, moved by the forwards LNDg recorded since."""
        if self._fetch_channel is None or manual or self.book.due(now):
            return await self.channels()
        if not await self._read_forwards():
            # LNDg down is said (alert, cycle skipped) as by a list read, and the list is read
            # until one succeeds (which ends the alert); forwards it cannot serve cost the list.
            self.book.invalidate()
            return await self.channels()
        return await self._adopt(self.book.channels())

    async def _read_forwards(self) -> bool:
        """Move the book by the forwards since; False when they could not be read."""
        since = self.book.forwards_since()
        if self._fetch_forwards is None or since is None:
            return True
        try:
            forwards = await self._fetch_forwards(dt.datetime.fromtimestamp(since, dt.UTC))
        except Exception as exc:
            self._forwards_failing.failed(
                "forwards since the last channel list not read (%s); reading the whole list",
                exc,
                quiet=self._stopping,
            )
            return False
        self._forwards_failing.ok()
        moved = self.book.apply_forwards(forwards)
        log.debug("%d new forwards moved the channels since the last list", moved)
        return True

    async def _learn_history(self, channels: Sequence[Channel]) -> None:
        """Once, at the first cycle that reads the channels: learn from past attempts."""
        load, self._history = self._history, None
        if load is None:
            return
        try:  # what our own routes cost over the same days: prices survive a restart
            since = self.clock() - self.settings.history_days * 86_400
            self.planner.paid(r.line for r in self.store.ledger(since=since))
        except sqlite3.Error as exc:
            log.warning("route prices not read from the ledger, starting without them: %s", exc)
        try:
            observations = await load(channels)
        except Exception as exc:
            log.warning("history not read, starting without it: %s", exc)
            return
        routes = {(o.source, o.target) for o in observations if o.won and o.source}
        learned = self.planner.learn(observations)
        log.info("learned from %d past attempts (%d routes that worked)", learned, len(routes))

    def _finish(
        self,
        started: float,
        channels: int,
        pairs: int,
        results: Sequence[RunResult],
        planned: Sequence[Pair],
        dry_run: bool,
        skipped: str | None = None,
    ) -> CycleFinished:
        finished = self.clock()
        self.status.last_cycle_finished = finished
        self.status.last_cycle = (started, finished)
        self.status.last_cycle_pairs = pairs
        self.status.last_cycle_runs = len(results)
        event = CycleFinished(
            started,
            finished,
            channels,
            pairs,
            tuple(planned),
            tuple(results),
            dry_run,
            skipped,
        )
        carried = f", {len(self._pool)} runs carried over" if self._pool else ""
        stale = self.status.last_cycle_stale
        gone = f", {stale} pairs no longer qualified when read fresh" if stale else ""
        log.info(
            "cycle finish: %d runs in %.1fs%s%s%s",
            len(results),
            finished - started,
            f" ({skipped})" if skipped else "",
            carried,
            gone,
        )
        self.events.emit(event)
        return event

    def _dry(self, planned: Sequence[Pair]) -> list[RunResult]:
        now = self.clock()
        for pair in planned:
            log.info(
                "dry run: would run regolancer with from=[%s] to=[%s] pfrom=%d pto=%d",
                pair.source.chan_id,
                pair.target.chan_id,
                pair.pfrom,
                pair.pto,
            )
        return [
            RunResult(p.source.chan_id, p.target.chan_id, now, now, None, Outcome.DRY_RUN, "")
            for p in planned
        ]

    def _may_start(self, now: float) -> bool:
        """Whether a new run may start now (switches are read live: they act mid-cycle)."""
        if self._stopping or self._hold or self.dry_run or now < self._start_retry_at:
            return False
        if not self._within_daily_budget(now):
            return False
        return self._pause_override or not self.store.is_paused(now)

    def _within_daily_budget(self, now: float) -> bool:
        """DAILY_FEE_BUDGET_SATS: one alert when today's fees reach it, one line at midnight."""
        if self.guard is None or not self.settings.daily_fee_budget_sats:
            return True
        reached = self.guard.daily(now).skip()
        if reached is not None:
            self.alert(BUDGET_ALERT, reached.describe())
            return False
        self.clear(BUDGET_ALERT, "a new day: the daily fee budget allows runs again")
        return True

    async def _dispatch(
        self, channels: list[Channel], planned: Sequence[Pair], started: float
    ) -> list[RunResult]:
        """Keep up to MAX_WORKERS runs going, never two sharing a channel, until nothing is left.

        Returns the results of the runs that ended during this cycle (including runs carried
        over from the last one).
        """
        self.planner.begin_round(planned)
        self._hold = False
        snapshot, fetched_at = channels, started
        deadline = started + self.pacing.round_budget
        results: list[RunResult] = []
        try:
            while True:
                results += self._reap()
                now = self.clock()
                free = self._free_workers()
                may_start = bool(free) and now < deadline and self._may_start(now)
                want_fresh = self._wants_list(now)
                if may_start and self._fetch_channel is not None:
                    await self._fresh_step(free, now)
                elif may_start:
                    age = now - fetched_at
                    if (want_fresh and age >= self.pacing.refresh_seconds) or (
                        age >= self.pacing.max_snapshot_age
                    ):
                        snapshot, fetched_at = await self._refresh(snapshot), self.clock()
                    if self._may_start(self.clock()):  # a /pause during the read holds
                        self._start(snapshot, free, now)
                if not self._pool:
                    break
                if now >= deadline:
                    self._next_delay = 0.0  # the runs still going carry over
                    break
                timeout = deadline - now
                if free:  # idle workers: look again soon (backoffs end, a pause is lifted)
                    timeout = min(timeout, self.pacing.replan_seconds)
                    if may_start and self._wants_list(now):  # a detail read may have failed
                        timeout = min(
                            timeout, max(fetched_at + self.pacing.refresh_seconds - now, 0)
                        )
                    next_read = self._confirms.next_at()
                    if may_start and next_read is not None:
                        timeout = min(timeout, max(next_read - now, 0))
                await asyncio.wait(
                    set(self._pool), timeout=max(timeout, 0.01), return_when=asyncio.FIRST_COMPLETED
                )
        except asyncio.CancelledError:
            await self._cancel_pool()
            raise
        return results

    async def _refresh(self, snapshot: list[Channel]) -> list[Channel]:
        """A fresh channel list, or the old one while LNDg fails (the alert is raised)."""
        try:
            fresh = await self.channels()
        except Exception as exc:
            log.warning("channels not refreshed, planning on the last snapshot: %s", exc)
            return snapshot
        self._moved = False
        return fresh

    def _wants_list(self, now: float) -> bool:
        """Without a detail reader: whether to read the whole list at `refresh_seconds`."""
        if self._fetch_channel is not None:  # details and the book show what runs moved
            return False
        return self._moved or self.planner.awaiting_confirmation(now)

    # --- with a detail reader: the book, fresh rows before each run ---------------------

    async def _fresh_step(self, free: list[int], now: float) -> None:
        """Read the list if CHANNEL_LIST_SECONDS passed, confirm successes, start runs."""
        if self.book.listed_at is None or now - self.book.listed_at >= self.book.list_seconds:
            waiting = self._confirms.waiting(now)
            before = [row for c in waiting if (row := self.book.row(c)) is not None]
            try:
                await self.channels()
                self._list_failing.ok()
            except Exception as exc:  # re-planned every few seconds while LNDg is down
                self._list_failing.failed(
                    "channel list not read, planning on the last one: %s", exc, quiet=self._stopping
                )
            after = [row for c in waiting if (row := self.book.row(c)) is not None]
            self._confirms.settle(before, after)
        elif due := self._confirms.due(now):
            for chan_id in due:
                self._confirms.read(chan_id, self.clock())
                if await self._read_row(chan_id) is _Read.FAILED:
                    break
        await self._start_fresh(free)

    async def _read_row(self, chan_id: str) -> Channel | _Read:
        """One channel through the detail endpoint, put into the book (and the successes
        waiting on it settled); 404 drops it and has the list read at the next cycle."""
        assert self._fetch_channel is not None
        try:
            fresh = await self._fetch_channel(chan_id)
        except LndgNotFound:
            log.info(
                "channel %s is gone from LNDg; the channel list is read again at the next cycle",
                chan_id,
            )
            self._read_ok()
            self._vanished.add(chan_id)
            before = self.book.row(chan_id)
            self.book.drop(chan_id)
            self._confirms.settle([before] if before else [], [])
            return _Read.GONE
        except Exception as exc:
            self._read_failed(f"channel {chan_id} not read from LNDg's channel detail", exc)
            return _Read.FAILED
        self._read_ok()
        if chan_id in self._contradicted:
            self._contradicted.discard(chan_id)
            if not self._contradicted:
                self.clear(DETAIL_ALERT, "LNDg's channel detail reads answer again")
        before = self.book.row(chan_id)
        self.book.patch(fresh, self.clock())
        self._confirms.settle([before] if before else [], [fresh] if listed(fresh) else [])
        return fresh

    def _read_ok(self) -> None:
        self._detail_failing.ok()

    def _read_failed(self, what: str, exc: Exception) -> None:
        # One line per episode: an LNDg that stopped answering is not news at each run.
        self._detail_failing.failed(
            "%s (%s); no run starts on channels not read fresh", what, exc, quiet=self._stopping
        )

    async def _start_fresh(self, free: list[int]) -> None:
        """Start runs whose two channels, read right now, still make the pair.

        A pair that no longer qualifies is counted and logged at DEBUG, and the planner asks
        again on the rows just read (at most FRESH_ROUNDS times). A read LNDg does not answer
        skips that target for the cycle and ends this step.
        """
        rejected: set[str] = set()
        for _ in range(FRESH_ROUNDS):
            busy: set[str] = set(self._held_by_earlier())
            for active in self._pool.values():
                busy |= active.pair.channels
            excluded = self.excluded() | rejected | self._unread
            now = self.clock()
            planned = self.planner.next_pairs(self.book.channels(), busy, len(free), now, excluded)
            again = False
            for pair in planned:
                if not free or not self._may_start(self.clock()):
                    return
                ready = await self._fresh(pair)
                if ready is _Read.FAILED:
                    self._unread.add(pair.target.chan_id)
                    return
                if not isinstance(ready, Pair):
                    rejected.add(ready if isinstance(ready, str) else pair.target.chan_id)
                    again = True
                    continue
                # The reads took a while: a /pause, dry run, stop or /exclude meanwhile holds.
                if not self._may_start(self.clock()):
                    return
                if ready.channels & self.store.excluded_ids():
                    again = True  # the next round plans without the excluded channel
                    continue
                self._launch(ready, free.pop(0), self.clock())
            if not again or not free:
                return

    async def _fresh(self, pair: Pair) -> Pair | _Read | str | None:
        """The pair as its run starts, on rows read now; else not started: the channel to
        leave out for the rest of this step (None: the target)."""
        if self.guard is not None:  # what the book already rules out costs no read
            ready = self.guard.for_run(pair)
            if not isinstance(ready, Pair):
                log.info("not started %s: %s", pair.log_line(), ready.describe())
                return None
        rows: dict[str, Channel] = {}
        excluded = self.store.excluded_ids()
        for chan_id in (pair.target.chan_id, pair.source.chan_id):
            read_at = self.book.read_at(chan_id)
            if read_at is not None and self.clock() - read_at < FRESH_SECONDS:
                known = self.book.get(chan_id)
                if known is not None:
                    rows[chan_id] = known
                    continue
            row = await self._read_row(chan_id)
            if row is _Read.FAILED:
                return row
            if row is _Read.GONE:
                self._stale(pair, f"channel {chan_id} is gone from LNDg")
                return None
            if chan_id == pair.target.chan_id and (why := unfit("target", row, excluded)):
                self._stale(pair, why)  # the source need not be read
                return None
            rows[chan_id] = row
        target = rows[pair.target.chan_id]
        fresh = requalify(rows[pair.source.chan_id], target, excluded)
        if isinstance(fresh, str):  # the target holds (above): the source does not
            self._stale(pair, fresh)
            return pair.source.chan_id
        if self.guard is None:
            return fresh
        skip = self.guard.skips([target], self.clock()).get(target.chan_id)
        if skip is not None:
            self.skipped[target.chan_id] = skip
            self._stale(pair, skip.describe())
            return None
        ready = self.guard.for_run(fresh)
        if not isinstance(ready, Pair):
            self._stale(pair, ready.describe())
            return None
        return ready

    def _stale(self, pair: Pair, why: str) -> None:
        self.status.last_cycle_stale += 1
        log.debug("not started %s: read fresh, %s", pair.log_line(), why)

    def _free_workers(self) -> list[int]:
        used = {active.worker for active in self._pool.values()}
        return [w for w in range(1, self.settings.max_workers + 1) if w not in used]

    def _held_by_earlier(self) -> frozenset[str]:
        """Channels a regolancer left running by a killed daemon still uses (+1 s)."""
        held = getattr(self.runner, "earlier_busy", None)
        return frozenset() if held is None else frozenset(held())

    def _start(self, snapshot: Sequence[Channel], free: list[int], now: float) -> None:
        busy: set[str] = set(self._held_by_earlier())
        for active in self._pool.values():
            busy |= active.pair.channels
        excluded = self.excluded()
        for pair in self.planner.next_pairs(snapshot, busy, len(free), now, excluded):
            if self.guard is not None:
                ready = self.guard.for_run(pair)
                if not isinstance(ready, Pair):  # nothing to pay with: a cap or the budget
                    log.info("not started %s: %s", pair.log_line(), ready.describe())
                    continue
                pair = ready
            self._launch(pair, free.pop(0), now)

    def _launch(self, pair: Pair, worker: int, now: float) -> None:
        active = ActiveRun(pair, worker, now)
        self.planner.started(pair, now)
        task = asyncio.create_task(self._run(active), name=f"worker {active.worker}")
        self._pool[task] = active

    def _reap(self) -> list[RunResult]:
        """Results of the runs that ended (this cycle or before it), in the order they ended."""
        done = [task for task in self._pool if task.done()]
        results: list[RunResult] = []
        for task in done:
            active = self._pool.pop(task)
            if task.cancelled():
                continue
            error = task.exception()
            if error is not None:
                log.error("worker %d: run failed: %r", active.worker, error)
                continue
            results.append(task.result())
        results.sort(key=lambda r: r.ended_at)
        return results

    async def _cancel_pool(self) -> None:
        for task in self._pool:
            task.cancel()
        await asyncio.gather(*self._pool, return_exceptions=True)
        self._pool.clear()

    async def _run(self, active: ActiveRun) -> RunResult:
        """One run, always ending in a recorded outcome, whatever the runner raises."""
        self.status.active[active.worker] = active
        log.info("worker %d: started %s", active.worker, active.pair.log_line())
        self.events.emit(RunStarted(active.pair, active.worker))
        result: RunResult | None = None
        try:
            result = await self.runner.run(active.pair, active.worker)
        except Exception as exc:  # our side failed: the run must still end, and say why
            reason = f"{type(exc).__name__}: {exc}"[:300]
            result = RunResult(
                *active.pair.key,
                active.started_at,
                self.clock(),
                None,
                Outcome.START_FAILED,
                reason,
            )
        finally:
            self.status.active.pop(active.worker, None)
            if result is None:  # cancelled: the planner must not keep the target "running"
                now = self.clock()
                pair = active.pair
                self.planner.finished(
                    pair,
                    RunResult(*pair.key, active.started_at, now, None, Outcome.STOPPED, ""),
                    now,
                )
        if result.outcome == Outcome.START_FAILED:
            self._start_failed(active, result.last_line)
        self.planner.finished(active.pair, result, self.clock())
        if result.outcome == Outcome.SUCCESS:
            if self._fetch_channel is None:
                self._moved = True
            else:
                # The target first: it is the one the planner waits on.
                target = active.pair.target.chan_id
                others = sorted(active.pair.channels - {target})
                self._confirms.succeeded([target, *others], self.clock())
        self._record(active, result)
        return result

    def _start_failed(self, active: ActiveRun, reason: str) -> None:
        """A run our side could not start or follow: back off, alert once per episode."""
        self._start_faults += 1
        wait = min(START_RETRY_SECONDS * 2 ** min(self._start_faults - 1, 10), START_RETRY_MAX)
        self._start_retry_at = self.clock() + wait
        log.error(
            "worker %d: run %s could not be started (%s); no new run for %.0fs",
            active.worker,
            active.pair.log_line(),
            reason,
            wait,
        )
        self.alert(
            START_ALERT,
            f"runs cannot be started: {reason}; check DATA_DIR's disk space, permissions "
            "and open-file limit (retrying with backoff)",
        )

    def _record(self, active: ActiveRun, result: RunResult) -> None:
        # The run's last stat lines become ledger rows before the run is recorded, so the
        # feed, which folds a run's rows once its record exists, finds them all.
        try:
            self.poll_ledger()
        except Exception as exc:  # the lines stay in the CSV; the ledger job reads them
            log.error("ledger not read at the end of run %s: %s", active.pair.log_line(), exc)
        if result.outcome is Outcome.SUCCESS:  # its price: the planner prefers cheap routes
            try:
                self.planner.paid(r.line for r in self.store.ledger(since=int(active.started_at)))
            except sqlite3.Error as exc:  # the route's price stays unknown; the run counts
                log.error(
                    "ledger not read for the price of run %s: %s", active.pair.log_line(), exc
                )
        try:
            self.store.record_run(result)
        except sqlite3.Error as exc:  # the outcome still reaches the log and the planner
            log.error("run %s not recorded in the state database: %s", active.pair.log_line(), exc)
        level = logging.INFO if not result.outcome.is_failure else logging.WARNING
        log.log(
            level,
            "run %s: %s (exit %s, %.0fs)%s",
            active.pair.log_line(),
            result.outcome.describe,
            result.exit_code,
            result.elapsed,
            f": {result.last_line}" if result.last_line else "",
        )
        if result.outcome in _SETUP_FAILURES:
            self._hold = True
            self.alert(
                "regolancer",
                f"regolancer: {result.outcome.describe}: {result.last_line or 'no output'}",
            )
        elif result.outcome not in (Outcome.STOPPED, Outcome.START_FAILED):
            self.clear("regolancer", "regolancer runs work again")
        if result.outcome not in _NOT_STARTED:
            if self._start_faults:
                self._start_faults, self._start_retry_at = 0, 0.0
            self.clear(START_ALERT, "runs start again")
        self.events.emit(RunFinished(active.pair, active.worker, result))

    def running(self) -> list[tuple[str, str, float]]:
        """The runs going on now: (source, target, started at), for the feed to wait on."""
        return [
            (a.pair.source.chan_id, a.pair.target.chan_id, a.started_at)
            for a in self.status.active.values()
        ]

    # --- ledger -------------------------------------------------------------------------

    def poll_ledger(self) -> list[Rebalance]:
        """Turn every new complete stat line into one ledger row (and its chat message)."""
        path = self.settings.stat_path
        added: list[Rebalance] = []
        while True:
            stored = self.store.stat_position()
            position = StatPosition(*stored) if stored else None
            try:
                batch = read_new_lines(path, position, now=self.clock())
            except StatFileError as exc:
                self.alert("stat", f"stat CSV: {exc}")
                return added
            self.clear("stat", f"stat CSV {path} is readable again")
            if batch.reset_reason:
                log.warning("stat CSV %s: %s; reading it from the start", path, batch.reset_reason)
            for raw, reason in batch.malformed:
                log.warning(
                    "stat CSV %s: skipped a malformed line (%s): %r", path, reason, raw[:200]
                )
            if batch.end != position:
                entries = [
                    (
                        line,
                        self._aliases.get(line.from_channel, ""),
                        self._aliases.get(line.to_channel, ""),
                    )
                    for line, _ in batch.entries
                ]
                added += self.store.record_stat_lines(
                    entries,
                    (batch.end.inode, batch.end.offset),
                    read_from=stored,
                )
            if not batch.has_more:
                break
        if added:
            self.events.emit(RebalancesRecorded(tuple(added)))
        self._beat()
        return added

    def _beat(self) -> None:
        # `health` (Docker HEALTHCHECK) reads this; a write every few seconds is plenty.
        now = self.clock()
        if now - self._last_beat >= HEARTBEAT_SECONDS:
            self._last_beat = now
            self.store.put_value("heartbeat", repr(now))

    # --- alerts -------------------------------------------------------------------------

    def alert(self, key: str, message: str) -> None:
        """Tell listeners about a problem once per episode (until `clear` with the same key)."""
        if key not in self._alerts:
            self._alerts[key] = message
            log.error("alert: %s", message)
            self._save_alerts()
            self.events.emit(AlertRaised(key, message))

    def clear(self, key: str, message: str) -> None:
        """End an alert episode with a recovery message; nothing if none was raised."""
        if key in self._alerts:
            del self._alerts[key]
            log.info("recovered: %s", message)
            self._save_alerts()
            self.events.emit(AlertCleared(key, message))

    def alert_standing(self, key: str) -> bool:
        """Whether the alert `key` was raised and not cleared yet (one cause, one alert)."""
        return key in self._alerts

    def _save_alerts(self) -> None:
        # `health` reads them; a store that refuses writes must not break the alert itself.
        try:
            self.store.put_value(ALERTS_KEY, json.dumps(self._alerts, sort_keys=True))
        except sqlite3.Error as exc:
            log.warning("standing alerts not saved for `health`: %s", exc)

    async def wait_idle(self) -> None:
        """Wait until no cycle runs and every run (carried over ones too) has ended."""
        async with self._cycle_lock:
            if self._pool:
                await asyncio.wait(set(self._pool))
                self._reap()

    async def stop(self) -> None:
        """Start no new cycle or run; stop every running regolancer (whole process groups)."""
        self._stopping = True
        await self.runner.stop_all()

    async def cancel_cycle(self) -> None:
        """Cancel a cycle that did not end by itself after `stop` (e.g. stuck on LNDg).

        Its runs are stopped already, so nothing is left running; shutdown stays bounded.
        """
        task = self._cycle_task
        if task is None or task.done() or task is asyncio.current_task():
            return
        log.warning("cycle did not end after stop (waiting on LNDg?); cancelling it")
        task.cancel()
        await asyncio.wait({task}, timeout=STOP_CANCEL_WAIT)
