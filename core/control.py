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

from core.channel_card import ChannelCard
from core.channel_ref import resolve_among, resolve_channel
from core.engine import ActiveRun, Engine
from core.events import CycleFinished, Mode
from core.models import Channel, Outcome, Pair, Rebalance
from core.money_reads import MoneyReader, NodeReads
from core.node_records import ArSettings
from core.pairing import PairView
from core.pnl import Pnl
from core.report_figures import day_bounds
from core.state import Exclusion, Totals

log = logging.getLogger("core.control")

# A pause this far ahead reads as "until resume" (a date that far cannot be shown).
FAR_SECONDS = 10 * 365 * 86400.0
DRY_RUN_LOCKED = "DRY_RUN=true is set in the environment; change it there."


NO_MONEY = "Money figures are not available in this process (no LNDg reader)."


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
        money = self._money()
        channels = await self.engine.channels()  # also refreshes the skip reasons
        guard = self.engine.guard
        return await money.card(
            resolve_channel(reference, channels),
            channels,
            excluded=self.engine.store.excluded_ids(),
            skipped=self.engine.skipped,
            ar=guard.ar if guard is not None else ArSettings(),
        )

    async def pnl(self, days: int) -> Pnl:
        """Every channel that earned or cost anything in the last `days` local days.

        Raises LNDg's error when it cannot be read, Refused without an LNDg reader.
        """
        money = self._money()
        return await money.pnl(days, await self.engine.channels())

    def _money(self) -> MoneyReader:
        if self.node is None:
            raise Refused(NO_MONEY)
        settings = self.engine.settings
        return MoneyReader(self.engine.store, self.node, settings.zone, self.clock)
