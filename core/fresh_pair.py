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


def unfit(role: str, channel: Channel, excluded: Collection[str] = ()) -> str | None:
    """Why `channel` can no longer play `role` ("source" or "target"), or None."""
    if not is_usable(channel, excluded):
        return f"{role} {channel.label} is closed, inactive, private or excluded now"
    if role == "target" and not is_target(channel):
        return (
            f"target {channel.label} is no target now (AR {_on(channel)}, local "
            f"{channel.local_pct}%, ar_in_target {channel.ar_in_target}%)"
        )
    if role == "source" and not is_source(channel):
        return (
            f"source {channel.label} is no source now (AR {_on(channel)}, local "
            f"{channel.local_pct}%, ar_out_target {channel.ar_out_target}%)"
        )
    return None


def _on(channel: Channel) -> str:
    return "on" if channel.auto_rebalance else "off"


def requalify(source: Channel, target: Channel, excluded: Collection[str] = ()) -> Pair | str:
    """The pair on the fresh rows, or why it no longer qualifies (one short phrase)."""
    why = unfit("target", target, excluded) or unfit("source", source, excluded)
    if why is not None:
        return why
    pair = make_pair(source, target)
    if pair is None:
        return f"{source.label} and {target.label} go to the same peer"
    return pair
