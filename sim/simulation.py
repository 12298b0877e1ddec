"""The demo's node, alive around the real daemon: the model (`sim.model`) behind a FakeLndg.

`Simulation` holds the node (`sim.model.Node`: channels, live balances, routes) and shows it
through the rows of a running `FakeLndg`, as LNDg shows a real node:

- each new line of the daemon's stat CSV (a rebalance the regolancer stand-in "paid") moves
  the sats on the node and appears in `/api/payments/`, as LND and LNDg would show it;
- the regolancer stand-in's scenario is rewritten from the live balances: for every pair the
  rule gives, the model's verdict for one run (`Node.attempt`), so outcomes vary from run to
  run, amounts fit the channels, and some pairs succeed most of the time and some rarely;
- LNDg holds a week of its own rebalancer's attempts before the demo, drawn from the same
  routes, so the daemon has a history to learn from at its first cycle;
- LNDg's own rebalancer and another tool act now and then, so the daily report has three
  shares; routing demand (`sim.routing`) forwards payments every few seconds, earning the
  out channel's fee and draining its outbound, and fails (the fee lost) where a channel is
  depleted, so refilled targets drain again and rebalancing has a reason;
- the month before the demo holds forwards and other tools' and LNDg's rebalances
  (`seed_earnings`), so the first report's chart shows 30 days.

Everything here is invented; nothing touches a real node.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from core import fmt
from core.models import Channel, Outcome, chan_id_to_short_id
from core.pairing import build_pairs, is_source, is_target, is_usable
from core.statfile import StatPosition, read_new_lines
from sim.lndg import FakeLndg, forward_row, payment_row, rebalance_row
from sim.model import MIN_AMOUNT, Node, RouteModel, Verdict
from sim.routing import Demand, Request, fee_msat, route

# How well a channel's peer routes. A run succeeds with its source's quality times its
# target's: from 30 % to nearly always, 60 % on average.
ROUTES = RouteModel(source_quality=(0.55, 1.0), target_quality=(0.55, 1.0))
# A success is followed by one rapid rebalance (the amount doubled) this often.
RAPID_SHARE = 0.25
# LNDg's auto-rebalancer in the week before the demo: attempts per AR channel, and how many
# outgoing channels each attempt offers (LNDg pays through the first one that finds a route).
HISTORY_ATTEMPTS = 10
HISTORY_SOURCES = 2
# The month before the demo, so the first report's chart shows 30 days: forwards per day,
# other tools' rebalances per day, and LNDg's paid rebalances per AR channel per day before
# the week above.
EARNINGS_DAYS = 30
FORWARDS_PER_DAY = (25, 55)
OTHER_PER_DAY = (0, 3)
LNDG_PAID_PER_CHANNEL_DAY = 0.8

# Who moved sats on the simulated node.
Actor = Literal["daemon", "lndg", "other", "forward"]
_ACTOR_TEXT: dict[Actor, str] = {
    "daemon": "rebalance by this daemon",
    "lndg": "LNDg's own rebalancer",
    "other": "another tool's rebalance",
    "forward": "routed payment",
}


@dataclass(frozen=True, slots=True)
class Move:
    """Sats that left `source` and arrived in `target`, with both local % before and after."""

    by: Actor
    source: str
    target: str
    amount_sat: int
    fee_sat: float
    source_pct: tuple[int, int]
    target_pct: tuple[int, int]

    def describe(self) -> str:
        """One log line: what moved and how the two channels' local % changed."""
        text = (
            f"simulated node: {_ACTOR_TEXT[self.by]}: {self.amount_sat:,} sat out of {self.source} "
            f"(local {self.source_pct[0]}% -> {self.source_pct[1]}%), into {self.target} "
            f"(local {self.target_pct[0]}% -> {self.target_pct[1]}%)"
        )
        return text + (f", earned {fmt.fee(self.fee_sat)}" if self.by == "forward" else "")


@dataclass(frozen=True, slots=True)
class Earnings:
    """The month planted before the demo (`Simulation.seed_earnings`)."""

    forwards: int
    revenue_sat: float
    lndg_paid: int
    other: int


@dataclass(frozen=True, slots=True)
class NodeSummary:
    """How far the node is from balanced, and what the simulation has seen so far."""

    targets_below: int
    targets_at_start: int
    ar_channels: int
    sources_above: int
    daemon_count: int
    daemon_sats: int
    lndg_count: int
    other_count: int
    forwards: int
    forwards_failed: int = 0
    fees_lost_sat: float = 0.0

    def line(self) -> str:
        """The periodic one-line status."""
        return (
            f"{self.targets_below}/{self.ar_channels} AR channels below their band "
            f"({self.targets_at_start} at start), {self.sources_above} sources above theirs; "
            f"this daemon moved {self.daemon_sats:,} sats in {self.daemon_count} rebalances; "
            f"LNDg's rebalancer {self.lndg_count}, other tools {self.other_count}, "
            f"{self.forwards} payments routed, {self.forwards_failed} failed for lack of "
            f"outbound ({self.fees_lost_sat:,.0f} sat of fees lost)"
        )


class Simulation:
    """Plays the node around the daemon, shown through the rows of a running FakeLndg.

    Not thread-safe itself: call it from one task. Row changes hold `lndg.lock`, so the
    FakeLndg's handler threads never serve a half-moved balance.
    """

    def __init__(
        self, lndg: FakeLndg, stat_path: Path, scenario_path: Path, *, seed: int = 1
    ) -> None:
        self.lndg = lndg
        self.stat_path = stat_path
        self.scenario_path = scenario_path
        with lndg.lock:
            channels = [Channel.model_validate(row) for row in lndg.channels]
        self.node = Node(channels, ROUTES, seed)
        # A stream of its own: the node's qualities are drawn from `seed` itself.
        self.rng = random.Random(f"demo:{seed}")
        # Routing demand has streams of its own, so adding a forward changes no other draw.
        self.demand = Demand(channels, seed)
        self._history_demand = Demand(channels, seed, "history")
        self._failed = 0
        self._lost_msat = 0
        self._position: StatPosition | None = None
        self._daemon_sats = 0
        self._counts: dict[Actor, int] = {"daemon": 0, "lndg": 0, "other": 0, "forward": 0}
        self._targets_at_start = sum(is_target(c) for c in self.channels() if is_usable(c))

    # -- reading the node --------------------------------------------------------------------

    def channels(self) -> list[Channel]:
        """Every channel with its live balances (inactive and private ones included)."""
        return self.node.snapshot()

    def summary(self) -> NodeSummary:
        """Counts for the status line and the final report."""
        usable = [c for c in self.channels() if is_usable(c)]
        return NodeSummary(
            targets_below=sum(is_target(c) for c in usable),
            targets_at_start=self._targets_at_start,
            ar_channels=sum(c.auto_rebalance for c in usable),
            sources_above=sum(is_source(c) for c in usable),
            daemon_count=self._counts["daemon"],
            daemon_sats=self._daemon_sats,
            lndg_count=self._counts["lndg"],
            other_count=self._counts["other"],
            forwards=self._counts["forward"],
            forwards_failed=self._failed,
            fees_lost_sat=self._lost_msat / 1000,
        )

    # -- the regolancer stand-in's scenario ----------------------------------------------------

    def write_scenario(self) -> None:
        """The model's verdict for one run of every pair the rule gives now; written atomically.

        Rolled afresh on every call (every run reads it), so the same pair succeeds once and
        finds no route the next time, as on a real network. A pair missing here stopped being
        one since the daemon read the channels: the stand-in then says what regolancer says,
        "no channelpairs available".
        """
        specs: dict[str, dict[str, Any]] = {}
        for pair in build_pairs(self.channels()):
            source, target = pair.source.chan_id, pair.target.chan_id
            steps = 2 if self.rng.random() < RAPID_SHARE else 1
            wanted = self._wanted(source, target, steps)
            verdict = self.node.attempt(source, target, pair.pfrom, pair.pto, wanted, self.rng)
            specs[f"{int(source)}>{int(target)}"] = self._spec(verdict, steps)
        scenario = {"default": {"outcome": "not_qualified"}, "pairs": specs}
        temporary = self.scenario_path.with_name(self.scenario_path.name + ".tmp")
        temporary.write_text(json.dumps(scenario), encoding="utf-8")
        os.replace(temporary, self.scenario_path)

    def _wanted(self, source: str, target: str, steps: int) -> int:
        """The amount the demo gives a run: half or more of what the pair can usefully move.

        Spread over the run's `steps` (a rapid rebalance doubles it), so a target fills in two
        or three successful runs while someone watches; the template's fixed amount would
        take a dozen.
        """
        room = min(self.node.surplus(source), self.node.need(target))
        total = room * self.rng.uniform(0.5, 0.9)
        return max(MIN_AMOUNT, int(total / (2**steps - 1)) // 1000 * 1000)

    def _spec(self, verdict: Verdict, steps: int) -> dict[str, Any]:
        """The stand-in's scenario entry for `verdict`; successes take 1-4 s."""
        if verdict.outcome == Outcome.SUCCESS:
            return {
                "outcome": "success",
                "amount_sat": verdict.amount_sat,
                "fee_sat": verdict.fee_sat,
                "steps": steps,
                "delay": round(self.rng.uniform(1, 4) / steps, 2),
            }
        if verdict.outcome == Outcome.NOT_QUALIFIED:
            return {"outcome": "not_qualified"}
        # No route: most runs say so at once, some time out looking or at their deadline.
        draw = self.rng.random()
        if draw < 0.64:
            return {"outcome": "no_route"}
        if draw < 0.85:
            return {"outcome": "route_timeout"}
        return {"outcome": "rebalance_timeout", "delay": round(self.rng.uniform(2, 4), 2)}

    # -- the week before the demo --------------------------------------------------------------

    def seed_history(self, now: datetime, attempts: int = HISTORY_ATTEMPTS) -> tuple[int, int]:
        """LNDg's week before `now`: its rebalancer's attempts into every usable AR channel.

        Each attempt offers a few outgoing channels and pays through the first whose route
        works (`Node.lndg_attempt`, the routes the stand-in's runs follow): a rebalancer row,
        and for a success its payment. All dated before today in `now`'s time zone (the daily
        report's), so today's report is the demo's own. Returns (attempts, paid).
        """
        usable = [c for c in self.channels() if is_usable(c)]
        outs = [c for c in usable if not c.auto_rebalance]
        # In UTC: arithmetic on two times of one ZoneInfo ignores a DST change between them.
        today = now.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)
        earliest = now.astimezone(UTC) - timedelta(days=7) + timedelta(hours=1)
        made = paid_count = 0
        for target in (c for c in usable if c.auto_rebalance):
            peers = [c.chan_id for c in outs if c.remote_pubkey != target.remote_pubkey]
            for _ in range(attempts if peers else 0):
                stop = earliest + (today - earliest) * self.rng.random()
                offered, paid = self.node.lndg_attempt(
                    target.chan_id, peers, HISTORY_SOURCES, self.rng
                )
                amount, fee = self._lndg_price(target)
                self._lndg_attempt(target, offered, paid, amount, fee, stop)
                made += 1
                paid_count += paid is not None
        return made, paid_count

    def seed_earnings(self, now: datetime, days: int = EARNINGS_DAYS) -> Earnings:
        """The month before `now`: forwards, other tools' rebalances, LNDg's older ones.

        So the first report's chart has `days` days to show. Rows only: today's balances are
        where that month left the node, so nothing moves. Forwards are drawn from routing
        demand (`sim.routing`) at the channels' fee rates; LNDg's paid rebalances fill the
        days before `seed_history`'s week (which plants LNDg's last 7 days). All dated
        before today in `now`'s time zone. Deterministic for the seed and `now`.
        """
        rng = random.Random(f"earnings:{self.node.seed}")
        usable = [c for c in self.channels() if is_usable(c)]
        ar = [c for c in usable if c.auto_rebalance]
        outs = [c for c in usable if not c.auto_rebalance]
        sources = [c for c in outs if is_source(c)] or outs
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        forwards = lndg_paid = other = 0
        revenue_msat = 0
        for back in range(days, 0, -1):
            # In UTC: arithmetic on two times of one ZoneInfo ignores a DST change between them.
            start = (midnight - timedelta(days=back)).astimezone(UTC)
            end = (midnight - timedelta(days=back - 1)).astimezone(UTC)

            def moment(start: datetime = start, end: datetime = end) -> datetime:
                return start + (end - start) * rng.random()

            for _ in range(rng.randint(*FORWARDS_PER_DAY)):
                request = self._history_demand.next()
                if request is None:
                    break
                rate = self.node.channels[request.chan_out].local_fee_rate
                earned = fee_msat(request.amount_sat, rate)
                self._record_forward(request, earned / 1000, moment())
                forwards += 1
                revenue_msat += earned
            for _ in range(rng.randint(*OTHER_PER_DAY)):
                picked = self._two_peers(sources, outs, rng)
                if picked is not None:
                    amount = rng.randrange(50, 301) * 1000
                    fee_sat = round(amount * rng.randrange(100, 800) / 1_000_000, 3)
                    self._pay(picked[0].chan_id, picked[1].chan_id, amount, fee_sat, moment())
                    other += 1
            if back <= 7:
                continue  # LNDg's last week is seed_history's
            for target in ar:
                peers = [c for c in outs if c.remote_pubkey != target.remote_pubkey]
                if peers and rng.random() < LNDG_PAID_PER_CHANNEL_DAY:
                    source = rng.choice(peers).chan_id
                    amount, fee = self._lndg_price(target, rng)
                    self._lndg_attempt(target, [source], source, amount, fee, moment())
                    lndg_paid += 1
        return Earnings(forwards, revenue_msat / 1000, lndg_paid, other)

    # -- the daemon's rebalances ---------------------------------------------------------------

    def apply_new_lines(self) -> list[Move]:
        """Move the sats of every stat line written since the last call; one payment row each.

        The payment row is what LND would record (`chan_out` the source, `rebal_chan` the
        target), so the daily report can attribute the rebalance to this daemon.
        """
        moves: list[Move] = []
        while True:
            batch = read_new_lines(self.stat_path, self._position)
            self._position = batch.end
            for line, _ in batch.entries:
                amount = line.amount_msat // 1000
                fee = line.fees_msat / 1000
                move = self._move("daemon", line.from_channel, line.to_channel, amount, fee)
                if move is None:
                    continue
                created = datetime.fromtimestamp(line.timestamp, UTC)
                self._pay(line.from_channel, line.to_channel, amount, fee, created)
                self._daemon_sats += amount
                moves.append(move)
            if not batch.has_more:
                return moves

    # -- the rest of the node ----------------------------------------------------------------

    def lndg_rebalance(self) -> Move | None:
        """LNDg's own rebalancer refills one target: a rebalancer row and its payment.

        Always paid, unlike its history: it acts seldom, and the daily report is to show
        LNDg's share even in a short demo.
        """
        pairs = build_pairs(self.channels())
        if not pairs:
            return None
        pair = self.rng.choice(pairs)
        source, target = pair.source.chan_id, pair.target.chan_id
        amount, fee = self._lndg_price(pair.target)
        move = self._move("lndg", source, target, amount, fee)
        if move is not None:
            self._lndg_attempt(pair.target, [source], source, amount, fee)
        return move

    def other_rebalance(self) -> Move | None:
        """Another tool (bos, a manual rebalance) moves sats into a channel nobody refills."""
        usable = [c for c in self.channels() if is_usable(c)]
        sources = [c for c in usable if is_source(c)]
        idle = [c for c in usable if not c.auto_rebalance and not is_source(c)]
        picked = self._two_peers(sources, idle)
        if picked is None:
            return None
        source, target = picked
        amount = self.rng.randrange(50, 301) * 1000
        fee = round(amount * self.rng.randrange(100, 800) / 1_000_000, 3)
        move = self._move("other", source.chan_id, target.chan_id, amount, fee)
        if move is not None:
            self._pay(source.chan_id, target.chan_id, amount, fee)
        return move

    def forward(self) -> Move | None:
        """The next payment routing demand sends through the node (`sim.routing.Demand`).

        This is why AR channels need refilling at all: demand asks them most, and a depleted
        one fails and loses the fee until a rebalance lands.
        """
        request = self.demand.next()
        return None if request is None else self.route(request)

    def route(self, request: Request, at: datetime | None = None) -> Move | None:
        """Forward `request` on the live balances (`sim.routing.route`) and show it in LNDg.

        A forward moves the balances and adds LNDg's forward row, dated `at` (default now). A
        failed one (the out channel lacks the outbound) moves nothing, records nothing and
        counts its fee as lost.
        """
        node = self.node
        out, into = request.chan_out, request.chan_in
        if out not in node.channels or into not in node.channels:
            return None
        before = (node.local_pct(out), node.local_pct(into))
        forwarded = route(node, request)
        if forwarded is None:
            self._failed += 1
            self._lost_msat += fee_msat(request.amount_sat, node.channels[out].local_fee_rate)
            return None
        self._show(out, into)
        self._counts["forward"] += 1
        self._record_forward(request, forwarded.fee_sat, at)
        return Move(
            "forward",
            self._label(out),
            self._label(into),
            request.amount_sat,
            forwarded.fee_sat,
            (before[0], node.local_pct(out)),
            (before[1], node.local_pct(into)),
        )

    def _record_forward(self, request: Request, fee: float, at: datetime | None) -> None:
        """LNDg's row for a settled forward (amounts in msat, the fee in sats)."""
        channels = self.node.channels
        row = forward_row(
            chan_id_in=request.chan_in,
            chan_id_out=request.chan_out,
            forward_date=at or datetime.now(UTC),
            amt_out_msat=request.amount_sat * 1000,
            fee=fee,
            chan_in_alias=channels[request.chan_in].alias,
            chan_out_alias=channels[request.chan_out].alias,
        )
        with self.lndg.lock:
            self.lndg.forwards.append(row)

    def _two_peers(
        self, outs: Sequence[Channel], ins: Sequence[Channel], rng: random.Random | None = None
    ) -> tuple[Channel, Channel] | None:
        """A random channel from each list, to two different peers (a circle needs two)."""
        rng = rng or self.rng
        if not outs:
            return None
        out = rng.choice(outs)
        others = [c for c in ins if c.remote_pubkey != out.remote_pubkey]
        return (out, rng.choice(others)) if others else None

    # -- changes, shown in LNDg's rows ---------------------------------------------------------

    def _move(self, by: Actor, source: str, target: str, amount: int, fee: float) -> Move | None:
        """Shift `amount` (+ `fee` on the way out) from source to target, as LND would."""
        node = self.node
        if source not in node.channels or target not in node.channels:
            return None
        before = (node.local_pct(source), node.local_pct(target))
        node.move(source, target, amount, fee)
        self._show(source, target)
        self._counts[by] += 1
        return Move(
            by,
            self._label(source),
            self._label(target),
            amount,
            fee,
            (before[0], node.local_pct(source)),
            (before[1], node.local_pct(target)),
        )

    def _show(self, *chan_ids: str) -> None:
        """Write the channels' live balances into LNDg's rows."""
        with self.lndg.lock:
            for row in self.lndg.channels:
                chan_id = row["chan_id"]
                if chan_id in chan_ids:
                    row["local_balance"] = self.node.local[chan_id]
                    row["remote_balance"] = self.node.remote(chan_id)

    def _label(self, chan_id: str) -> str:
        return self.node.channels[chan_id].alias or chan_id_to_short_id(chan_id)

    def _lndg_price(self, target: Channel, rng: random.Random | None = None) -> tuple[int, float]:
        """What one LNDg attempt into `target` moves (its default AR amount) and its fee."""
        amount = max(MIN_AMOUNT, target.capacity * 5 // 100)
        draw = (rng or self.rng).randrange(50, 600)
        return amount, round(amount * draw / 1_000_000, 3)

    def _lndg_attempt(
        self,
        target: Channel,
        offered: Sequence[str],
        paid: str | None,
        amount: int,
        fee: float,
        stop: datetime | None = None,
    ) -> None:
        """LNDg's rebalancer row for one attempt (`stop` default now); a success's payment too."""
        row = rebalance_row(
            value=amount,
            status=2 if paid is not None else 4,  # 4: no route, when none worked
            stop=stop,
            fees_paid=fee if paid is not None else None,
            fee_limit=round(amount * 0.001, 3),
            outgoing_chan_ids=list(offered),
            last_hop_pubkey=target.remote_pubkey,
            target_alias=target.alias,
            duration=self.rng.randrange(1, 6),
        )
        with self.lndg.lock:
            self.lndg.rebalancer.append(row)
        if paid is not None:
            self._pay(paid, target.chan_id, amount, fee, stop, payment_hash=row["payment_hash"])

    def _pay(
        self,
        source: str,
        target: str,
        amount: int,
        fee: float,
        created: datetime | None = None,
        *,
        payment_hash: str | None = None,
    ) -> None:
        """The payment LND records for a rebalance: out of `source`, into `target`."""
        row = payment_row(
            payment_hash,
            creation_date=created or datetime.now(UTC),
            value=amount,
            fee=fee,
            chan_out=source,
            chan_out_alias=self.node.channels[source].alias,
            rebal_chan=target,
        )
        with self.lndg.lock:
            self.lndg.payments.append(row)
