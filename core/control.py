"""The control surface: everything the operator can ask of the daemon, as typed calls.

The chat's handlers and the CLI call this; none of them reaches into the engine's store or
parses what the engine wrote. Requests that cannot be done raise `Refused` with a sentence
for the operator; channel references that name nothing raise `ChannelLookupError`.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from core.channel_card import CARD_DAYS, ChannelCard, role_of
from core.channel_ref import resolve_among, resolve_channel
from core.engine import ActiveRun, Engine
from core.events import CycleFinished, Mode
from core.models import Channel, Outcome, Pair, Rebalance
from core.node_records import ArSettings, Forward, LndgRebalance, Payment
from core.pairing import PairView
from core.pnl import (
    ChannelMoney,
    Period,
    Pnl,
    channel_money,
    channel_runs,
    make_pnl,
    period,
    sources_that_worked,
)
from core.report_figures import DEFAULT_MATCH_WINDOW_SECONDS, day_bounds
from core.state import Exclusion, Totals

log = logging.getLogger("core.control")

# A pause this far ahead reads as "until resume" (a date that far cannot be shown).
FAR_SECONDS = 10 * 365 * 86400.0
DRY_RUN_LOCKED = "DRY_RUN=true is set in the environment; change it there."


MAX_PNL_DAYS = 90
NO_MONEY = "Money figures are not available in this process (no LNDg reader)."


class NodeReads(Protocol):
    """What `/channel` and `/pnl` read from LNDg (core.lndg.LndgClient), one read at a time."""

    async def fetch_forwards(
        self, since: dt.datetime, until: dt.datetime | None = None
    ) -> Sequence[Forward]: ...

    async def fetch_payments(self, start: dt.datetime, end: dt.datetime) -> Sequence[Payment]: ...

    async def fetch_rebalances(self, stop_after: dt.datetime) -> Sequence[LndgRebalance]: ...


class Refused(Exception):
    """A request the daemon will not do now; the message says why, for the operator."""


@dataclass(frozen=True, slots=True)
class Status:
    """What `/status` shows, as values."""

    now: float
    mode: Mode
    last_cycle: tuple[float, float] | None  # (started, finished) of the last finished cycle
    next_cycle: float | None
    cycle_running: bool
    active: tuple[ActiveRun, ...]
    today: Totals
    outcomes: dict[Outcome, int]
    lndg_ok: bool | None
    lndg_error: str
    daily_fee_budget_sat: int = 0  # DAILY_FEE_BUDGET_SATS (0: none); today.fee_sat is spent


@dataclass(frozen=True, slots=True)
class Schedule:
    """What the runtime tells the control surface: when the next cycle is, how to start one."""

    next_cycle: Callable[[], float | None] = lambda: None
    # Starts a manual cycle in the background; None where nothing runs in the background.
    start_cycle: Callable[[], object] | None = None


def day_start(now: float, zone: dt.tzinfo) -> float:
    """Where `now`'s local day began, as a Unix time (DST-correct, like the daily report)."""
    start, _ = day_bounds(dt.datetime.fromtimestamp(now, zone).date(), zone)
    return start.timestamp()


class Control:
    """Pause, resume, dry run, run now, exclusions, pairs and status, over one engine."""

    def __init__(
        self,
        engine: Engine,
        schedule: Schedule | None = None,
        clock: Callable[[], float] = time.time,
        node: NodeReads | None = None,
    ) -> None:
        self.engine = engine
        self.schedule = schedule or Schedule()
        self.clock = clock
        self.node = node  # forwards and payments for /channel and /pnl (None: not here)

    # --- switches -----------------------------------------------------------------------

    def mode(self) -> Mode:
        until = self.engine.store.paused_until()
        paused = until if until is not None and until > self.clock() else None
        return Mode(self.engine.dry_run, paused)

    @property
    def dry_run_locked(self) -> bool:
        """DRY_RUN=true in the environment: the chat cannot switch dry run off."""
        return self.engine.settings.dry_run

    def set_dry_run(self, on: bool) -> Mode:
        if not on and self.dry_run_locked:
            raise Refused(DRY_RUN_LOCKED)
        self.engine.store.dry_run = on
        log.info("dry run switched %s", "on" if on else "off")
        return self.mode()

    def pause(self, seconds: float | None = None) -> Mode:
        """No new run for `seconds` (None: until `resume`), at once; runs in flight finish."""
        self.engine.pause(self.clock() + seconds if seconds else float("inf"))
        return self.mode()

    def resume(self) -> Mode:
        if self.engine.store.paused_until() is None:
            raise Refused("Not paused.")
        self.engine.resume()
        return self.mode()

    @property
    def cycle_running(self) -> bool:
        return self.engine.cycle_running

    @property
    def paused(self) -> bool:
        return self.engine.store.paused_until() is not None

    def run_now(self) -> None:
        """Start a cycle now, through a pause set before it (a later pause stops its runs)."""
        if self.cycle_running:
            raise Refused("A cycle is already running; /status shows its runs.")
        if self.schedule.start_cycle is None:
            raise Refused("Nothing runs cycles in this process.")
        self.schedule.start_cycle()

    async def run_cycle(self, *, dry_run: bool | None = None) -> CycleFinished:
        """One cycle now, in the caller's task (the CLI's `cycle`), through a pause."""
        return await self.engine.cycle(dry_run=dry_run, ignore_pause=True)

    # --- channels -----------------------------------------------------------------------

    async def pairs(self) -> tuple[list[Channel], PairView]:
        """The channels and every pair the rule gives now; raises LNDg's error."""
        return await self.engine.pairs()

    def skipped_targets(self, channels: Sequence[Channel]) -> list[tuple[Channel, str]]:
        """Targets the spending rules leave alone now (core.spending), with why."""
        skipped = self.engine.skipped
        return [(c, skipped[c.chan_id].describe()) for c in channels if c.chan_id in skipped]

    def plan(self, channels: Sequence[Channel]) -> list[Pair]:
        """What the next cycle would run on these channels."""
        return self.engine.plan(channels)

    async def exclude(self, reference: str) -> tuple[Channel, bool]:
        """Keep an open channel out of every pair; (the channel, whether it was new)."""
        channel = resolve_channel(reference, await self.engine.channels())
        added = self.engine.store.exclude(channel.chan_id, channel.alias, added_by="chat")
        return channel, added

    def include(self, reference: str) -> tuple[Exclusion, bool]:
        """Take an excluded channel back in, found among the exclusions (it may be closed)."""
        found = resolve_among(
            reference, self.engine.store.exclusions(), lambda e: e.chan_id, lambda e: e.label
        )
        return found, self.engine.store.include(found.chan_id)

    def exclusions(self) -> list[Exclusion]:
        return self.engine.store.exclusions()

    # --- reading ------------------------------------------------------------------------

    def status(self) -> Status:
        now = self.clock()
        engine = self.engine
        since = day_start(now, engine.settings.zone)
        return Status(
            now=now,
            mode=self.mode(),
            last_cycle=engine.status.last_cycle,
            next_cycle=self.schedule.next_cycle(),
            cycle_running=engine.cycle_running,
            active=tuple(engine.status.active.values()),
            today=engine.store.totals(since=since),
            outcomes=engine.store.outcome_counts(since=since),
            lndg_ok=engine.status.lndg_ok,
            lndg_error=engine.status.lndg_error,
            daily_fee_budget_sat=engine.settings.daily_fee_budget_sats,
        )

    def last_rebalances(self, count: int) -> list[Rebalance]:
        return self.engine.store.last_rebalances(count)

    # --- money --------------------------------------------------------------------------

    async def channel(self, reference: str) -> ChannelCard:
        """One channel's card: role now and why, LNDg's settings, 7 and 30 days of money.

        Raises ChannelLookupError for a reference that names no open channel (or several),
        LNDg's error when it cannot be read, Refused without an LNDg reader.
        """
        node = self._node()
        channels = await self.engine.channels()  # also refreshes the skip reasons
        channel = resolve_channel(reference, channels)
        now = self.clock()
        zone = self.engine.settings.zone
        moment = dt.datetime.fromtimestamp(now, dt.UTC)
        week, month = (period(days, moment, zone) for days in CARD_DAYS)
        inputs = await self._read(node, month)
        aliases = {c.chan_id: c.alias for c in channels}

        def money(span: Period) -> ChannelMoney:
            found = channel_money(*inputs, start=span.start, end=span.end, aliases=aliases)
            return found.get(channel.chan_id, ChannelMoney(channel.chan_id, channel.alias))

        since = month.start.timestamp()
        guard = self.engine.guard
        excluded = channel.chan_id in self.engine.store.excluded_ids()
        return ChannelCard(
            channel=channel,
            role=role_of(channel, excluded=excluded, skip=self.engine.skipped.get(channel.chan_id)),
            excluded=excluded,
            ar=guard.ar if guard is not None else ArSettings(),
            week=money(week),
            month=money(month),
            runs=channel_runs(self.engine.store.runs(since=since), channel.chan_id),
            sources=tuple(
                sources_that_worked(self.engine.store.ledger(since=since), channel.chan_id)
            ),
            zone_name=month.zone_name,
            now=now,
        )

    async def pnl(self, days: int) -> Pnl:
        """Every channel that earned or cost anything in the last `days` local days.

        Raises LNDg's error when it cannot be read, Refused without an LNDg reader.
        """
        if not 1 <= days <= MAX_PNL_DAYS:
            raise ValueError(f"a period lasts 1 to {MAX_PNL_DAYS} days")
        node = self._node()
        channels = await self.engine.channels()
        span = period(
            days, dt.datetime.fromtimestamp(self.clock(), dt.UTC), self.engine.settings.zone
        )
        inputs = await self._read(node, span)
        aliases = {c.chan_id: c.alias for c in channels}
        return make_pnl(
            span, channel_money(*inputs, start=span.start, end=span.end, aliases=aliases)
        )

    def _node(self) -> NodeReads:
        if self.node is None:
            raise Refused(NO_MONEY)
        return self.node

    async def _read(
        self, node: NodeReads, span: Period
    ) -> tuple[Sequence[Forward], Sequence[Payment], Sequence[LndgRebalance], list[Rebalance]]:
        """Forwards of the period; payments, LNDg's rebalances and the ledger a match window
        wider, so a rebalance at the period's edge is attributed as the daily report does."""
        margin = dt.timedelta(seconds=DEFAULT_MATCH_WINDOW_SECONDS)
        forwards = await node.fetch_forwards(span.start, span.end)
        payments = await node.fetch_payments(span.start - margin, span.end + margin)
        rebalances = await node.fetch_rebalances(span.start - margin)
        ledger = self.engine.store.ledger(
            (span.start - margin).timestamp(), (span.end + margin).timestamp() + 1
        )
        return forwards, payments, rebalances, ledger
