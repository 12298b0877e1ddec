"""Issue 12, the LNDg side: what a hostile or misconfigured LNDg can no longer do.

Every test talks to the loopback LNDg (sim/lndg.py) over a real socket.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from core.checks import check_lndg
from core.lndg import (
    LndgClient,
    LndgProtocolError,
    LndgStopped,
    LndgTimeout,
    LndgUnreachable,
)
from core.pairing import is_source, is_target
from core.settings import load_settings
from sim.lndg import FakeLndg, channel_row

PASSWORD = "url-password-that-must-not-show"


@pytest.fixture
def fake() -> Iterator[FakeLndg]:
    with FakeLndg(password=PASSWORD) as server:
        yield server


def client_for(fake: FakeLndg, **options: Any) -> LndgClient:
    settings: dict[str, Any] = {"password": PASSWORD, "backoff": 0.01, "timeout": 5.0}
    settings.update(options)
    return LndgClient(fake.url, **settings)


# -- 4: the password in LNDG_BASE_URL ----------------------------------------------------------


async def test_check_does_not_print_the_password_in_lndg_base_url(fake: FakeLndg) -> None:
    url = fake.url.replace("http://", f"http://lndg-admin:{PASSWORD}@")
    result = await check_lndg(load_settings(lndg_base_url=url))
    assert result.ok, result.line()
    assert PASSWORD not in result.line()
    assert result.detail.startswith(f"http://lndg-admin:***@127.0.0.1:{fake.port} answers")


# -- 10: an answer trickled a byte at a time ---------------------------------------------------


async def test_a_trickled_answer_is_cut_at_the_timeout_on_every_try(fake: FakeLndg) -> None:
    fake.trickle_seconds = 0.2  # well inside httpx's per-read timeout, every time
    fake.fault = "trickle"
    started = time.monotonic()
    async with client_for(fake, timeout=0.5, attempts=3) as client:
        with pytest.raises(LndgTimeout) as caught:
            async with asyncio.timeout(10):  # the old client read for many minutes
                await client.fetch_channels()
    elapsed = time.monotonic() - started
    assert elapsed < 4.0  # 3 tries x 0.5 s plus backoff
    assert isinstance(caught.value, LndgUnreachable)
    assert str(caught.value) == (
        f"LNDg at {fake.url}/api/channels/ did not answer within 0.5s (3 tries): it may be "
        "busy or down; check that LNDg is running and LNDG_BASE_URL, or raise "
        "LNDG_TIMEOUT_SECONDS"
    )
    assert len(fake.requests) == 3


async def test_abort_ends_a_waiting_read_at_once_and_refuses_later_ones(fake: FakeLndg) -> None:
    fake.trickle_seconds = 2.0
    fake.fault = "trickle"
    async with client_for(fake, timeout=60) as client:
        reading = asyncio.create_task(client.fetch_channels())
        while not fake.requests:
            await asyncio.sleep(0.01)
        started = time.monotonic()
        client.abort()  # shutdown: nothing may keep waiting on LNDg
        with pytest.raises(LndgStopped, match="abandoned: stopping"):
            await asyncio.wait_for(reading, 5)
        assert time.monotonic() - started < 1.0
        with pytest.raises(LndgStopped):
            await client.fetch_payments(datetime(2026, 1, 1, tzinfo=UTC), datetime.now(UTC))
    assert len(fake.requests) == 1


async def test_after_a_trickled_answer_the_next_try_reads_normally(fake: FakeLndg) -> None:
    fake.trickle_seconds = 0.2
    fake.set_fault("trickle", count=1)
    async with client_for(fake, timeout=0.5) as client:
        async with asyncio.timeout(10):
            channels = await client.fetch_channels()
    assert len(channels) == 2
    assert len(fake.requests) == 2


# -- 13: targets outside 0..100 ----------------------------------------------------------------


async def test_out_of_range_target_of_the_role_is_warned_once_and_takes_no_role(
    fake: FakeLndg, caplog: pytest.LogCaptureFixture
) -> None:
    fake.channels = [
        # AR off: ar_in_target plays no part; a source as before, and no warning.
        channel_row(1, alias="Source", local_balance=900_000, ar_out_target=60, ar_in_target=150),
        # AR on: ar_in_target 150 cannot be judged; no target, one warning.
        channel_row(2, alias="Broken", local_balance=10_000, auto_rebalance=True, ar_in_target=150),
        # AR off with ar_out_target -5: no source, one warning.
        channel_row(3, alias="Minus", local_balance=900_000, ar_out_target=-5),
    ]
    caplog.set_level(logging.WARNING, logger="core.lndg")
    async with client_for(fake) as client:
        first = await client.fetch_channels()
        second = await client.fetch_channels()

    assert [c.chan_id for c in first] == ["1", "2", "3"]  # no row dropped
    assert first.skipped == []
    by_alias = {c.alias: c for c in second}
    assert is_source(by_alias["Source"])
    assert not is_target(by_alias["Broken"])
    assert not is_source(by_alias["Broken"])
    assert not is_source(by_alias["Minus"])
    assert not is_target(by_alias["Minus"])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "LNDg channel Broken (2): ar_in_target 150 is outside 0-100; "
        "it is not used as a target until fixed in LNDg",
        "LNDg channel Minus (3): ar_out_target -5 is outside 0-100; "
        "it is not used as a source until fixed in LNDg",
    ]


async def test_a_changed_out_of_range_value_is_warned_again(
    fake: FakeLndg, caplog: pytest.LogCaptureFixture
) -> None:
    fake.channels = [channel_row(2, alias="Broken", auto_rebalance=True, ar_in_target=150)]
    caplog.set_level(logging.WARNING, logger="core.lndg")
    async with client_for(fake) as client:
        await client.fetch_channels()
        fake.channels[0]["ar_in_target"] = 200
        await client.fetch_channels()
        await client.fetch_channels()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "ar_in_target 150 " in warnings[0]
    assert "ar_in_target 200 " in warnings[1]


# -- 14: the right hint for 500, 400 and https spoken to plain http ---------------------------


async def test_check_on_a_500_says_so_and_points_at_lndgs_database(fake: FakeLndg) -> None:
    fake.fault = "500"
    result = await check_lndg(load_settings(lndg_base_url=fake.url, lndg_pass=PASSWORD))
    assert not result.ok
    assert "not an LNDg API" not in result.line()
    assert result.line().startswith("FAIL LNDg: server error: LNDg at ")
    assert "answered HTTP 500 Internal Server Error" in result.detail
    assert "database may be locked" in result.detail
    assert "LNDg's logs" in result.detail


async def test_a_host_name_outside_allowed_hosts_is_named_with_the_fix(fake: FakeLndg) -> None:
    fake.allowed_hosts = ("lndg.local",)  # initialize.py -ip lndg.local
    async with client_for(fake) as client:
        with pytest.raises(LndgProtocolError) as caught:
            await client.fetch_channels()
    message = str(caught.value)
    assert caught.value.status == 400
    assert "HTTP 400" in message
    assert "ALLOWED_HOSTS" in message
    assert "-ip 127.0.0.1" in message
    assert "settings.py" in message
    assert len(fake.requests) == 1  # not retried
    result = await check_lndg(load_settings(lndg_base_url=fake.url, lndg_pass=PASSWORD))
    assert not result.ok
    assert "not an LNDg API" not in result.line()
    assert "ALLOWED_HOSTS" in result.line()


async def test_a_json_400_is_still_reported_as_lndg_refusing_the_request() -> None:
    # A filter LNDg rejects answers 400 with DRF's field errors: not a host name problem.
    with FakeLndg(password=PASSWORD) as fake:
        async with client_for(fake) as client:
            with pytest.raises(LndgProtocolError) as caught:
                await client._get_json(fake.url + "/api/payments/", {"status": "x"})
    assert "status: Enter a number." in str(caught.value)
    assert "ALLOWED_HOSTS" not in str(caught.value)


async def test_https_spoken_to_a_plain_http_lndg_says_to_use_http(fake: FakeLndg) -> None:
    url = fake.url.replace("http://", "https://")
    result = await check_lndg(load_settings(lndg_base_url=url, lndg_pass=PASSWORD))
    assert not result.ok
    assert "LNDG_VERIFY_TLS" not in result.line()
    assert "LNDG_CA_FILE" not in result.line()
    assert "speaks plain http" in result.detail
    assert f"use http://127.0.0.1:{fake.port} in LNDG_BASE_URL" in result.detail
