"""The fake LNDg answers as LNDg v1.10 does, so client tests against it mean something."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from core.models import Channel
from sim.lndg import (
    FakeLndg,
    RecordedRequest,
    channel_row,
    payment_row,
    rebalance_row,
    sample_channels,
    sample_payments,
    sample_rebalances,
)

SAMPLES = Path(__file__).resolve().parents[1] / "sim" / "samples" / "lndg"
AUTH = ("lndg-admin", "secret")


def _sample_row(name: str) -> dict[str, object]:
    row: dict[str, object] = json.loads((SAMPLES / name).read_text())["results"][0]
    return row


@pytest.fixture
def fake() -> Iterator[FakeLndg]:
    with FakeLndg() as server:
        yield server


@pytest.fixture
def http(fake: FakeLndg) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.url, auth=AUTH, timeout=5) as client:
        yield client


# -- row builders ---------------------------------------------------------------------------


def test_channel_row_has_the_sample_keys_types_and_derived_values() -> None:
    template = _sample_row("channels_page1.json")
    row = channel_row(879609302301671425, capacity=2_000_000, local_balance=1_500_000)

    assert list(row) == list(template)
    assert {k: type(v) for k, v in row.items()} == {k: type(v) for k, v in template.items()}
    assert row["chan_id"] == "879609302301671425"
    assert row["short_chan_id"] == "800000x1234x1"
    assert row["remote_balance"] == 2_000_000 - 1_500_000 - 2000  # minus the commit fee
    assert row["local_max_htlc_msat"] == 1_980_000_000
    assert len(row["remote_pubkey"]) == 66
    assert Channel.model_validate(row).local_pct == 75


def test_channel_row_defaults_and_overrides() -> None:
    first = channel_row("800000x1x1")
    second = channel_row("800000x1x2", is_open=False, alias="")

    assert first["chan_id"] == str(800000 << 40 | 1 << 16 | 1)
    assert first["local_balance"] == 500_000
    assert first["remote_pubkey"] != second["remote_pubkey"]  # no accidental shared peer
    assert second["is_open"] is False
    assert second["alias"] == ""
    with pytest.raises(ValueError, match="capacty"):
        channel_row(1, capacty=5)


def test_payment_and_rebalance_rows_have_the_sample_keys() -> None:
    when = datetime(2026, 11, 24, 22, 30, tzinfo=UTC) + timedelta(hours=0)
    payment = payment_row(creation_date=when, value=500, rebal_chan="42")
    rebalance = rebalance_row(7, stop=when.replace(tzinfo=None), outgoing_chan_ids=["1", 2])

    assert list(payment) == list(_sample_row("payments.json"))
    assert payment["creation_date"] == "2026-11-24T22:30:00"
    assert payment["value"] == 500.0
    assert list(rebalance) == list(_sample_row("rebalancer.json"))
    assert rebalance["outgoing_chan_ids"] == "[1, 2]"
    assert rebalance["start"] == "2026-11-24T22:25:00"
    assert rebalance["fees_paid"] == 0.0
    assert len(rebalance["payment_hash"]) == 64
    failed = rebalance_row(8, status=3)
    assert failed["payment_hash"] is None
    assert failed["fees_paid"] is None


def test_sample_loaders_return_fresh_copies() -> None:
    rows = sample_channels()
    rows[0]["alias"] = "changed"
    assert sample_channels()[0]["alias"] == "SourceA"
    assert len(sample_payments()) == 2
    assert len(sample_rebalances()) == 2


# -- listing, pagination, filters -------------------------------------------------------------


def test_serves_the_sample_envelope_with_urls_from_the_host_header(
    fake: FakeLndg, http: httpx.Client
) -> None:
    response = http.get("/api/channels/")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["count", "next", "previous", "results"]
    assert body["count"] == 2
    assert body["next"] is None
    assert body["previous"] is None
    expected = sample_channels()
    for row in expected:
        row["url"] = f"{fake.url}/api/channels/{row['chan_id']}/"
    assert body["results"] == expected


def test_limit_offset_links_are_absolute_with_sorted_keys(
    fake: FakeLndg, http: httpx.Client
) -> None:
    fake.channels = [channel_row(n) for n in range(1, 6)]

    first = http.get("/api/channels/?is_open=true&limit=2").json()
    assert [r["chan_id"] for r in first["results"]] == ["1", "2"]
    assert first["count"] == 5
    assert first["next"] == f"{fake.url}/api/channels/?is_open=true&limit=2&offset=2"
    assert first["previous"] is None

    second = httpx.get(first["next"], auth=AUTH).json()
    assert [r["chan_id"] for r in second["results"]] == ["3", "4"]
    assert second["previous"] == f"{fake.url}/api/channels/?is_open=true&limit=2"

    last = httpx.get(second["next"], auth=AUTH).json()
    assert [r["chan_id"] for r in last["results"]] == ["5"]
    assert last["next"] is None
    assert last["previous"] == f"{fake.url}/api/channels/?is_open=true&limit=2&offset=2"


def test_links_follow_the_host_header_like_drf(fake: FakeLndg, http: httpx.Client) -> None:
    fake.channels = [channel_row(n) for n in range(1, 4)]
    body = http.get("/api/channels/?limit=1", headers={"Host": "lndg.internal:8889"}).json()
    assert body["next"] == "http://lndg.internal:8889/api/channels/?limit=1&offset=1"
    assert body["results"][0]["url"] == "http://lndg.internal:8889/api/channels/1/"


def test_default_page_is_100_and_malformed_limit_offset_fall_back(
    fake: FakeLndg, http: httpx.Client
) -> None:
    fake.channels = [channel_row(n) for n in range(1, 151)]

    assert len(http.get("/api/channels/").json()["results"]) == 100
    # DRF ignores a limit it cannot parse (or 0) rather than answering 400.
    for bad in ("abc", "0", "-3"):
        body = http.get(f"/api/channels/?limit={bad}").json()
        assert len(body["results"]) == 100, bad
    body = http.get("/api/channels/?limit=10000&offset=xyz").json()
    assert len(body["results"]) == 150
    assert http.get("/api/channels/?offset=500").json()["results"] == []


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("is_open=true", ["open", "inactive", "private", "ar"]),
        ("is_open=True", ["open", "inactive", "private", "ar"]),
        ("is_open=1", ["open", "inactive", "private", "ar"]),
        ("is_open=false", ["closed"]),
        ("is_open=0", ["closed"]),
        ("is_open=FALSE", ["closed"]),
        ("is_open=true&is_active=true&private=false", ["open", "ar"]),
        ("auto_rebalance=true", ["ar"]),
        # django-filter's BooleanWidget turns an unknown word into "no filter".
        ("is_open=maybe", ["open", "closed", "inactive", "private", "ar"]),
        ("is_opn=true", ["open", "closed", "inactive", "private", "ar"]),  # typo: ignored
    ],
)
def test_channel_boolean_filters(
    fake: FakeLndg, http: httpx.Client, query: str, expected: list[str]
) -> None:
    fake.channels = [
        channel_row(1, alias="open"),
        channel_row(2, alias="closed", is_open=False, is_active=False),
        channel_row(3, alias="inactive", is_active=False),
        channel_row(4, alias="private", private=True),
        channel_row(5, alias="ar", auto_rebalance=True),
    ]
    body = http.get(f"/api/channels/?{query}").json()
    assert [row["alias"] for row in body["results"]] == expected


def test_payment_date_and_status_filters(fake: FakeLndg, http: httpx.Client) -> None:
    fake.payments = [
        payment_row("a" * 64, creation_date="2026-11-24T10:00:00"),
        payment_row("b" * 64, creation_date="2026-11-24T12:00:00.5"),
        payment_row("c" * 64, creation_date="2026-11-24T14:00:00", status=3),
        payment_row("d" * 64, creation_date="2026-11-25T00:00:00"),
    ]
    body = http.get(
        "/api/payments/?status=2&creation_date__gte=2026-11-24T10:00:00"
        "&creation_date__lte=2026-11-24T23:59:59.999999"
    ).json()
    # Newest first, as LNDg orders payments.
    assert [row["payment_hash"][0] for row in body["results"]] == ["b", "a"]
    body = http.get("/api/payments/?creation_date__gte=2026-11-24 13:00").json()
    assert [row["payment_hash"][0] for row in body["results"]] == ["d", "c"]


def test_rebalancer_filters_order_by_newest_id(fake: FakeLndg, http: httpx.Client) -> None:
    fake.rebalancer = [
        rebalance_row(1, stop="2026-11-24T09:00:00"),
        rebalance_row(2, stop="2026-11-24T11:00:00"),
        rebalance_row(3, stop="2026-11-24T12:00:00", status=3),
        rebalance_row(4, stop=None, start=None, status=1),
        rebalance_row(5, stop="2026-11-24T13:00:00"),
    ]
    body = http.get("/api/rebalancer/?status=2&stop__gt=2026-11-24T10:00:00").json()
    assert [row["id"] for row in body["results"]] == [5, 2]
    assert body["results"][0]["url"] == f"{fake.url}/api/rebalancer/5/"


def test_malformed_filter_values_are_400_field_errors(http: httpx.Client) -> None:
    response = http.get("/api/payments/?status=two&creation_date__gte=yesterday")
    assert response.status_code == 400
    assert response.json() == {
        "status": ["Enter a number."],
        "creation_date__gte": ["Enter a valid date/time."],
    }
    response = http.get("/api/rebalancer/?stop__gt=2026-13-01T00:00:00")
    assert response.json() == {"stop__gt": ["Enter a valid date/time."]}


def test_aware_date_filter_is_a_500_as_on_sqlite_without_use_tz(http: httpx.Client) -> None:
    response = http.get("/api/payments/", params={"creation_date__gte": "2026-11-24T10:00:00Z"})
    assert response.status_code == 500
    assert "Server Error (500)" in response.text
    # An unencoded "+00:00" arrives as a space: a 400 field error instead.
    response = http.get("/api/payments/?creation_date__gte=2026-11-24T10:00:00+00:00")
    assert response.status_code == 400


# -- auth, methods, routes -------------------------------------------------------------------


def test_auth_bodies_and_header(fake: FakeLndg) -> None:
    missing = httpx.get(f"{fake.url}/api/channels/")
    assert missing.status_code == 401
    assert missing.json() == {"detail": "Authentication credentials were not provided."}
    assert missing.headers["www-authenticate"] == 'Basic realm="api"'

    wrong = httpx.get(f"{fake.url}/api/channels/", auth=("lndg-admin", "nope"))
    assert wrong.status_code == 401
    assert wrong.json() == {"detail": "Invalid username/password."}

    mangled = httpx.get(f"{fake.url}/api/channels/", headers={"Authorization": "Basic !!!"})
    assert mangled.json() == {
        "detail": "Invalid basic header. Credentials not correctly base64 encoded."
    }
    assert [(r.method, r.authorized) for r in fake.requests] == [
        ("GET", False),
        ("GET", False),
        ("GET", False),
    ]


def test_nologin_is_open_but_still_checks_credentials_sent() -> None:
    with FakeLndg(nologin=True) as fake:
        assert httpx.get(f"{fake.url}/api/channels/").json()["count"] == 2
        token = base64.b64encode(b"lndg-admin:wrong").decode()
        response = httpx.get(
            f"{fake.url}/api/channels/", headers={"Authorization": f"Basic {token}"}
        )
        assert response.status_code == 401
        assert fake.requests[0] == RecordedRequest("GET", "/api/channels/", True)


def test_methods_not_allowed_unknown_paths_and_slash_redirect(http: httpx.Client) -> None:
    for method in ("PATCH", "DELETE", "PUT"):
        response = http.request(method, "/api/channels/", json={})
        assert response.status_code == 405
        assert response.json() == {"detail": f'Method "{method}" not allowed.'}
        assert response.headers["allow"] == "GET, HEAD, OPTIONS"
    response = http.patch("/api/channels/879609302301671425/", json={})
    assert response.status_code == 405

    response = http.get("/api/reset/")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "<h1>Not Found</h1>" in response.text

    response = http.get("/api/channels?is_open=true")
    assert response.status_code == 301
    assert response.headers["location"] == "/api/channels/?is_open=true"


def test_unauthenticated_wrong_method_is_401_before_405(fake: FakeLndg) -> None:
    assert httpx.delete(f"{fake.url}/api/channels/").status_code == 401


def test_browser_accept_header_gets_the_browsable_html(http: httpx.Client) -> None:
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    response = http.get("/api/channels/", headers={"Accept": browser})
    assert response.headers["content-type"].startswith("text/html")
    assert "Channels List" in response.text
    both = http.get("/api/channels/", headers={"Accept": "application/json, text/html"})
    assert both.headers["content-type"] == "application/json"
    assert http.get("/api/channels/?format=api").headers["content-type"].startswith("text/html")
    assert http.get("/api/channels/?format=xml").status_code == 404
    assert http.get("/api/channels/", headers={"Accept": "image/png"}).status_code == 406


def test_detail_and_channel_update_with_200_error_bodies(
    fake: FakeLndg, http: httpx.Client
) -> None:
    url = "/api/channels/879609302301671425/"
    assert http.get(url).json()["alias"] == "SourceA"
    assert http.get("/api/channels/1/").status_code == 404

    rejected = http.put(url, json={"ar_out_target": "abc", "auto_rebalance": "maybe"})
    assert rejected.status_code == 200  # LNDg returns serializer errors with HTTP 200
    assert rejected.json() == {
        "ar_out_target": ["A valid integer is required."],
        "auto_rebalance": ["Must be a valid boolean."],
    }
    assert fake.channels[0]["ar_out_target"] == 75

    accepted = http.put(url, json={"ar_out_target": "60", "auto_rebalance": True, "capacity": 1})
    assert accepted.json()["ar_out_target"] == 60
    assert fake.channels[0]["ar_out_target"] == 60
    assert fake.channels[0]["auto_rebalance"] is True
    assert fake.channels[0]["capacity"] == 2_000_000  # read-only: ignored


# -- faults ----------------------------------------------------------------------------------


def test_fault_500_and_count_clears(fake: FakeLndg, http: httpx.Client) -> None:
    fake.set_fault("500", count=2)
    assert http.get("/api/channels/").status_code == 500
    assert http.get("/api/channels/").status_code == 500
    assert http.get("/api/channels/").status_code == 200
    assert fake.fault is None
    assert fake.fault_count is None


def test_fault_401_garbage_error_body(fake: FakeLndg, http: httpx.Client) -> None:
    fake.fault = "401"
    response = http.get("/api/channels/")
    assert (response.status_code, response.json()) == (
        401,
        {"detail": "Invalid username/password."},
    )
    fake.fault = "garbage"
    response = http.get("/api/channels/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    with pytest.raises(json.JSONDecodeError):
        response.json()
    fake.fault = "error_body"
    fake.error_body = {"ar_out_target": ["A valid integer is required."]}
    response = http.get("/api/channels/")
    assert (response.status_code, response.json()) == (200, fake.error_body)


def test_fault_slow_waits(fake: FakeLndg, http: httpx.Client) -> None:
    fake.slow_seconds = 0.3
    fake.set_fault("slow", count=1)
    started = time.monotonic()
    assert http.get("/api/channels/").status_code == 200
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    http.get("/api/channels/")
    assert time.monotonic() - started < 0.3


def test_fault_fail_after_first_page(fake: FakeLndg, http: httpx.Client) -> None:
    fake.channels = [channel_row(n) for n in range(1, 4)]
    fake.fault = "fail_after_first_page"
    assert http.get("/api/channels/?limit=1").status_code == 200
    assert http.get("/api/channels/?limit=1&offset=1").status_code == 500
    assert http.get("/api/channels/?limit=1&offset=2").status_code == 500


def test_fault_missing_fields(fake: FakeLndg, http: httpx.Client) -> None:
    fake.fault = "missing_fields"
    fake.dropped_fields = ("capacity", "alias")
    rows = http.get("/api/channels/").json()["results"]
    assert all("capacity" not in row and "alias" not in row for row in rows)
    assert all("local_balance" in row for row in rows)
    assert "capacity" in fake.channels[0]  # only the served copy is changed


def test_unknown_fault_is_rejected(fake: FakeLndg) -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        fake.fault = "teapot"


def test_stop_closes_kept_alive_connections(fake: FakeLndg, http: httpx.Client) -> None:
    assert http.get("/api/channels/").status_code == 200
    fake.stop()
    with pytest.raises(httpx.TransportError):
        http.get("/api/channels/")
