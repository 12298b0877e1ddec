"""Reading rebalance messages back into the ledger rows they announce.

A message names one rebalance per line: `44,000 sat A → B, fee …` for one payment,
`132,000 sat A → B in 2 payments, fee …` for a run's payments folded. Tests that check
"every line announced once" take each shown rebalance back to the consecutive ledger rows
of one pair whose amounts sum to it and grow step by step, as rapid rebalancing pays them
(amounts unique per line make that unambiguous).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from itertools import pairwise

# Aliases without spaces (the test nodes' SrcN / TgtN).
SHOWN = re.compile(r"([\d,]+) sat \S+ → \S+?(?: in (\d+) payments)?, fee")

LedgerRow = tuple[int, str, str, int, int]  # ts, from, to, amount_msat, fees_msat


def shown(text: str) -> list[tuple[int, int]]:
    """(amount in sat, payments) of every rebalance a message names."""
    return [(int(a.replace(",", "")), int(n or 1)) for a, n in SHOWN.findall(text)]


def candidates(item: tuple[int, int], ledger: Sequence[LedgerRow]) -> list[tuple[int, ...]]:
    """The runs of ledger rows (amounts in sat) one shown rebalance can fold; at least one."""
    total, count = item
    by_pair: dict[tuple[str, str], list[int]] = {}
    for _ts, source, target, amount_msat, _fees in ledger:
        by_pair.setdefault((source, target), []).append(amount_msat)
    found = {
        tuple(msat // 1000 for msat in rows[i : i + count])
        for rows in by_pair.values()
        for i in range(len(rows) - count + 1)
        if sum(rows[i : i + count]) // 1000 == total and _doubling(rows[i : i + count])
    }
    assert found, f"{total:,} sat in {count} payments matches no run of ledger rows"
    return sorted(found)


def _doubling(amounts: Sequence[int]) -> bool:
    # Rapid rebalancing doubles the amount at each step: a run's payments only grow, so a
    # window across two runs (the end of one, the start of the next) is not a run.
    return all(later > earlier for earlier, later in pairwise(amounts))


def announced_lines(texts: Sequence[str], ledger: Sequence[LedgerRow]) -> list[int]:
    """The amount of every ledger row the messages announce, once per time announced.

    Two runs can sum alike (a run of a killed daemon's orphan beside the next daemon's run
    on the same pair): a shown rebalance takes a candidate none announced before, if any.
    """
    said: set[int] = set()
    lines: list[int] = []
    for text in texts:
        for item in shown(text):
            options = candidates(item, ledger)
            chosen = next((o for o in options if not said & set(o)), options[0])
            said |= set(chosen)
            lines += chosen
    return lines
