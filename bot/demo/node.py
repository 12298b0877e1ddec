"""A simulated routing node for the demo, and the simulation that keeps it alive.

`build_channels(seed)` gives the node: about 40 channels in LNDg's `/api/channels/` shape,
deterministic from the seed. `Simulation` then plays the rest of the node around the real
daemon, on the rows of a running `FakeLndg`:

- each new line of the daemon's stat CSV (a rebalance the regolancer stand-in "paid") moves
  the sats in the channel rows and appears in `/api/payments/`, as LND and LNDg would show it;
- the regolancer stand-in's scenario is rewritten from the current balances, so run outcomes
  vary and amounts fit the channels; each channel's peer routes well or badly (its *reach*),
  so some pairs succeed most of the time and some rarely;
- LNDg holds a week of its own rebalancer's attempts before the demo, drawn from the same
  reach, so the daemon has a history to learn from at its first cycle;
- LNDg's own rebalancer, another tool and routed payments act now and then, so the daily
  report has three shares and refilled targets drain again.

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

from bot.demo.lndg import FakeLndg, channel_row, payment_row, rebalance_row
from core.models import Channel, chan_id_to_short_id
from core.pairing import build_pairs, is_source, is_target, is_usable
from core.statfile import StatPosition, read_new_lines

# Fictional peers; a few routing-node naming habits (hosts, emoji, numbered nodes).
ALIASES = (
    "AlpineRouter",
    "BlueWhale⚡",
    "bitcoin-berlin",
    "Orange Pill Node",
    "HodlHub",
    "lnd.tokyo",
    "SatsStacker",
    "Nordic Lightning",
    "PaymentPelican",
    "ZapZebra",
    "MoonMerchant",
    "coffee-sats-02",
    "Lisbon Liquidity",
    "TorTortoise",
    "NodeOfTheNorth",
    "CypherPunkCafe",
    "sat-stream.io",
    "RiverRoute 1",
    "BlockByBlock",
    "LowFeeLarry",
    "HalvingHawk",
    "ColdCardigan",
    "MempoolMaple",
    "VoltVillage",
    "FiatFreeFox",
    "lnrouter-ams-3",
    "StackingSouth",
    "ThunderHub-Oslo",
    "GossipGoose",
    "PlebPenguin",
    "MicroMoose",
    "HTLC Harbour",
    "channel-surfer",
    "WattWallet LSP",
    "Satoshi's Garden",
    "BoltBazaar",
    "LiquidLynx",
    "OnionOtter",
    "ZeroConfZone",
)
CAPACITIES = (
    1_000_000,
    1_500_000,
    2_000_000,
    2_500_000,
    3_000_000,
    4_000_000,
    5_000_000,
    6_000_000,
    8_000_000,
    10_000_000,
)
# The node's channels by role; they add up to 40.
TARGETS = 12  # AR on, depleted: the daemon refills them
SOURCES = 16  # AR off, above their ar_out_target: the daemon drains them
IDLE_OUT = 6  # AR off, below their ar_out_target: neither
IDLE_IN = 2  # AR on, above their band: neither (yet)
INACTIVE = 2  # peer offline: LNDg does not list them as active
PRIVATE = 2  # unannounced: never rebalanced

MIN_AMOUNT = 10_000  # regolancer's min_amount in the demo template

# How well a channel's peer routes. A run succeeds with its source's reach times its target's:
# from 30 % to nearly always, 60 % on average.
REACH = (0.55, 1.0)
# LNDg's auto-rebalancer in the week before the demo: attempts per AR channel, and how many
# outgoing channels each attempt offers (LNDg pays through the first one that finds a route).
HISTORY_ATTEMPTS = 10
HISTORY_SOURCES = 2

# Who moved sats on the simulated node.
Actor = Literal["daemon", "lndg", "other", "forward"]
_ACTOR_TEXT: dict[Actor, str] = {
    "daemon": "rebalance by this daemon",
    "lndg": "LNDg's own rebalancer",
    "other": "another tool's rebalance",
    "forward": "routed payment",
}


def build_channels(seed: int = 1) -> list[dict[str, Any]]:
    """The simulated node's channel rows, deterministic from `seed`, oldest channel first."""
    rng = random.Random(seed)
    aliases = list(ALIASES)
    rng.shuffle(aliases)
    roles = (
        ["target"] * TARGETS
        + ["source"] * SOURCES
        + ["idle_out"] * IDLE_OUT
        + ["idle_in"] * IDLE_IN
        + ["inactive"] * INACTIVE
        + ["private"] * PRIVATE
    )
    # The first target's peer also has the first source: big peers often have two channels,
    # and the daemon must never pair a channel with another to the same peer.
    aliases.insert(TARGETS, aliases[0])
    short_ids: set[str] = set()
    rows: list[dict[str, Any]] = []
    pubkeys: dict[str, str] = {}
    for role, alias in zip(roles, aliases, strict=True):
        short_id = ""
        while not short_id or short_id in short_ids:
            block, tx = rng.randrange(760_000, 870_000), rng.randrange(1, 3000)
            short_id = f"{block}x{tx}x{rng.randrange(2)}"
        short_ids.add(short_id)
        pubkey = pubkeys.setdefault(alias, "03" + f"{rng.getrandbits(256):064x}")
        rows.append(_channel(rng, role, short_id, alias, pubkey))
    rows.sort(key=lambda row: int(row["chan_id"]))
    return rows


def _channel(
    rng: random.Random, role: str, short_id: str, alias: str, pubkey: str
) -> dict[str, Any]:
    capacity = rng.choice(CAPACITIES)
    auto_rebalance = role in ("target", "idle_in") or (role == "inactive" and rng.random() < 0.5)
    ar_in_target = rng.choice((80, 85, 90)) if auto_rebalance else 100
    ar_out_target = rng.choice((50, 55, 60, 65, 70, 75)) if role == "source" else 75
    band = 100 - ar_in_target
    if role == "target":
        pct = rng.uniform(1, band - 4)
    elif role == "source":
        pct = rng.uniform(ar_out_target + 6, 96)
    elif role == "idle_in":
        pct = rng.uniform(band + 15, 60)
    else:
        pct = rng.uniform(20, 65)
    # Refilled channels are the ones that earn: they carry the higher fees.
    fee_rate = rng.randrange(300, 1200, 10) if auto_rebalance else rng.randrange(0, 150, 5)
    return channel_row(
        short_id,
        alias=alias,
        capacity=capacity,
        local_balance=int(capacity * pct / 100),
        remote_pubkey=pubkey,
        auto_rebalance=auto_rebalance,
        ar_in_target=ar_in_target,
        ar_out_target=ar_out_target,
        is_active=role != "inactive",
        private=role == "private",
        local_fee_rate=fee_rate,
    )


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
        return (
            f"simulated node: {_ACTOR_TEXT[self.by]}: {self.amount_sat:,} sat out of {self.source} "
            f"(local {self.source_pct[0]}% -> {self.source_pct[1]}%), into {self.target} "
            f"(local {self.target_pct[0]}% -> {self.target_pct[1]}%)"
        )


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

    def line(self) -> str:
        """The periodic one-line status."""
        return (
            f"{self.targets_below}/{self.ar_channels} AR channels below their band "
            f"({self.targets_at_start} at start), {self.sources_above} sources above theirs; "
            f"this daemon moved {self.daemon_sats:,} sats in {self.daemon_count} rebalances; "
            f"LNDg's rebalancer {self.lndg_count}, other tools {self.other_count}, "
            f"{self.forwards} payments routed"
        )


class Simulation:
    """Plays the node around the daemon, on the rows of a running FakeLndg.

    Not thread-safe itself: call it from one task. Row changes hold `lndg.lock`, so the
    FakeLndg's handler threads never serve a half-moved balance.
    """

    def __init__(
        self, lndg: FakeLndg, stat_path: Path, scenario_path: Path, *, seed: int = 1
    ) -> None:
        self.lndg = lndg
        self.stat_path = stat_path
        self.scenario_path = scenario_path
        self.rng = random.Random(seed)
        self._position: StatPosition | None = None
        self._daemon_sats = 0
        self._counts: dict[Actor, int] = {"daemon": 0, "lndg": 0, "other": 0, "forward": 0}
        self._targets_at_start = sum(is_target(c) for c in self.channels() if is_usable(c))
        self._reach = {c.chan_id: self.rng.uniform(*REACH) for c in self.channels()}

    def route_odds(self, source_id: str, target_id: str) -> float:
        """How often a run from `source_id` into `target_id` finds a route and pays."""
        return self._reach[source_id] * self._reach[target_id]

    # -- reading the node --------------------------------------------------------------------

    def channels(self) -> list[Channel]:
        """Every channel as the daemon would parse it (inactive and private ones included)."""
        with self.lndg.lock:
            return [Channel.model_validate(row) for row in self.lndg.channels]

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
        )

    # -- the regolancer stand-in's scenario ----------------------------------------------------

    def write_scenario(self) -> None:
        """One outcome per pair the rule gives now; written atomically (read by every run).

        Rolled afresh on every call, so the same pair succeeds once and finds no route the
        next time, as on a real network. Successes take 1-4 s and move half or more of
        what the pair can move, so a target fills in two or three successful runs.
        """
        pairs = build_pairs(self.channels())
        specs: dict[str, dict[str, Any]] = {}
        for pair in pairs:
            source, target = pair.source, pair.target
            room = min(
                source.effective_local - source.capacity * source.ar_out_target // 100,
                target.capacity * (100 - target.ar_in_target) // 100 - target.effective_local,
            )
            key = f"{int(source.chan_id)}>{int(target.chan_id)}"
            specs[key] = self._roll(room, self.route_odds(source.chan_id, target.chan_id))
        # A pair missing here stopped being one since the daemon read the channels: regolancer
        # would find nothing to move ("no channelpairs available", counted as no route).
        scenario = {"default": {"outcome": "no_route"}, "pairs": specs}
        temporary = self.scenario_path.with_name(self.scenario_path.name + ".tmp")
        temporary.write_text(json.dumps(scenario), encoding="utf-8")
        os.replace(temporary, self.scenario_path)

    def _roll(self, room: int, odds: float) -> dict[str, Any]:
        draw = self.rng.random()
        if draw < odds:
            # Rapid rebalance now and then: regolancer doubles the amount on each repeat.
            steps = 2 if self.rng.random() < 0.25 else 1
            total = room * self.rng.uniform(0.5, 0.9)
            amount = max(MIN_AMOUNT, int(total / (2**steps - 1)) // 1000 * 1000)
            ppm = self.rng.randrange(20, 900)
            return {
                "outcome": "success",
                "amount_sat": amount,
                "fee_sat": max(1, amount * ppm // 1_000_000),
                "steps": steps,
                "delay": round(self.rng.uniform(1, 4) / steps, 2),
            }
        miss = (draw - odds) / (1 - odds)  # where among the failures: most find no route
        if miss < 0.64:
            return {"outcome": "no_route"}
        if miss < 0.85:
            return {"outcome": "route_timeout"}
        return {"outcome": "rebalance_timeout", "delay": round(self.rng.uniform(2, 4), 2)}

    # -- the week before the demo --------------------------------------------------------------

    def seed_history(self, now: datetime, attempts: int = HISTORY_ATTEMPTS) -> tuple[int, int]:
        """LNDg's week before `now`: its rebalancer's attempts into every usable AR channel.

        Each attempt offers a few outgoing channels and pays through the first whose route
        works (by the same reach the stand-in's runs follow): a rebalancer row, and for a
        success its payment. All dated before today in `now`'s time zone (the daily report's),
        so today's report is the demo's own. Returns (attempts, paid).
        """
        usable = [c for c in self.channels() if is_usable(c)]
        outs = [c for c in usable if not c.auto_rebalance]
        # In UTC: arithmetic on two times of one ZoneInfo ignores a DST change between them.
        today = now.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)
        earliest = now.astimezone(UTC) - timedelta(days=7) + timedelta(hours=1)
        made = paid_count = 0
        for target in (c for c in usable if c.auto_rebalance):
            peers = [c for c in outs if c.remote_pubkey != target.remote_pubkey]
            for _ in range(attempts if peers else 0):
                stop = earliest + (today - earliest) * self.rng.random()
                offered = self.rng.sample(peers, min(HISTORY_SOURCES, len(peers)))
                paid = next(
                    (
                        s
                        for s in offered
                        if self.rng.random() < self.route_odds(s.chan_id, target.chan_id)
                    ),
                    None,
                )
                amount, fee = self._lndg_price(target)
                self._lndg_attempt(target, offered, paid, amount, fee, stop)
                made += 1
                paid_count += paid is not None
        return made, paid_count

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
        """LNDg's own rebalancer refills one target: a rebalancer row and its payment."""
        pairs = build_pairs(self.channels())
        if not pairs:
            return None
        pair = self.rng.choice(pairs)
        amount, fee = self._lndg_price(pair.target)
        move = self._move("lndg", pair.source.chan_id, pair.target.chan_id, amount, fee)
        if move is not None:
            self._lndg_attempt(pair.target, [pair.source], pair.source, amount, fee)
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
        """A payment routed through the node: out of a refilled AR channel, in through another.

        This is why AR channels need refilling at all; it keeps the demo going once the daemon
        has caught up. Only AR channels at or above their band forward, so a depleted target
        stays depleted until a rebalance lands.
        """
        usable = [c for c in self.channels() if is_usable(c)]
        refilled = [c for c in usable if c.auto_rebalance and not is_target(c)]
        inbound = [c for c in usable if not c.auto_rebalance]
        picked = self._two_peers(refilled, inbound)
        if picked is None:
            return None
        out, into = picked
        amount = min(out.capacity * self.rng.randrange(3, 9) // 100, out.local_balance)
        return self._move("forward", out.chan_id, into.chan_id, amount, 0.0)

    def _two_peers(
        self, outs: Sequence[Channel], ins: Sequence[Channel]
    ) -> tuple[Channel, Channel] | None:
        """A random channel from each list, to two different peers (a circle needs two)."""
        if not outs:
            return None
        out = self.rng.choice(outs)
        others = [c for c in ins if c.remote_pubkey != out.remote_pubkey]
        return (out, self.rng.choice(others)) if others else None

    # -- row changes -------------------------------------------------------------------------

    def _move(
        self, by: Actor, source_id: str, target_id: str, amount: int, fee: float
    ) -> Move | None:
        """Shift `amount` (+ `fee` on the way out) from source to target, as LND would."""
        with self.lndg.lock:
            rows = {row["chan_id"]: row for row in self.lndg.channels}
            source, target = rows.get(source_id), rows.get(target_id)
            if source is None or target is None:
                return None
            before = (_pct(source), _pct(target))
            # The balances bound what can move; a stand-in run may "pay" more than is there.
            out = min(int(amount + fee), source["local_balance"])
            into = min(amount, target["remote_balance"])
            source["local_balance"] -= out
            source["remote_balance"] += out
            target["remote_balance"] -= into
            target["local_balance"] += into
            after = (_pct(source), _pct(target))
        self._counts[by] += 1
        return Move(
            by,
            _label(source),
            _label(target),
            amount,
            fee,
            (before[0], after[0]),
            (before[1], after[1]),
        )

    def _lndg_price(self, target: Channel) -> tuple[int, float]:
        """What one LNDg attempt into `target` moves (its default AR amount) and its fee."""
        amount = max(MIN_AMOUNT, target.capacity * 5 // 100)
        return amount, round(amount * self.rng.randrange(50, 600) / 1_000_000, 3)

    def _lndg_attempt(
        self,
        target: Channel,
        offered: Sequence[Channel],
        paid: Channel | None,
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
            outgoing_chan_ids=[s.chan_id for s in offered],
            last_hop_pubkey=target.remote_pubkey,
            target_alias=target.alias,
            duration=self.rng.randrange(1, 6),
        )
        with self.lndg.lock:
            self.lndg.rebalancer.append(row)
        if paid is not None:
            self._pay(
                paid.chan_id, target.chan_id, amount, fee, stop, payment_hash=row["payment_hash"]
            )

    def _pay(
        self,
        source_id: str,
        target_id: str,
        amount: int,
        fee: float,
        created: datetime | None = None,
        *,
        payment_hash: str | None = None,
    ) -> None:
        with self.lndg.lock:
            alias = next(
                (row["alias"] for row in self.lndg.channels if row["chan_id"] == source_id), ""
            )
            self.lndg.payments.append(
                payment_row(
                    payment_hash,
                    creation_date=created or datetime.now(UTC),
                    value=amount,
                    fee=fee,
                    chan_out=source_id,
                    chan_out_alias=alias,
                    rebal_chan=target_id,
                )
            )


def _pct(row: dict[str, Any]) -> int:
    capacity = int(row["capacity"])
    local = int(row["local_balance"]) + int(row["pending_outbound"])
    return local * 100 // capacity if capacity else 0


def _label(row: dict[str, Any]) -> str:
    return str(row["alias"] or chan_id_to_short_id(str(row["chan_id"])))
