"""What a route from a source into a target costs, as this daemon paid it. Pure.

Learned from the ledger (regolancer's stat lines: fee over amount of each successful
payment), so only routes that worked are known. A pair's price is its last payment's: fees
along a route change, and the newest payment is the best guess of the next.

The planner uses it to send a target's runs through the cheapest source it knows works, and
to cap a few runs a day below that price, looking for a cheaper route.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from core.models import StatLine


class RouteCosts:
    """ppm paid per (source, target), from stat lines fed in any order of arrival."""

    def __init__(self) -> None:
        self._paid: dict[str, dict[str, tuple[int, int]]] = {}  # target -> source -> (ts, ppm)

    def learn(self, lines: Iterable[StatLine]) -> None:
        """Take each line's ppm as its pair's price unless a newer line already set it."""
        for line in lines:
            if line.amount_msat <= 0:
                continue  # a malformed row says nothing of the price
            by_source = self._paid.setdefault(line.to_channel, {})
            known = by_source.get(line.from_channel)
            if known is None or line.timestamp >= known[0]:
                by_source[line.from_channel] = (line.timestamp, line.ppm)

    def ppm(self, source: str, target: str) -> int | None:
        """The pair's last price (None: never paid)."""
        known = self._paid.get(target, {}).get(source)
        return None if known is None else known[1]

    def known(self, target: str) -> frozenset[str]:
        """The sources some payment into `target` went through."""
        return frozenset(self._paid.get(target, {}))

    def lowest(self, target: str) -> int | None:
        """The lowest last price of any route into `target` (None: none known)."""
        paid = self._paid.get(target)
        return min(ppm for _, ppm in paid.values()) if paid else None

    def cheapest(self, target: str, usable: Callable[[str], bool]) -> str | None:
        """The source whose route into `target` cost least, of those `usable` says may run
        now (ties: the one paid first). Walks only the target's known sources."""
        best: tuple[int, str] | None = None
        for source, (_, ppm) in self._paid.get(target, {}).items():
            if (best is None or ppm < best[0]) and usable(source):
                best = (ppm, source)
        return None if best is None else best[1]
