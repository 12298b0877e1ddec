"""Per-channel money over a period: what a channel earned routing against what rebalancing
into it cost, by tool; this daemon's runs on it and the sources that worked. Pure, no I/O.

The rules are the contract's (/work/shared/contracts/lndg.md) and the daily report's:

- Revenue of a channel: the `fee` (sats, kept as msat) of forwards whose `chan_id_out` is
  that channel, dated in the period.
- Rebalancing cost into a channel: the `fee` of succeeded payments whose `rebal_chan` is that
  channel, created in the period, split by tool as `core.report_figures.compute_day` does:
  LNDg's by payment hash, this daemon's by matching ledger rows (`match_ledger`), the rest
  other tools. A ledger row LNDg never showed still counts for this daemon, on its own date.
- Net = revenue − cost (all tools).

A period is `days` local days (TIMEZONE) ending with today, from local midnight of the
first day to `end` (now): the same days `/report 7d` covers.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo

from core.models import Outcome, Rebalance, RunResult
from core.node_records import Forward, LndgRebalance, Payment, as_utc
from core.report_figures import (
    DEFAULT_MATCH_WINDOW_SECONDS,
    Authorship,
    ChannelNet,
    DayIndex,
    DayMoney,
    RunStats,
    Share,
    authorship,
    day_bounds,
    run_stats,
    zone_name,
)

BEST_WORST = 3  # channels named as the worst and the best net in the daily report


@dataclass(frozen=True, slots=True)
class Period:
    """Local days `first_day`..`last_day` in `zone`, as the instants `[start, end)` (UTC)."""

    first_day: date
    last_day: date
    zone: tzinfo
    start: datetime
    end: datetime

    @property
    def days(self) -> int:
        return (self.last_day - self.first_day).days + 1

    @property
    def zone_name(self) -> str:
        return zone_name(self.zone)


def period(days: int, now: datetime, zone: tzinfo) -> Period:
    """The `days` local days ending with `now`'s day, cut at `now`."""
    if days < 1:
        raise ValueError("a period lasts at least one day")
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware (e.g. datetime.now(UTC))")
    last = now.astimezone(zone).date()
    first = last - timedelta(days=days - 1)
    return Period(first, last, zone, day_bounds(first, zone)[0], now.astimezone(UTC))


def day_period(day: date, zone: tzinfo, days: int = 1) -> Period:
    """The `days` whole local days ending with `day`."""
    first = day - timedelta(days=days - 1)
    return Period(first, day, zone, day_bounds(first, zone)[0], day_bounds(day, zone)[1])


@dataclass(frozen=True, slots=True)
class ChannelMoney:
    """One channel over a period: forwards out and their fees; rebalancing fees into it."""

    chan_id: str
    alias: str = ""
    forwards: int = 0
    routed_msat: int = 0
    earned_msat: int = 0
    daemon: Share = field(default_factory=Share)
    lndg: Share = field(default_factory=Share)
    other: Share = field(default_factory=Share)

    @property
    def cost(self) -> Share:
        """Rebalances into the channel by every tool."""
        return self.daemon + self.lndg + self.other

    @property
    def net_msat(self) -> int:
        return self.earned_msat - self.cost.fee_msat

    @property
    def label(self) -> str:
        return self.alias or self.chan_id


@dataclass
class _Sums:
    alias: str = ""
    forwards: int = 0
    routed_msat: int = 0
    earned_msat: int = 0
    by_tool: dict[str, Share] = field(
        default_factory=lambda: {"daemon": Share(), "lndg": Share(), "other": Share()}
    )


def _msat(amount_sat: float) -> int:
    """LNDg's float sats to whole msat (they hold msat / 1000)."""
    return round(amount_sat * 1000)


def channel_money(
    forwards: Iterable[Forward],
    payments: Iterable[Payment],
    lndg_rebalances: Iterable[LndgRebalance],
    ledger: Iterable[Rebalance],
    *,
    start: datetime,
    end: datetime,
    aliases: Mapping[str, str] = {},
    match_window_seconds: float = DEFAULT_MATCH_WINDOW_SECONDS,
) -> dict[str, ChannelMoney]:
    """Every channel that forwarded out or was rebalanced into in `[start, end)`.

    Payments and ledger rows should reach a match window beyond the period (as the daily
    report's), so a rebalance that straddles `start` is attributed the same way both sides.
    """
    paid = authorship(payments, lndg_rebalances, ledger, match_window_seconds)
    return money_of(forwards, paid, start=start, end=end, aliases=aliases)


def money_of(
    forwards: Iterable[Forward],
    paid: Authorship,
    *,
    start: datetime,
    end: datetime,
    aliases: Mapping[str, str] = {},
) -> dict[str, ChannelMoney]:
    """`channel_money` from an attribution already made (one for several periods)."""
    start, end = as_utc(start), as_utc(end)
    sums: defaultdict[str, _Sums] = defaultdict(_Sums)
    for forward in forwards:
        if start <= forward.forward_date < end:
            one = sums[forward.chan_id_out]
            one.forwards += 1
            one.routed_msat += forward.amt_out_msat
            one.earned_msat += _msat(forward.fee_sat)
            one.alias = one.alias or forward.chan_out_alias
    for payment in paid.rebalances:
        if not start <= payment.creation_date < end:
            continue
        assert payment.rebal_chan is not None
        share = Share(1, _msat(payment.value), _msat(payment.fee))
        sums[payment.rebal_chan].by_tool[paid.tool(payment)] += share
    first, last = start.timestamp(), end.timestamp()
    for row in paid.unmatched:
        if first <= row.line.timestamp < last:
            one = sums[row.line.to_channel]
            one.by_tool["daemon"] += Share(1, row.line.amount_msat, row.line.fees_msat)
            one.alias = one.alias or row.to_alias
    return {
        chan_id: ChannelMoney(
            chan_id=chan_id,
            alias=aliases.get(chan_id) or one.alias,
            forwards=one.forwards,
            routed_msat=one.routed_msat,
            earned_msat=one.earned_msat,
            daemon=one.by_tool["daemon"],
            lndg=one.by_tool["lndg"],
            other=one.by_tool["other"],
        )
        for chan_id, one in sums.items()
    }


def by_net(channels: Iterable[ChannelMoney]) -> list[ChannelMoney]:
    """Worst net first (ties: chan_id), so what needs a look is on top."""
    return sorted(channels, key=lambda c: (c.net_msat, c.chan_id))


@dataclass(frozen=True, slots=True)
class Pnl:
    """Every channel that earned or cost anything in the period, worst net first, and totals."""

    period: Period
    channels: tuple[ChannelMoney, ...]

    @property
    def revenue_msat(self) -> int:
        return sum(c.earned_msat for c in self.channels)

    @property
    def forwards(self) -> int:
        return sum(c.forwards for c in self.channels)

    @property
    def daemon(self) -> Share:
        return sum((c.daemon for c in self.channels), Share())

    @property
    def lndg(self) -> Share:
        return sum((c.lndg for c in self.channels), Share())

    @property
    def other(self) -> Share:
        return sum((c.other for c in self.channels), Share())

    @property
    def cost(self) -> Share:
        return self.daemon + self.lndg + self.other

    @property
    def net_msat(self) -> int:
        return self.revenue_msat - self.cost.fee_msat

    @property
    def cost_share(self) -> float | None:
        """Rebalancing cost as % of routing revenue; None when nothing was earned."""
        return cost_share(self.cost.fee_msat, self.revenue_msat)


def cost_share(cost_msat: int, revenue_msat: int) -> float | None:
    return None if revenue_msat <= 0 else cost_msat * 100 / revenue_msat


def make_pnl(period: Period, money: Mapping[str, ChannelMoney]) -> Pnl:
    return Pnl(period, tuple(by_net(money.values())))


def worst_and_best(
    channels: Iterable[ChannelMoney], count: int = BEST_WORST
) -> tuple[tuple[ChannelNet, ...], tuple[ChannelNet, ...]]:
    """The `count` channels that lost most (net < 0) and earned most (net > 0)."""
    ordered = by_net(channels)
    worst = [c for c in ordered if c.net_msat < 0][:count]
    best = [c for c in reversed(ordered) if c.net_msat > 0][:count]

    def net(c: ChannelMoney) -> ChannelNet:
        return ChannelNet(c.chan_id, c.alias, c.net_msat)

    return tuple(map(net, worst)), tuple(map(net, best))


def day_money(
    day: date,
    zone: tzinfo,
    forwards: Sequence[Forward],
    payments: Sequence[Payment],
    ledger: Sequence[Rebalance] = (),
    window_days: int = 7,
) -> DayMoney:
    """The daily report's money lines: the day's revenue, the worst and best 7-day nets.

    The nets count every tool's rebalances, with this daemon's ledger rows LNDg never showed
    (as the report's node total does); no split by tool is needed, so LNDg's rows are not.
    """
    return days_money([day], zone, forwards, payments, ledger, window_days)[0]


def days_money(
    days: Sequence[date],
    zone: tzinfo,
    forwards: Sequence[Forward],
    payments: Sequence[Payment],
    ledger: Sequence[Rebalance] = (),
    window_days: int = 7,
    *,
    nets: bool = True,
) -> list[DayMoney]:
    """`day_money` for each of the distinct `days`, attributing the inputs once.

    `nets` False leaves out the worst and best nets (a summed report drops them anyway).
    """
    revenue = [0] * len(days)
    count = [0] * len(days)
    index = DayIndex(days, zone)
    for forward in forwards:
        slot = index.at(forward.forward_date)
        if slot is not None:
            revenue[slot] += _msat(forward.fee_sat)
            count[slot] += 1
    if not nets:
        return [DayMoney(revenue[n], count[n], window_days=window_days) for n in range(len(days))]
    paid = authorship(payments, [], ledger)
    aliases = {row.line.to_channel: row.to_alias for row in ledger if row.to_alias}
    aliases |= {row.line.from_channel: row.from_alias for row in ledger if row.from_alias}
    found: list[DayMoney] = []
    for n, day in enumerate(days):
        week = day_period(day, zone, window_days)
        money = money_of(forwards, paid, start=week.start, end=week.end, aliases=aliases)
        worst, best = worst_and_best(money.values())
        found.append(DayMoney(revenue[n], count[n], worst, best, window_days))
    return found


# ---------------------------------------------------------------------------------------------
# This daemon's runs on a channel, and the sources that worked for it


@dataclass(frozen=True, slots=True)
class ChannelRuns:
    """This daemon's runs with the channel as target (`into`) and as source (`out_of`)."""

    into: RunStats = field(default_factory=RunStats)
    out_of: RunStats = field(default_factory=RunStats)
    last: RunResult | None = None  # the newest run on it that was started


def channel_runs(runs: Iterable[RunResult], chan_id: str) -> ChannelRuns:
    """Attempts and success rates as the daily report counts them; the newest run started."""
    runs = list(runs)
    into = [r for r in runs if r.target == chan_id]
    out_of = [r for r in runs if r.source == chan_id]
    started = [r for r in into + out_of if r.outcome is not Outcome.DRY_RUN]
    last = max(started, key=lambda r: (r.started_at, r.ended_at), default=None)
    return ChannelRuns(run_stats(into), run_stats(out_of), last)


@dataclass(frozen=True, slots=True)
class WorkedSource:
    """A source this daemon rebalanced from into the channel: how often, how much, at what fee."""

    chan_id: str
    alias: str
    share: Share


def sources_that_worked(
    ledger: Iterable[Rebalance], chan_id: str, count: int = BEST_WORST
) -> list[WorkedSource]:
    """The sources of this daemon's rebalances into `chan_id`, most used first."""
    found: dict[str, WorkedSource] = {}
    for row in ledger:
        line = row.line
        if line.to_channel != chan_id:
            continue
        before = found.get(line.from_channel, WorkedSource(line.from_channel, "", Share()))
        found[line.from_channel] = WorkedSource(
            line.from_channel,
            before.alias or row.from_alias,
            before.share + Share(1, line.amount_msat, line.fees_msat),
        )
    ordered = sorted(
        found.values(), key=lambda s: (-s.share.count, -s.share.amount_msat, s.chan_id)
    )
    return ordered[:count]
