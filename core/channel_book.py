"""The channels as the daemon knows them between two reads of LNDg's whole channel list.

At 1,500 channels the list is about 1.9 MB for LNDg to build and send, so it is read at most
every CHANNEL_LIST_SECONDS (and when the operator asks, or when a channel turned out gone).
In between, planning uses the last list with its balances moved by what costs LNDg next to
nothing to tell: the forwards recorded since (the outgoing channel loses `amt_out`, the
incoming one gains `amt_in`) and single rows read through the detail endpoint (a run's
channels, before it starts and after it succeeded), which replace the list's row.

This is a planning view only: no run starts on it. Before a run starts, its two channels are
read fresh and judged again (`core.engine`), so a stale balance can cost a few kB of reads,
never a payment.

Pure: no I/O and no clock of its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from core.confirm import listed, shown
from core.models import Channel
from core.node_records import Forward

# LNDg copies LND's forwards every ~20 s: a read since the newest forward seen, minus this,
# also catches forwards LNDg recorded late (ids already seen are skipped).
FORWARDS_OVERLAP_SECONDS = 60.0


@dataclass
class ChannelBook:
    """The last channel list, rows read since, and the forwards that moved them."""

    list_seconds: float
    _rows: dict[str, Channel] = field(default_factory=dict)
    _read_at: dict[str, float] = field(default_factory=dict)  # chan_id -> when its row was read
    _moved: dict[str, int] = field(default_factory=dict)  # chan_id -> sats into local since
    _listed_at: float | None = None
    _stale: bool = False  # a channel turned out gone: read the list at the next chance
    _last_forward_id: int = 0
    _forwards_at: float | None = None  # read forwards dated from here on

    def due(self, now: float) -> bool:
        """Whether the whole list must be read before planning at `now`."""
        return self._listed_at is None or self._stale or now - self._listed_at >= self.list_seconds

    @property
    def listed_at(self) -> float | None:
        return self._listed_at

    def reset(self, channels: Iterable[Channel], now: float) -> None:
        """A whole list was read at `now`: it replaces everything known before."""
        self._rows = {c.chan_id: c for c in channels}
        self._read_at = dict.fromkeys(self._rows, now)
        self._moved = {}
        self._listed_at, self._stale = now, False
        if self._forwards_at is None:
            self._forwards_at = now

    def patch(self, fresh: Channel, now: float) -> None:
        """One row read at `now` through the detail endpoint replaces the list's row (or
        removes it: closed, inactive or private channels are not listed).

        Balances LNDg has not synced since the last read (the same `shown` figures) keep
        the forwards counted on them: LNDg's row does not hold those yet, and dropping them
        would look like a move LNDg showed (which the planner waits for after a success).
        """
        old = self._rows.get(fresh.chan_id)
        if not listed(fresh):
            self._rows.pop(fresh.chan_id, None)
            self._read_at.pop(fresh.chan_id, None)
            self._moved.pop(fresh.chan_id, None)
            return
        self._rows[fresh.chan_id] = fresh
        if old is not None and shown(old) == shown(fresh):
            return
        self._moved.pop(fresh.chan_id, None)
        self._read_at[fresh.chan_id] = now

    def row(self, chan_id: str) -> Channel | None:
        """The row as LNDg last showed it (no forwards applied)."""
        return self._rows.get(chan_id)

    def drop(self, chan_id: str) -> None:
        """LNDg does not know the channel any more: forget it, read the list next time."""
        self._rows.pop(chan_id, None)
        self._read_at.pop(chan_id, None)
        self._moved.pop(chan_id, None)
        self.invalidate()

    def invalidate(self) -> None:
        """Read the whole list at the next chance, however recent the last one."""
        self._stale = True

    def forwards_since(self) -> float | None:
        """From when to read forwards (a Unix time); None before the first list read."""
        return self._forwards_at

    def apply_forwards(self, forwards: Iterable[Forward]) -> int:
        """Move the rows by the forwards not seen yet; returns how many were new.

        A forward dated before its channel's row was read is in that row already.
        """
        new = 0
        for forward in sorted(forwards, key=lambda f: f.id):
            if forward.id <= self._last_forward_id:
                continue
            self._last_forward_id = forward.id
            new += 1
            at = forward.forward_date.timestamp()
            self._move(forward.chan_id_out, -(forward.amt_out_msat // 1000), at)
            self._move(forward.chan_id_in, forward.amt_in_msat // 1000, at)
            start = at - FORWARDS_OVERLAP_SECONDS
            if self._forwards_at is None or start > self._forwards_at:
                self._forwards_at = start
        return new

    def _move(self, chan_id: str, sats: int, at: float) -> None:
        read_at = self._read_at.get(chan_id)
        if read_at is None or at < read_at:
            return
        self._moved[chan_id] = self._moved.get(chan_id, 0) + sats

    def channels(self) -> list[Channel]:
        """The channels to plan on: each row with the forwards since it was read applied."""
        return [self._view(row) for row in self._rows.values()]

    def read_at(self, chan_id: str) -> float | None:
        """When the row of `chan_id` was read (by the list or alone)."""
        return self._read_at.get(chan_id)

    def get(self, chan_id: str) -> Channel | None:
        row = self._rows.get(chan_id)
        return None if row is None else self._view(row)

    def _view(self, row: Channel) -> Channel:
        moved = self._moved.get(row.chan_id, 0)
        if not moved:
            return row
        # Never beyond the channel: a forward LNDg's row already held would count twice.
        local = min(max(row.local_balance + moved, 0), row.capacity)
        remote = min(max(row.remote_balance - moved, 0), row.capacity - local)
        return row.model_copy(update={"local_balance": local, "remote_balance": remote})
