"""The simulation: the daemon's engine and planner against the original tool's scheduling.

Both sides get the same invented node (`sim.nodes`), the same seeds and the same model of the
node and of regolancer (`sim.model`, which the demo plays too), in one process, on a virtual
clock (`bench.vclock`): hours pass in seconds.

- daemon: the real `core.engine.Engine` with its real `core.planner.Planner`, driven like the
  daemon drives it (`core.runtime.Cycles`: a cycle, then `next_cycle_delay()`), with a
  simulated runner.
- baseline: the original tool: every cycle the full cross product of the pairing rule, run in
  order on MAX_WORKERS workers with no channel locks, the whole cycle awaited, then
  SLEEP_SECONDS.

A run (`SimRunner`: in process, where the demo spawns the stand-in `sim/regolancer.py`) reads
the live balances at start as regolancer does: a pair that no longer qualifies
(`Node.amount`) ends after `check_seconds` with "no channelpairs available". Otherwise it tries
its sources one after the other, each finding a route with the pair's odds
(`Node.finds_route`: a share of pairs has no usable route at all; channels with many HTLCs in
flight fail more), after a log-normal duration; its amount is the template's, capped by the
balances read at start. If the balances changed meanwhile (another run drained the source or
filled the target) the payment fails and the run goes on until it gives up. A success then
doubles the amount on the same route a few times (rapid rebalance). LNDg shows balances as of
its last sync (every `lndg_sync_seconds`).

History. The node has had LNDg's auto-rebalancer at work before: in the week before the
start, each auto-rebalanced channel had `history_attempts` attempts by LNDg, each from a few
outgoing channels at once, drawn from the same route model. The daemon reads them as it
reads LNDg's payments and rebalancer rows (`core.history`); the original tool ignores them.
`--history-attempts 0` starts the daemon cold.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import logging
import math
import random
import statistics
import tempfile
from collections.abc import Callable, Collection, Coroutine, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from bench.vclock import EPOCH, VirtualClockLoop
from core.engine import Engine
from core.history import Observation, from_lndg_failures, from_payments
from core.models import Channel, Outcome, Pair, RunResult, StatLine
from core.node_records import ArSettings, Forward, LndgRebalance, Payment
from core.pairing import make_pair
from core.planner import Planner, PlannerConfig, PolicySwitches
from core.regolancer_config import load_template
from core.runtime import Cycles
from core.settings import load_settings
from core.spend_guard import SpendGuard
from core.spending import template_cap_ppm
from core.state import StateStore
from sim.model import BUSY_PERIOD_SECONDS, Node, RouteModel
from sim.nodes import node_channels
from sim.regolancer import NO_ROUTE, NOT_QUALIFIED, REBALANCE_TIMEOUT, success_line
from sim.routing import Demand, Request, lost_msat, route

T = TypeVar("T")
TEMPLATE = load_template(Path(__file__).resolve().parents[1] / "config.template.json")
RAPID_STEP_SECONDS = 8.0
ROUTING_STEP_SECONDS = 60.0
TARGET_QUALITY = (0.5, 1.0)
HARD_TARGET_QUALITY = 0.4  # hard targets draw below it (0.1-0.3), the others above
EARNINGS_WINDOW_DAYS = 7
EARNINGS_REFRESH_SECONDS = 600.0  # as often as the daemon reads forwards


@dataclass(frozen=True)
class SimConfig:
    """The simulated node and regolancer; every field has a command-line flag."""

    channels: int = 150
    seed: int = 7
    workers: int = 4
    sleep_seconds: int = 300
    horizon_hours: float = 24.0
    amount: int = 50_000
    rapid_steps: int = 3
    rapid_probability: float = 0.5
    check_seconds: float = 3.0
    success_median_seconds: float = 60.0
    failure_median_seconds: float = 480.0
    timeout_seconds: float = 1500.0  # the template's timeout_rebalance: 25 min
    dead_pair_share: float = 0.2
    hard_target_share: float = 0.15
    source_quality_min: float = 0.2
    source_quality_max: float = 1.0
    lndg_sync_seconds: float = 20.0
    htlc_busy_share: float = 0.03
    routing_share_per_day: float = 0.02  # of the node's capacity forwarded per day
    sources_per_run: int = 1
    history_attempts: int = 10  # LNDg's attempts per auto-rebalanced channel in the past week
    # Route success: the share of a pair's odds that comes from its two channels' qualities
    # (1: per channel, what the planner's per-channel records learn; 0: drawn per pair).
    route_channel_share: float = 1.0
    # The daemon's spending rules (core.spend_guard): its FEE_POLICY=lndg caps and amounts,
    # and EARNINGS_BUDGET_RATIO over EARNINGS_WINDOW_DAYS (0: off, the default).
    earnings_budget_ratio: float = 0.0
    earnings_window_days: int = 7
    # Earnings (bench.target_order): how unevenly routing demand leaves by the channels
    # (log-normal sigma of a per-channel weight; 0: evenly, the model of the figures above),
    # the days of forwards LNDg already holds at the start, and whether the planner serves
    # first the targets that earned most (`EarningsFirstPlanner`; not the daemon's order).
    demand_sigma: float = 0.0
    forward_history_days: float = 0.0
    earnings_first: bool = False
    rate_hours: float = 6.0  # sats per hour are compared over the first this many hours


@dataclass
class Meter:
    """Counts runs and integrates worker use against the work available."""

    workers: int
    busy: int = 0
    available: int = 0
    at: float = 0.0
    busy_time: float = 0.0  # worker-seconds spent on runs while work was available
    capacity_time: float = 0.0  # worker-seconds that could have been used
    runs: int = 0
    wasted: int = 0
    time_by: dict[str, float] = field(default_factory=dict)  # worker-seconds by how runs ended
    futile: list[tuple[float, float]] = field(default_factory=list)  # (end, s) moved nothing

    def advance(self, now: float) -> None:
        span = now - self.at
        if span > 0:
            usable = min(self.workers, self.available)
            self.busy_time += min(self.busy, usable) * span
            self.capacity_time += usable * span
        self.at = now

    def change(self, now: float, *, busy: int = 0, available: int | None = None) -> None:
        self.advance(now)
        self.busy += busy
        if available is not None:
            self.available = available

    @property
    def utilisation(self) -> float:
        return self.busy_time / self.capacity_time if self.capacity_time else 1.0


class SimNode(Node):
    """The model's node as the benchmark needs it (`sim.model.Node`, plus what it measures).

    Adds LNDg's lagging copy of the balances, the node's own routing, and what the figures
    count: sats into targets, and when each first target reached its band.
    """

    def __init__(self, channels: Sequence[Channel], config: SimConfig) -> None:
        # Route quality: a source's peer forwards well or not; a target is reachable within
        # its fee limit or hardly (a low-fee target).
        routes = RouteModel(
            source_quality=(config.source_quality_min, config.source_quality_max),
            target_quality=TARGET_QUALITY,
            hard_target_share=config.hard_target_share,
            dead_pair_share=config.dead_pair_share,
            busy_share=config.htlc_busy_share,
            channel_share=config.route_channel_share,
        )
        super().__init__(channels, routes, config.seed)
        self.config = config
        self.synced = dict(self.local)
        self._listed: tuple[dict[str, int], int, list[Channel]] | None = None
        self.targets = [
            c.chan_id for c in channels if c.auto_rebalance and not self.in_band(c.chan_id)
        ]
        self.deficit = sum(self.need(t) for t in self.targets)
        self.moves: list[tuple[float, int, int]] = []  # (when, sats, sats a target needed)
        self.band_reached: float | None = None  # when every first target had been in band
        self._unreached = set(self.targets)
        self.reached: list[float] = []  # when each first target first got within its band
        self.plain = [c.chan_id for c in channels if not c.auto_rebalance]
        self.auto = [c.chan_id for c in channels if c.auto_rebalance]
        self._alive: dict[str, frozenset[str]] = {}
        self._routing = random.Random(config.seed + 1)
        # What the node earns and pays: each channel's own fee rate (as LNDg lists it), and
        # the demo's routing demand (`sim.routing`), uneven by `demand_sigma`.
        econ = random.Random(f"{config.seed}:earnings")
        self.fee_ppm = {c.chan_id: c.local_fee_rate for c in channels}
        sigma = config.demand_sigma
        self.demand = {c.chan_id: econ.lognormvariate(0, sigma) if sigma else 1.0 for c in channels}
        self._requests = Demand(channels, config.seed, "bench", self.demand)
        self.revenue_msat = 0
        self.lost_msat = 0  # fees of forwards that failed for want of outbound liquidity
        self.fees_paid_sat = 0  # rebalancing fees
        self.forwards: list[Forward] = []
        self.payments: list[Payment] = []  # rebalances, as LNDg's /api/payments/ lists them
        self.lost_log: list[tuple[float, int]] = []  # (when, msat lost)
        self.paid_log: list[tuple[float, int, str]] = []  # (when, fee sat, target)
        self.ledger: StateStore | None = None  # the daemon's, when a daemon runs on the node
        self._carry = 0.0  # demand volume not yet drawn
        if config.forward_history_days:
            self._plant_forwards(config.forward_history_days)

    # --- the node's truth ---------------------------------------------------------------

    def rebalance(self, source: str, target: str, amount: int, now: float, meter: Meter) -> None:
        """A run paid `amount`: the sats move, and count for the figures."""
        need = self.need(target)
        fee = self.fee_sat(source, target, amount)
        self.move(source, target, amount, fee)
        self.fees_paid_sat += fee
        self.paid_log.append((now, fee, target))
        if self.ledger is not None:
            # regolancer's stat line, read into the daemon's ledger (its 1 s ledger poll)
            line = StatLine(int(EPOCH + now), source, target, amount * 1000, fee * 1000)
            read_from = self.ledger.stat_position()
            self.ledger.record_stat_lines(
                [(line, "", "")], (1, len(self.paid_log)), read_from=read_from
            )
        self.payments.append(
            Payment(
                payment_hash=f"{len(self.payments) + 1:064x}",
                creation_date=dt.datetime.fromtimestamp(EPOCH + now, dt.UTC),
                value=amount,
                fee=fee,
                chan_out=source,
                rebal_chan=target,
            )
        )
        self.moves.append((now, amount, min(amount, need)))
        meter.change(now, available=self.available_work(now))
        if target in self._unreached and self.in_band(target):
            self._unreached.discard(target)
            self.reached.append(now)
            if not self._unreached:
                self.band_reached = now

    @property
    def unreached(self) -> int:
        return len(self._unreached)

    def forward(self, seconds: float, now: float = 0.0) -> None:
        """Routing between two steps: the demo's demand (`sim.routing`), as much as the node's
        `routing_share_per_day` of its capacity over `seconds`.

        A forward earns the outgoing channel's fee rate; one that finds too little outbound
        liquidity there fails, and its fee is lost.
        """
        for request in self._draw(self._requests, seconds):
            lost = lost_msat(self, request)
            if lost:
                self.lost_msat += lost
                self.lost_log.append((now, lost))
                continue
            forwarded = route(self, request)
            if forwarded is not None:
                self._record_forward(
                    request.chan_in,
                    request.chan_out,
                    request.amount_sat,
                    forwarded.fee_msat,
                    EPOCH + now,
                )

    def _draw(self, demand: Demand, seconds: float) -> Iterator[Request]:
        """Requests from `demand` until they add up to the volume of `seconds`."""
        total = sum(c.capacity for c in self.channels.values())
        budget = total * self.config.routing_share_per_day * seconds / 86_400
        self._carry += budget
        while self._carry > 0:
            request = demand.next()
            if request is None:
                return
            self._carry -= request.amount_sat
            yield request

    def _plant_forwards(self, days: float) -> None:
        """The forwards LNDg recorded in the `days` before the start, from the same demand
        (as if every one found its outbound: nothing moves)."""
        rng = random.Random(f"{self.config.seed}:planted")
        demand = Demand(list(self.channels.values()), self.config.seed, "history", self.demand)
        for request in self._draw(demand, days * 86_400):
            at = EPOCH - rng.uniform(0, days * 86_400)
            rate = self.fee_ppm[request.chan_out]
            self._record_forward(
                request.chan_in,
                request.chan_out,
                request.amount_sat,
                request.amount_sat * rate // 1000,
                at,
            )
        self._carry = 0.0
        self.forwards.sort(key=lambda f: f.forward_date)

    def _record_forward(
        self, incoming: str, outgoing: str, amount: int, fee_msat: int, at: float
    ) -> None:
        if at >= EPOCH:
            self.revenue_msat += fee_msat
        self.forwards.append(
            Forward(
                id=len(self.forwards) + 1,
                forward_date=dt.datetime.fromtimestamp(at, dt.UTC),
                chan_id_in=incoming,
                chan_id_out=outgoing,
                amt_in_msat=amount * 1000 + fee_msat,
                amt_out_msat=amount * 1000,
                fee_sat=fee_msat / 1000,
            )
        )

    def available_work(self, now: float) -> int:
        """Disjoint useful runs possible now: needy targets with a live source, sources."""
        sources = [
            s
            for s in self.plain
            if self.local[s] * 100 // self.channels[s].capacity > self.channels[s].ar_out_target
        ]
        needy = 0
        for target in self.auto:
            if self.in_band(target):
                continue
            if not self._alive_sources(target).isdisjoint(sources):
                needy += 1
        return min(needy, len(sources))

    def _alive_sources(self, target: str) -> frozenset[str]:
        """The sources whose pair with `target` has a route at all (fixed for the node)."""
        found = self._alive.get(target)
        if found is None:
            found = self._alive[target] = frozenset(
                s for s in self.plain if self._pairs_alive(s, target)
            )
        return found

    def _pairs_alive(self, source: str, target: str) -> bool:
        return (
            self.channels[source].remote_pubkey != self.channels[target].remote_pubkey
            and self.odds(source, target, 0.0) > 0
        )

    def sats_moved(self, until: float) -> int:
        return sum(amount for at, amount, _ in self.moves if at <= until)

    # --- what LNDg shows ------------------------------------------------------------------

    def history_rows(self) -> tuple[list[Payment], list[LndgRebalance]]:
        """LNDg's week before the start: its attempts, the succeeded ones also as payments.

        Each attempt offers a few outgoing channels at once (as LNDg's auto-rebalancer does);
        the route goes out through the first of them that works, if any.
        """
        rng = random.Random(f"{self.config.seed}:history")
        start = dt.datetime.fromtimestamp(EPOCH, dt.UTC)
        payments: list[Payment] = []
        attempts: list[LndgRebalance] = []
        for target in self.auto:
            for _ in range(self.config.history_attempts):
                when = start - dt.timedelta(seconds=rng.uniform(600, 7 * 86_400))
                offered, paid = self.lndg_attempt(target, self.plain, 5, rng, now=-1.0)
                number = len(attempts) + 1
                attempts.append(
                    LndgRebalance(
                        id=number,
                        stop=when,
                        value=self.config.amount,
                        outgoing_chan_ids=offered,
                        last_hop_pubkey=self.channels[target].remote_pubkey,
                        status=2 if paid else 4,
                    )
                )
                if paid:
                    payments.append(
                        Payment(
                            payment_hash=f"{number:064x}",
                            creation_date=when,
                            value=self.config.amount,
                            fee=0,
                            chan_out=paid,
                            rebal_chan=target,
                        )
                    )
        return payments, attempts

    async def history(self, channels: Sequence[Channel]) -> list[Observation]:
        """What the daemon reads at start, through the same code as from a real LNDg."""
        payments, attempts = self.history_rows()
        return [*from_payments(payments), *from_lndg_failures(attempts, channels)]

    def sync(self) -> None:
        self.synced = dict(self.local)  # a new dict: `listed` knows the list is stale by it

    def listed(self, now: float = 0.0) -> list[Channel]:
        """LNDg's channel list: balances as of its last sync, HTLC counts as of `now`.

        A fresh list each call, made again only when what it shows changed: after a sync,
        only the channels whose balance moved (most did not); in a new busy period, all.
        """
        period = int(now // BUSY_PERIOD_SECONDS)
        made = self._listed
        if made is None or made[1] != period:
            shown = self.snapshot(self.synced, now)
        elif made[0] is not self.synced:
            old, new, shown = made[0], self.synced, list(made[2])
            for index, chan_id in enumerate(self.channels):
                if new[chan_id] != old[chan_id]:
                    shown[index] = self.view(chan_id, new[chan_id], now)
        else:
            return list(made[2])
        self._listed = (self.synced, period, shown)
        return list(shown)

    async def fetch(self) -> list[Channel]:
        """LNDg's channel list: balances as of its last sync, HTLC counts as of now."""
        await asyncio.sleep(0.2)
        return self.listed(asyncio.get_running_loop().time())

    async def fetch_channel(self, chan_id: str) -> Channel:
        """LNDg's channel detail: the channel's row as `fetch` lists it."""
        await asyncio.sleep(0.05)
        now = asyncio.get_running_loop().time()
        return self.view(chan_id, self.synced[chan_id], now)  # one row, not the whole list


class SimReads:
    """What the daemon's SpendGuard reads from LNDg (`core.spend_guard.SpendingReads`), from
    the simulated node: LNDg's default AR settings, its forwards and rebalance payments, and
    no attempts of LNDg's own in flight."""

    def __init__(self, node: SimNode) -> None:
        self.node = node

    async def fetch_settings(self) -> ArSettings:
        return ArSettings()

    async def fetch_forwards(
        self, since: dt.datetime, until: dt.datetime | None = None
    ) -> list[Forward]:
        return [
            f
            for f in self.node.forwards
            if f.forward_date >= since and (until is None or f.forward_date <= until)
        ]

    async def fetch_payments(self, start: dt.datetime, end: dt.datetime) -> list[Payment]:
        return [p for p in self.node.payments if start <= p.creation_date <= end]

    async def fetch_open_rebalances(self) -> list[LndgRebalance]:
        return []


@dataclass(frozen=True, slots=True)
class MultiPair(Pair):
    """A run with several sources for one target (regolancer picks among from x to)."""

    extra: tuple[Channel, ...] = ()

    @property
    def channels(self) -> frozenset[str]:
        return frozenset(
            {self.target.chan_id, self.source.chan_id, *(c.chan_id for c in self.extra)}
        )


class MultiSourcePlanner(Planner):
    """The daemon's planner, each pick given up to `k - 1` more free sources (experiment)."""

    def __init__(self, config: PlannerConfig, switches: PolicySwitches, k: int) -> None:
        super().__init__(config, switches)
        self.k = k

    def next_pairs(
        self,
        channels: Iterable[Channel],
        busy: Collection[str],
        free_workers: int,
        now: float,
        excluded: Collection[str] = (),
    ) -> list[Pair]:
        channels = list(channels)
        picked = super().next_pairs(channels, busy, free_workers, now, excluded)
        sources, _ = self.candidates(channels, now, excluded)
        taken = set(busy)
        for pair in picked:
            taken |= pair.channels
        grown: list[Pair] = []
        for pair in picked:
            extra: list[Channel] = []
            for source in sources:
                if len(extra) >= self.k - 1:
                    break
                key = (source.chan_id, pair.target.chan_id)
                if source.chan_id in taken or self.backoff(key, now) is not None:
                    continue
                if make_pair(source, pair.target) is None:
                    continue
                extra.append(source)
                taken.add(source.chan_id)
            grown.append(
                MultiPair(pair.source, pair.target, pair.pfrom, pair.pto, extra=tuple(extra))
            )
        return grown


class OraclePlanner(Planner):
    """An upper bound, not a policy: the daemon's planner told every channel's true quality.

    Sources go best first and hard targets last, by the node's hidden route model, which no
    real planner can see. What it moves is the most any ordering of the same runs could.
    """

    def __init__(self, config: PlannerConfig, switches: PolicySwitches, node: SimNode) -> None:
        super().__init__(config, switches)
        self.node = node

    def candidates(
        self, channels: Iterable[Channel], now: float, excluded: Collection[str] = ()
    ) -> tuple[list[Channel], list[Channel]]:
        found_sources, found_targets = super().candidates(channels, now, excluded)
        quality = self.node.quality
        found_sources.sort(key=lambda c: -quality[c.chan_id])
        found_targets.sort(key=lambda c: quality[c.chan_id] < HARD_TARGET_QUALITY)
        return found_sources, found_targets


class EarningsFirstPlanner(Planner):
    """The daemon's planner, but targets that earned most per sat of capacity go first.

    What was measured against the daemon's depletion order (`bench.target_order`) and not
    kept: it reads what LNDg shows (the forwards of the last `EARNINGS_WINDOW_DAYS`, at most
    every `EARNINGS_REFRESH_SECONDS`), then keeps the planner's own order below that: the most
    depleted first, targets with a poor record last.
    """

    def __init__(
        self,
        config: PlannerConfig,
        switches: PolicySwitches,
        node: SimNode,
        wall: Callable[[], float],
    ) -> None:
        super().__init__(config, switches)
        self.node = node
        self.wall = wall
        self._earned: dict[str, float] = {}
        self._read_at = -math.inf

    def earned(self) -> dict[str, float]:
        """Routing fees out of each channel (msat) per sat of its capacity, over the window."""
        now = self.wall()
        if now - self._read_at >= EARNINGS_REFRESH_SECONDS:
            self._read_at = now
            since = dt.datetime.fromtimestamp(now - EARNINGS_WINDOW_DAYS * 86_400, dt.UTC)
            msat: dict[str, int] = {}
            for forward in self.node.forwards:
                if forward.forward_date >= since:
                    out = forward.chan_id_out
                    msat[out] = msat.get(out, 0) + round(forward.fee_sat * 1000)
            channels = self.node.channels
            self._earned = {c: m / channels[c].capacity for c, m in msat.items() if m > 0}
        return self._earned

    def candidates(
        self, channels: Iterable[Channel], now: float, excluded: Collection[str] = ()
    ) -> tuple[list[Channel], list[Channel]]:
        sources, targets = super().candidates(channels, now, excluded)
        earned = self.earned()
        targets.sort(key=lambda c: -earned.get(c.chan_id, 0.0))  # stable: depletion below
        if self.switches.demote_targets and self._records:
            poor = self.config.poor_record
            targets.sort(key=lambda c: self.record(c.chan_id).score < poor)
        return sources, targets


class SimRunner:
    """regolancer, modelled: the engine's Runner protocol on the simulated node."""

    def __init__(self, node: SimNode, meter: Meter, seed: int) -> None:
        self.node = node
        self.meter = meter
        self.config = node.config
        self.seed = seed
        self.template = TEMPLATE
        self._attempts: dict[tuple[str, ...], int] = {}

    def _luck(self, target: str, sources: Sequence[str]) -> random.Random:
        """The n-th run of the same pairs draws the same luck on both sides (less noise)."""
        key = (target, *sorted(sources))
        number = self._attempts.get(key, 0)
        self._attempts[key] = number + 1
        return random.Random(f"{self.seed}:{':'.join(key)}:{number}")

    def _duration(self, rng: random.Random, median: float, sigma: float, low: float) -> float:
        value = median * math.exp(rng.gauss(0, sigma))
        return min(max(value, low), self.config.timeout_seconds)

    async def run(self, pair: Pair, worker: int) -> RunResult:
        loop = asyncio.get_running_loop()
        started = loop.time()
        self.meter.change(started, busy=+1)
        try:
            exit_code, outcome, line = await self._run(pair, started)
        finally:
            self.meter.change(loop.time(), busy=-1)
        spent = self.meter.time_by.get(outcome.value, 0.0) + loop.time() - started
        self.meter.time_by[outcome.value] = spent
        if outcome is not Outcome.SUCCESS:
            self.meter.futile.append((loop.time(), loop.time() - started))
        return RunResult(
            pair.source.chan_id,
            pair.target.chan_id,
            EPOCH + started,
            EPOCH + loop.time(),
            exit_code,
            outcome,
            line,
        )

    async def _run(self, pair: Pair, started: float) -> tuple[int, Outcome, str]:
        node, config = self.node, self.config
        self.meter.runs += 1
        target = pair.target.chan_id
        candidates = [pair.source, *(pair.extra if isinstance(pair, MultiPair) else ())]
        wanted = pair.amount or config.amount
        amounts: dict[str, int] = {}
        caps: dict[str, int] = {}
        for candidate in candidates:
            amount = node.amount(candidate.chan_id, target, pair.pfrom, pair.pto, wanted)
            if amount is not None:
                amounts[candidate.chan_id] = amount
                caps[candidate.chan_id] = (
                    pair.fee_limit_ppm
                    if pair.fee_limit_ppm is not None
                    else template_cap_ppm(self.template, candidate, pair.target)
                )
        sources = list(amounts)
        if not sources:
            await asyncio.sleep(config.check_seconds)
            self.meter.wasted += 1
            return 1, Outcome.NOT_QUALIFIED, NOT_QUALIFIED
        # regolancer tries its pairs one after the other, in random order, each until its
        # routes run out, the whole run until its deadline.
        rng = self._luck(target, sources)
        rng.shuffle(sources)
        spent = 0.0
        for source in sources:
            # A route dearer than the run's cap is no route for it (regolancer looks in vain).
            found = node.finds_route(source, target, rng, started)
            if found and node.within(source, target, caps[source]):
                success = self._duration(rng, config.success_median_seconds, 0.7, 10.0)
                if spent + success >= config.timeout_seconds:
                    break
                await asyncio.sleep(spent + success)
                if await self._pay(rng, source, target, amounts[source], pair.rapid is not False):
                    fee = node.fee_sat(source, target, amounts[source])
                    ppm = fee * 1_000_000 // amounts[source]
                    return 0, Outcome.SUCCESS, success_line(fee, ppm)
                # Oversubscribed: the balances it read at start are gone; it tries the
                # pair's other routes in vain.
                spent = asyncio.get_running_loop().time() - started
                spent += self._duration(rng, config.failure_median_seconds, 0.8, 30.0)
                break
            spent += self._duration(rng, config.failure_median_seconds, 0.8, 30.0)
            if spent >= config.timeout_seconds:
                break
        loop = asyncio.get_running_loop()
        spent = min(spent, config.timeout_seconds)
        await asyncio.sleep(max(started + spent - loop.time(), 0.0))
        self.meter.wasted += 1
        if loop.time() - started >= config.timeout_seconds:
            return 2, Outcome.REBALANCE_TIMEOUT, REBALANCE_TIMEOUT
        return 1, Outcome.NO_ROUTE, NO_ROUTE

    async def stop_all(self) -> None:
        """Nothing to stop: simulated runs end when their task is cancelled."""

    async def _pay(
        self, rng: random.Random, source: str, target: str, amount: int, rapid: bool = True
    ) -> bool:
        node, loop = self.node, asyncio.get_running_loop()
        if node.headroom(source, target) < amount:
            return False
        node.rebalance(source, target, amount, loop.time(), self.meter)
        # allow_rapid_rebalance false (a run its earnings budget limits): one payment only
        for _ in range(self.config.rapid_steps if rapid else 0):
            amount *= 2
            await asyncio.sleep(RAPID_STEP_SECONDS)
            if node.headroom(source, target) < amount:
                break
            if rng.random() >= self.config.rapid_probability:
                break
            node.rebalance(source, target, amount, loop.time(), self.meter)
        return True


@dataclass
class SideResult:
    """One side's figures."""

    name: str
    band_reached: float | None  # every first target refilled to its band: seconds from start
    targets: int  # targets at the start
    deficit: int  # sats they lacked to be within their band
    unreached: int  # of them, never within band
    elapsed: float
    moved: int
    runs: int
    wasted: int
    busy_time: float
    capacity_time: float
    reached: list[float] = field(repr=False, default_factory=list)
    moves: list[tuple[float, int, int]] = field(repr=False, default_factory=list)
    time_by: dict[str, float] = field(default_factory=dict)
    revenue_sat: float = 0.0  # routing fees earned over the horizon
    lost_sat: float = 0.0  # fees of forwards that failed for want of outbound liquidity
    fees_paid_sat: int = 0  # rebalancing fees
    # Over time, for figures at any hour: (seconds from start, msat or sat or seconds).
    revenue_log: list[tuple[float, int]] = field(repr=False, default_factory=list)  # msat
    lost_log: list[tuple[float, int]] = field(repr=False, default_factory=list)  # msat
    paid_log: list[tuple[float, int, str]] = field(repr=False, default_factory=list)  # sat
    futile: list[tuple[float, float]] = field(repr=False, default_factory=list)  # (end, s)
    over_budget: list[str] = field(default_factory=list)  # channels: cost > revenue, window

    def revenue_until(self, seconds: float) -> float:
        return sum(m for at, m in self.revenue_log if at <= seconds) / 1000

    def lost_until(self, seconds: float) -> float:
        return sum(m for at, m in self.lost_log if at <= seconds) / 1000

    def fees_until(self, seconds: float) -> int:
        return sum(fee for at, fee, _ in self.paid_log if at <= seconds)

    def net_until(self, seconds: float) -> float:
        """Routing revenue minus rebalancing fees, from the start until `seconds`."""
        return self.revenue_until(seconds) - self.fees_until(seconds)

    def futile_hours_until(self, seconds: float) -> float:
        """Worker-hours spent on runs that moved nothing and ended by `seconds`."""
        return sum(spent for end, spent in self.futile if end <= seconds) / 3600

    @property
    def needed(self) -> int:
        """Sats that went into targets below their band over the whole horizon."""
        return self.needed_until(self.elapsed)

    @property
    def net_sat(self) -> float:
        """What the operator keeps: routing revenue minus rebalancing fees."""
        return self.revenue_sat - self.fees_paid_sat

    def moved_until(self, seconds: float) -> int:
        return sum(amount for at, amount, _ in self.moves if at <= seconds)

    def needed_until(self, seconds: float) -> int:
        """Sats that went into targets below their band (overshoot not counted)."""
        return sum(useful for at, _, useful in self.moves if at <= seconds)


async def _drive(node: SimNode, meter: Meter, work: asyncio.Task[None], horizon: float) -> float:
    """Let `work` run on the node, with LNDg syncing and the node routing, until the horizon."""

    async def lndg_sync() -> None:
        while True:
            await asyncio.sleep(node.config.lndg_sync_seconds)
            node.sync()

    async def routing() -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(ROUTING_STEP_SECONDS)
            node.forward(ROUTING_STEP_SECONDS, loop.time())
            meter.change(loop.time(), available=node.available_work(loop.time()))

    helpers = [asyncio.create_task(lndg_sync()), asyncio.create_task(routing())]
    await asyncio.wait({work}, timeout=horizon)
    end = asyncio.get_running_loop().time()
    meter.advance(end)
    for task in (work, *helpers):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return end


async def run_daemon(
    config: SimConfig,
    data_dir: Path,
    *,
    planner: PlannerConfig | None = None,
    switches: PolicySwitches | None = None,
    oracle: bool = False,
) -> SideResult:
    """The daemon's engine and planner on the simulated node, until the horizon.

    `planner` and `switches` default to the daemon's; `oracle`: the planner ranks by the
    node's hidden truth (`OraclePlanner`, an upper bound).
    """
    loop = asyncio.get_running_loop()
    assert isinstance(loop, VirtualClockLoop)
    node = SimNode(node_channels(config.channels, config.seed), config)
    meter = Meter(config.workers, available=node.available_work(0.0))
    settings = load_settings(
        None,
        data_dir=data_dir,
        max_workers=config.workers,
        sleep_seconds=config.sleep_seconds,
        earnings_budget_ratio=config.earnings_budget_ratio,
        earnings_window_days=config.earnings_window_days,
    )
    policy = planner or PlannerConfig.from_settings(settings)
    parts = switches or PolicySwitches()
    chosen: Planner
    if oracle:
        chosen = OraclePlanner(policy, parts, node)
    elif config.earnings_first:
        chosen = EarningsFirstPlanner(policy, parts, node, loop.wall)
    elif config.sources_per_run > 1:
        chosen = MultiSourcePlanner(policy, parts, config.sources_per_run)
    else:
        chosen = Planner(policy, parts)
    store = StateStore(data_dir / "state.sqlite3")
    node.ledger = store  # the daemon sees its own rebalances as it would from regolancer's CSV
    runner = SimRunner(node, meter, config.seed)
    engine = Engine(
        settings,
        store,
        node.fetch,
        runner,
        clock=loop.wall,
        planner=chosen,
        history=node.history if config.history_attempts else None,
        guard=SpendGuard(settings, store, SimReads(node), TEMPLATE, clock=loop.wall),
        # As the daemon runs: the list every CHANNEL_LIST_SECONDS, a run's channels fresh.
        fetch_channel=node.fetch_channel,
        fetch_forwards=SimReads(node).fetch_forwards,
    )

    cycles = Cycles(engine, clock=loop.wall)  # the daemon's own cycle loop, on virtual time
    try:
        end = await _drive(
            node, meter, asyncio.create_task(cycles.run()), config.horizon_hours * 3600
        )
    finally:
        store.close()
    return _result("daemon", node, meter, end)


def _result(name: str, node: SimNode, meter: Meter, end: float) -> SideResult:
    return SideResult(
        name=name,
        band_reached=node.band_reached,
        targets=len(node.targets),
        deficit=node.deficit,
        unreached=node.unreached,
        elapsed=end,
        moved=node.sats_moved(end),
        runs=meter.runs,
        wasted=meter.wasted,
        busy_time=meter.busy_time,
        capacity_time=meter.capacity_time,
        reached=list(node.reached),
        moves=list(node.moves),
        time_by=dict(meter.time_by),
        revenue_sat=node.revenue_msat / 1000,
        lost_sat=node.lost_msat / 1000,
        fees_paid_sat=node.fees_paid_sat,
        revenue_log=[
            (f.forward_date.timestamp() - EPOCH, round(f.fee_sat * 1000))
            for f in node.forwards
            if f.forward_date.timestamp() >= EPOCH
        ],
        lost_log=list(node.lost_log),
        paid_log=list(node.paid_log),
        futile=list(meter.futile),
        over_budget=over_budget(node, end),
    )


def over_budget(node: SimNode, end: float) -> list[str]:
    """Channels whose rebalancing fees exceed their routing revenue over the earnings window
    that ends at `end` (the forwards LNDg held before the start included)."""
    since = EPOCH + end - node.config.earnings_window_days * 86_400
    earned: dict[str, int] = {}
    for forward in node.forwards:
        if forward.forward_date.timestamp() >= since:
            out = forward.chan_id_out
            earned[out] = earned.get(out, 0) + round(forward.fee_sat * 1000)
    spent: dict[str, int] = {}
    for at, fee, target in node.paid_log:
        if EPOCH + at >= since:
            spent[target] = spent.get(target, 0) + fee * 1000
    return sorted(c for c, msat in spent.items() if msat > earned.get(c, 0))


@dataclass
class Comparison:
    """Both sides on the same nodes (one per seed): sums and rates over the seeds."""

    config: SimConfig
    daemon: list[SideResult]
    baseline: list[SideResult]

    @property
    def window(self) -> float:
        """Rates are compared over the first `rate_hours`: while much is still needed."""
        return min(self.config.rate_hours, self.config.horizon_hours) * 3600

    def rate(self, sides: Sequence[SideResult], *, overshoot: bool = False) -> float:
        """Sats per simulated hour into targets below their band (`overshoot`: all sats)."""
        moved = [
            s.moved_until(self.window) if overshoot else s.needed_until(self.window) for s in sides
        ]
        return sum(moved) / len(moved) * 3600 / self.window

    @property
    def deficit(self) -> float:
        """The targets' initial deficit per node (sats), averaged over the nodes."""
        return sum(s.deficit for s in self.daemon) / len(self.daemon) if self.daemon else 0.0

    def delivered(self, sides: Sequence[SideResult]) -> float:
        """The share of the targets' initial deficit delivered within the rate window."""
        deficit = sum(s.deficit for s in sides)
        return sum(s.needed_until(self.window) for s in sides) / deficit if deficit else 1.0

    @staticmethod
    def wasted(sides: Sequence[SideResult]) -> int:
        return sum(s.wasted for s in sides)

    @staticmethod
    def runs(sides: Sequence[SideResult]) -> int:
        return sum(s.runs for s in sides)

    @staticmethod
    def utilisation(sides: Sequence[SideResult]) -> float:
        """Busy worker time over the worker time for which useful disjoint pairs existed."""
        capacity = sum(s.capacity_time for s in sides)
        return sum(s.busy_time for s in sides) / capacity if capacity else 1.0

    def band(self, sides: Sequence[SideResult]) -> str:
        """When 90 % and when all of the first targets had been within their band.

        Medians over the nodes; "-" where fewer than half the nodes got there in the horizon.
        """

        def median(times: list[float | None]) -> str:
            done = sorted(t for t in times if t is not None)
            if len(done) * 2 <= len(times):
                return "-"
            return f"{statistics.median(done) / 3600:.1f} h"

        ninety: list[float | None] = []
        for side in sides:
            needed = -(-side.targets * 9 // 10)
            ninety.append(side.reached[needed - 1] if len(side.reached) >= needed else None)
        reached = sum(s.band_reached is not None for s in sides)
        targets = sum(s.targets for s in sides)
        refilled = targets - sum(s.unreached for s in sides)
        return (
            f"90 % after {median(ninety)}, all after {median([s.band_reached for s in sides])} "
            f"({reached}/{len(sides)} nodes, {refilled}/{targets} targets within "
            f"{self.config.horizon_hours:g} h)"
        )


def simulate(
    config: SimConfig,
    seeds: Sequence[int] = (1,),
    *,
    baseline: bool = True,
    planner: PlannerConfig | None = None,
    switches: PolicySwitches | None = None,
    oracle: bool = False,
) -> Comparison:
    """Both sides on the node of each seed, each on a fresh virtual clock; logs quiet.

    `baseline=False` runs the daemon only; `planner` replaces the daemon's planner knobs and
    `switches` turns parts of its policy off (for the ablation figures); `oracle` gives it
    the node's hidden truth (an upper bound).
    """
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    daemons: list[SideResult] = []
    baselines: list[SideResult] = []
    try:
        for seed in seeds:
            seeded = replace(config, seed=seed)
            with tempfile.TemporaryDirectory(prefix="bench-sim-") as tmp:
                daemon = run_daemon(
                    seeded, Path(tmp), planner=planner, switches=switches, oracle=oracle
                )
                daemons.append(_virtual(daemon))
            if baseline:
                from bench.baselines import run_early  # it builds on this module

                baselines.append(_virtual(run_early(seeded)))
    finally:
        logging.disable(previous)
    return Comparison(config, daemons, baselines)


def _virtual(main: Coroutine[Any, Any, T]) -> T:
    loop = VirtualClockLoop()
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(main)
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m bench.simulate [--channels N ...] [--seeds 1,2,3]`: one comparison."""
    parser = argparse.ArgumentParser(description="planner vs the original tool, simulated")
    for name, value in vars(SimConfig()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument("--seeds", default="1,2,3", help="comma-separated node seeds")
    args = vars(parser.parse_args(argv))
    seeds = [int(seed) for seed in args.pop("seeds").split(",")]
    result = simulate(replace(SimConfig(), **args), seeds)
    for name, sides in (("daemon", result.daemon), ("baseline", result.baseline)):
        print(
            f"{name:9} {result.rate(sides):>12,.0f} sat/h needed "
            f"({result.rate(sides, overshoot=True):,.0f} moved) in the first "
            f"{result.window / 3600:g} h; band {result.band(sides)}; runs {result.runs(sides)}, "
            f"wasted {result.wasted(sides)}, utilisation {result.utilisation(sides):.1%}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
