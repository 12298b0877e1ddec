"""Does serving first the targets that earn most earn more than the depletion order?

The daemon's planner against itself, in one process on the same nodes and seeds
(`bench.simulate`'s model): once as shipped (the most depleted target first), once ranking
the targets by the routing fees their outbound earned per sat of capacity over the last 7
days of the node's forwards (`bench.simulate.EarningsFirstPlanner`). Routing demand leaves
unevenly by the channels (`demand_sigma`), each channel earns its own fee rate, a forward
that finds too little outbound liquidity fails and its fee is lost, and each rebalance pays
its pair's route fee. LNDg holds `forward_history_days` of forwards at the start (0: the
order is learnt from the forwards of the run itself).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace

from bench.simulate import SideResult, SimConfig, simulate


@dataclass(frozen=True)
class OrderFigures:
    """One order over the seeds: per-node means (sats) and the per-seed net earnings."""

    order: str
    sides: list[SideResult]

    @property
    def nets(self) -> list[float]:
        return [s.net_sat for s in self.sides]

    def mean(self, figure: str) -> float:
        return statistics.fmean(float(getattr(s, figure)) for s in self.sides)


def compare(config: SimConfig, seeds: Sequence[int]) -> dict[str, OrderFigures]:
    """Both orders on the nodes of `seeds`; the daemon only (no original-tool side)."""
    return {
        order: OrderFigures(
            order,
            simulate(
                replace(config, earnings_first=order == "earnings"), seeds, baseline=False
            ).daemon,
        )
        for order in ("earnings", "depletion")
    }


def lines(config: SimConfig, figures: dict[str, OrderFigures]) -> list[str]:
    """The printed figures: net, revenue, lost, fees per node; seeds where earnings won."""
    earnings, depletion = figures["earnings"], figures["depletion"]
    out = []
    for side in (earnings, depletion):
        out.append(
            f"  {side.order:9} net {side.mean('net_sat'):>10,.0f} sat = revenue "
            f"{side.mean('revenue_sat'):,.0f} - fees {side.mean('fees_paid_sat'):,.0f}; "
            f"revenue lost {side.mean('lost_sat'):,.0f}; into deficits "
            f"{side.mean('needed'):,.0f} sat (means per node)"
        )
    wins = sum(e > d for e, d in zip(earnings.nets, depletion.nets, strict=True))
    gain = earnings.mean("net_sat") - depletion.mean("net_sat")
    base = depletion.mean("net_sat")
    share = f" ({gain / abs(base):+.1%} of depletion's net)" if base else ""
    out.append(
        f"  earnings - depletion: {gain:+,.0f} sat net per node{share}; earnings ahead on "
        f"{wins} of {len(earnings.nets)} nodes"
    )
    return out
