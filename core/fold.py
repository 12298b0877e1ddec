"""Folding ledger rows for the feed: the payments of one run, the pairs of a digest. Pure.

Which rows belong to which run is decided by the feed (`core.feed.FeedPump`), which reads
the run records; here are the sums and the digest's clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.events import RebalanceLanded


@dataclass(frozen=True, slots=True)
class PairTotal:
    """What one pair (source channel → target channel) moved in a digest's window."""

    from_channel: str
    to_channel: str
    from_alias: str
    to_alias: str
    payments: int
    amount_msat: int
    fees_msat: int

    @property
    def amount_sat(self) -> int:
        return self.amount_msat // 1000

    @property
    def fee_sat(self) -> float:
        return self.fees_msat / 1000

    @property
    def ppm(self) -> int:
        return self.fees_msat * 1_000_000 // self.amount_msat if self.amount_msat > 0 else 0


def pair_totals(rebalances: Sequence[RebalanceLanded]) -> list[PairTotal]:
    """One total per pair, in the order each pair first appears; the latest aliases win."""
    totals: dict[tuple[str, str], PairTotal] = {}
    for rebalance in rebalances:
        for payment in rebalance.payments:
            line = payment.line
            key = (line.from_channel, line.to_channel)
            known = totals.get(key)
            totals[key] = PairTotal(
                line.from_channel,
                line.to_channel,
                payment.from_alias or (known.from_alias if known else ""),
                payment.to_alias or (known.to_alias if known else ""),
                (known.payments if known else 0) + 1,
                (known.amount_msat if known else 0) + line.amount_msat,
                (known.fees_msat if known else 0) + line.fees_msat,
            )
    return list(totals.values())


def grand_total(pairs: Sequence[PairTotal]) -> PairTotal:
    """All pairs summed (channels and aliases left empty)."""
    return PairTotal(
        "",
        "",
        "",
        "",
        sum(p.payments for p in pairs),
        sum(p.amount_msat for p in pairs),
        sum(p.fees_msat for p in pairs),
    )


def window_start(now: float, minutes: int) -> float:
    """Start of the digest window `now` falls in: windows of `minutes`, on the UTC clock.

    So an hourly digest comes on the hour, and a restart does not move the windows.
    """
    length = minutes * 60
    return float(int(now) - int(now) % length)
