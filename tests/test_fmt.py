"""The one number format of log, chat and report."""

from __future__ import annotations

import pytest

from core import fmt


def test_sats_have_separators_and_their_unit() -> None:
    assert fmt.sats(69_000) == "69,000 sat"
    assert fmt.sats(0) == "0 sat"


@pytest.mark.parametrize(
    ("fee", "text"),
    [
        (1.2, "1.2 sat"),
        (12.0, "12 sat"),
        (1234.5, "1,234.5 sat"),
        (0.001, "0 sat"),
        (17.04, "17 sat"),
        (-0.01, "0 sat"),
    ],
)
def test_fees_have_at_most_one_decimal(fee: float, text: str) -> None:
    assert fmt.fee(fee) == text


def test_ppm_and_percent() -> None:
    assert fmt.ppm(250) == "250 ppm"
    assert fmt.ppm(1500) == "1,500 ppm"
    assert fmt.pct(42.857) == "42.9%"
    assert fmt.pct(None) == "–"
