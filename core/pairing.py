"""The pairing rule of the original tool, as pure functions over channels.

source: LNDg does NOT auto-rebalance it and its local % is above its `ar_out_target`.
target: LNDg DOES auto-rebalance it and its local % is below `100 - ar_in_target`.
Percentages are LNDg's: integer division, pending outbound HTLCs counted as local.

A source and a target with the same remote peer never make a pair (`same_peer`).

LNDg stores any integer in these targets. A channel whose role field is outside 0..100 takes
no role until the operator fixes it in LNDg: the rule cannot say what such a value means,
and a guess would move real sats.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import overload

from core.models import Channel, Pair


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


def _peer(channel: Channel) -> str:
    # The same-peer rule's key: `count_pairs` and `PairView` group by it to agree with it.
    return channel.remote_pubkey


def same_peer(one: Channel, other: Channel) -> bool:
    """True when both channels go to one peer: such a source and target never make a pair.

    A circle out through a peer and back in through the same peer moves nothing between
    peers. A channel has one peer, so it never pairs with itself either.
    """
    return _peer(one) == _peer(other)


def make_pair(source: Channel, target: Channel) -> Pair | None:
    """The pair with regolancer's bounds, or None where the rule forbids it."""
    if same_peer(source, target):
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


def count_pairs(channels: Iterable[Channel], excluded: Collection[str] = ()) -> int:
    """How many pairs the rule gives (`len(build_pairs(...))`), in O(n) without sorting."""
    source_peers: dict[str, int] = {}
    target_peers: list[str] = []
    for channel in channels:
        if not is_usable(channel, excluded):
            continue
        if is_source(channel):
            source_peers[_peer(channel)] = source_peers.get(_peer(channel), 0) + 1
        elif is_target(channel):
            target_peers.append(_peer(channel))
    total = sum(source_peers.values())
    return sum(total - source_peers.get(peer, 0) for peer in target_peers)


class PairView(Sequence[Pair]):
    """Every pair the rule gives, in `build_pairs` order, made only when looked at.

    /pairs pages through the cross product; on a 1,500-channel node that is hundreds of
    thousands of pairs, so they are counted in O(n) and built one page at a time.
    """

    def __init__(self, channels: Iterable[Channel], excluded: Collection[str] = ()) -> None:
        channels = list(channels)
        self._sources = sources(channels, excluded)
        self._targets = targets(channels, excluded)
        by_peer: dict[str, list[int]] = {}
        for index, source in enumerate(self._sources):
            by_peer.setdefault(_peer(source), []).append(index)
        # Per target, the source positions the rule forbids (same peer), and running offsets.
        self._skips = [by_peer.get(_peer(t), []) for t in self._targets]
        self._offsets = [0]
        for skips in self._skips:
            self._offsets.append(self._offsets[-1] + len(self._sources) - len(skips))

    def __len__(self) -> int:
        return self._offsets[-1]

    @overload
    def __getitem__(self, index: int) -> Pair: ...

    @overload
    def __getitem__(self, index: slice) -> list[Pair]: ...

    def __getitem__(self, index: int | slice) -> Pair | list[Pair]:
        if isinstance(index, slice):
            return [self._at(i) for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("pair index out of range")
        return self._at(index)

    def __iter__(self) -> Iterator[Pair]:
        for target, skips in zip(self._targets, self._skips, strict=True):
            for position, source in enumerate(self._sources):
                if position not in skips:
                    yield _pair(source, target)

    def _at(self, index: int) -> Pair:
        # Binary search for the target, then step over its forbidden sources (rarely any).
        low, high = 0, len(self._targets) - 1
        while low < high:
            middle = (low + high + 1) // 2
            if self._offsets[middle] <= index:
                low = middle
            else:
                high = middle - 1
        position = index - self._offsets[low]
        for skipped in self._skips[low]:
            if skipped <= position:
                position += 1
        return _pair(self._sources[position], self._targets[low])


def _pair(source: Channel, target: Channel) -> Pair:
    pair = make_pair(source, target)
    assert pair is not None  # PairView skipped every forbidden combination
    return pair
