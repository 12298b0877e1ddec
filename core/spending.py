"""What a run may spend: its fee cap, its amount, and the two budgets that can stop it. Pure.

Nothing here does I/O or imports the LNDg adapter: callers pass channels, LNDg's global AR
settings, forwards, payments and ledger rows, and get numbers and reasons back.

The fee cap of a run (FEE_POLICY=lndg, the default; `template` keeps the template's own fee
keys untouched) is the smaller of two limits, written to the run's config as `fee_limit_ppm`:

- **LNDg's cap** for the target, from LNDg's own rebalancer (rebalancer.py, `auto_schedule`,
  v1.10.x; the contract is /work/shared/contracts/lndg.md): ``cap_ppm = min(AR-MaxFeeRate,
  int(T.local_fee_rate * (T.ar_max_cost / 100)))``. The expression is LNDg's, float division
  first and truncation toward zero, so a boundary falls where LNDg's does: 100 ppm at 29 % is
  28 ppm for LNDg (``100 * 0.29 == 28.999…``), not 29. The contract's
  ``int(rate * cost / 100)`` and the issue's ``rate * cost // 100`` give 29 there, and ``//``
  would also floor a negative share (-5 % of 10 ppm: -1 instead of 0); both only ever differ
  at a result <= 0 or by that one float step, and we follow LNDg's source.
- **The template's own limit**, as regolancer computes it (rkfg/regolancer, routes.go
  `calcFeeMsat` / `calcEconFeeMsat`, and main.go `preflightChecks`, v1.12.x):
  `fee_limit_ppm` when it is > 0 (then `econ_ratio` and `lost_profit` play no part);
  otherwise `econ_ratio` (0 or absent: 1) x the target's `local_fee_rate`, minus the
  source's `local_fee_rate` when `lost_profit` is true, and only then capped at
  `econ_ratio_max_ppm` when that is not 0. regolancer works in msat per attempt; we work in
  whole ppm, rounded down, with the ratio taken as the decimal the operator wrote (0.29 is
  29/100), so the limit never exceeds the template's by more than regolancer's own 1-msat
  rounding. Base fees are left out: the channel rows carry none. That only lowers the
  limit for the target's base fee, but with `lost_profit` the source's base fee is not
  subtracted (1 sat of base fee is 20 ppm of a 50,000 sat run).

Which targets are skipped (`Uneconomic`): the issue's rule, ``cap_ppm <= 0 or cap_ppm <=
T.remote_fee_rate``, with the cap taken *after* AR-MaxFeeRate. LNDg itself compares its
uncapped rate with the peer's fee and applies AR-MaxFeeRate only to the fee it then allows;
a target whose AR-MaxFeeRate is at or below the peer's fee is then attempted by LNDg but can
never be paid (the peer's own fee on the last hop already reaches the cap), so skipping it
changes nothing but the failed run. A run whose template limit is at or below the peer's fee
is skipped for the same reason (`TemplateLimit`); so is one left with no fee at all, which
also keeps a `fee_limit_ppm` of 0 (regolancer: "use the default") out of every config.
"""

from __future__ import annotations

import enum
import math
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta, tzinfo
from fractions import Fraction
from typing import Any, ClassVar

from core import fmt
from core.models import Channel, Rebalance
from core.node_records import (
    PAYMENT_SUCCEEDED,
    REBALANCE_IN_FLIGHT,
    REBALANCE_PENDING,
    ArSettings,
    Forward,
    LndgRebalance,
    Payment,
    as_utc,
)
from core.report_figures import day_bounds, zone_name

# LNDg's rebalancer statuses for an attempt it has not finished.
_LNDG_WORKING_STATUSES = frozenset({REBALANCE_PENDING, REBALANCE_IN_FLIGHT})


class FeePolicy(enum.StrEnum):
    """Where a run's fee cap and amount come from (FEE_POLICY)."""

    LNDG = "lndg"  # LNDg's per-target cap and amount, never above the template's own limit
    TEMPLATE = "template"  # the template's fee and amount keys, as before


# ---------------------------------------------------------------------------------------------
# Fee cap and amount


def lndg_own_cap_ppm(target: Channel) -> int:
    """LNDg's `target_fee_rate`: `ar_max_cost` % of our fee out of `target`, its arithmetic."""
    return int(target.local_fee_rate * (target.ar_max_cost / 100))


def lndg_cap_ppm(target: Channel, settings: ArSettings) -> int:
    """LNDg's cap for refilling `target`: `min(AR-MaxFeeRate, int(rate * (cost / 100)))`."""
    return min(settings.max_fee_rate_ppm, lndg_own_cap_ppm(target))


def template_cap_ppm(template: Mapping[str, Any], source: Channel, target: Channel) -> int:
    """The template's own fee limit for this pair in whole ppm, as regolancer computes it.

    `fee_limit_ppm` > 0 wins outright. Otherwise `econ_ratio` (0 or absent: 1, unless a
    negative `fee_limit_ppm` is set, as in regolancer) x the target's fee, rounded down,
    minus the source's fee with `lost_profit`, then capped at `econ_ratio_max_ppm` (0: none).
    The result can be <= 0: regolancer would then stop with "max fee less than zero" or
    allow nothing.
    """
    fee_limit = _int_key(template, "fee_limit_ppm")
    if fee_limit > 0:
        return fee_limit
    ratio = _exact(template.get("econ_ratio", 0))
    if ratio == 0 and fee_limit == 0:
        ratio = Fraction(1)
    limit = math.floor(ratio * target.local_fee_rate)
    if template.get("lost_profit") is True:
        limit -= source.local_fee_rate
    econ_max = _int_key(template, "econ_ratio_max_ppm")
    if econ_max != 0 and limit > econ_max:
        limit = econ_max
    return limit


def run_fee_limit_ppm(
    template: Mapping[str, Any],
    source: Channel,
    target: Channel,
    settings: ArSettings,
) -> int:
    """The run's `fee_limit_ppm`: the smaller of LNDg's cap and the template's own limit.

    Only meaningful when it is above the peer's fee: check `pair_skip` first.
    """
    return min(lndg_cap_ppm(target, settings), template_cap_ppm(template, source, target))


def lndg_default_amount(capacity: int, target_pct: float) -> int:
    """LNDg's default `ar_amt_target`: AR-Target% of capacity, rounded half away from zero.

    LNDg writes it as `Round(F('capacity') * (value / 100))` (SQL ROUND) when it sets a
    channel's amount from AR-Target%; the percentage is taken as the decimal written.
    """
    exact = capacity * _exact(target_pct) / 100
    magnitude = math.floor(abs(exact) + Fraction(1, 2))
    return magnitude if exact >= 0 else -magnitude


def run_amount(target: Channel, template: Mapping[str, Any], settings: ArSettings) -> int | None:
    """The run's `amount` in sats: LNDg's `ar_amt_target`, never below the template's
    `min_amount` (regolancer refuses a `min_amount` above `amount`).

    An `ar_amt_target` of 0 takes LNDg's default, AR-Target% of capacity: 0 written to a
    channel through LNDg's API stores that default (LNDg's scheduler would skip a stored 0).
    None when even that and `min_amount` give nothing: the run keeps the template's amount.
    """
    amount = target.ar_amt_target
    if amount <= 0:
        amount = lndg_default_amount(target.capacity, settings.target_pct)
    amount = max(amount, _int_key(template, "min_amount"))
    return amount if amount > 0 else None


@dataclass(frozen=True, slots=True)
class RunLimits:
    """What a run's config gets instead of the template's fee and amount keys (None: keep)."""

    fee_limit_ppm: int | None = None
    amount: int | None = None


def run_limits(
    template: Mapping[str, Any],
    source: Channel,
    target: Channel,
    settings: ArSettings,
    fee_policy: FeePolicy = FeePolicy.LNDG,
) -> RunLimits:
    """The overrides for `core.regolancer_config.build_config` under `fee_policy`.

    Raises ValueError for a pair `pair_skip` would skip (no fee above the peer's): such a
    run must not start, and a `fee_limit_ppm` <= 0 would mean "no cap" to regolancer.
    """
    if fee_policy is FeePolicy.TEMPLATE:
        return RunLimits()
    fee_limit = run_fee_limit_ppm(template, source, target, settings)
    if fee_limit <= 0 or fee_limit <= target.remote_fee_rate:
        raise ValueError(
            f"fee limit {fee_limit} ppm leaves nothing above the peer's fee "
            f"{target.remote_fee_rate} ppm: this pair must be skipped"
        )
    return RunLimits(fee_limit, run_amount(target, template, settings))


def within_headroom(
    limits: RunLimits, target: Channel, headroom_msat: int, min_amount: int
) -> tuple[RunLimits, bool] | None:
    """A run's limits cut so its fees cannot take the target over its earnings budget.

    At its fee limit a run of `amount` sats pays at most amount x ppm / 1,000 msat; the amount
    is lowered until that fits the headroom (None: not even `min_amount` fits, no run).
    Rapid rebalancing doubles the amount on the same route up to the target's room (its remote
    balance), so it stays allowed (True) only when the headroom pays for all of that.
    """
    ppm, amount = limits.fee_limit_ppm, limits.amount
    if ppm is None or amount is None or ppm <= 0:
        return limits, True
    affordable = headroom_msat * 1000 // ppm  # sats whose fee at `ppm` fits the headroom
    if affordable < max(min_amount, 1):
        return None
    rapid = affordable >= target.remote_balance
    return RunLimits(ppm, min(amount, affordable)), rapid


# ---------------------------------------------------------------------------------------------
# Why a target or a pair is skipped


class SkipReason(enum.StrEnum):
    """The closed set of reasons a target is not rebalanced now (machine key for --json)."""

    UNECONOMIC = "uneconomic"
    TEMPLATE_LIMIT = "template_limit"
    EARNINGS_BUDGET = "earnings_budget"
    LNDG_WORKING = "lndg_working"
    DAILY_BUDGET = "daily_budget"
    EARNINGS_UNKNOWN = "earnings_unknown"


@dataclass(frozen=True, slots=True)
class Uneconomic:
    """LNDg's cap leaves nothing above the peer's fee into us: LNDg would not refill it."""

    reason: ClassVar[SkipReason] = SkipReason.UNECONOMIC
    cap_ppm: int
    remote_fee_ppm: int
    local_fee_rate: int
    ar_max_cost: int
    max_fee_rate_ppm: int

    def describe(self) -> str:
        cap = f"cap {fmt.ppm(self.cap_ppm)}"
        if self.cap_ppm > 0:
            return f"{cap} <= peer's fee {fmt.ppm(self.remote_fee_ppm)}"
        if self.ar_max_cost <= 0:
            return f"{cap}: ar_max_cost is {self.ar_max_cost}"
        if self.max_fee_rate_ppm <= 0:
            return f"{cap}: AR-MaxFeeRate is {self.max_fee_rate_ppm}"
        if self.local_fee_rate <= 0:
            return f"{cap}: our fee is {fmt.ppm(self.local_fee_rate)}"
        return f"{cap}: {self.ar_max_cost}% of our fee {fmt.ppm(self.local_fee_rate)} rounds to 0"


@dataclass(frozen=True, slots=True)
class TemplateLimit:
    """The template's own limit for this pair leaves nothing above the peer's fee."""

    reason: ClassVar[SkipReason] = SkipReason.TEMPLATE_LIMIT
    limit_ppm: int
    remote_fee_ppm: int

    def describe(self) -> str:
        if self.limit_ppm <= 0:
            return f"template limit {fmt.ppm(self.limit_ppm)}: no fee left to pay"
        limit, peer = fmt.ppm(self.limit_ppm), fmt.ppm(self.remote_fee_ppm)
        return f"template limit {limit} <= peer's fee {peer}"


@dataclass(frozen=True, slots=True)
class OverEarningsBudget:
    """Rebalances into the target cost at least `ratio` x what it earned in the window."""

    reason: ClassVar[SkipReason] = SkipReason.EARNINGS_BUDGET
    spent_msat: int
    earned_msat: int
    ratio: float
    window_days: int

    def describe(self) -> str:
        window = f"in {self.window_days} d"
        spent = f"spent {fmt.fee(self.spent_msat / 1000)}"
        if self.earned_msat <= 0:
            text = f"earned nothing {window}"
            return f"{spent}, {text}" if self.spent_msat > 0 else text
        text = f"{spent}, earned {fmt.fee(self.earned_msat / 1000)} {window}"
        return text if self.ratio == 1 else f"{text} (budget {self.ratio:g} x earned)"


@dataclass(frozen=True, slots=True)
class BudgetLeftTooSmall:
    """What is left of the target's earnings budget cannot pay one run of the smallest amount."""

    reason: ClassVar[SkipReason] = SkipReason.EARNINGS_BUDGET
    left_msat: int
    min_amount: int
    fee_limit_ppm: int

    def describe(self) -> str:
        return (
            f"{fmt.fee(self.left_msat / 1000)} left of its earnings budget: not the fee of "
            f"{fmt.sats(max(self.min_amount, 1))} at {fmt.ppm(self.fee_limit_ppm)}"
        )


@dataclass(frozen=True, slots=True)
class EarningsNotRead:
    """The earnings budget is on and LNDg's forwards were never read: nothing is spent blind."""

    reason: ClassVar[SkipReason] = SkipReason.EARNINGS_UNKNOWN

    def describe(self) -> str:
        return "earnings not read from LNDg yet (EARNINGS_BUDGET_RATIO is on)"


@dataclass(frozen=True, slots=True)
class LndgWorking:
    """LNDg has an attempt pending or in flight into this target's peer."""

    reason: ClassVar[SkipReason] = SkipReason.LNDG_WORKING

    def describe(self) -> str:
        return "LNDg is rebalancing this peer"


@dataclass(frozen=True, slots=True)
class DailyBudgetReached:
    """The fees this daemon paid today reached DAILY_FEE_BUDGET_SATS."""

    reason: ClassVar[SkipReason] = SkipReason.DAILY_BUDGET
    spent_msat: int
    budget_sat: int
    resumes_at: datetime  # local midnight, aware, in the operator's zone

    def describe(self) -> str:
        return (
            f"daily fee budget reached: {fmt.fee(self.spent_msat / 1000)} of "
            f"{fmt.sats(self.budget_sat)} paid today, runs resume at "
            f"{self.resumes_at:%Y-%m-%d %H:%M} {zone_name(self.resumes_at.tzinfo or UTC)}"
        )


Skip = (
    Uneconomic
    | TemplateLimit
    | OverEarningsBudget
    | BudgetLeftTooSmall
    | EarningsNotRead
    | LndgWorking
    | DailyBudgetReached
)


def skip_json(skip: Skip) -> dict[str, str]:
    """A skip as `pairs --json` shows it: the machine key and the operator's text."""
    return {"reason": skip.reason.value, "text": skip.describe()}


def uneconomic(target: Channel, settings: ArSettings) -> Uneconomic | None:
    """LNDg's skip rule: `cap_ppm <= 0 or cap_ppm <= T.remote_fee_rate` (equal is skipped)."""
    cap = lndg_cap_ppm(target, settings)
    if cap > 0 and cap > target.remote_fee_rate:
        return None
    return Uneconomic(
        cap_ppm=cap,
        remote_fee_ppm=target.remote_fee_rate,
        local_fee_rate=target.local_fee_rate,
        ar_max_cost=target.ar_max_cost,
        max_fee_rate_ppm=settings.max_fee_rate_ppm,
    )


def lndg_working_peers(attempts: Iterable[LndgRebalance]) -> frozenset[str]:
    """Peers (pubkeys) LNDg has a pending (0) or in-flight (1) attempt into."""
    return frozenset(
        attempt.last_hop_pubkey
        for attempt in attempts
        if attempt.status in _LNDG_WORKING_STATUSES and attempt.last_hop_pubkey
    )


def target_skips(
    target: Channel,
    settings: ArSettings,
    *,
    fee_policy: FeePolicy = FeePolicy.LNDG,
    earnings: EarningsBudget | None = None,
    daily: DailyBudget | None = None,
    lndg_peers: Collection[str] = frozenset(),
) -> list[Skip]:
    """Every reason `target` is not rebalanced now, the most lasting first.

    Uneconomic (only under FEE_POLICY=lndg: it is LNDg's cap), over its earnings budget,
    LNDg working its peer, the daily budget reached. Empty: it may be rebalanced.
    """
    skips: list[Skip] = []
    if fee_policy is FeePolicy.LNDG:
        cheap = uneconomic(target, settings)
        if cheap is not None:
            skips.append(cheap)
    if earnings is not None:
        over = earnings.skip(target.chan_id)
        if over is not None:
            skips.append(over)
    if target.remote_pubkey in lndg_peers:
        skips.append(LndgWorking())
    if daily is not None:
        reached = daily.skip()
        if reached is not None:
            skips.append(reached)
    return skips


def target_skip(
    target: Channel,
    settings: ArSettings,
    *,
    fee_policy: FeePolicy = FeePolicy.LNDG,
    earnings: EarningsBudget | None = None,
    daily: DailyBudget | None = None,
    lndg_peers: Collection[str] = frozenset(),
) -> Skip | None:
    """The first of `target_skips`, or None when `target` may be rebalanced now."""
    skips = target_skips(
        target,
        settings,
        fee_policy=fee_policy,
        earnings=earnings,
        daily=daily,
        lndg_peers=lndg_peers,
    )
    return skips[0] if skips else None


def pair_skip(
    template: Mapping[str, Any],
    source: Channel,
    target: Channel,
    settings: ArSettings,
    fee_policy: FeePolicy = FeePolicy.LNDG,
) -> Skip | None:
    """Why this pair's run cannot pay a route, from its fee caps alone (None: it can).

    Under FEE_POLICY=lndg: LNDg's cap for the target (`Uneconomic`), then the template's own
    limit for this source and target (`TemplateLimit`). Under `template`: never.
    """
    if fee_policy is FeePolicy.TEMPLATE:
        return None
    cheap = uneconomic(target, settings)
    if cheap is not None:
        return cheap
    limit = template_cap_ppm(template, source, target)
    if limit <= 0 or limit <= target.remote_fee_rate:
        return TemplateLimit(limit_ppm=limit, remote_fee_ppm=target.remote_fee_rate)
    return None


# ---------------------------------------------------------------------------------------------
# Budgets


@dataclass(frozen=True, slots=True)
class Earnings:
    """One target over the window: routing fees it earned, rebalancing fees paid into it."""

    earned_msat: int = 0
    spent_msat: int = 0


@dataclass(frozen=True, slots=True)
class EarningsBudget:
    """EARNINGS_BUDGET_RATIO k over EARNINGS_WINDOW_DAYS: a target is rebalanced only while
    spent < k x earned (strictly). k = 0 turns it off; with k > 0 a target that earned
    nothing is never rebalanced.

    earned: `fee` of forwards whose `chan_id_out` is the target (the outbound liquidity a
    rebalance refills is what they used). spent: `fee` of succeeded payments with
    `rebal_chan` = the target, made by any tool. Sums are kept in msat so they stay exact.
    """

    ratio: float
    window_days: int
    by_target: Mapping[str, Earnings] = field(default_factory=dict)

    @classmethod
    def compute(
        cls,
        forwards: Iterable[Forward],
        payments: Iterable[Payment],
        *,
        ratio: float,
        window_days: int,
        now: datetime,
    ) -> EarningsBudget:
        """Sum forwards and rebalance payments dated in `[now - window_days, now]`."""
        if window_days <= 0:
            raise ValueError("window_days must be at least 1")
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError("now must be timezone-aware (e.g. datetime.now(UTC))")
        end = now.astimezone(UTC)
        start = end - timedelta(days=window_days)
        earned: defaultdict[str, int] = defaultdict(int)
        spent: defaultdict[str, int] = defaultdict(int)
        for forward in forwards:
            if start <= as_utc(forward.forward_date) <= end:
                earned[forward.chan_id_out] += _msat(forward.fee_sat)
        for payment in payments:
            if (
                payment.status == PAYMENT_SUCCEEDED
                and payment.rebal_chan is not None
                and start <= as_utc(payment.creation_date) <= end
            ):
                spent[payment.rebal_chan] += _msat(payment.fee)
        return cls(
            ratio=ratio,
            window_days=window_days,
            by_target={
                chan_id: Earnings(earned_msat=earned[chan_id], spent_msat=spent[chan_id])
                for chan_id in earned.keys() | spent.keys()
            },
        )

    @property
    def enabled(self) -> bool:
        return self.ratio > 0

    def plus_spent(self, spent_msat: Mapping[str, int]) -> EarningsBudget:
        """The budget with fees LNDg has not shown yet added (this daemon's own, since the read)."""
        if not spent_msat:
            return self
        figures = dict(self.by_target)
        for chan_id, msat in spent_msat.items():
            known = figures.get(chan_id, Earnings())
            figures[chan_id] = Earnings(known.earned_msat, known.spent_msat + msat)
        return replace(self, by_target=figures)

    def headroom_msat(self, chan_id: str) -> int | None:
        """What the target may still cost before spent reaches k x earned; None: budget off."""
        if not self.enabled:
            return None
        figures = self.earnings(chan_id)
        return max(math.floor(_exact(self.ratio) * figures.earned_msat) - figures.spent_msat, 0)

    def earnings(self, chan_id: str) -> Earnings:
        """The target's figures over the window (zeros when nothing was recorded)."""
        return self.by_target.get(chan_id, Earnings())

    def allowed(self, chan_id: str) -> bool:
        """True while spent < k x earned, or when the budget is off (k = 0)."""
        if not self.enabled:
            return True
        figures = self.earnings(chan_id)
        return figures.spent_msat < _exact(self.ratio) * figures.earned_msat

    def skip(self, chan_id: str) -> OverEarningsBudget | None:
        """Why `chan_id` is over its budget, or None when it may be rebalanced."""
        if self.allowed(chan_id):
            return None
        figures = self.earnings(chan_id)
        return OverEarningsBudget(
            spent_msat=figures.spent_msat,
            earned_msat=figures.earned_msat,
            ratio=self.ratio,
            window_days=self.window_days,
        )


@dataclass(frozen=True, slots=True)
class DailyBudget:
    """DAILY_FEE_BUDGET_SATS (0: none) against the fees this daemon paid on one local day.

    The day is TIMEZONE's `[00:00, next 00:00)`, 23 or 25 hours on a DST change; fees are the
    ledger's (regolancer's stat lines), by the line's timestamp.
    """

    budget_sat: int
    spent_msat: int
    day: date
    zone: tzinfo

    @classmethod
    def today(
        cls, ledger: Iterable[Rebalance], *, budget_sat: int, now: datetime, zone: tzinfo
    ) -> DailyBudget:
        """The budget for the local day `now` falls in."""
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError("now must be timezone-aware (e.g. datetime.now(UTC))")
        day = now.astimezone(zone).date()
        start, end = day_bounds(day, zone)
        first, last = int(start.timestamp()), int(end.timestamp())
        spent = sum(row.line.fees_msat for row in ledger if first <= row.line.timestamp < last)
        return cls(budget_sat=budget_sat, spent_msat=spent, day=day, zone=zone)

    @property
    def reached(self) -> bool:
        """True once today's fees reach the budget (never when the budget is 0)."""
        return self.budget_sat > 0 and self.spent_msat >= self.budget_sat * 1000

    @property
    def resumes_at(self) -> datetime:
        """The next local midnight, aware in `zone`: when new runs may start again."""
        return day_bounds(self.day, self.zone)[1].astimezone(self.zone)

    def skip(self) -> DailyBudgetReached | None:
        """Why no run starts today, or None while the budget allows runs."""
        if not self.reached:
            return None
        return DailyBudgetReached(
            spent_msat=self.spent_msat, budget_sat=self.budget_sat, resumes_at=self.resumes_at
        )


# ---------------------------------------------------------------------------------------------
# Helpers


def _int_key(template: Mapping[str, Any], key: str) -> int:
    """An integer template key; absent (or not an integer, refused by check_template) is 0."""
    value = template.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int):
        return 0
    return value


def _exact(value: object) -> Fraction:
    """A JSON number as the decimal it was written as (0.29 is 29/100, not its binary float)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return Fraction(0)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value!r} is not a finite number")
    return Fraction(repr(value))


def _msat(amount_sat: float) -> int:
    """LNDg's float sats to whole msat (they hold msat / 1000)."""
    return round(amount_sat * 1000)
