"""The engine's view of what it may spend now: LNDg's rules, the budgets, LNDg's own work.

`core.spending` decides (pure); this reads what it decides on, cheaply for LNDg (a Django
app, often on a Raspberry Pi):

- LNDg's global AR settings, at most every SETTINGS_SECONDS;
- forwards and rebalance payments over EARNINGS_WINDOW_DAYS, only while
  EARNINGS_BUDGET_RATIO > 0, at most every EARNINGS_SECONDS (date-filtered reads);
- LNDg's pending and in-flight attempts, at most every OPEN_ATTEMPTS_SECONDS;
- today's fees from our own ledger (no LNDg read).

A read that fails keeps the last figures (logged); before the first settings read, LNDg's
code defaults apply (AR-MaxFeeRate 500), as on a fresh LNDg.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

from core.models import Channel, Pair
from core.node_records import ArSettings, Forward, LndgRebalance, Payment
from core.pairing import is_target, is_usable
from core.report_figures import day_bounds
from core.settings import Settings
from core.spending import (
    BudgetLeftTooSmall,
    DailyBudget,
    EarningsBudget,
    EarningsNotRead,
    FeePolicy,
    Skip,
    Uneconomic,
    lndg_working_peers,
    pair_skip,
    run_limits,
    target_skips,
    within_headroom,
)
from core.state import StateStore

log = logging.getLogger("core.spend_guard")

SETTINGS_SECONDS = 600.0
EARNINGS_SECONDS = 600.0
OPEN_ATTEMPTS_SECONDS = 60.0
# LNDg syncs LND's payments about every 20 s: our rows this much older than a read may not
# have been in it yet.
LNDG_SYNC_MARGIN_SECONDS = 60.0


class SpendingReads(Protocol):
    """What the guard reads from LNDg (core.lndg.LndgClient)."""

    async def fetch_settings(self) -> ArSettings: ...

    async def fetch_forwards(
        self, since: dt.datetime, until: dt.datetime | None = None
    ) -> Sequence[Forward]: ...

    async def fetch_payments(self, start: dt.datetime, end: dt.datetime) -> Sequence[Payment]: ...

    async def fetch_open_rebalances(self) -> Sequence[LndgRebalance]: ...


class SpendGuard:
    """Skip reasons per target and each run's own limits, from reads cached as above."""

    def __init__(
        self,
        settings: Settings,
        store: StateStore,
        lndg: SpendingReads,
        template: Mapping[str, Any],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.lndg = lndg
        self.template = template
        self.clock = clock
        self.ar = ArSettings()
        self.earnings = EarningsBudget(
            settings.earnings_budget_ratio, settings.earnings_window_days
        )
        self.lndg_peers: frozenset[str] = frozenset()
        self._earnings_read = False  # until then, with the budget on, nothing is spent blind
        self._earnings_at = 0.0  # when the figures were read: our fees since then are added
        self._read_at: dict[str, float] = {}

    @property
    def policy(self) -> FeePolicy:
        return self.settings.fee_policy

    # --- reading ------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Read what is due (see the module doc); a failed read keeps the last figures."""
        now = self.clock()
        if self.policy is FeePolicy.LNDG and self._due("settings", SETTINGS_SECONDS, now):
            self.ar = await self._read("LNDg's AR settings", self.lndg.fetch_settings(), self.ar)
        if self.earnings.enabled and self._due("earnings", EARNINGS_SECONDS, now):
            read = await self._read(
                "forwards and payments for the earnings budget", self._earnings(now), None
            )
            if read is not None:
                self.earnings, self._earnings_read = read, True
                self._earnings_at = now
        if self._due("open", OPEN_ATTEMPTS_SECONDS, now):
            attempts = await self._read(
                "LNDg's rebalancer attempts in flight", self.lndg.fetch_open_rebalances(), None
            )
            if attempts is not None:
                self.lndg_peers = lndg_working_peers(attempts)

    def _due(self, what: str, every: float, now: float) -> bool:
        if now - self._read_at.get(what, float("-inf")) < every:
            return False
        self._read_at[what] = now
        return True

    async def _read(self, what: str, reading: Any, fallback: Any) -> Any:
        try:
            return await reading
        except Exception as exc:
            log.warning("%s not read, keeping the last figures: %s", what, exc)
            return fallback

    async def _earnings(self, now: float) -> EarningsBudget:
        until = dt.datetime.fromtimestamp(now, dt.UTC)
        since = until - dt.timedelta(days=self.settings.earnings_window_days)
        forwards = await self.lndg.fetch_forwards(since)
        payments = await self.lndg.fetch_payments(since, until)
        return EarningsBudget.compute(
            forwards,
            payments,
            ratio=self.settings.earnings_budget_ratio,
            window_days=self.settings.earnings_window_days,
            now=until,
        )

    # --- deciding -----------------------------------------------------------------------

    def daily(self, now: float | None = None) -> DailyBudget:
        """Today's fees (ledger) against DAILY_FEE_BUDGET_SATS."""
        moment = dt.datetime.fromtimestamp(self.clock() if now is None else now, dt.UTC)
        zone = self.settings.zone
        midnight, _ = day_bounds(moment.astimezone(zone).date(), zone)
        rows = self.store.ledger(since=midnight.timestamp())
        return DailyBudget.today(
            rows, budget_sat=self.settings.daily_fee_budget_sats, now=moment, zone=zone
        )

    def skips(self, channels: Sequence[Channel], now: float | None = None) -> dict[str, Skip]:
        """Why each target the pairing rule gives is not rebalanced now (absent: it may be)."""
        daily = self.daily(now)
        unknown = self.earnings.enabled and not self._earnings_read
        earnings = self._earnings_now() if self.earnings.enabled and not unknown else None
        found: dict[str, Skip] = {}
        for channel in channels:
            if not (is_usable(channel) and is_target(channel)):
                continue
            reasons = target_skips(
                channel,
                self.ar,
                fee_policy=self.policy,
                earnings=earnings,
                daily=daily,
                lndg_peers=self.lndg_peers,
            )
            if unknown and not (reasons and isinstance(reasons[0], Uneconomic)):
                reasons.insert(0, EarningsNotRead())
            if reasons:
                found[channel.chan_id] = reasons[0]
        return found

    def _earnings_now(self) -> EarningsBudget:
        """The last read plus this daemon's fees since (its ledger): the forwards and payments
        are read every EARNINGS_SECONDS, and between two reads runs keep paying. Rows LNDg
        had not synced at the read may count twice; a budget errs on the side of spending less.
        """
        spent: dict[str, int] = {}
        for row in self.store.ledger(since=self._earnings_at - LNDG_SYNC_MARGIN_SECONDS):
            target = row.line.to_channel
            spent[target] = spent.get(target, 0) + row.line.fees_msat
        return self.earnings.plus_spent(spent)

    def for_run(self, pair: Pair) -> Pair | Skip:
        """The pair as its run is started, or why it is not started.

        Not started: no fee above the peer's (LNDg's cap, the template's own limit), or too
        little left of the target's earnings budget for one run of `min_amount`. Started: with
        its run's own fee limit and amount (FEE_POLICY=lndg), the amount cut so its fees stay
        within that budget (then no rapid rebalancing unless the budget pays for all the
        target's room). A fee limit the pair carries (the planner looking for a cheaper route
        than it knows) is kept where it is below LNDg's.
        """
        skip = pair_skip(self.template, pair.source, pair.target, self.ar, self.policy)
        if skip is not None:
            return skip
        limits = run_limits(self.template, pair.source, pair.target, self.ar, self.policy)
        if (
            pair.fee_limit_ppm is not None  # the planner looks for a cheaper route: its cap
            and limits.fee_limit_ppm is not None
            and pair.fee_limit_ppm < limits.fee_limit_ppm
        ):
            limits = replace(limits, fee_limit_ppm=pair.fee_limit_ppm)
        rapid: bool | None = None
        headroom = self._headroom(pair)
        if headroom is not None:
            cut = within_headroom(limits, pair.target, headroom, self._min_amount)
            if cut is None:
                assert limits.fee_limit_ppm is not None
                return BudgetLeftTooSmall(headroom, self._min_amount, limits.fee_limit_ppm)
            limits, allowed = cut
            rapid = None if allowed else False
        return Pair(
            pair.source,
            pair.target,
            pair.pfrom,
            pair.pto,
            fee_limit_ppm=limits.fee_limit_ppm,
            amount=limits.amount,
            rapid=rapid,
        )

    @property
    def _min_amount(self) -> int:
        value = self.template.get("min_amount")
        return value if isinstance(value, int) and value > 0 else 1

    def _headroom(self, pair: Pair) -> int | None:
        """msat the target may still cost (EARNINGS_BUDGET_RATIO, FEE_POLICY=lndg); None: no
        limit from the budget (off, not read yet, or the template's own fee keys)."""
        if (
            not self.earnings.enabled
            or not self._earnings_read
            or self.policy is FeePolicy.TEMPLATE
        ):
            return None
        return self._earnings_now().headroom_msat(pair.target.chan_id)
