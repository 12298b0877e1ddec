"""The engine: one cycle reads channels, plans pairs and runs regolancer for them.

It also turns new stat CSV lines into ledger rows. It knows nothing of Telegram or of
scheduling: the daemon (headless or bot) calls `cycle()` and `poll_ledger()` on its timers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from core.events import (
    AlertCleared,
    AlertRaised,
    CycleFinished,
    EventBus,
    RebalancesRecorded,
    RunFinished,
    RunStarted,
)
from core.models import Channel, Outcome, Pair, Rebalance, RunResult, short_id_to_chan_id
from core.pairing import ChannelLookupError, build_pairs, resolve_channel
from core.settings import Settings
from core.state import StateStore
from core.statfile import StatFileError, StatPosition, read_new_lines

log = logging.getLogger("core.engine")

FetchChannels = Callable[[], Awaitable[list[Channel]]]

HEARTBEAT_SECONDS = 10.0
# Outcomes that say something is wrong with the node or the setup, not with one route.
_SETUP_FAILURES = (Outcome.LND_ERROR, Outcome.BINARY_MISSING)


class Runner(Protocol):
    """Runs regolancer for one pair (see core.runner.RegolancerRunner)."""

    async def run(self, pair: Pair, worker: int) -> RunResult: ...

    async def stop_all(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ActiveRun:
    pair: Pair
    worker: int
    started_at: float


@dataclass
class EngineStatus:
    """What /status shows; kept in memory, rebuilt at start."""

    last_cycle_started: float | None = None
    last_cycle_finished: float | None = None
    last_cycle_pairs: int = 0
    last_cycle_runs: int = 0
    lndg_ok: bool | None = None
    lndg_error: str = ""
    active: dict[int, ActiveRun] = field(default_factory=dict)


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
        notify: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self._fetch_channels = fetch_channels
        self.runner = runner
        self.events = events or EventBus()
        self.notify = notify
        self.clock = clock
        self.status = EngineStatus()
        self._cycle_lock = asyncio.Lock()
        self._cooldown: dict[tuple[str, str], float] = {}
        self._aliases: dict[str, str] = {}
        self._alerts: set[str] = set()
        self._stopping = False
        self._last_beat = 0.0

    # --- switches -----------------------------------------------------------------------

    @property
    def dry_run(self) -> bool:
        """DRY_RUN=true in the environment locks dry run on; else the chat switch decides."""
        return self.settings.dry_run or self.store.dry_run

    @property
    def cycle_running(self) -> bool:
        return self._cycle_lock.locked()

    # --- channels and pairs -------------------------------------------------------------

    async def channels(self) -> list[Channel]:
        """Channels from LNDg; raises the client's error after raising the LNDg alert."""
        try:
            channels = await self._fetch_channels()
        except Exception as exc:
            self.status.lndg_ok, self.status.lndg_error = False, str(exc)
            self.alert("lndg", f"LNDg: {exc}")
            raise
        self.status.lndg_ok, self.status.lndg_error = True, ""
        self.clear("lndg", f"LNDg is reachable again ({len(channels)} channels)")
        self._aliases.update((c.chan_id, c.alias) for c in channels)
        self._seed_exclusions(channels)
        return channels

    async def pairs(self) -> tuple[list[Channel], list[Pair]]:
        """The channels and every pair the rule gives now, exclusions applied."""
        channels = await self.channels()
        return channels, build_pairs(channels, self.store.excluded_ids())

    def plan(self, pairs: Sequence[Pair], now: float | None = None) -> list[Pair]:
        """One run per target, most depleted first, each with the best source available.

        A source not yet given to another target is preferred, so disjoint pairs can run
        side by side. A pair whose last run failed waits `FAILURE_COOLDOWN_SECONDS`, so the
        next cycle tries the target's next source instead of the same dead route.
        """
        now = self.clock() if now is None else now
        self._cooldown = {k: until for k, until in self._cooldown.items() if until > now}
        by_target: dict[str, list[Pair]] = {}
        for pair in pairs:
            if pair.key not in self._cooldown:
                by_target.setdefault(pair.target.chan_id, []).append(pair)
        planned: list[Pair] = []
        used: set[str] = set()
        for candidates in by_target.values():  # dicts keep the targets' order
            choice = next((p for p in candidates if p.source.chan_id not in used), candidates[0])
            used.add(choice.source.chan_id)
            planned.append(choice)
        return planned

    def _seed_exclusions(self, channels: Sequence[Channel]) -> None:
        # EXCLUDE_CHANNELS seeds the list once per entry, so a later /include sticks.
        fresh = [t for t in self.settings.exclude_channels if t not in self.store.seeded_tokens()]
        if not fresh:
            return
        done: list[str] = []
        for token in fresh:
            try:
                if token.isdigit():
                    chan_id, label = token, self._aliases.get(token, "")
                elif token.lower().count("x") == 2 and token.replace("x", "").isdigit():
                    chan_id = short_id_to_chan_id(token)
                    label = self._aliases.get(chan_id, "")
                else:
                    found = resolve_channel(token, channels)
                    chan_id, label = found.chan_id, found.alias
            except (ChannelLookupError, ValueError) as exc:
                log.warning("EXCLUDE_CHANNELS entry %r not applied: %s", token, exc)
                continue
            self.store.exclude(chan_id, label, added_by="EXCLUDE_CHANNELS")
            done.append(token)
        self.store.mark_seeded(done)

    # --- cycles -------------------------------------------------------------------------

    async def cycle(
        self, *, dry_run: bool | None = None, ignore_pause: bool = False
    ) -> CycleFinished:
        """One cycle: read channels, plan, run. Never two at once: a second call waits."""
        async with self._cycle_lock:
            return await self._cycle(self.dry_run if dry_run is None else dry_run, ignore_pause)

    async def _cycle(self, dry_run: bool, ignore_pause: bool) -> CycleFinished:
        started = self.clock()
        if self._stopping:
            return self._finish(started, 0, [], [], [], dry_run, skipped="stopping")
        self.status.last_cycle_started = started
        mode = "dry run" if dry_run else "live"
        log.info("cycle start (%s)", mode)
        if self.store.is_paused(started) and not ignore_pause:
            log.info("cycle skipped: paused")
            return self._finish(started, 0, [], [], [], dry_run, skipped="paused")
        try:
            channels, pairs = await self.pairs()
        except Exception as exc:
            log.error("cycle skipped: %s", exc)
            return self._finish(started, 0, [], [], [], dry_run, skipped=str(exc))
        planned = self.plan(pairs)
        log.info("%d channels, %d pairs, %d planned", len(channels), len(pairs), len(planned))
        for pair in planned:
            log.info("%s pfrom=%d pto=%d", pair.log_line(), pair.pfrom, pair.pto)
        results = self._dry(planned) if dry_run else await self._dispatch(planned)
        self.poll_ledger()
        return self._finish(started, len(channels), pairs, planned, results, dry_run)

    def _finish(
        self,
        started: float,
        channels: int,
        pairs: Sequence[Pair],
        planned: Sequence[Pair],
        results: Sequence[RunResult],
        dry_run: bool,
        skipped: str | None = None,
    ) -> CycleFinished:
        finished = self.clock()
        self.status.last_cycle_finished = finished
        self.status.last_cycle_pairs = len(pairs)
        self.status.last_cycle_runs = len(results)
        self.store.put_value("last_cycle", f"{started}:{finished}")
        event = CycleFinished(
            started,
            finished,
            channels,
            len(pairs),
            tuple(planned),
            tuple(results),
            dry_run,
            skipped,
        )
        log.info(
            "cycle finish: %d runs in %.1fs%s",
            len(results),
            finished - started,
            f" ({skipped})" if skipped else "",
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

    async def _dispatch(self, planned: Sequence[Pair]) -> list[RunResult]:
        """Run the planned pairs on at most MAX_WORKERS workers, never two sharing a channel."""
        waiting = list(planned)
        free = list(range(1, self.settings.max_workers + 1))
        busy: set[str] = set()
        running: dict[asyncio.Task[RunResult], ActiveRun] = {}
        results: list[RunResult] = []
        try:
            while waiting or running:
                for pair in list(waiting):
                    if not free or self._stopping:
                        break
                    if pair.channels & busy:
                        continue
                    waiting.remove(pair)
                    busy |= pair.channels
                    active = ActiveRun(pair, free.pop(0), self.clock())
                    running[asyncio.create_task(self._run(active))] = active
                if not running:
                    break
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    active = running.pop(task)
                    busy -= active.pair.channels
                    free.append(active.worker)
                    results.append(task.result())
        except asyncio.CancelledError:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            raise
        return results

    async def _run(self, active: ActiveRun) -> RunResult:
        self.status.active[active.worker] = active
        log.info("worker %d: started %s", active.worker, active.pair.log_line())
        self.events.emit(RunStarted(active.pair, active.worker))
        try:
            result = await self.runner.run(active.pair, active.worker)
        finally:
            self.status.active.pop(active.worker, None)
        self._record(active, result)
        return result

    def _record(self, active: ActiveRun, result: RunResult) -> None:
        self.store.record_run(result)
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
        if result.outcome.is_failure:
            self._cooldown[active.pair.key] = self.clock() + self.settings.failure_cooldown_seconds
        if result.outcome in _SETUP_FAILURES:
            self.alert(
                "regolancer",
                f"regolancer: {result.outcome.describe}: {result.last_line or 'no output'}",
            )
        elif result.outcome != Outcome.STOPPED:
            self.clear("regolancer", "regolancer runs work again")
        self.events.emit(RunFinished(active.pair, active.worker, result))

    # --- ledger -------------------------------------------------------------------------

    def poll_ledger(self) -> list[Rebalance]:
        """Turn every new complete stat line into one ledger row (and its chat message)."""
        path = self.settings.stat_path
        added: list[Rebalance] = []
        while True:
            stored = self.store.stat_position()
            position = StatPosition(*stored) if stored else None
            try:
                batch = read_new_lines(path, position)
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
                    notify=self.notify,
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
            self._alerts.add(key)
            log.error("alert: %s", message)
            self.events.emit(AlertRaised(key, message))

    def clear(self, key: str, message: str) -> None:
        """End an alert episode with a recovery message; nothing if none was raised."""
        if key in self._alerts:
            self._alerts.discard(key)
            log.info("recovered: %s", message)
            self.events.emit(AlertCleared(key, message))

    async def wait_idle(self) -> None:
        """Wait until no cycle runs."""
        async with self._cycle_lock:
            return

    async def stop(self) -> None:
        """Start no new cycle or run; stop every running regolancer (whole process groups)."""
        self._stopping = True
        await self.runner.stop_all()
