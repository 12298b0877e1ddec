"""The reads the fee policy needs: forwards, LNDg's global AR settings, its open attempts.

The fake's side is checked over plain HTTP (it must answer as LNDg v1.10 does), the client's
over a real loopback socket against the fake, and the pure types on hand-written rows. Figures
are written out by hand: a forward of 60 000 sats earning 42 sats is 60 042 000 msat in.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from core.lndg import (
    LndgClient,
    LndgError,
    LndgProtocolError,
    LndgServerError,
    LndgSettingError,
    LndgTimeout,
)
from core.models import Channel
from core.node_records import ArSettings, ArSettingsError, Forward
from sim.lndg import (
    FakeLndg,
    channel_row,
    forward_row,
    rebalance_row,
    sample_channels,
    sample_forwards,
    sample_settings,
)
from tests.test_lndg_client import client_for, fake_lndg_process, queries

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "sim" / "samples" / "lndg"
PASSWORD = "secret"
AUTH = ("lndg-admin", PASSWORD)
A, B, C, D = "879609302301671425", "879609302301671426", "879609302301671427", "879609302301671428"
PEER_B = "02" + "22" * 32
PEER_C = "02" + "33" * 32


@pytest.fixture
def fake() -> Iterator[FakeLndg]:
    with FakeLndg(password=PASSWORD) as server:
        yield server


@pytest.fixture
def http(fake: FakeLndg) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.url, auth=AUTH, timeout=5) as client:
        yield client


def three_forwards() -> list[dict[str, Any]]:
    """A→B at 10:00, B→C at 11:00, C→D at 12:00 on 2026-12-05 (ids 1, 2, 3)."""
    return [
        forward_row(1, chan_id_in=A, chan_id_out=B, forward_date="2026-12-05T10:00:00"),
        forward_row(2, chan_id_in=B, chan_id_out=C, forward_date="2026-12-05T11:00:00"),
        forward_row(3, chan_id_in=C, chan_id_out=D, forward_date="2026-12-05T12:00:00"),
    ]


def ids(body: dict[str, Any]) -> list[int]:
    return [row["id"] for row in body["results"]]


# -- the fake: row builder -------------------------------------------------------------------


def test_forward_row_has_the_sample_keys_types_and_derived_amounts() -> None:
    template = json.loads((SAMPLES / "forwards.json").read_text())["results"][0]
    row = forward_row(
        12,
        chan_id_in="800000x1234x1",
        chan_id_out=B,
        forward_date=datetime(2026, 12, 5, 13, 0, tzinfo=timezone(timedelta(hours=1))),
        amt_out_msat=60_000_000,
        fee=42,
    )

    assert list(row) == list(template)
    assert {k: type(v) for k, v in row.items()} == {k: type(v) for k, v in template.items()}
    assert row["chan_id_in"] == A  # the short id, as LND's decimal id
    assert row["forward_date"] == "2026-12-05T12:00:00"  # naive UTC
    assert row["amt_in_msat"] == 60_042_000
    assert row["fee"] == 42.0
    with pytest.raises(ValueError, match="fees"):
        forward_row(chan_id_in=A, chan_id_out=B, fees=1.0)


def test_sample_loaders_for_forwards_and_settings() -> None:
    rows = sample_forwards()
    rows[0]["fee"] = 0.0
    assert [row["id"] for row in sample_forwards()] == [12, 8, 7]
    assert sample_forwards()[0]["fee"] == 42.0
    assert sample_settings() == {
        "AR-MaxFeeRate": "800",
        "AR-Outbound%": "75",
        "AR-MaxCost%": "65",
        "AR-Target%": "3",
    }


def test_channel_rows_carry_the_fee_policy_fields() -> None:
    row = channel_row(1, capacity=2_000_000, remote_fee_rate=250, ar_max_cost=50)
    channel = Channel.model_validate(row)
    # LNDg's default AR-Target% is 3: the sample's 60 000 on 2 000 000, 30 000 on 1 000 000.
    assert (channel.ar_amt_target, channel.remote_fee_rate, channel.ar_max_cost) == (
        60_000,
        250,
        50,
    )
    source, target = (Channel.model_validate(r) for r in sample_channels())
    assert (source.remote_fee_rate, source.ar_amt_target, source.ar_max_cost) == (10, 60_000, 65)
    assert target.ar_amt_target == 30_000
    bare = {k: v for k, v in row.items() if k not in ("remote_fee_rate", "ar_amt_target")}
    del bare["ar_max_cost"]
    old = Channel.model_validate(bare)  # an LNDg without them still reads, as 0
    assert (old.remote_fee_rate, old.ar_amt_target, old.ar_max_cost) == (0, 0, 0)


# -- the fake: /api/forwards/ ----------------------------------------------------------------


def test_forwards_come_newest_id_first_not_by_date(fake: FakeLndg, http: httpx.Client) -> None:
    fake.forwards = sample_forwards()  # id 12 is older than id 8, as captured
    body = http.get("/api/forwards/").json()
    assert ids(body) == [12, 8, 7]
    assert body["results"][0]["url"] == f"{fake.url}/api/forwards/12/"
    assert http.get("/api/forwards/8/").json()["fee"] == 4.2


def test_no_forwards_by_default(http: httpx.Client) -> None:
    assert http.get("/api/forwards/").json() == {
        "count": 0,
        "next": None,
        "previous": None,
        "results": [],
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("forward_date__gte=2026-12-05T11:00:00", [3, 2]),
        ("forward_date__gt=2026-12-05T11:00:00", [3]),
        ("forward_date__lte=2026-12-05T11:00:00", [2, 1]),
        ("forward_date__lt=2026-12-05T11:00:00", [1]),
        ("forward_date__gte=2026-12-05T10:00:00&forward_date__lt=2026-12-05T12:00:00", [2, 1]),
        ("forward_date__gt=2026-12-05T10:59:59.999999", [3, 2]),
        ("forward_date__lt=2026-12-05T11:00:00.000001", [2, 1]),
        ("forward_date__gte=2026-12-05 11:00", [3, 2]),  # Django's other input formats
        ("forward_date__gte=2026-12-06", []),
        ("chan_in_or_out=" + B, [2, 1]),  # out of 1, into 2
        ("chan_in_or_out=" + A, [1]),
        ("chan_in_or_out=%20" + D + "%20", [3]),  # the form strips the value
        ("chan_in_or_out=", [3, 2, 1]),  # empty: no filter
        ("chan_in_or_out=42", []),
        ("chan_in_or_out=" + C + "&forward_date__lt=2026-12-05T12:00:00", [2]),
        ("id__lt=3", [2, 1]),
        ("chan_id_out=" + B, [3, 2, 1]),  # not a filter LNDg has: ignored
    ],
)
def test_forward_filters_at_their_boundaries(
    fake: FakeLndg, http: httpx.Client, query: str, expected: list[int]
) -> None:
    fake.forwards = three_forwards()
    assert ids(http.get(f"/api/forwards/?{query}").json()) == expected


def test_forward_pages_follow_next(fake: FakeLndg, http: httpx.Client) -> None:
    fake.forwards = [
        forward_row(n, chan_id_in=A, chan_id_out=B, forward_date=f"2026-12-05T0{n}:00:00")
        for n in range(1, 6)
    ]
    first = http.get("/api/forwards/?forward_date__gte=2026-12-05T02:00:00&limit=2").json()
    assert (first["count"], ids(first)) == (4, [5, 4])
    assert first["next"] == (
        f"{fake.url}/api/forwards/?forward_date__gte=2026-12-05T02%3A00%3A00&limit=2&offset=2"
    )
    second = http.get(first["next"]).json()
    assert ids(second) == [3, 2]
    assert second["next"] is None


def test_forward_filter_errors_as_django_gives_them(http: httpx.Client) -> None:
    response = http.get("/api/forwards/?forward_date__gte=yesterday&id__lt=x")
    assert response.status_code == 400
    assert response.json() == {
        "forward_date__gte": ["Enter a valid date/time."],
        "id__lt": ["Enter a number."],
    }
    aware = http.get("/api/forwards/", params={"forward_date__lt": "2026-12-05T10:00:00Z"})
    assert aware.status_code == 500  # SQLite without USE_TZ refuses aware datetimes
    refused = http.post("/api/forwards/")
    assert refused.status_code == 405
    assert refused.headers["allow"] == "GET, HEAD, OPTIONS"


# -- the fake: /api/settings/ ----------------------------------------------------------------


def test_settings_empty_on_a_fresh_lndg(http: httpx.Client) -> None:
    assert http.get("/api/settings/").json()["results"] == []
    missing = http.get("/api/settings/AR-MaxFeeRate/")
    assert (missing.status_code, missing.json()) == (404, {"detail": "Not found."})


def test_settings_rows_keys_with_percent_and_paging(fake: FakeLndg, http: httpx.Client) -> None:
    fake.settings = sample_settings()
    fake.settings["AR-Workers"] = 2  # type: ignore[assignment]  # stored as text, as LNDg does
    body = http.get("/api/settings/?limit=1000").json()
    expected_sample = json.loads((SAMPLES / "settings.json").read_text())["results"]
    for row in expected_sample:
        row["url"] = row["url"].replace("http://127.0.0.1:18889", fake.url)
    assert body["results"] == [
        *expected_sample,
        {"url": f"{fake.url}/api/settings/AR-Workers/", "key": "AR-Workers", "value": "2"},
    ]

    target = http.get("/api/settings/AR-Target%25/")
    assert target.status_code == 200
    assert target.json() == {
        "url": f"{fake.url}/api/settings/AR-Target%25/",
        "key": "AR-Target%",
        "value": "3",
    }
    assert http.get("/api/settings/AR-MaxFeeRate/").json()["value"] == "800"
    assert http.get("/api/settings/AR-Target/").status_code == 404

    first = http.get("/api/settings/?limit=2").json()
    assert [row["key"] for row in first["results"]] == ["AR-MaxFeeRate", "AR-Outbound%"]
    second = http.get(first["next"]).json()
    assert [row["key"] for row in second["results"]] == ["AR-MaxCost%", "AR-Target%"]
    assert second["next"] == f"{fake.url}/api/settings/?limit=2&offset=4"


# -- the fake: LNDg's open attempts --------------------------------------------------------


def open_and_done_attempts() -> list[dict[str, Any]]:
    return [
        rebalance_row(1, stop="2026-12-05T09:00:00", last_hop_pubkey=PEER_B),
        rebalance_row(2, stop="2026-12-05T09:30:00", status=4, last_hop_pubkey=PEER_C),
        rebalance_row(3, stop=None, start="2026-12-05T10:00:00", status=1, last_hop_pubkey=PEER_B),
        rebalance_row(4, stop=None, start=None, status=0, last_hop_pubkey=PEER_C),
        rebalance_row(5, stop=None, start=None, status=0, last_hop_pubkey=PEER_B),
    ]


def test_open_attempt_rows_have_no_stop_as_in_lndg() -> None:
    pending = rebalance_row(1, status=0)
    in_flight = rebalance_row(2, status=1, start="2026-12-05T10:00:00")
    assert (pending["start"], pending["stop"], pending["payment_hash"]) == (None, None, None)
    assert pending["requested"] is not None  # LNDg's default=timezone.now
    assert (in_flight["start"], in_flight["stop"]) == ("2026-12-05T10:00:00", None)
    assert in_flight["requested"] == "2026-12-05T10:00:00"
    assert rebalance_row(3, status=1)["start"] is not None


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=0", [5, 4]),
        ("status=1", [3]),
        ("status__lt=2", [5, 4, 3]),
        ("status=0&last_hop_pubkey=" + PEER_C, [4]),
        ("status=1&stop__gt=2026-12-05T00:00:00", []),  # no stop yet: NULL never compares
    ],
)
def test_rebalancer_status_filter_for_pending_and_in_flight(
    fake: FakeLndg, http: httpx.Client, query: str, expected: list[int]
) -> None:
    fake.rebalancer = open_and_done_attempts()
    assert ids(http.get(f"/api/rebalancer/?{query}").json()) == expected


# -- pure types ------------------------------------------------------------------------------


def test_ar_settings_defaults_when_lndg_holds_no_key() -> None:
    settings = ArSettings.from_rows([])
    assert settings == ArSettings(
        max_fee_rate_ppm=500,
        enabled=False,
        workers=1,
        wait_period_minutes=30,
        target_pct=3,
        max_cost_pct=65,
        defaulted=(
            "AR-MaxFeeRate",
            "AR-Enabled",
            "AR-Workers",
            "AR-WaitPeriod",
            "AR-Target%",
            "AR-MaxCost%",
        ),
    )


def test_ar_settings_from_the_captured_rows_and_others() -> None:
    rows = json.loads((SAMPLES / "settings.json").read_text())["results"]
    settings = ArSettings.from_rows(rows)
    assert (settings.max_fee_rate_ppm, settings.target_pct, settings.max_cost_pct) == (800, 3, 65)
    assert (settings.enabled, settings.workers, settings.wait_period_minutes) == (False, 1, 30)
    assert settings.defaulted == ("AR-Enabled", "AR-Workers", "AR-WaitPeriod")

    more = ArSettings.from_rows(
        [
            {"key": "AR-Enabled", "value": "1"},
            {"key": "AR-Workers", "value": " 3 "},
            {"key": "AR-WaitPeriod", "value": "+45"},
            {"key": "AR-MaxFeeRate", "value": "0"},
            {"key": "AR-Outbound%", "value": "lots"},  # not read here: never judged
            {"key": "AF-Enabled", "value": "1"},
        ]
    )
    assert (more.enabled, more.workers, more.wait_period_minutes) == (True, 3, 45)
    assert more.max_fee_rate_ppm == 0
    assert more.defaulted == ("AR-Target%", "AR-MaxCost%")
    # LNDg stops only on 0: any other number schedules.
    assert ArSettings.from_rows([{"key": "AR-Enabled", "value": "2"}]).enabled is True
    assert ArSettings.from_rows([{"key": "AR-Enabled", "value": "0"}]).enabled is False


@pytest.mark.parametrize("value", ["abc", "7.5", "", "1e3", None, True, "5 00"])
def test_ar_settings_refuse_a_value_lndg_cannot_read(value: object) -> None:
    with pytest.raises(ArSettingsError) as caught:
        ArSettings.from_rows([{"key": "AR-MaxFeeRate", "value": value}])
    assert caught.value.key == "AR-MaxFeeRate"
    assert str(caught.value).startswith(f"LNDg setting AR-MaxFeeRate is {value!r}, not a whole")
    assert isinstance(caught.value, ValueError)


def test_forward_from_the_captured_row_and_by_field_name() -> None:
    row = json.loads((SAMPLES / "forwards.json").read_text())["results"][1]
    forward = Forward.model_validate(row)
    assert forward.id == 8
    assert forward.forward_date == datetime(2026, 12, 6, 13, 0, 0, 250_000, tzinfo=UTC)
    assert (forward.chan_id_in, forward.chan_id_out) == (C, A)
    assert (forward.fee_sat, forward.inbound_fee_sat) == (4.2, 0.0)
    assert (forward.amt_out_msat, forward.amount_out_sat) == (42_000_000, 42_000)

    built = Forward(
        id=1,
        forward_date=datetime(2026, 12, 6, 14, 0, tzinfo=timezone(timedelta(hours=2))),
        chan_id_in=C,
        chan_id_out=int(A),  # LNDg sends text; a number is coerced
        amt_out_msat=1_500_999,
        fee_sat=0.5,
    )
    assert built.forward_date == datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    assert (built.chan_id_out, built.amount_out_sat, built.inbound_fee_sat) == (A, 1500, 0.0)


# -- the client: forwards --------------------------------------------------------------------


async def test_fetch_forwards_sends_a_half_open_naive_utc_window(fake: FakeLndg) -> None:
    fake.forwards = [
        forward_row(1, chan_id_in=A, chan_id_out=B, forward_date="2026-12-04T23:59:59.999999"),
        forward_row(2, chan_id_in=A, chan_id_out=B, forward_date="2026-12-05T00:00:00", fee=42),
        forward_row(4, chan_id_in=C, chan_id_out=A, forward_date="2026-12-05T18:30:00.5", fee=4.2),
        forward_row(3, chan_id_in=B, chan_id_out=C, forward_date="2026-12-05T23:59:59.999999"),
        forward_row(5, chan_id_in=A, chan_id_out=B, forward_date="2026-12-06T00:00:00"),
    ]
    # The day 2026-12-05 UTC written in UTC+02:00: the client must send naive UTC.
    plus_two = timezone(timedelta(hours=2))
    since = datetime(2026, 12, 5, 2, 0, tzinfo=plus_two)
    until = datetime(2026, 12, 6, 2, 0, tzinfo=plus_two)
    async with client_for(fake) as client:
        forwards = await client.fetch_forwards(since, until)

    assert queries(fake) == [
        {
            "forward_date__gte": "2026-12-05T00:00:00.000000",
            "forward_date__lt": "2026-12-06T00:00:00.000000",
            "limit": "10000",
        }
    ]
    # Oldest first; the forward at `since` is in, the one at `until` belongs to the next day.
    assert [f.id for f in forwards] == [2, 4, 3]
    assert [(f.chan_id_out, f.fee_sat) for f in forwards] == [(B, 42.0), (A, 4.2), (C, 10.0)]
    assert forwards[1].forward_date == datetime(2026, 12, 5, 18, 30, 0, 500_000, tzinfo=UTC)
    assert forwards.skipped == []


async def test_fetch_forwards_without_an_end_and_across_pages(fake: FakeLndg) -> None:
    fake.forwards = [
        forward_row(n, chan_id_in=A, chan_id_out=B, forward_date=f"2026-12-05T1{n}:00:00", fee=n)
        for n in range(1, 6)
    ]
    async with client_for(fake, page_size=2) as client:
        forwards = await client.fetch_forwards(datetime(2026, 12, 5, 12))  # naive: UTC

    assert [f.id for f in forwards] == [2, 3, 4, 5]
    assert sum(f.fee_sat for f in forwards) == 14.0
    assert [q.get("offset") for q in queries(fake)] == [None, "2"]
    assert all(q["forward_date__gte"] == "2026-12-05T12:00:00.000000" for q in queries(fake))
    assert all("forward_date__lt" not in q for q in queries(fake))


async def test_fetch_forwards_skips_a_bad_row_and_refuses_all_bad(
    fake: FakeLndg, caplog: pytest.LogCaptureFixture
) -> None:
    fake.forwards = three_forwards()
    fake.forwards[1]["fee"] = "lots"
    since = datetime(2026, 12, 5, tzinfo=UTC)
    async with client_for(fake) as client:
        forwards = await client.fetch_forwards(since)
        assert [f.id for f in forwards] == [1, 3]
        assert forwards.skipped == [
            "forward 2: fee: Input should be a valid number, "
            + ("unable to parse string as a number")
        ]
        assert "forward 2 skipped" in caplog.text

        for row in fake.forwards:
            del row["chan_id_out"]  # an LNDg upgrade renamed it
        with pytest.raises(LndgProtocolError, match="listed 3 forwards and none could be read"):
            await client.fetch_forwards(since)


async def test_fetch_forwards_fails_whole_not_partial(fake: FakeLndg) -> None:
    fake.forwards = three_forwards()
    fake.fault = "fail_after_first_page"
    async with client_for(fake, page_size=2, attempts=2) as client:
        with pytest.raises(LndgServerError):
            await client.fetch_forwards(datetime(2026, 12, 5))
        with pytest.raises(ValueError, match="until"):
            await client.fetch_forwards(datetime(2026, 12, 6), datetime(2026, 12, 5))


async def test_fetch_forwards_has_the_deadline(fake: FakeLndg) -> None:
    fake.slow_seconds = 3.0
    fake.fault = "slow"
    started = time.monotonic()
    async with client_for(fake, timeout=0.2, attempts=1) as client:
        with pytest.raises(LndgTimeout, match="forwards"):
            await client.fetch_forwards(datetime(2026, 12, 5))
    assert time.monotonic() - started < 2.0


# -- the client: settings ----------------------------------------------------------------------


async def test_fetch_settings_defaults_then_lndg_values(fake: FakeLndg) -> None:
    async with client_for(fake) as client:
        fresh = await client.fetch_settings()
        assert fresh == ArSettings.from_rows([])
        fake.settings = {**sample_settings(), "AR-Enabled": "1"}
        current = await client.fetch_settings()

    assert (current.max_fee_rate_ppm, current.enabled, current.max_cost_pct) == (800, True, 65)
    assert current.defaulted == ("AR-Workers", "AR-WaitPeriod")
    assert urlsplit(fake.requests[0].path).path == "/api/settings/"


async def test_fetch_settings_names_a_bad_value(fake: FakeLndg) -> None:
    fake.settings = {"AR-MaxFeeRate": "five hundred"}
    async with client_for(fake) as client:
        with pytest.raises(LndgSettingError) as caught:
            await client.fetch_settings()
    assert isinstance(caught.value, LndgError)
    message = str(caught.value)
    assert message.startswith(f"LNDg at {fake.url}/api/settings/: LNDg setting AR-MaxFeeRate")
    assert "'five hundred'" in message
    assert PASSWORD not in message


async def test_fetch_settings_error_body_is_a_protocol_error(fake: FakeLndg) -> None:
    fake.fault = "error_body"
    async with client_for(fake) as client:
        with pytest.raises(LndgProtocolError, match="database is locked"):
            await client.fetch_settings()


# -- the client: LNDg's open attempts ----------------------------------------------------------


async def test_fetch_open_rebalances(fake: FakeLndg) -> None:
    fake.rebalancer = open_and_done_attempts()
    async with client_for(fake) as client:
        attempts = await client.fetch_open_rebalances()
        pending = await client.fetch_rebalances(status=0)

    assert [(r.id, r.status, r.last_hop_pubkey) for r in attempts] == [
        (3, 1, PEER_B),
        (4, 0, PEER_C),
        (5, 0, PEER_B),
    ]
    assert all(r.is_open and not r.succeeded for r in attempts)
    assert attempts[0].start == datetime(2026, 12, 5, 10, tzinfo=UTC)
    assert (attempts[1].start, attempts[1].stop) == (None, None)
    # No stop__gt: an open attempt has no stop, and NULL never passes a comparison.
    assert queries(fake) == [
        {"status": "0", "limit": "10000"},
        {"status": "1", "limit": "10000"},
        {"status": "0", "limit": "10000"},
    ]
    assert [r.id for r in pending] == [4, 5]


# -- the fake as a separate process ----------------------------------------------------------


@pytest.mark.subprocess
async def test_fake_process_serves_forwards_and_settings(tmp_path: Path) -> None:
    forwards = tmp_path / "forwards.json"
    forwards.write_text(json.dumps({"results": three_forwards()}))
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"AR-MaxFeeRate": "700", "AR-Enabled": 1}))
    args = ("--forwards", str(forwards), "--settings", str(settings))
    async with fake_lndg_process(tmp_path, *args) as fake:
        async with LndgClient(fake.url, password="pw") as client:
            found = await client.fetch_forwards(datetime(2026, 12, 5, 11))
            current = await client.fetch_settings()
        assert [f.id for f in found] == [2, 3]
        assert (current.max_fee_rate_ppm, current.enabled) == (700, True)
    assert fake.returncode == 0
