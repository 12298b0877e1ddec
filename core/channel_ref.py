"""Channel references as the operator types them: a chan_id, a short id or an alias.

One parser for the chat, the CLI and EXCLUDE_CHANNELS; one lookup among open channels and one
among exclusions (an excluded channel may be closed by now).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NoReturn, TypeVar

from core.models import Channel, chan_id_to_short_id, short_id_to_chan_id

T = TypeVar("T")

HOW_TO_NAME = "name a channel by chan_id, short id (800000x1234x1) or alias"


class ChannelLookupError(LookupError):
    """A chat or CLI argument names no channel, or more than one."""


@dataclass(frozen=True, slots=True)
class ChannelRef:
    """What the operator typed: an id (chan_id or short id, as a chan_id) or else an alias."""

    text: str
    chan_id: str | None

    @classmethod
    def parse(cls, text: str) -> ChannelRef:
        """Digits are a chan_id, `BLOCKxTXxOUT` a short id; anything else is an alias."""
        text = text.strip()
        if not text:
            raise ChannelLookupError(HOW_TO_NAME)
        if text.isascii() and text.isdigit():
            return cls(text, text)
        if text.lower().count("x") == 2:
            try:
                return cls(text, short_id_to_chan_id(text))
            except ValueError:
                pass  # e.g. an alias like "xox": looked up as one
        return cls(text, None)

    def find(
        self, items: Iterable[T], chan_id: Callable[[T], str], alias: Callable[[T], str]
    ) -> list[T]:
        """The items this reference names: by id, else by alias (exactly, else ignoring case)."""
        items = list(items)
        if self.chan_id is not None:
            return [item for item in items if chan_id(item) == self.chan_id]
        exact = [item for item in items if alias(item) == self.text]
        if exact:
            return exact
        folded = self.text.casefold()
        return [item for item in items if alias(item).casefold() == folded]


def resolve_channel(query: str, channels: Iterable[Channel]) -> Channel:
    """The one open channel `query` names; an alias shared by several lists them by id."""
    ref = ChannelRef.parse(query)
    matches = ref.find(channels, lambda c: c.chan_id, lambda c: c.alias)
    if len(matches) == 1:
        return matches[0]
    if not matches:
        what = f"id {ref.text}" if ref.chan_id is not None else f"alias {ref.text!r}"
        raise ChannelLookupError(f"no open channel with {what}")
    return _ambiguous(ref, [(c.chan_id, c.alias) for c in matches])


def resolve_among(
    query: str, items: Sequence[T], chan_id: Callable[[T], str], label: Callable[[T], str]
) -> T:
    """The one item (e.g. an exclusion) `query` names by chan_id, short id or label."""
    ref = ChannelRef.parse(query)
    matches = ref.find(items, chan_id, label)
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ChannelLookupError(f"{ref.text!r} matches no exclusion")
    return _ambiguous(ref, [(chan_id(m), label(m)) for m in matches])


def _ambiguous(ref: ChannelRef, matches: Sequence[tuple[str, str]]) -> NoReturn:
    listed = ", ".join(f"{chan_id} ({chan_id_to_short_id(chan_id)})" for chan_id, _ in matches)
    raise ChannelLookupError(
        f"alias {ref.text!r} matches {len(matches)} channels: {listed}; use an id"
    )
