"""How often the daemon may read LNDg: each cycle reads it, and LNDg syncs only every ~20 s."""

from __future__ import annotations

LNDG_SYNC_SECONDS = 20  # LNDg's jobs copy LND's channels into its database this often
MIN_SLEEP_SECONDS = 60


def sleep_warning(sleep_seconds: int) -> str | None:
    """One line saying why a SLEEP_SECONDS below 60 loads LNDg for little gain, else None."""
    if sleep_seconds >= MIN_SLEEP_SECONDS:
        return None
    return (
        f"SLEEP_SECONDS={sleep_seconds} is below {MIN_SLEEP_SECONDS}: LNDg syncs with LND only "
        f"about every {LNDG_SYNC_SECONDS} s and each cycle reads LNDg's forwards and "
        "rebalancer attempts (and its whole channel list, about 1.3 kB per channel, once "
        "CHANNEL_LIST_SECONDS passed), so shorter sleeps load LNDg for little gain; use 60 or "
        "more (default 300)"
    )
