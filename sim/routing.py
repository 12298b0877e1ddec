"""Routing demand on a simulated node: payments that want to pass through it, and what they earn.

A small model, deterministic from a seed, for the demo and the benchmark (`bench.simulate`):

- `Demand` draws requests: a payment arrives by one channel (`chan_in`) and wants to leave by
  another, to a different peer (`chan_out`), for `amount_sat`. Auto-rebalanced channels (the
  ones that carry high fees and that operators refill) are asked `AR_OUT_WEIGHT` times as often
  as others to send; other channels are asked `SOURCE_IN_WEIGHT` times as often to receive. The
  amount is `AMOUNT_PCT` of the out channel's capacity. `weights` (per chan_id) make demand
  uneven: a channel with weight 3 is asked to send three times as often as with 1.
- `route(node, request)` plays one request on a `sim.model.Node`'s live balances. It needs the
  out channel's outbound: when its local balance is below the amount (or the in channel's peer
  cannot send amount plus fee), the forward fails and its fee is lost; nothing moves and LND
  records nothing. Otherwise the out channel's local balance falls by the amount, the in
  channel's rises by the amount plus the fee, and the node earns the fee at the out channel's
  `local_fee_rate` (ppm, no base fee).

Reserves and in-flight HTLCs are not modelled: a channel's outbound is its local balance.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate

from core.models import Channel
from core.pairing import is_usable
from sim.model import Node

AR_OUT_WEIGHT = 4  # an auto-rebalanced channel is asked to send this much more often
SOURCE_IN_WEIGHT = 3  # a channel without auto-rebalance is asked to receive this much more often
AMOUNT_PCT = (1.0, 6.0)  # a request's amount, in % of the out channel's capacity
MIN_FORWARD_SAT = 1_000


@dataclass(frozen=True, slots=True)
class Request:
    """A payment that wants to pass through the node: in by `chan_in`, out by `chan_out`."""

    chan_in: str
    chan_out: str
    amount_sat: int


@dataclass(frozen=True, slots=True)
class Forwarded:
    """A request the node forwarded, and the fee it earned (msat, what LND's `fee_msat` says)."""

    request: Request
    fee_msat: int

    @property
    def fee_sat(self) -> float:
        """LNDg's `fee` field: sats with msat precision."""
        return self.fee_msat / 1000


def fee_msat(amount_sat: int, fee_rate_ppm: int) -> int:
    """The fee for forwarding `amount_sat` at `fee_rate_ppm` (msat, rounded down as LND does)."""
    return amount_sat * fee_rate_ppm // 1000


class Demand:
    """A seeded stream of requests over the node's usable channels (announced and active).

    Two streams with the same channels and `seed` (and `stream` name) draw the same requests.
    """

    def __init__(
        self,
        channels: Sequence[Channel],
        seed: int,
        stream: str = "live",
        weights: Mapping[str, float] | None = None,
    ) -> None:
        usable = [c for c in channels if is_usable(c)]
        self._outs = usable
        out_weights = [
            (AR_OUT_WEIGHT if c.auto_rebalance else 1) * (weights or {}).get(c.chan_id, 1.0)
            for c in usable
        ]
        # Cumulative weights, as `choices` would accumulate them on every draw (same floats,
        # same draws): made once, and once per out peer for the channels it may come in by.
        self._out_cum = list(accumulate(out_weights))
        self._in_weights = [1 if c.auto_rebalance else SOURCE_IN_WEIGHT for c in usable]
        self._ins: dict[str, tuple[list[Channel], list[int]]] = {}
        self._rng = random.Random(f"routing:{seed}:{stream}")

    def _ins_for(self, out_peer: str) -> tuple[list[Channel], list[int]]:
        """The channels a payment out to `out_peer` may come in by, with cumulative weights."""
        found = self._ins.get(out_peer)
        if found is None:
            ins = [
                (c, w)
                for c, w in zip(self._outs, self._in_weights, strict=True)
                if c.remote_pubkey != out_peer
            ]
            found = self._ins[out_peer] = (
                [c for c, _w in ins],
                list(accumulate(w for _c, w in ins)),
            )
        return found

    def next(self) -> Request | None:
        """The next request; None when the node has no two channels to different peers."""
        if not self._outs:
            return None
        rng = self._rng
        out = rng.choices(self._outs, cum_weights=self._out_cum)[0]
        ins, cum = self._ins_for(out.remote_pubkey)
        if not ins:
            return None
        into = rng.choices(ins, cum_weights=cum)[0]
        amount = int(out.capacity * rng.uniform(*AMOUNT_PCT) / 100) // 1000 * 1000
        return Request(into.chan_id, out.chan_id, max(amount, MIN_FORWARD_SAT))


def lost_msat(node: Node, request: Request) -> int:
    """The fee a request loses for want of outbound in its out channel (0: it has enough)."""
    out = node.channels.get(request.chan_out)
    if out is None or node.local[out.chan_id] >= request.amount_sat:
        return 0
    return fee_msat(request.amount_sat, out.local_fee_rate)


def route(node: Node, request: Request) -> Forwarded | None:
    """Play `request` on the node's live balances; None (nothing moved) when it fails."""
    out, into = request.chan_out, request.chan_in
    if out not in node.channels or into not in node.channels or out == into:
        return None
    earned = fee_msat(request.amount_sat, node.channels[out].local_fee_rate)
    incoming = request.amount_sat + earned // 1000
    if node.local[out] < request.amount_sat or node.remote(into) < incoming:
        return None
    node.local[out] -= request.amount_sat
    node.local[into] += incoming
    return Forwarded(request, earned)
