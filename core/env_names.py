"""Environment names that look like settings but are not read: typos and the original tool's keys.

pydantic-settings ignores unknown names silently, so `LNDG_PASSWORD=...` would leave LNDg
without a password and the operator wondering why. Pure: names in, one warning line each out.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

# Names starting with these are ours (or meant to be): any unknown one is worth a line.
OUR_PREFIXES = ("LNDG_", "TELEGRAM_", "REGOLANCER_")
# Other names only when they are this close to a setting (`SLEEP_SECOND`, `LOGLEVEL`): the
# process environment holds PATH, HOME and friends, which must stay quiet.
_CLOSE_ANY = 0.85
_CLOSE_OURS = 0.6

_AMOUNTS = (
    "ignored: each run's amount is LNDg's ar_amt_target for its target (FEE_POLICY=lndg) or "
    'the template\'s "amount" (FEE_POLICY=template); nothing grows between rounds'
)
_MESSAGES = (
    "ignored: every rebalance is reported in the Telegram chat through the feed (headless: the log)"
)

# The original tool's keys this daemon does not read, with what replaces each.
ORIGINAL_TOOL_KEYS: dict[str, str] = {
    "AMOUNT_INITIAL": _AMOUNTS,
    "AMOUNT_INCREASE_PERCENT": _AMOUNTS,
    "AMOUNT_EVERY_ROUNDS": _AMOUNTS,
    "AMOUNT_MAX_INCREASES": _AMOUNTS,
    "SEND_REBALANCE_MSG_LNDG": _MESSAGES,
    "SEND_REBALANCE_MSG_LOS": _MESSAGES,
    "SYNC_LOS_TO_LNDG": "ignored, no replacement: this daemon syncs nothing into LNDg",
}


def name_warnings(names: Iterable[str], settings: Iterable[str]) -> list[str]:
    """One line per name in `names` that is no setting but looks like one, in name order.

    `settings` are the setting names (any case). Names compare upper-cased, as
    pydantic-settings reads them case-insensitively.
    """
    known = {name.upper() for name in settings}
    warnings = []
    for name in sorted({name.upper() for name in names} - known):
        if name in ORIGINAL_TOOL_KEYS:
            warnings.append(f"{name} (from the original tool) is {ORIGINAL_TOOL_KEYS[name]}")
            continue
        prefix = next((p for p in OUR_PREFIXES if name.startswith(p)), None)
        meant = _closest(name, known, prefix)
        if meant:
            warnings.append(f"{name} is not a setting and is ignored: did you mean {meant}?")
        elif prefix:
            warnings.append(f"{name} is not a setting and is ignored")
    return warnings


def _closest(name: str, known: set[str], prefix: str | None) -> str | None:
    if prefix is None:
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=_CLOSE_ANY)
        return close[0] if close else None
    # Within our prefix the shared part would make every pair look alike: compare the rest.
    rest = {setting[len(prefix) :]: setting for setting in known if setting.startswith(prefix)}
    tail = name[len(prefix) :]
    close = difflib.get_close_matches(tail, sorted(rest), n=1, cutoff=_CLOSE_OURS)
    if close:
        return rest[close[0]]
    # `LNDG_URL`: a shortened name, when only one setting holds it.
    holding = [setting for part, setting in rest.items() if tail and tail in part]
    return holding[0] if len(holding) == 1 else None
