"""The reads behind `/channel` and `/pnl`: LNDg's forwards, payments and rebalances, our
ledger and run records, handed to the pure core.pnl and core.channel_card.

Shared by the control surface (over the daemon's engine) and the CLI (which must not build
an engine beside a running daemon). One LNDg read at a time, as the contract asks.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Protocol

from core.channel_card import CARD_DAYS, ChannelCard, role_of
from core.models import Channel, Rebalance
from core.node_records import ArSettings, Forward, LndgRebalance, Payment
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
from core.report_figures import DEFAULT_MATCH_WINDOW_SECONDS
from core.spending import Skip
from core.state import StateStore

MAX_PNL_DAYS = 90

Inputs = tuple[Sequence[Forward], Sequence[Payment], Sequence[LndgRebalance], list[Rebalance]]


class NodeReads(Protocol):
    """What `/channel` and `/pnl` read from LNDg (core.lndg.LndgClient)."""

    async def fetch_forwards(
        self, since: dt.datetime, until: dt.datetime | None = None
    ) -> Sequence[Forward]: ...

    async def fetch_payments(self, start: dt.datetime, end: dt.datetime) -> Sequence[Payment]: ...

    async def fetch_rebalances(self, stop_after: dt.datetime) -> Sequence[LndgRebalance]: ...


class MoneyReader:
    """Cards and P&L over the state store and LNDg, in the operator's zone."""

    def __init__(
        self,
        store: StateStore,
        node: NodeReads,
        zone: dt.tzinfo,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.node = node
        self.zone = zone
        self.clock = clock

    async def card(
        self,
        channel: Channel,
        channels: Sequence[Channel],
        *,
        excluded: Collection[str],
        skipped: Mapping[str, Skip],
        ar: ArSettings,
    ) -> ChannelCard:
        """`channel`'s card; `skipped` and `ar` as the engine's spend guard has them now."""
        now = self.clock()
        moment = dt.datetime.fromtimestamp(now, dt.UTC)
        week, month = (period(days, moment, self.zone) for days in CARD_DAYS)
        inputs = await self._read(month)
        aliases = {c.chan_id: c.alias for c in channels}

        def money(span: Period) -> ChannelMoney:
            found = channel_money(*inputs, start=span.start, end=span.end, aliases=aliases)
            return found.get(channel.chan_id, ChannelMoney(channel.chan_id, channel.alias))

        since = month.start.timestamp()
        is_excluded = channel.chan_id in excluded
        return ChannelCard(
            channel=channel,
            role=role_of(channel, excluded=is_excluded, skip=skipped.get(channel.chan_id)),
            excluded=is_excluded,
            ar=ar,
            week=money(week),
            month=money(month),
            runs=channel_runs(self.store.runs(since=since), channel.chan_id),
            sources=tuple(sources_that_worked(self.store.ledger(since=since), channel.chan_id)),
            zone_name=month.zone_name,
            now=now,
        )

    async def pnl(self, days: int, channels: Sequence[Channel]) -> Pnl:
        """Every channel that earned or cost anything in the last `days` local days."""
        if not 1 <= days <= MAX_PNL_DAYS:
            raise ValueError(f"a period lasts 1 to {MAX_PNL_DAYS} days")
        span = period(days, dt.datetime.fromtimestamp(self.clock(), dt.UTC), self.zone)
        inputs = await self._read(span)
        aliases = {c.chan_id: c.alias for c in channels}
        return make_pnl(
            span, channel_money(*inputs, start=span.start, end=span.end, aliases=aliases)
        )

    async def _read(self, span: Period) -> Inputs:
        """Forwards of the period; payments, LNDg's rebalances and the ledger a match window
        wider, so a rebalance at the period's edge is attributed as the daily report does."""
        margin = dt.timedelta(seconds=DEFAULT_MATCH_WINDOW_SECONDS)
        forwards = await self.node.fetch_forwards(span.start, span.end)
        payments = await self.node.fetch_payments(span.start - margin, span.end + margin)
        rebalances = await self.node.fetch_rebalances(span.start - margin)
        ledger = self.store.ledger(
            (span.start - margin).timestamp(), (span.end + margin).timestamp() + 1
        )
        return forwards, payments, rebalances, ledger
