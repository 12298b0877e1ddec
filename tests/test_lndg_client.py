"""LndgClient against the fake LNDg over a real socket (and httpx mocks for hostile links)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from pydantic import SecretStr

from core.lndg import (
    LndgAuthError,
    LndgClient,
    LndgError,
    LndgProtocolError,
    LndgServerError,
    LndgTimeout,
    LndgUnreachable,
)
from core.settings import Settings
from sim.lndg import FakeLndg, channel_row, payment_row, rebalance_row

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "secret"


@pytest.fixture
def fake() -> Iterator[FakeLndg]:
    with FakeLndg(password=PASSWORD) as server:
        yield server


def client_for(fake: FakeLndg, **options: Any) -> LndgClient:
    """A client with fast retries, so fault tests stay quick."""
    settings: dict[str, Any] = {"password": PASSWORD, "backoff": 0.01, "timeout": 5.0}
    settings.update(options)
    return LndgClient(fake.url, **settings)


def queries(fake: FakeLndg) -> list[dict[str, str]]:
    return [{k: v[-1] for k, v in parse_qs(urlsplit(r.path).query).items()} for r in fake.requests]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- channels --------------------------------------------------------------------------------


async def test_fetches_the_sample_channels(fake: FakeLndg) -> None:
    async with client_for(fake) as client:
        channels = await client.fetch_channels()

    assert [c.chan_id for c in channels] == ["879609302301671425", "879609302301671426"]
    source, target = channels
    assert (source.alias, source.short_chan_id, source.capacity) == (
        "SourceA",
        "800000x1234x1",
        2_000_000,
    )
    assert source.local_pct == 90  # (1_800_000 + 10_000 pending) * 100 // 2_000_000
    assert (source.auto_rebalance, source.ar_out_target) == (False, 75)
    assert (target.auto_rebalance, target.ar_in_target, target.pending_inbound) == (True, 80, 5000)
    assert channels.skipped == []
    assert channels.channels == list(channels)
    assert queries(fake) == [
        {"is_open": "true", "is_active": "true", "private": "false", "limit": "10000"}
    ]
    assert fake.requests[0].authorized


async def test_server_filters_out_closed_inactive_and_private(fake: FakeLndg) -> None:
    fake.channels = [
        channel_row(1, alias="keep"),
        channel_row(2, alias="closed", is_open=False, is_active=False),
        channel_row(3, alias="inactive", is_active=False),
        channel_row(4, alias="private", private=True),
        channel_row(5, alias="keep-too", auto_rebalance=True),
    ]
    async with client_for(fake) as client:
        channels = await client.fetch_channels()
    assert [c.alias for c in channels] == ["keep", "keep-too"]


async def test_follows_absolute_next_links_with_a_small_page(fake: FakeLndg) -> None:
    fake.channels = [channel_row(n) for n in range(1, 8)]
    async with client_for(fake, page_size=3) as client:
        channels = await client.fetch_channels()

    assert [c.chan_id for c in channels] == [str(n) for n in range(1, 8)]
    assert [(q["limit"], q.get("offset")) for q in queries(fake)] == [
        ("3", None),
        ("3", "3"),
        ("3", "6"),
    ]
    # Every page keeps the filters.
    assert all(q["is_open"] == "true" and q["private"] == "false" for q in queries(fake))


async def test_bad_row_is_skipped_with_a_warning_naming_it(
    fake: FakeLndg, caplog: pytest.LogCaptureFixture
) -> None:
    del fake.channels[0]["capacity"]
    fake.channels.append(channel_row(3))
    fake.channels[-1]["ar_out_target"] = "high"
    fake.channels.append(channel_row(4))
    fake.channels[-1].pop("chan_id")
    caplog.set_level(logging.WARNING, logger="core.lndg")

    async with client_for(fake) as client:
        channels = await client.fetch_channels()

    assert [c.chan_id for c in channels] == ["879609302301671426"]
    assert len(channels.skipped) == 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("879609302301671425" in w and "capacity" in w for w in warnings)
    assert any(
        " 3 " in w and "ar_out_target" in w and "should be a valid integer" in w for w in warnings
    )
    assert any("#3" in w and "chan_id" in w for w in warnings)  # no chan_id: named by index


async def test_no_readable_channel_row_at_all_is_a_protocol_error(fake: FakeLndg) -> None:
    fake.fault = "missing_fields"  # e.g. an LNDg upgrade renamed `capacity`
    async with client_for(fake) as client:
        with pytest.raises(LndgProtocolError) as caught:
            await client.fetch_channels()
    assert str(caught.value) == (
        f"LNDg at {fake.url}/api/channels/ listed 2 channels and none could be read "
        "(channel 879609302301671425: capacity: Field required): "
        "is this LNDg version supported?"
    )


async def test_an_empty_channel_list_is_not_an_error(fake: FakeLndg) -> None:
    fake.channels = []
    async with client_for(fake) as client:
        channels = await client.fetch_channels()
    assert (list(channels), channels.skipped) == ([], [])


# -- auth ------------------------------------------------------------------------------------


async def test_missing_credentials_is_an_auth_error(fake: FakeLndg) -> None:
    async with client_for(fake, password=None) as client:
        with pytest.raises(LndgAuthError) as caught:
            await client.fetch_channels()
    message = str(caught.value)
    assert "requires a login" in message
    assert "LNDG_USER" in message
    assert "LNDG_PASS" in message
    assert caught.value.status == 401
    assert len(fake.requests) == 1  # no retry on 401


async def test_wrong_password_is_an_auth_error_without_the_password(fake: FakeLndg) -> None:
    async with client_for(fake, password="hunter2-wrong") as client:
        with pytest.raises(LndgAuthError) as caught:
            await client.fetch_channels()
    message = str(caught.value)
    assert "rejected the credentials" in message
    assert "Invalid username/password." in message
    assert "check LNDG_USER/LNDG_PASS" in message
    assert "hunter2-wrong" not in message


async def test_401_fault_while_logged_in(fake: FakeLndg) -> None:
    fake.fault = "401"
    async with client_for(fake) as client:
        with pytest.raises(LndgAuthError, match="rejected the credentials"):
            await client.fetch_channels()


async def test_nologin_install_needs_no_password() -> None:
    with FakeLndg(nologin=True) as fake:
        async with LndgClient(fake.url, password=None) as client:
            channels = await client.fetch_channels()
    assert len(channels) == 2
    assert fake.requests[0].authorized


async def test_credentials_in_the_url_are_used_and_never_logged(
    fake: FakeLndg, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # httpx/httpcore included
    url = fake.url.replace("http://", f"http://lndg-admin:{PASSWORD}@")
    async with LndgClient(url, password=None, backoff=0.01) as client:
        assert len(await client.fetch_channels()) == 2
        assert "@" not in client.base_url
        fake.fault = "500"
        with pytest.raises(LndgServerError) as caught:
            await client.fetch_channels()

    assert fake.requests[0].authorized
    assert PASSWORD not in str(caught.value)
    assert PASSWORD not in (caught.value.url or "")
    assert "HTTP Request: GET" in caplog.text  # httpx did log its requests...
    assert PASSWORD not in caplog.text  # ...without the credentials
    assert "LNDG_BASE_URL contains credentials" in caplog.text


# -- transient and hard failures -------------------------------------------------------------


async def test_500_once_then_success_is_retried(fake: FakeLndg) -> None:
    fake.set_fault("500", count=1)
    async with client_for(fake) as client:
        channels = await client.fetch_channels()
    assert len(channels) == 2
    assert len(fake.requests) == 2


async def test_persistent_500_fails_after_bounded_tries(fake: FakeLndg) -> None:
    fake.fault = "500"
    async with client_for(fake, attempts=3) as client:
        with pytest.raises(LndgServerError) as caught:
            await client.fetch_channels()
    assert isinstance(caught.value, LndgError)
    assert "HTTP 500" in str(caught.value)
    assert fake.url in str(caught.value)
    assert len(fake.requests) == 3


async def test_slow_beyond_timeout_is_a_timeout(fake: FakeLndg) -> None:
    fake.slow_seconds = 3.0
    fake.fault = "slow"
    started = time.monotonic()
    async with client_for(fake, timeout=0.2, attempts=2) as client:
        with pytest.raises(LndgTimeout) as caught:
            await client.fetch_channels()
    assert time.monotonic() - started < 2.0
    assert isinstance(caught.value, LndgUnreachable)
    assert "did not answer within 0.2s" in str(caught.value)
    assert "LNDG_TIMEOUT_SECONDS" in str(caught.value)
    assert len(fake.requests) == 2


async def test_one_slow_answer_then_success(fake: FakeLndg) -> None:
    fake.slow_seconds = 3.0
    fake.set_fault("slow", count=1)
    async with client_for(fake, timeout=0.3) as client:
        assert len(await client.fetch_channels()) == 2


async def test_garbage_is_a_protocol_error_not_retried(fake: FakeLndg) -> None:
    fake.fault = "garbage"
    async with client_for(fake) as client:
        with pytest.raises(LndgProtocolError) as caught:
            await client.fetch_channels()
    assert "text/html, not JSON" in str(caught.value)
    assert "LNDG_BASE_URL" in str(caught.value)
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    ("body", "shown"),
    [
        ({"detail": "database is locked"}, "database is locked"),
        ({"ar_out_target": ["A valid integer is required."]}, "ar_out_target: A valid integer"),
    ],
)
async def test_200_error_body_is_a_protocol_error(
    fake: FakeLndg, body: dict[str, Any], shown: str
) -> None:
    fake.fault = "error_body"
    fake.error_body = body
    async with client_for(fake) as client:
        with pytest.raises(LndgProtocolError, match="error instead of data") as caught:
            await client.fetch_channels()
    assert shown in str(caught.value)


async def test_failure_after_first_page_raises_not_a_partial_list(fake: FakeLndg) -> None:
    fake.channels = [channel_row(n) for n in range(1, 5)]
    fake.fault = "fail_after_first_page"
    async with client_for(fake, page_size=2) as client:
        with pytest.raises(LndgServerError):
            await client.fetch_channels()
        # Once LNDg recovers mid-read, the retry completes the same read.
        fake.channels = [channel_row(n) for n in range(1, 5)]
        fake.set_fault("fail_after_first_page", count=1)
        channels = await client.fetch_channels()
    assert [c.chan_id for c in channels] == ["1", "2", "3", "4"]


async def test_unreachable_port_names_the_url_not_the_password() -> None:
    url = f"http://lndg-admin:topsecret@127.0.0.1:{free_port()}"
    async with LndgClient(url, backoff=0.01) as client:
        with pytest.raises(LndgUnreachable) as caught:
            await client.fetch_channels()
    message = str(caught.value)
    assert not isinstance(caught.value, LndgTimeout)
    assert f"http://127.0.0.1:{urlsplit(url).port}/api/channels/" in message
    assert "LNDG_BASE_URL" in message
    assert "LNDg is running" in message
    assert "topsecret" not in message
    assert "lndg-admin" not in message


async def test_wrong_base_path_is_a_protocol_error(fake: FakeLndg) -> None:
    async with LndgClient(fake.url + "/lndg", password=PASSWORD) as client:
        with pytest.raises(LndgProtocolError, match="HTTP 404"):
            await client.fetch_channels()


async def test_requests_are_serialised(fake: FakeLndg) -> None:
    # Each answer takes 0.3 s: LNDg sees one request at a time, and none of them times out.
    fake.slow_seconds = 0.3
    fake.fault = "slow"
    async with client_for(fake, timeout=0.5, attempts=1) as client:
        await asyncio.gather(
            client.fetch_channels(),
            client.fetch_payments(
                datetime(2026, 11, 24, tzinfo=UTC), datetime(2026, 11, 25, tzinfo=UTC)
            ),
            client.fetch_rebalances(datetime(2026, 11, 24, tzinfo=UTC)),
        )
    assert len(fake.requests) == 3
    assert fake.max_concurrent == 1


async def test_requests_are_serialised_on_any_transport() -> None:
    in_flight = peak = 0

    async def answer(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.05)
        in_flight -= 1
        return httpx.Response(200, json=_envelope([], None))

    transport = httpx.MockTransport(answer)
    async with LndgClient("http://lndg.local", transport=transport) as client:
        day = datetime(2026, 11, 24, tzinfo=UTC)
        await asyncio.gather(
            client.fetch_channels(),
            client.fetch_payments(day, day + timedelta(days=1)),
            client.fetch_rebalances(day),
        )
    assert peak == 1


# -- hostile pagination (mock transport: the fake never sends such links) --------------------


def _envelope(results: list[dict[str, Any]], next_link: str | None) -> dict[str, Any]:
    return {"count": 9, "next": next_link, "previous": None, "results": results}


async def test_next_link_to_another_host_is_followed_on_our_host_only() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if "offset" not in request.url.params:
            next_link = "http://evil.example:8889/api/channels/?limit=1&offset=1&is_open=false"
            return httpx.Response(200, json=_envelope([channel_row(1)], next_link))
        return httpx.Response(200, json=_envelope([channel_row(2)], None))

    transport = httpx.MockTransport(answer)
    async with LndgClient("http://lndg.local:8889", password="pw", transport=transport) as client:
        channels = await client.fetch_channels()

    assert [c.chan_id for c in channels] == ["1", "2"]
    assert {r.url.host for r in seen} == {"lndg.local"}
    assert seen[1].url.params["offset"] == "1"
    assert seen[1].url.params["is_open"] == "true"  # our filters, not the link's


async def test_next_link_that_does_not_advance_is_rejected() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        next_link = "http://lndg.local/api/channels/?limit=1&offset=0"
        return httpx.Response(200, json=_envelope([channel_row(1)], next_link))

    async with LndgClient("http://lndg.local", transport=httpx.MockTransport(answer)) as client:
        with pytest.raises(LndgProtocolError, match="does not advance"):
            await client.fetch_channels()


async def test_endless_pagination_stops_at_max_pages() -> None:
    calls = 0

    def answer(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        offset = int(request.url.params.get("offset", "0")) + 1
        next_link = f"http://lndg.local/api/channels/?limit=1&offset={offset}"
        return httpx.Response(200, json=_envelope([channel_row(offset)], next_link))

    async with LndgClient(
        "http://lndg.local", max_pages=5, transport=httpx.MockTransport(answer)
    ) as client:
        with pytest.raises(LndgProtocolError, match="after 5 pages"):
            await client.fetch_channels()
    assert calls == 5


async def test_redirect_is_reported_not_followed() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"Location": "https://u:pw@lndg.local/api/channels/"})

    async with LndgClient(
        "http://lndg.local", password="pw", transport=httpx.MockTransport(answer)
    ) as client:
        with pytest.raises(LndgProtocolError, match="redirected") as caught:
            await client.fetch_channels()
    assert "https://lndg.local/api/channels/" in str(caught.value)
    assert "pw" not in str(caught.value).replace("LNDG_BASE_URL", "")


async def test_json_without_envelope_is_a_protocol_error() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=[channel_row(1)]))
    async with LndgClient("http://lndg.local", transport=transport) as client:
        with pytest.raises(LndgProtocolError, match="envelope"):
            await client.fetch_channels()


# -- payments and rebalances -----------------------------------------------------------------


async def test_payments_filter_by_naive_utc_dates_on_the_server(fake: FakeLndg) -> None:
    fake.payments = [
        payment_row("a" * 64, creation_date="2026-11-23T23:59:59.999999"),
        payment_row(
            "b" * 64,
            creation_date="2026-11-24T00:00:00",
            value=30_000,
            fee=3.2,
            chan_out="1",
            chan_out_alias="SourceA",
            rebal_chan="2",
        ),
        payment_row("c" * 64, creation_date="2026-11-24T12:30:00.25", chan_out="MPP"),
        payment_row("d" * 64, creation_date="2026-11-24T13:00:00", status=3),
        payment_row("e" * 64, creation_date="2026-11-25T00:00:00.000001"),
    ]
    # The day 2026-11-24 UTC expressed in UTC+02:00: the client must send naive UTC.
    plus_two = timezone(timedelta(hours=2))
    start = datetime(2026, 11, 24, 2, 0, tzinfo=plus_two)
    end = datetime(2026, 11, 25, 2, 0, tzinfo=plus_two)
    async with client_for(fake) as client:
        payments = await client.fetch_payments(start, end)

    assert queries(fake)[0] == {
        "status": "2",
        "creation_date__gte": "2026-11-24T00:00:00.000000",
        "creation_date__lte": "2026-11-25T00:00:00.000000",
        "limit": "10000",
    }
    assert [p.payment_hash[0] for p in payments] == ["b", "c"]  # oldest first
    rebalance, plain = payments
    assert rebalance.creation_date == datetime(2026, 11, 24, tzinfo=UTC)
    assert (rebalance.value, rebalance.fee) == (30_000.0, 3.2)
    assert (rebalance.chan_out, rebalance.rebal_chan, rebalance.is_rebalance) == ("1", "2", True)
    assert (plain.chan_out, plain.rebal_chan, plain.is_rebalance) == ("MPP", None, False)
    assert plain.creation_date == datetime(2026, 11, 24, 12, 30, 0, 250_000, tzinfo=UTC)


async def test_payments_sample_and_bad_row(
    fake: FakeLndg, caplog: pytest.LogCaptureFixture
) -> None:
    fake.payments[0]["fee"] = "lots"
    naive_start, naive_end = datetime(2026, 11, 24, 21), datetime(2026, 11, 24, 22)
    async with client_for(fake) as client:
        payments = await client.fetch_payments(naive_start, naive_end)
    assert [p.payment_hash for p in payments] == ["cd" * 32]
    assert payments[0].chan_out_alias == "SourceA"
    assert len(payments.skipped) == 1
    assert "ef" * 32 in payments.skipped[0]
    assert "fee" in caplog.text


async def test_payments_reject_an_inverted_range(fake: FakeLndg) -> None:
    async with client_for(fake) as client:
        with pytest.raises(ValueError, match="end"):
            await client.fetch_payments(datetime(2026, 11, 25), datetime(2026, 11, 24))


async def test_rebalances_stop_filter_and_parsing(fake: FakeLndg) -> None:
    fake.rebalancer = [
        rebalance_row(1, stop="2026-11-24T09:00:00"),
        rebalance_row(
            2,
            stop="2026-11-24T11:00:00",
            value=50_000,
            fees_paid=12.5,
            outgoing_chan_ids=["879609302301671425", "879609302301671427"],
            target_alias="TargetB",
        ),
        rebalance_row(3, stop="2026-11-24T12:00:00", status=3),
        rebalance_row(4, stop="2026-11-24T23:00:00", outgoing_chan_ids="['7']"),
        rebalance_row(5, stop="2026-11-25T01:00:00"),
    ]
    after = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    async with client_for(fake) as client:
        everything = await client.fetch_rebalances(after)
        day = await client.fetch_rebalances(after, stop_until=datetime(2026, 11, 24, 23, 59))

    assert queries(fake)[0] == {
        "status": "2",
        "stop__gt": "2026-11-24T10:00:00.000000",
        "limit": "10000",
    }
    assert [r.id for r in everything] == [2, 4, 5]  # by stop time
    assert [r.id for r in day] == [2, 4]
    second = everything[0]
    assert second.outgoing_chan_ids == ["879609302301671425", "879609302301671427"]
    assert (second.value, second.fees_paid, second.target_alias) == (50_000, 12.5, "TargetB")
    assert second.stop == datetime(2026, 11, 24, 11, 0, tzinfo=UTC)
    assert second.succeeded
    assert everything[1].outgoing_chan_ids == ["7"]


async def test_rebalances_of_every_status_when_asked(fake: FakeLndg) -> None:
    fake.rebalancer = [
        rebalance_row(1, stop="2026-11-24T11:00:00", status=4, outgoing_chan_ids=["7", "8"]),
        rebalance_row(2, stop="2026-11-24T12:00:00"),
        rebalance_row(3, stop="2026-11-24T09:00:00", status=3),
    ]
    async with client_for(fake) as client:
        attempts = await client.fetch_rebalances(
            datetime(2026, 11, 24, 10, tzinfo=UTC), status=None
        )
    # no status filter goes to LNDg; the stop filter still applies
    assert queries(fake)[0] == {"stop__gt": "2026-11-24T10:00:00.000000", "limit": "10000"}
    assert [(r.id, r.status, r.succeeded) for r in attempts] == [(1, 4, False), (2, 2, True)]


async def test_rebalance_with_unparseable_chan_ids_is_skipped(
    fake: FakeLndg, caplog: pytest.LogCaptureFixture
) -> None:
    fake.rebalancer[1]["outgoing_chan_ids"] = "not a list"
    async with client_for(fake) as client:
        rebalances = await client.fetch_rebalances(datetime(2026, 11, 24))
    assert list(rebalances) == []
    assert rebalances.skipped == [
        "rebalance 1: outgoing_chan_ids: Value error, should be a list of channel ids "
        "like [879609302301671425]"
    ]


# -- settings --------------------------------------------------------------------------------


async def test_from_settings(fake: FakeLndg) -> None:
    settings = Settings(
        _env_file=None,
        lndg_base_url=fake.url + "/",
        lndg_pass=SecretStr(PASSWORD),
        lndg_timeout_seconds=3,
    )
    async with LndgClient.from_settings(settings) as client:
        assert client.base_url == fake.url
        assert len(await client.fetch_channels()) == 2


def test_unusable_ca_file_is_an_lndg_error(tmp_path: Path) -> None:
    missing = tmp_path / "tls.cert"
    with pytest.raises(LndgError, match="LNDG_CA_FILE"):
        LndgClient("https://lndg.local", verify=missing)
    missing.write_text("not a certificate")
    with pytest.raises(LndgError, match="cannot be used as a CA certificate"):
        LndgClient("https://lndg.local", verify=str(missing))


def test_base_url_must_be_http() -> None:
    with pytest.raises(LndgError, match="not an http") as caught:
        LndgClient("ftp://user:hidden@lndg.local")
    assert "hidden" not in str(caught.value)


# -- the fake as a separate process ----------------------------------------------------------


@dataclass
class FakeProcess:
    """`python -m sim.lndg` running as a child process: its URL, then what it printed."""

    url: str = ""
    stdout: str = ""
    returncode: int | None = None


@asynccontextmanager
async def fake_lndg_process(tmp_path: Path, *args: str) -> AsyncIterator[FakeProcess]:
    """Start the stand-in as its own process (password `pw`); SIGTERM it on exit."""
    ready = tmp_path / "ready"
    process = subprocess.Popen(
        [sys.executable, "-m", "sim.lndg", *args, "--password", "pw", "--ready-file", str(ready)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    running = FakeProcess()
    try:
        deadline = time.monotonic() + 15
        while not ready.exists():
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "fake LNDg did not become ready"
            await asyncio.sleep(0.05)
        running.url = ready.read_text().strip()
        yield running
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, _stderr = process.communicate(timeout=10)
        running.stdout, running.returncode = stdout.decode(), process.returncode


@pytest.mark.subprocess
async def test_fake_runs_as_a_process(tmp_path: Path) -> None:
    rows = tmp_path / "channels.json"
    rows.write_text(json.dumps([channel_row(11, alias="Proc"), channel_row(12, is_open=False)]))
    async with fake_lndg_process(tmp_path, "--channels", str(rows)) as fake:
        assert fake.url.startswith("http://127.0.0.1:")
        async with LndgClient(fake.url, password="pw") as client:
            channels = await client.fetch_channels()
        assert [(c.chan_id, c.alias) for c in channels] == [("11", "Proc")]
    assert fake.returncode == 0
    assert fake.stdout.strip() == fake.url
