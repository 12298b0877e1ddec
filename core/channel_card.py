"""What `/channel` shows about one channel: its role now and why, LNDg's settings for it, the
fee cap, and the money and runs of the last 7 and 30 days. Pure: the control surface reads.

The role is the pairing rule's (core.pairing), judged the way the engine does: the operator's
exclusions first, then the usable checks, the role field's range, then source or target;
a target the spending rules leave alone carries the engine's own skip reason.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from core.models import Channel
from core.node_records import ArSettings
from core.pairing import is_source, is_target, role_problem
from core.pnl import ChannelMoney, ChannelRuns, WorkedSource
from core.spending import Skip, lndg_cap_ppm

CARD_DAYS = (7, 30)


class RoleKind(enum.StrEnum):
    SOURCE = "source"
    TARGET = "target"
    NEITHER = "neither"


@dataclass(frozen=True, slots=True)
class Role:
    """The channel's role now, why, and (for a target) why it is skipped now."""

    kind: RoleKind
    why: str
    skipped: str = ""


def role_of(channel: Channel, *, excluded: bool, skip: Skip | None = None) -> Role:
    """Source, target or neither, with the rule and the numbers that decided it."""
    neither = RoleKind.NEITHER
    if excluded:
        return Role(neither, "excluded by the operator (/include takes it back)")
    for broken, why in (
        (not channel.is_open, "closed"),
        (not channel.is_active, "inactive (peer offline)"),
        (channel.private, "private"),
        (channel.capacity <= 0, "no capacity"),
    ):
        if broken:
            return Role(neither, why)
    problem = role_problem(channel)
    if problem is not None:
        field, value = problem
        return Role(neither, f"{field} {value} is outside 0-100: no role until fixed in LNDg")
    local = channel.local_pct
    if channel.auto_rebalance:
        level = 100 - channel.ar_in_target
        rule = f"AR on, local {local}% {{}} 100 - ar_in_target {channel.ar_in_target} = {level}%"
        if is_target(channel):
            return Role(RoleKind.TARGET, rule.format("<"), skip.describe() if skip else "")
        return Role(neither, rule.format(">=") + ": full enough")
    rule = f"AR off, local {local}% {{}} ar_out_target {channel.ar_out_target}%"
    if is_source(channel):
        return Role(RoleKind.SOURCE, rule.format(">"))
    return Role(neither, rule.format("<=") + ": no surplus")


@dataclass(frozen=True, slots=True)
class ChannelCard:
    """Everything `/channel` shows, as values."""

    channel: Channel
    role: Role
    excluded: bool
    ar: ArSettings
    week: ChannelMoney
    month: ChannelMoney
    runs: ChannelRuns  # over the month
    sources: tuple[WorkedSource, ...]  # this daemon's, over the month
    zone_name: str
    now: float

    @property
    def cap_ppm(self) -> int:
        """LNDg's fee cap for refilling it: min(AR-MaxFeeRate, ar_max_cost % of our fee)."""
        return lndg_cap_ppm(self.channel, self.ar)
