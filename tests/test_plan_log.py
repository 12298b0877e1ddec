"""The plan in the log: the first pairs at INFO, all of them at DEBUG."""

from __future__ import annotations

import logging

import pytest

from core.engine import log_plan
from core.models import Pair
from tests.test_pairing import channel


def pair(n: int) -> Pair:
    source = channel(100 + 2 * n, alias=f"S{n}", local_balance=900_000, remote_balance=100_000)
    target = channel(101 + 2 * n, alias=f"T{n}", local_balance=50_000, remote_balance=950_000)
    return Pair(source, target, pfrom=25, pto=20)


def lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


def test_a_long_plan_logs_five_pairs_and_a_count_at_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="core.engine")
    log_plan([pair(n) for n in range(387)])
    info = lines(caplog, logging.INFO)
    assert [line.split()[1] for line in info[:5]] == ["S0", "S1", "S2", "S3", "S4"]
    assert info[5:] == ["… and 382 more (LOG_LEVEL=DEBUG shows all)"]
    debug = lines(caplog, logging.DEBUG)
    assert len(debug) == 382
    assert debug[0] == "SRC S5 (LOCAL 90%) -> TGT T5 (LOCAL 5%) pfrom=25 pto=20"


def test_a_short_plan_is_logged_whole_without_a_count(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="core.engine")
    log_plan([pair(n) for n in range(5)])
    assert len(lines(caplog, logging.INFO)) == 5
    assert lines(caplog, logging.DEBUG) == []
