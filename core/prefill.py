"""Whether a run may double its amount (regolancer's rapid rebalancing). Pure.

Rapid rebalancing pays every doubled step at the first payment's route price and fills the
target far past its band: sats paid for now that earn only when forwards take them out later.
That bet pays while the route is cheap against the target's fee rate, so a run may double
only when its pair's last price (`core.route_costs`) is at most `max_cost_pct` % of what the
target earns per sat forwarded (its `local_fee_rate`). A pair never paid keeps the template's
choice: its first payment tells the price.
"""

from __future__ import annotations

from core.models import Channel


def rapid_allowed(known_ppm: int | None, target: Channel, max_cost_pct: int) -> bool:
    """True when the run may double: price unknown, or within `max_cost_pct` % of the
    target's fee rate (0 % turns the rule off: always True)."""
    if max_cost_pct <= 0 or known_ppm is None:
        return True
    return known_ppm * 100 <= target.local_fee_rate * max_cost_pct
