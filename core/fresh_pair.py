"""Judging a planned pair again on its two channels as LNDg shows them right before the run.

Between two reads of the whole channel list the daemon plans on an estimate (see
`core.channel_book`); the operator may also have changed a channel in LNDg meanwhile (AR
switched off, `ar_*` targets moved) or another tool may have refilled the target. So a run
starts only when the pairing rule still holds on the rows just read. Pure.
"""

from __future__ import annotations

from collections.abc import Collection

from core.models import Channel, Pair
from core.pairing import is_source, is_target, is_usable, make_pair


def requalify(source: Channel, target: Channel, excluded: Collection[str] = ()) -> Pair | str:
    """The pair on the fresh rows, or why it no longer qualifies (one short phrase)."""
    for role, channel in (("target", target), ("source", source)):
        if not is_usable(channel, excluded):
            return f"{role} {channel.label} is closed, inactive, private or excluded now"
    if not is_target(target):
        return (
            f"target {target.label} is no target now (AR {'on' if target.auto_rebalance else 'off'}"
            f", local {target.local_pct}%, ar_in_target {target.ar_in_target}%)"
        )
    if not is_source(source):
        return (
            f"source {source.label} is no source now (AR {'on' if source.auto_rebalance else 'off'}"
            f", local {source.local_pct}%, ar_out_target {source.ar_out_target}%)"
        )
    pair = make_pair(source, target)
    if pair is None:
        return f"{source.label} and {target.label} go to the same peer"
    return pair
