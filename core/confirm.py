"""Confirming a success through LNDg's channel detail endpoint instead of the whole list.

After a run succeeds, the planner waits until a snapshot shows the target's balance moved
before it serves the target again (`core.planner`). LNDg shows the move after its next sync
(about every 20 s). Reading the whole channel list to see it costs LNDg 2.1 MB at 1,500
channels; reading the two channels of the run (`GET /api/channels/<chan_id>/`) costs it a
few kB. `Confirmations` says which channels to read when: the first read `first_read`
seconds after the success, then no more often than every `spacing` seconds per channel,
until the channel's row changed or `give_up` seconds passed (the planner's own patience;
the full reads at the normal cadence take over). `patch` puts a read row into a snapshot.

Pure: no I/O and no clock of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from core.models import Channel


def listed(channel: Channel) -> bool:
    """Whether LNDg's list, as the daemon asks for it, shows the channel (open, active, public).

    The detail endpoint answers for any channel LNDg knows, closed ones too.
    """
    return channel.is_open and channel.is_active and not channel.private


def shown(channel: Channel) -> tuple[int, int, int, int, int]:
    """What a run changes in a channel's row: its balances and HTLCs in flight."""
    return (
        channel.local_balance,
        channel.remote_balance,
        channel.pending_outbound,
        channel.pending_inbound,
        channel.htlc_count,
    )


def patch(snapshot: Sequence[Channel], fresh: Channel) -> list[Channel]:
    """The snapshot with `fresh` in its place; without it when the list would not show it."""
    keep = listed(fresh)
    patched: list[Channel] = []
    found = False
    for channel in snapshot:
        if channel.chan_id != fresh.chan_id:
            patched.append(channel)
        elif keep:
            patched.append(fresh)
            found = True
        else:
            found = True
    if keep and not found:
        patched.append(fresh)
    return patched


@dataclass
class Confirmations:
    """Channels whose success LNDg has not shown yet, and when each was last read."""

    first_read: float = 10.0
    spacing: float = 20.0
    give_up: float = 90.0
    _since: dict[str, float] = field(default_factory=dict)  # chan_id -> its last success
    _read_at: dict[str, float] = field(default_factory=dict)  # chan_id -> its last read

    def waiting(self, now: float) -> frozenset[str]:
        """The channels still waited on at `now` (forgets the ones waited on too long)."""
        self._since = {c: at for c, at in self._since.items() if now - at <= self.give_up}
        return frozenset(self._since)

    def succeeded(self, channels: Iterable[str], now: float) -> None:
        """A run through `channels` succeeded at `now`: LNDg should show it soon."""
        for chan_id in channels:
            self._since[chan_id] = now

    def _next_read(self, chan_id: str) -> float:
        at = self._since[chan_id] + self.first_read
        last = self._read_at.get(chan_id)
        return at if last is None else max(at, last + self.spacing)

    def due(self, now: float) -> list[str]:
        """Channels to read now, oldest success first; forgets the ones waited on too long."""
        self.waiting(now)
        self._read_at = {c: at for c, at in self._read_at.items() if now - at < self.spacing}
        ready = [c for c in self._since if self._next_read(c) <= now]
        return sorted(ready, key=lambda c: self._since[c])

    def next_at(self) -> float | None:
        """When the next read falls due (None: nothing to confirm)."""
        times = [
            self._next_read(c)
            for c, at in self._since.items()
            if self._next_read(c) <= at + self.give_up
        ]
        return min(times, default=None)

    def read(self, chan_id: str, now: float) -> None:
        """`chan_id` is being read at `now` (counts for the spacing even if the read fails)."""
        self._read_at[chan_id] = now

    def settle(self, before: Sequence[Channel], after: Sequence[Channel]) -> None:
        """Stop waiting on the channels whose row changed (or left the list) between two
        snapshots: LNDg has synced them since."""
        if not self._since:
            return
        old = {c.chan_id: shown(c) for c in before if c.chan_id in self._since}
        new = {c.chan_id: shown(c) for c in after if c.chan_id in self._since}
        for chan_id in list(self._since):
            if new.get(chan_id) != old.get(chan_id):
                del self._since[chan_id]

    def clear(self) -> None:
        """Wait on nothing (a new round, or the full list takes over); spacing is kept."""
        self._since.clear()
