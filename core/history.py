"""What happened before this start: past rebalance attempts, as the planner learns them.

Two witnesses, both read at start so a fresh daemon does not rediscover the working routes
by failing on the others:

- LNDg. Every succeeded circular payment on the node (`/api/payments/`, `rebal_chan` set) is
  a route that worked, whichever tool paid it: its first hop (`chan_out`) is the source and
  `rebal_chan` the target. LNDg's own failed attempts (`/api/rebalancer/`, LND failure
  statuses 3-7) name the target by its peer (`last_hop_pubkey`) and usually several
  outgoing channels at once: then only the target learns from the failure.
- Our own run records (the state store): runs of a pair that failed on the route, as the
  planner counts them (`RunResult.failed_on_route`). Our successes are payments, already
  counted from LNDg.

Pure: the caller fetches the rows; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from core.models import Channel, RunResult
from core.node_records import LndgRebalance, Payment

# LND's payment failure reasons as LNDg stores them (timeout, no route, error, incorrect
# details, insufficient balance): the route failed. LNDg's own 400+ codes and 499
# (cancelled) say nothing about the route.
LND_FAILURES = range(3, 8)


@dataclass(frozen=True, slots=True)
class Observation:
    """One past attempt to move sats from `source` (None: unknown) into `target`."""

    at: float  # Unix seconds
    target: str
    source: str | None
    won: bool


def from_payments(payments: Iterable[Payment]) -> list[Observation]:
    """Succeeded rebalances on the node (any tool) with their first hop and target."""
    return [
        Observation(p.creation_date.timestamp(), p.rebal_chan, p.chan_out, won=True)
        for p in payments
        if p.rebal_chan is not None and p.chan_out is not None and p.chan_out.isdigit()
    ]


def from_lndg_failures(
    rebalances: Iterable[LndgRebalance], channels: Sequence[Channel]
) -> list[Observation]:
    """LNDg's failed attempts whose target channel is known (one open channel to that peer)."""
    by_peer: dict[str, list[str]] = {}
    for channel in channels:
        by_peer.setdefault(channel.remote_pubkey, []).append(channel.chan_id)
    found: list[Observation] = []
    for attempt in rebalances:
        if attempt.status not in LND_FAILURES or attempt.last_hop_pubkey is None:
            continue
        peers = by_peer.get(attempt.last_hop_pubkey, [])
        when = attempt.stop or attempt.start or attempt.requested
        if len(peers) != 1 or when is None:
            continue
        sources = attempt.outgoing_chan_ids
        source = sources[0] if len(sources) == 1 else None
        found.append(Observation(when.timestamp(), peers[0], source, won=False))
    return found


def from_runs(runs: Iterable[RunResult]) -> list[Observation]:
    """Our own runs that failed on the route (successes come from LNDg's payments)."""
    return [
        Observation(run.started_at, run.target, run.source, won=False)
        for run in runs
        if run.failed_on_route
    ]
