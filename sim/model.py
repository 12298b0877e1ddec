"""The one model of a simulated node and of what a regolancer run on it does.

The demo (`sim.simulation`, behind the loopback LNDg and the regolancer stand-in) and the
benchmark's simulation (`bench.simulate`, in process on a virtual clock) both play this model,
so what the demo shows is what the figures measure.

The node: its channels as the daemon parses them from LNDg, their live local balances, and
how well each channel's peer routes (its quality, drawn once from the seed). A run of a pair
finds a route with the product of its two channels' qualities; a share of pairs may have no
usable route at all, and a channel with many HTLCs in flight fails more often.
`RouteModel.channel_share` sets how much of a pair's odds is that product of per-channel
qualities (1, the structure the planner's per-channel records learn) and how much a draw of
the pair's own from the same distribution (0: every pair on its own).

Route fees: a route into a target costs at least the target peer's fee into us
(`remote_fee_rate`, the last hop) plus the hops before it, drawn once per pair (log-normal,
median `ROUTE_PPM_MEDIAN`): some pairs cost more than a run's fee cap, and such a run finds no
route within its limit.

A run (regolancer's contract, `contracts/regolancer.md`): regolancer reads the live balances
at start. If the source no longer passes `pfrom`, the target no longer passes `pto`, or the
amount capped by the balances (the source's local, the target's remote less 2 % of the
source's capacity) falls below `min_amount`, the pair no longer qualifies ("no channelpairs
available"). Otherwise it finds a route with the pair's odds and pays the amount at the pair's
fee rate, or finds none.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from core.models import Channel, Outcome

MIN_AMOUNT = 10_000  # min_amount in the simulated regolancer's config
BUSY_HTLCS = 25  # HTLCs in flight on a busy channel (above the planner's default limit of 10)
BUSY_PERIOD_SECONDS = 600.0  # which channels are busy changes this often
BUSY_PENALTY = 0.3  # a busy channel's runs find a route this much as often
ROUTE_PPM_MEDIAN = 150  # the hops before the last of a pair's route (ppm), drawn per pair
ROUTE_PPM_SIGMA = 0.8
ROUTE_PPM_MAX = 5_000


@dataclass(frozen=True, slots=True)
class RouteModel:
    """How well the node's peers route; qualities are drawn uniformly from these ranges.

    Channels with auto-rebalance are targets, the others sources. A hard target (a low-fee
    channel, hardly reachable within its fee limit) draws from `hard_target_quality`.
    """

    source_quality: tuple[float, float]
    target_quality: tuple[float, float]
    hard_target_share: float = 0.0
    hard_target_quality: tuple[float, float] = (0.1, 0.3)
    dead_pair_share: float = 0.0  # pairs with no usable route at all
    busy_share: float = 0.0  # channels with many HTLCs in flight at any time
    channel_share: float = 1.0  # of a pair's odds from its channels' qualities (rest: its own)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one run of a pair does: pays `amount_sat` for `fee_sat`, or moves nothing.

    `outcome` is SUCCESS, NO_ROUTE or NOT_QUALIFIED (the pair no longer qualifies).
    """

    outcome: Outcome
    amount_sat: int = 0
    fee_sat: int = 0


class Node:
    """A node's channels with their live balances, and how well each pair of them routes.

    Not thread-safe: callers that share it across threads hold their own lock.
    """

    def __init__(self, channels: Sequence[Channel], routes: RouteModel, seed: int) -> None:
        self.routes = routes
        self.seed = seed
        self.channels = {c.chan_id: c for c in channels}
        self.local = {c.chan_id: c.local_balance for c in channels}
        # What neither side can spend (commit fee, pending HTLCs), as LNDg showed it at start.
        self._reserve = {
            c.chan_id: max(c.capacity - c.local_balance - c.remote_balance, 0) for c in channels
        }
        rng = random.Random(seed)
        self.quality: dict[str, float] = {}
        for chan_id, channel in self.channels.items():
            if channel.auto_rebalance:
                hard = rng.random() < routes.hard_target_share
                span = routes.hard_target_quality if hard else routes.target_quality
            else:
                span = routes.source_quality
            self.quality[chan_id] = rng.uniform(*span)
        self._pairs: dict[tuple[str, str], float] = {}
        self._busy: dict[tuple[str, int], bool] = {}
        self._fees: dict[tuple[str, str], int] = {}
        self._views: dict[str, tuple[int, bool, Channel]] = {}  # the last view of each

    # --- balances -----------------------------------------------------------------------

    def remote(self, chan_id: str) -> int:
        """The channel's live remote balance."""
        channel = self.channels[chan_id]
        return channel.capacity - self.local[chan_id] - self._reserve[chan_id]

    def local_pct(self, chan_id: str) -> int:
        """The live local % as the pairing rule computes it (pending outbound included)."""
        channel = self.channels[chan_id]
        effective = self.local[chan_id] + channel.pending_outbound
        return effective * 100 // channel.capacity if channel.capacity else 0

    def in_band(self, chan_id: str) -> bool:
        """Whether an auto-rebalanced channel's live local balance reached its band."""
        channel = self.channels[chan_id]
        return self.local[chan_id] * 100 // channel.capacity >= 100 - channel.ar_in_target

    def need(self, chan_id: str) -> int:
        """Sats the channel lacks to be within its band (0 when it is)."""
        channel = self.channels[chan_id]
        return max(
            -(-channel.capacity * (100 - channel.ar_in_target) // 100) - self.local[chan_id], 0
        )

    def surplus(self, chan_id: str) -> int:
        """Sats the channel holds above its `ar_out_target` (0 when it holds none)."""
        channel = self.channels[chan_id]
        effective = self.local[chan_id] + channel.pending_outbound
        return max(effective - channel.capacity * channel.ar_out_target // 100, 0)

    def move(self, source: str, target: str, amount: int, fee: float = 0.0) -> int:
        """`amount` out of `source` (with `fee`) into `target`, as far as both balances allow.

        Returns the sats that arrived in `target`.
        """
        arrived = max(min(amount, self.remote(target), self.local[source] - int(fee)), 0)
        if arrived:
            self.local[source] -= arrived + int(fee)
            self.local[target] += arrived
        return arrived

    def snapshot(
        self, balances: Mapping[str, int] | None = None, now: float = 0.0
    ) -> list[Channel]:
        """The channels as LNDg lists them: `balances` (default: live), HTLCs as of `now`."""
        shown = self.local if balances is None else balances
        return [self.view(chan_id, shown[chan_id], now) for chan_id in self.channels]

    def view(self, chan_id: str, local: int | None = None, now: float = 0.0) -> Channel:
        """One channel as LNDg lists it with `local` sats (default: live), HTLCs as of `now`.

        Channels are frozen, so a view is made once per balance and busy state and reused:
        the benchmark asks for hundreds of thousands of them and most channels do not move
        between two asks.
        """
        balance = self.local[chan_id] if local is None else local
        busy = self.busy(chan_id, now)
        made = self._views.get(chan_id)
        if made is not None and made[0] == balance and made[1] == busy:
            return made[2]
        channel = self.channels[chan_id]
        shown = channel.model_copy(
            update={
                "local_balance": balance,
                "remote_balance": channel.capacity - balance - self._reserve[chan_id],
                "htlc_count": BUSY_HTLCS if busy else channel.htlc_count,
            }
        )
        self._views[chan_id] = (balance, busy, shown)
        return shown

    # --- routes -------------------------------------------------------------------------

    def odds(self, source: str, target: str, now: float = 0.0) -> float:
        """How likely one run of the pair finds and pays a route at `now` (0: a dead pair)."""
        key = (source, target)
        if key not in self._pairs:
            rng = random.Random(f"{self.seed}:{source}:{target}")
            dead = rng.random() < self.routes.dead_pair_share
            share = self.routes.channel_share
            channels = self.quality[source] * self.quality[target]
            own = self._own_odds(rng, target) if share < 1 else 0.0
            self._pairs[key] = 0.0 if dead else share * channels + (1 - share) * own
        busy = self.busy(source, now) or self.busy(target, now)
        return self._pairs[key] * (BUSY_PENALTY if busy else 1.0)

    def _own_odds(self, rng: random.Random, target: str) -> float:
        """A pair's own odds, drawn as the channels' qualities are (hard targets included)."""
        routes = self.routes
        source_q = rng.uniform(*routes.source_quality)
        hard = self.channels[target].auto_rebalance and rng.random() < routes.hard_target_share
        span = routes.hard_target_quality if hard else routes.target_quality
        return source_q * rng.uniform(*span)

    def busy(self, chan_id: str, now: float) -> bool:
        """Whether the channel has many HTLCs in flight at `now` (drawn per period)."""
        if not self.routes.busy_share:
            return False
        period = int(now // BUSY_PERIOD_SECONDS)
        key = (chan_id, period)
        found = self._busy.get(key)
        if found is None:
            draw = random.Random(f"{self.seed}:htlc:{chan_id}:{period}").random()
            found = self._busy[key] = draw < self.routes.busy_share
        return found

    def finds_route(self, source: str, target: str, rng: random.Random, now: float = 0.0) -> bool:
        """One try of the pair's routes: True with the pair's odds."""
        return rng.random() < self.odds(source, target, now)

    def route_ppm(self, source: str, target: str) -> int:
        """What the pair's route costs (ppm): the target peer's fee into us plus the rest."""
        key = (source, target)
        if key not in self._fees:
            rng = random.Random(f"{self.seed}:fee:{source}:{target}")
            rest = ROUTE_PPM_MEDIAN * rng.lognormvariate(0, ROUTE_PPM_SIGMA)
            last = max(self.channels[target].remote_fee_rate, 0)
            self._fees[key] = min(last + int(rest), ROUTE_PPM_MAX)
        return self._fees[key]

    def within(self, source: str, target: str, fee_limit_ppm: int | None) -> bool:
        """Whether the pair's route fits a run's fee cap (None: no cap)."""
        return fee_limit_ppm is None or self.route_ppm(source, target) <= fee_limit_ppm

    def fee_sat(self, source: str, target: str, amount: int) -> int:
        """The routing fee for paying `amount` from source to target (the pair's rate)."""
        return max(1, amount * self.route_ppm(source, target) // 1_000_000)

    # --- regolancer -----------------------------------------------------------------------

    def source_ok(self, chan_id: str, pfrom: int) -> bool:
        """regolancer's pfrom test on live balances: remote < capacity * pfrom / 100."""
        capacity = self.channels[chan_id].capacity
        return capacity - self.local[chan_id] < capacity * pfrom / 100

    def target_ok(self, chan_id: str, pto: int) -> bool:
        """regolancer's pto test on live balances: local < capacity * pto / 100."""
        return self.local[chan_id] < self.channels[chan_id].capacity * pto / 100

    def headroom(self, source: str, target: str) -> int:
        """The most regolancer would send: source local, target remote less 2% of the source."""
        margin = self.channels[source].capacity * 2 // 100
        return min(self.local[source], self.remote(target) - margin)

    def amount(self, source: str, target: str, pfrom: int, pto: int, wanted: int) -> int | None:
        """What a run of the pair would send now: `wanted`, capped by the live balances.

        None when the pair no longer qualifies (regolancer: "no channelpairs available").
        """
        if not (self.source_ok(source, pfrom) and self.target_ok(target, pto)):
            return None
        amount = min(wanted, self.headroom(source, target))
        return amount if amount >= MIN_AMOUNT else None

    def attempt(
        self,
        source: str,
        target: str,
        pfrom: int,
        pto: int,
        wanted: int,
        rng: random.Random,
        now: float = 0.0,
        fee_limit_ppm: int | None = None,
    ) -> Verdict:
        """What one run of the pair does on the live balances; moves nothing itself.

        A route dearer than `fee_limit_ppm` is no route for this run.
        """
        amount = self.amount(source, target, pfrom, pto, wanted)
        if amount is None:
            return Verdict(Outcome.NOT_QUALIFIED)
        if not self.within(source, target, fee_limit_ppm):
            return Verdict(Outcome.NO_ROUTE)
        if not self.finds_route(source, target, rng, now):
            return Verdict(Outcome.NO_ROUTE)
        return Verdict(Outcome.SUCCESS, amount, self.fee_sat(source, target, amount))

    def lndg_attempt(
        self,
        target: str,
        outgoing: Sequence[str],
        sources: int,
        rng: random.Random,
        now: float = 0.0,
    ) -> tuple[list[str], str | None]:
        """One attempt of LNDg's auto-rebalancer into `target`: what it offered, what paid.

        It offers up to `sources` of the `outgoing` channels at once and pays through the
        first whose route works (None: none did). Moves nothing itself.
        """
        offered = rng.sample(list(outgoing), min(sources, len(outgoing)))
        paid = next((s for s in offered if self.finds_route(s, target, rng, now)), None)
        return offered, paid
