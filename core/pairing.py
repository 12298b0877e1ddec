"""The pairing rule of the original tool, as pure functions over channels.

source: LNDg does NOT auto-rebalance it and its local % is above its `ar_out_target`.
target: LNDg DOES auto-rebalance it and its local % is below `100 - ar_in_target`.
Percentages are LNDg's: integer division, pending outbound HTLCs counted as local.

LNDg stores any integer in these targets. A channel whose role field is outside 0..100 takes
no role until the operator fixes it in LNDg: the rule cannot say what such a value means,
and a guess would move real sats.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from core.models import Channel, Pair, short_id_to_chan_id


def is_usable(channel: Channel, excluded: Collection[str] = ()) -> bool:
    """Open, active, public, with capacity, and not excluded by the operator."""
    return (
        channel.is_open
        and channel.is_active
        and not channel.private
        and channel.capacity > 0
        and channel.chan_id not in excluded
    )


def _is_pct(value: int) -> bool:
    return 0 <= value <= 100


def role_problem(channel: Channel) -> tuple[str, int] | None:
    """The field its role uses and its value, when that is outside 0..100; else None.

    AR on: the channel can only be a target, so only `ar_in_target` matters; AR off: only
    `ar_out_target`. The other field plays no part, whatever LNDg holds in it.
    """
    if channel.auto_rebalance:
        field, value = "ar_in_target", channel.ar_in_target
    else:
        field, value = "ar_out_target", channel.ar_out_target
    return None if _is_pct(value) else (field, value)


def is_source(channel: Channel) -> bool:
    return (
        not channel.auto_rebalance
        and _is_pct(channel.ar_out_target)
        and channel.local_pct > channel.ar_out_target
    )


def is_target(channel: Channel) -> bool:
    return (
        channel.auto_rebalance
        and _is_pct(channel.ar_in_target)
        and channel.local_pct < 100 - channel.ar_in_target
    )


def surplus_pct(source: Channel) -> int:
    """How far a source sits above its outbound target, in percent points."""
    return source.local_pct - source.ar_out_target


def deficit_pct(target: Channel) -> int:
    """How far a target sits below the level LNDg refills it to, in percent points."""
    return (100 - target.ar_in_target) - target.local_pct


def sources(channels: Iterable[Channel], excluded: Collection[str] = ()) -> list[Channel]:
    """Sources, most surplus first (ties: more surplus sats, then chan_id for stability)."""
    found = [c for c in channels if is_usable(c, excluded) and is_source(c)]
    return sorted(
        found,
        key=lambda c: (
            -surplus_pct(c),
            -(c.effective_local - c.capacity * c.ar_out_target // 100),
            c.chan_id,
        ),
    )


def targets(channels: Iterable[Channel], excluded: Collection[str] = ()) -> list[Channel]:
    """Targets, most depleted first (lowest local %, then fewest local sats, then chan_id)."""
    found = [c for c in channels if is_usable(c, excluded) and is_target(c)]
    return sorted(found, key=lambda c: (c.local_pct, c.effective_local, c.chan_id))


def make_pair(source: Channel, target: Channel) -> Pair | None:
    """The pair with regolancer's bounds, or None where the rule forbids it."""
    if source.chan_id == target.chan_id or source.remote_pubkey == target.remote_pubkey:
        return None
    if not (_is_pct(source.ar_out_target) and _is_pct(target.ar_in_target)):
        return None  # pfrom/pto would be outside regolancer's 0..100
    return Pair(
        source=source,
        target=target,
        pfrom=100 - source.ar_out_target,
        pto=100 - target.ar_in_target,
    )


def build_pairs(channels: Iterable[Channel], excluded: Collection[str] = ()) -> list[Pair]:
    """Every pair the rule gives: most depleted target first, then sources by surplus."""
    channels = list(channels)
    ordered_sources = sources(channels, excluded)
    pairs: list[Pair] = []
    for target in targets(channels, excluded):
        for source in ordered_sources:
            pair = make_pair(source, target)
            if pair is not None:
                pairs.append(pair)
    return pairs


class ChannelLookupError(LookupError):
    """A chat or CLI argument names no channel, or more than one."""


def resolve_channel(query: str, channels: Iterable[Channel]) -> Channel:
    """Find the one channel named by chan_id, short id (`800000x1234x1`) or alias.

    An alias shared by several channels is an error listing them, so the operator can
    repeat the command with an unambiguous id.
    """
    text = query.strip()
    if not text:
        raise ChannelLookupError("name a channel by chan_id, short id (800000x1234x1) or alias")
    channels = list(channels)
    wanted_id = text if text.isdigit() else None
    if wanted_id is None and text.lower().count("x") == 2:
        try:
            wanted_id = short_id_to_chan_id(text)
        except ValueError:
            wanted_id = None
    if wanted_id is not None:
        for channel in channels:
            if channel.chan_id == wanted_id:
                return channel
        raise ChannelLookupError(f"no open channel with id {text}")
    matches = [c for c in channels if c.alias == text]
    if not matches:
        folded = text.casefold()
        matches = [c for c in channels if c.alias.casefold() == folded]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ChannelLookupError(f"no open channel with alias {text!r}")
    listed = ", ".join(f"{c.chan_id} ({c.short_chan_id})" for c in matches)
    raise ChannelLookupError(f"alias {text!r} matches {len(matches)} channels: {listed}; use an id")
