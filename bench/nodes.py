"""Invented routing nodes of any size, deterministic from a seed, for every benchmark.

About a third of the channels have LNDg's auto-rebalance on (most of them depleted: targets),
the rest are off (most of them full: sources), capacities from 1 to 10 M sat, and one channel
in twenty shares its peer with another (the rule never pairs those).
"""

from __future__ import annotations

import random
from typing import Any

from bot.demo.lndg import channel_row
from core.models import Channel

CAPACITIES = (1_000_000, 2_000_000, 3_000_000, 5_000_000, 10_000_000)
AR_SHARE = 0.35
TARGET_SHARE = 0.75  # of the auto-rebalanced channels
SOURCE_SHARE = 0.6  # of the others


def short_id(index: int) -> str:
    return f"{800_000 + index // 1000}x{index % 1000 + 1}x0"


def node_rows(size: int, seed: int = 1, *, balanced: bool = False) -> list[dict[str, Any]]:
    """`size` channel rows in LNDg's `/api/channels/` shape; `balanced`: nothing to do."""
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    pubkeys: list[str] = []
    for index in range(size):
        capacity = rng.choice(CAPACITIES)
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
            short_id(index),
            alias=f"node{index:04d}",
            capacity=capacity,
            local_balance=local,
            remote_balance=capacity - local,
            remote_pubkey=pubkey,
            auto_rebalance=auto,
            ar_out_target=out_target,
            ar_in_target=in_target,
        )
        pubkeys.append(str(row["remote_pubkey"]))
        rows.append(row)
    return rows


def node_channels(size: int, seed: int = 1, *, balanced: bool = False) -> list[Channel]:
    """The same node as `node_rows`, as the orchestrator's Channel values."""
    return [Channel.model_validate(row) for row in node_rows(size, seed, balanced=balanced)]
