"""Invented routing nodes, deterministic from a seed, as LNDg's `/api/channels/` rows.

- `demo_rows`: the demo's node, 40 channels with peers' names, a few inactive and private
  ones, each with a role (depleted target, full source, idle), so the demo has work to show.
- `node_rows` / `node_channels`: nodes of any size for the benchmarks. About a third of the
  channels have LNDg's auto-rebalance on (most of them depleted: targets), the rest are off
  (most of them full: sources), capacities from 1 to 10 M sat, and one channel in twenty
  shares its peer with another (the rule never pairs those). Fees and LNDg's AR fields come
  from a draw of their own: auto-rebalanced channels charge 300-1,200 ppm (they earn), the
  others 0-150; peers charge us 0-300 ppm inbound; `ar_max_cost` 65 %, `ar_amt_target` 3 % of
  capacity (LNDg's defaults).
"""

from __future__ import annotations

import random
from typing import Any

from core.models import Channel
from sim.lndg import channel_row

# --- the demo's node --------------------------------------------------------------------

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
DEMO_CAPACITIES = (
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
# The demo node's channels by role; they add up to 40.
TARGETS = 12  # AR on, depleted: the daemon refills them
SOURCES = 16  # AR off, above their ar_out_target: the daemon drains them
IDLE_OUT = 6  # AR off, below their ar_out_target: neither
IDLE_IN = 2  # AR on, above their band: neither (yet)
INACTIVE = 2  # peer offline: LNDg does not list them as active
PRIVATE = 2  # unannounced: never rebalanced


def demo_rows(seed: int = 1) -> list[dict[str, Any]]:
    """The demo node's channel rows, deterministic from `seed`, oldest channel first."""
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
        rows.append(_demo_row(rng, role, short_id, alias, pubkey))
    rows.sort(key=lambda row: int(row["chan_id"]))
    return rows


def _demo_row(
    rng: random.Random, role: str, short_id: str, alias: str, pubkey: str
) -> dict[str, Any]:
    capacity = rng.choice(DEMO_CAPACITIES)
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


# --- benchmark nodes of any size -----------------------------------------------------------

BENCH_CAPACITIES = (1_000_000, 2_000_000, 3_000_000, 5_000_000, 10_000_000)
AR_SHARE = 0.35
TARGET_SHARE = 0.75  # of the auto-rebalanced channels
SOURCE_SHARE = 0.6  # of the others


def _bench_short_id(index: int) -> str:
    return f"{800_000 + index // 1000}x{index % 1000 + 1}x0"


def node_rows(size: int, seed: int = 1, *, balanced: bool = False) -> list[dict[str, Any]]:
    """`size` channel rows in LNDg's `/api/channels/` shape; `balanced`: nothing to do."""
    rng = random.Random(seed)
    fees = random.Random(f"{seed}:fees")
    rows: list[dict[str, Any]] = []
    pubkeys: list[str] = []
    for index in range(size):
        capacity = rng.choice(BENCH_CAPACITIES)
        auto = rng.random() < AR_SHARE
        if auto:
            in_target = rng.choice((70, 80, 90))
            floor = 100 - in_target  # below this local % it is a target
            needy = not balanced and rng.random() < TARGET_SHARE
            pct = rng.uniform(0, floor - 1) if needy else rng.uniform(floor, 80)
            out_target = 75
        else:
            out_target = rng.choice((50, 60, 75))
            full = not balanced and rng.random() < SOURCE_SHARE
            pct = rng.uniform(out_target + 5, 98) if full else rng.uniform(2, out_target)
            in_target = 100
        pubkey = None
        if pubkeys and rng.random() < 0.05:
            pubkey = rng.choice(pubkeys)  # a second channel to a peer
        local = int(capacity * pct / 100)
        row = channel_row(
            _bench_short_id(index),
            alias=f"node{index:04d}",
            capacity=capacity,
            local_balance=local,
            remote_balance=capacity - local,
            remote_pubkey=pubkey,
            auto_rebalance=auto,
            ar_out_target=out_target,
            ar_in_target=in_target,
            local_fee_rate=fees.randrange(300, 1200, 10) if auto else fees.randrange(0, 150, 5),
            remote_fee_rate=fees.randrange(0, 300, 5),
            ar_max_cost=65,
            ar_amt_target=capacity * 3 // 100,
        )
        pubkeys.append(str(row["remote_pubkey"]))
        rows.append(row)
    return rows


def node_channels(size: int, seed: int = 1, *, balanced: bool = False) -> list[Channel]:
    """The same node as `node_rows`, as the orchestrator's Channel values."""
    return [Channel.model_validate(row) for row in node_rows(size, seed, balanced=balanced)]
