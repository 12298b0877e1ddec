"""How numbers read for the operator: one format for the log, the chat and the daily report.

Each function returns the number with its unit (`69,000 sat`), so no caller adds one. Pure.
Machine-readable files (the daily-report CSV) keep their own exact format.
"""

from __future__ import annotations


def sats(amount: int) -> str:
    """`69000` -> `69,000 sat`."""
    return f"{amount:,} sat"


def fee(amount_sat: float) -> str:
    """Fees in sat with at most one decimal: `1.2 sat`, `12 sat`, `1,234.5 sat`."""
    rounded = round(amount_sat, 1) or 0.0  # no `-0` from a tiny negative
    return f"{rounded:,.1f}".removesuffix(".0") + " sat"


def ppm(rate: int) -> str:
    """`250` -> `250 ppm`."""
    return f"{rate:,} ppm"


def pct(value: float | None) -> str:
    """`42.857` -> `42.9%`; None (nothing to compare with) -> `–`."""
    return "–" if value is None else f"{value:.1f}%"
