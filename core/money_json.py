"""`channel --json` and `pnl --json`: the card and the list as plain JSON values.

Money in sats with msat precision (floats with 3 decimals), as daily-report.csv writes it.
"""

from __future__ import annotations

from typing import Any

from core.channel_card import ChannelCard
from core.models import chan_id_to_short_id
from core.pnl import ChannelMoney, ChannelRuns, Pnl
from core.report_figures import RunStats, Share


def _sat(msat: int) -> float:
    return round(msat / 1000, 3)


def share(found: Share) -> dict[str, Any]:
    return {"count": found.count, "sats": found.sats, "fee_sat": _sat(found.fee_msat)}


def money(found: ChannelMoney) -> dict[str, Any]:
    return {
        "chan_id": found.chan_id,
        "short_id": chan_id_to_short_id(found.chan_id),
        "alias": found.alias,
        "forwards": found.forwards,
        "earned_sat": _sat(found.earned_msat),
        "cost_sat": _sat(found.cost.fee_msat),
        "cost_by_tool": {
            "daemon": share(found.daemon),
            "lndg": share(found.lndg),
            "other": share(found.other),
        },
        "net_sat": _sat(found.net_msat),
    }


def _runs(stats: RunStats) -> dict[str, Any]:
    return {
        "attempts": stats.attempts,
        "successes": stats.successes,
        "success_rate_pct": stats.success_rate,
    }


def runs(found: ChannelRuns) -> dict[str, Any]:
    last = found.last
    return {
        "into": _runs(found.into),
        "out_of": _runs(found.out_of),
        "last": None
        if last is None
        else {
            "source": last.source,
            "target": last.target,
            "outcome": last.outcome.value,
            "started_at": last.started_at,
        },
    }


def card(found: ChannelCard) -> dict[str, Any]:
    c = found.channel
    return {
        "chan_id": c.chan_id,
        "short_id": c.short_chan_id or chan_id_to_short_id(c.chan_id),
        "alias": c.alias,
        "capacity": c.capacity,
        "local_pct": c.local_pct,
        "role": found.role.kind.value,
        "why": found.role.why,
        "skipped": found.role.skipped or None,
        "excluded": found.excluded,
        "auto_rebalance": c.auto_rebalance,
        "ar_out_target": c.ar_out_target,
        "ar_in_target": c.ar_in_target,
        "ar_amt_target": c.ar_amt_target,
        "ar_max_cost": c.ar_max_cost,
        "local_fee_rate": c.local_fee_rate,
        "remote_fee_rate": c.remote_fee_rate,
        "cap_ppm": found.cap_ppm,
        "max_fee_rate_ppm": found.ar.max_fee_rate_ppm,
        "7d": money(found.week),
        "30d": money(found.month),
        "runs_30d": runs(found.runs),
        "sources_30d": [
            {"chan_id": s.chan_id, "alias": s.alias, **share(s.share)} for s in found.sources
        ],
    }


def pnl(found: Pnl) -> dict[str, Any]:
    span = found.period
    return {
        "first_day": span.first_day.isoformat(),
        "last_day": span.last_day.isoformat(),
        "timezone": span.zone_name,
        "revenue_sat": _sat(found.revenue_msat),
        "forwards": found.forwards,
        "cost_sat": _sat(found.cost.fee_msat),
        "cost_by_tool": {
            "daemon": share(found.daemon),
            "lndg": share(found.lndg),
            "other": share(found.other),
        },
        "cost_pct_of_revenue": found.cost_share,
        "net_sat": _sat(found.net_msat),
        "channels": [money(m) for m in found.channels],
    }
