"""A loopback stand-in for LNDg's REST API, answering as LNDg v1.10 (Django REST framework) does.

Stdlib only: a `ThreadingHTTPServer` on 127.0.0.1 in a daemon thread.

What it reproduces, and why it matters to a client:

- `GET /api/channels/`, `/api/payments/`, `/api/rebalancer/`, `/api/forwards/` and
  `/api/settings/` with LNDg's filters, DRF limit/offset pagination (default page 100, no cap)
  and ABSOLUTE `next`/`previous` links built from the Host header with the query keys sorted,
  as DRF's `replace_query_param` does. Forwards and rebalances come newest id first, payments
  newest first, channels and settings in the order they were added (LNDg sets no ordering).
- `GET /api/settings/<key>/` with the key percent-decoded as Django does (`AR-Target%25`
  is `AR-Target%`), and the setting URLs encoded the same way.
- `GET /api/channels/<chan_id>/`: one channel serialised as a row of the list (LNDg's
  ChannelsViewSet is a ReadOnlyModelViewSet keyed by chan_id, so the list's filters do not
  apply); an unknown id is 404 `{"detail": "Not found."}`.
- django-filter parsing: a boolean filter only understands true/false/1/0 (any case); any other
  value makes the filter silently inactive (real behaviour, so `is_open=maybe` returns every row).
  Number and date filters reject malformed values with 400 `{"status": ["Enter a number."]}` /
  `{"creation_date__gte": ["Enter a valid date/time."]}`. A timezone-aware date filter is a 500:
  LNDg runs with USE_TZ=False on SQLite, which refuses aware datetimes.
- DRF's `limit`/`offset` parsing: a malformed or non-positive `limit` silently falls back to 100
  and a malformed `offset` to 0 (DRF never answers 400 for them). Unknown parameters are ignored.
- Basic auth as DRF's BasicAuthentication: no credentials → 401 "not provided"; wrong ones → 401
  "Invalid username/password." (also in `nologin` mode, where DRF still checks credentials sent),
  with `WWW-Authenticate: Basic realm="api"`.
- Content negotiation: JSON for `*/*` or `application/json`; the browsable HTML page when the
  Accept header prefers `text/html` (as a browser's does) or `?format=api`.
- Django's ALLOWED_HOSTS (LNDg's initialize.py `-ip`, default `*`): a Host header outside
  `allowed_hosts` gets Django's HTML "Bad Request (400)" before anything else runs.
- 405 with `Allow` for methods a route lacks, Django's HTML 404 for unknown paths, a 301 to the
  slash-terminated path (APPEND_SLASH), and `PUT /api/channels/<chan_id>/` whose validation
  errors come back as HTTP 200 with a field-error body, as LNDg's view does.

Every request is logged in `requests` and every answer's size in `replies`, so tests and the
bench can count what a client costs LNDg (`traffic`). Tests drive faults through `fault` /
`fault_count` (see `FAULTS`). Run as a process with
`python -m sim.lndg --channels FILE.json [--port N] [--ready-file PATH]`.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import copy
import hashlib
import hmac
import itertools
import json
import os
import re
import signal
import socket
import ssl
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, NamedTuple, Self
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit, urlunsplit

from core.models import chan_id_to_short_id, short_id_to_chan_id

SAMPLES_DIR = Path(__file__).resolve().parent / "samples" / "lndg"

FAULTS = frozenset(
    {
        "500",
        "401",
        "slow",
        "trickle",
        "garbage",
        "error_body",
        "fail_after_first_page",
        "missing_fields",
    }
)
"""Fault names for `FakeLndg.fault`:

- "500": HTTP 500 with Django's HTML error page.
- "401": HTTP 401 "Invalid username/password." whatever the credentials.
- "slow": wait `slow_seconds`, then answer normally.
- "trickle": answer normally, but send the body one byte every `trickle_seconds` after the
  headers, so no single read ever waits long (a per-read timeout never trips).
- "garbage": HTTP 200 with an HTML page instead of JSON.
- "error_body": HTTP 200 with `error_body` (a `{"detail": ...}` or a DRF field-error dict).
- "fail_after_first_page": list pages with offset > 0 get HTTP 500; the first page is fine.
- "missing_fields": served rows lack the fields named in `dropped_fields`.

With `fault_count` set, only that many affected requests see the fault, then it clears.
"""

DEFAULT_PAGE_SIZE = 100  # LNDg's REST_FRAMEWORK PAGE_SIZE
_REALM = 'Basic realm="api"'
_KINDS = ("channels", "payments", "rebalancer", "forwards", "settings")
_PRIMARY_KEY = {
    "channels": "chan_id",
    "payments": "payment_hash",
    "rebalancer": "id",
    "forwards": "id",
    "settings": "key",
}
_TITLES = {
    "channels": "Channels",
    "payments": "Payments",
    "rebalancer": "Rebalancer",
    "forwards": "Forwards",
    "settings": "Local Settings",
}
_KIND_PATTERN = "|".join(_KINDS)
_LIST_ROUTE = re.compile(rf"^/api/({_KIND_PATTERN})/$")
_DETAIL_ROUTE = re.compile(rf"^/api/({_KIND_PATTERN})/([^/]+)/$")
_NO_SLASH_ROUTE = re.compile(rf"^/api(/({_KIND_PATTERN})(/[^/]+)?)?$")
# What Django's reverse() leaves unencoded in a URL path (RFC 3986 sub-delims and "/~:@").
_URL_SAFE = "!$&'()*+,;=/~:@"

# Allowed methods per route, as LNDg's viewsets and DRF's router define them.
_LIST_METHODS = {
    "channels": ("GET", "HEAD", "OPTIONS"),
    "payments": ("GET", "HEAD", "OPTIONS"),
    "rebalancer": ("GET", "POST", "HEAD", "OPTIONS"),
    "forwards": ("GET", "HEAD", "OPTIONS"),
    "settings": ("GET", "HEAD", "OPTIONS"),
}
_DETAIL_METHODS = {
    "channels": ("GET", "PUT", "HEAD", "OPTIONS"),
    "payments": ("GET", "HEAD", "OPTIONS"),
    "rebalancer": ("GET", "PUT", "HEAD", "OPTIONS"),
    "forwards": ("GET", "HEAD", "OPTIONS"),
    "settings": ("GET", "PUT", "HEAD", "OPTIONS"),
}

# LNDg's filterset_fields: query parameter -> (kind of value, row field, lookup).
_FILTERS: dict[str, dict[str, tuple[str, str, str]]] = {
    "channels": {
        name: ("bool", name, "exact")
        for name in ("is_open", "private", "is_active", "auto_rebalance")
    },
    "payments": {
        "status": ("number", "status", "exact"),
        "status__lt": ("number", "status", "lt"),
        "status__gt": ("number", "status", "gt"),
        "creation_date__lte": ("datetime", "creation_date", "lte"),
        "creation_date__gte": ("datetime", "creation_date", "gte"),
        "chan_out": ("text", "chan_out", "exact"),
        "index__lt": ("number", "index", "lt"),
    },
    "rebalancer": {
        "status": ("number", "status", "exact"),
        "status__lt": ("number", "status", "lt"),
        "status__gt": ("number", "status", "gt"),
        "payment_hash": ("text", "payment_hash", "exact"),
        "stop__gt": ("datetime", "stop", "gt"),
        "last_hop_pubkey": ("text", "last_hop_pubkey", "exact"),
        "id__lt": ("number", "id", "lt"),
    },
    # LNDg's ForwardsFilter; `chan_in_or_out` matches either side (Q(chan_id_in) | Q(chan_id_out)).
    "forwards": {
        "chan_in_or_out": ("either", "chan_id_in chan_id_out", "exact"),
        "forward_date__lte": ("datetime", "forward_date", "lte"),
        "forward_date__gte": ("datetime", "forward_date", "gte"),
        "forward_date__lt": ("datetime", "forward_date", "lt"),
        "forward_date__gt": ("datetime", "forward_date", "gt"),
        "id__lt": ("number", "id", "lt"),
    },
    "settings": {},  # LocalSettingsViewSet has no filters
}
_BOOLEAN_WORDS = {"1": True, "0": False, "true": True, "false": False}
# Django's DATETIME_INPUT_FORMATS and DATE_INPUT_FORMATS, tried after ISO 8601.
_DATETIME_FORMATS = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M:%S.%f",
    "%Y-%m-%d %H:%M",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M:%S.%f",
    "%m/%d/%Y %H:%M",
    "%m/%d/%y %H:%M:%S",
    "%m/%d/%y %H:%M:%S.%f",
    "%m/%d/%y %H:%M",
    "%Y-%m-%d",
    "%m/%d/%Y",
    "%m/%d/%y",
)

# Fields `PUT /api/channels/<id>/` may change (LNDg's ChannelSerializer); others are ignored.
_WRITABLE_INT = (
    "local_base_fee",
    "local_fee_rate",
    "ar_max_cost",
    "ar_amt_target",
    "ar_out_target",
    "ar_in_target",
    "local_inbound_base_fee",
    "local_inbound_fee_rate",
)
_WRITABLE_BOOL = ("auto_fees", "auto_rebalance")
_WRITABLE_TEXT = ("notes",)
_TRUE_WORDS = {"t", "y", "yes", "true", "on", "1"}
_FALSE_WORDS = {"f", "n", "no", "false", "off", "0"}

_HTML_404 = (
    '<!doctype html>\n<html lang="en">\n<head>\n  <title>Not Found</title>\n</head>\n<body>\n'
    "  <h1>Not Found</h1><p>The requested resource was not found on this server.</p>\n"
    "</body>\n</html>\n"
)
_HTML_500 = (
    '<!doctype html>\n<html lang="en">\n<head>\n  <title>Server Error (500)</title>\n</head>\n'
    "<body>\n  <h1>Server Error (500)</h1><p></p>\n</body>\n</html>\n"
)
_HTML_400 = (
    '<!doctype html>\n<html lang="en">\n<head>\n  <title>Bad Request (400)</title>\n</head>\n'
    "<body>\n  <h1>Bad Request (400)</h1><p></p>\n</body>\n</html>\n"
)
_HTML_GARBAGE = (
    "<!DOCTYPE html>\n<html>\n<head><title>LNDg</title></head>\n"
    "<body><h1>Dashboard</h1><p>Loading&hellip;</p></body>\n</html>\n"
)

_ids = itertools.count(1000)  # default ids for built rows; next() on a count is thread-safe


# ---------------------------------------------------------------------------------------------
# Row builders


@cache
def _sample(name: str) -> dict[str, Any]:
    with (SAMPLES_DIR / name).open(encoding="utf-8") as handle:
        envelope: dict[str, Any] = json.load(handle)
    return envelope


def _sample_rows(name: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = copy.deepcopy(_sample(name)["results"])
    return rows


def sample_channels() -> list[dict[str, Any]]:
    """The two channel rows captured from a real LNDg (SourceA, TargetB), as fresh copies."""
    return _sample_rows("channels_page1.json")


def sample_payments() -> list[dict[str, Any]]:
    """The two captured payment rows (one circular rebalance, one plain payment)."""
    return _sample_rows("payments.json")


def sample_rebalances() -> list[dict[str, Any]]:
    """The two captured LNDg rebalancer rows (one failed, one successful)."""
    return _sample_rows("rebalancer.json")


def sample_forwards() -> list[dict[str, Any]]:
    """The three captured forward rows (a page of a longer list: ids 12, 8, 7), fresh copies."""
    return _sample_rows("forwards.json")


def sample_settings() -> dict[str, str]:
    """The captured settings (AR-MaxFeeRate 800, AR-Outbound% 75, AR-MaxCost% 65, AR-Target% 3)
    as the key -> value dict `FakeLndg.settings` holds."""
    return {str(row["key"]): str(row["value"]) for row in _sample_rows("settings.json")}


def _naive_utc_text(value: datetime | str | None) -> str | None:
    """LNDg's timestamp form: naive UTC ISO 8601 (DRF omits `.000000` when microseconds are 0)."""
    if value is None or isinstance(value, str):
        return value
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat()


def _utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _hex64(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()


def _apply_overrides(row: dict[str, Any], overrides: Mapping[str, Any], what: str) -> None:
    unknown = sorted(set(overrides) - set(row))
    if unknown:
        # A typo would otherwise add a key LNDg never sends and silently test nothing.
        raise ValueError(f"{what} has no field(s) {', '.join(unknown)}")
    row.update(overrides)


def channel_row(
    chan_id: str | int,
    *,
    alias: str | None = None,
    capacity: int = 1_000_000,
    local_balance: int | None = None,
    remote_balance: int | None = None,
    remote_pubkey: str | None = None,
    auto_rebalance: bool = False,
    ar_out_target: int = 75,
    ar_in_target: int = 100,
    pending_outbound: int = 0,
    pending_inbound: int = 0,
    **overrides: Any,
) -> dict[str, Any]:
    """One `/api/channels/` row with exactly the sample's keys and value types.

    `chan_id` may be LND's decimal id or a short id like `800000x1234x1`. Unset values are
    derived the way LND reports them: short_chan_id from chan_id, local_balance = half the
    capacity, remote_balance = what is left after local, pending HTLCs and the commit fee,
    a per-channel peer pubkey (so two built channels never share a peer by accident). Any
    other sample field (is_open, is_active, private, local_fee_rate, ...) goes in `overrides`;
    a name the sample lacks raises ValueError.
    """
    text_id = str(chan_id)
    if "x" in text_id.lower():
        text_id = short_id_to_chan_id(text_id)
    short_id = chan_id_to_short_id(text_id)
    block, _tx, out = (int(part) for part in short_id.split("x"))
    row = _sample_rows("channels_page1.json")[0]
    local = capacity // 2 if local_balance is None else local_balance
    local_commit = int(row["local_commit"])
    remote = (
        max(0, capacity - local - pending_outbound - pending_inbound - local_commit)
        if remote_balance is None
        else remote_balance
    )
    reserve = capacity // 100
    row.update(
        url=f"http://127.0.0.1:8889/api/channels/{text_id}/",
        chan_id=text_id,
        remote_pubkey=remote_pubkey or "02" + _hex64(f"peer-{text_id}"),
        funding_txid=_hex64(f"funding-{text_id}"),
        output_index=out,
        capacity=capacity,
        local_balance=local,
        remote_balance=remote,
        unsettled_balance=pending_outbound + pending_inbound,
        local_chan_reserve=reserve,
        short_chan_id=short_id,
        pending_outbound=pending_outbound,
        pending_inbound=pending_inbound,
        htlc_count=int(pending_outbound > 0) + int(pending_inbound > 0),
        local_max_htlc_msat=(capacity - reserve) * 1000,
        remote_max_htlc_msat=(capacity - reserve) * 1000,
        alias=f"peer-{short_id}" if alias is None else alias,
        opened_in=block,
        ar_amt_target=capacity * 3 // 100,  # LNDg's default AR-Target% is 3 (as the sample)
        ar_out_target=ar_out_target,
        ar_in_target=ar_in_target,
        auto_rebalance=auto_rebalance,
    )
    _apply_overrides(row, overrides, "a channel row")
    return row


def payment_row(
    payment_hash: str | None = None,
    *,
    creation_date: datetime | str | None = None,
    value: float = 1000.0,
    fee: float = 0.0,
    status: int = 2,
    chan_out: str | None = None,
    chan_out_alias: str | None = None,
    rebal_chan: str | None = None,
    index: int | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """One `/api/payments/` row shaped like the sample.

    `creation_date` (default now) may be aware (converted to naive UTC) or LNDg's naive text.
    `index` sets both `id` and `index` (default: a fresh number); the hash defaults to one
    derived from it. `rebal_chan` set makes the payment a circular rebalance.
    """
    number = next(_ids) if index is None else index
    digest = payment_hash or _hex64(f"payment-{number}")
    row = _sample_rows("payments.json")[0]
    row.update(
        url=f"http://127.0.0.1:8889/api/payments/{digest}/",
        id=number,
        payment_hash=digest,
        creation_date=_naive_utc_text(creation_date or _utc_now()),
        value=float(value),
        fee=float(fee),
        status=status,
        index=number,
        chan_out=chan_out,
        chan_out_alias=chan_out_alias,
        rebal_chan=rebal_chan,
    )
    _apply_overrides(row, overrides, "a payment row")
    return row


def rebalance_row(
    rebalance_id: int | None = None,
    *,
    value: int = 30_000,
    status: int = 2,
    stop: datetime | str | None = None,
    start: datetime | str | None = None,
    requested: datetime | str | None = None,
    fees_paid: float | None = None,
    fee_limit: float = 7.5,
    payment_hash: str | None = None,
    outgoing_chan_ids: Iterable[str | int] | str = (),
    last_hop_pubkey: str = "02" + "22" * 32,
    target_alias: str = "",
    duration: int = 5,
    manual: bool = False,
    **overrides: Any,
) -> dict[str, Any]:
    """One `/api/rebalancer/` row shaped like the sample.

    A finished attempt's `stop` defaults to now and `start`/`requested` to `duration` minutes
    earlier. An open one has no stop, as in LNDg: pending (status 0) not started either, in
    flight (status 1) started now unless given; `requested` is never null. A successful
    row (status 2) gets a payment hash and `fees_paid` 0.0 unless given; other statuses keep
    them null, as LNDg does. `outgoing_chan_ids` becomes LNDg's string form `"[1, 2]"`.
    """
    number = next(_ids) if rebalance_id is None else rebalance_id
    if status == 1 and start is None:
        start = _utc_now()
    elif status not in (0, 1) and stop is None:
        stop = _utc_now()
    if start is None and isinstance(stop, datetime):
        start = stop - timedelta(minutes=duration)
    if requested is None:
        requested = _utc_now() if start is None else start
    if isinstance(outgoing_chan_ids, str):
        ids_text = outgoing_chan_ids
    else:
        ids_text = "[" + ", ".join(str(chan) for chan in outgoing_chan_ids) + "]"
    succeeded = status == 2
    row = _sample_rows("rebalancer.json")[0]
    row.update(
        url=f"http://127.0.0.1:8889/api/rebalancer/{number}/",
        id=number,
        requested=_naive_utc_text(requested),
        start=_naive_utc_text(start),
        stop=_naive_utc_text(stop),
        fees_paid=fees_paid if fees_paid is not None or not succeeded else 0.0,
        payment_hash=payment_hash or (_hex64(f"rebalance-{number}") if succeeded else None),
        value=value,
        fee_limit=fee_limit,
        outgoing_chan_ids=ids_text,
        last_hop_pubkey=last_hop_pubkey,
        target_alias=target_alias,
        duration=duration,
        status=status,
        manual=manual,
    )
    _apply_overrides(row, overrides, "a rebalancer row")
    return row


def forward_row(
    forward_id: int | None = None,
    *,
    chan_id_in: str | int,
    chan_id_out: str | int,
    forward_date: datetime | str | None = None,
    amt_out_msat: int = 100_000_000,
    fee: float = 10.0,
    inbound_fee: float = 0.0,
    chan_in_alias: str = "",
    chan_out_alias: str = "",
    amt_in_msat: int | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """One `/api/forwards/` row shaped like the sample.

    Channel ids may be decimal or short ids (`800000x1234x1`). `forward_date` (default now)
    may be aware (converted to naive UTC) or LNDg's naive text. `fee` is in sats, what the node
    earned; `amt_in_msat` defaults to `amt_out_msat` plus that fee, as LND reports a forward.
    `forward_id` defaults to a fresh number (LNDg lists forwards by descending id).
    """
    number = next(_ids) if forward_id is None else forward_id
    ids = []
    for chan in (chan_id_in, chan_id_out):
        text = str(chan)
        ids.append(short_id_to_chan_id(text) if "x" in text.lower() else text)
    row = _sample_rows("forwards.json")[0]
    row.update(
        url=f"http://127.0.0.1:8889/api/forwards/{number}/",
        id=number,
        forward_date=_naive_utc_text(forward_date or _utc_now()),
        chan_id_in=ids[0],
        chan_id_out=ids[1],
        chan_in_alias=chan_in_alias,
        chan_out_alias=chan_out_alias,
        amt_in_msat=amt_out_msat + round(fee * 1000) if amt_in_msat is None else amt_in_msat,
        amt_out_msat=amt_out_msat,
        fee=float(fee),
        inbound_fee=float(inbound_fee),
    )
    _apply_overrides(row, overrides, "a forward row")
    return row


# ---------------------------------------------------------------------------------------------
# Request parsing helpers (DRF / django-filter semantics)


def _replace_query_param(url: str, key: str, value: object) -> str:
    """DRF's helper: parse, set one key, re-encode with the keys sorted."""
    scheme, netloc, path, query, _fragment = urlsplit(url)
    params = parse_qs(query, keep_blank_values=True)
    params[key] = [str(value)]
    return urlunsplit((scheme, netloc, path, urlencode(sorted(params.items()), doseq=True), ""))


def _remove_query_param(url: str, key: str) -> str:
    scheme, netloc, path, query, _fragment = urlsplit(url)
    params = parse_qs(query, keep_blank_values=True)
    params.pop(key, None)
    return urlunsplit((scheme, netloc, path, urlencode(sorted(params.items()), doseq=True), ""))


def _positive_int(text: str, *, strict: bool = False) -> int:
    value = int(text)
    if value < 0 or (value == 0 and strict):
        raise ValueError(text)
    return value


def _parse_limit(query: Mapping[str, str]) -> int:
    try:
        return _positive_int(query["limit"], strict=True)
    except (KeyError, ValueError):
        return DEFAULT_PAGE_SIZE


def _parse_offset(query: Mapping[str, str]) -> int:
    try:
        return _positive_int(query["offset"])
    except (KeyError, ValueError):
        return 0


def _parse_django_datetime(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    for pattern in _DATETIME_FORMATS:
        try:
            return datetime.strptime(text, pattern)  # naive, like LNDg's
        except ValueError:
            continue
    return None


def _row_datetime(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _row_number(value: object) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _compare(lookup: str, left: Any, right: Any) -> bool:
    if left is None:
        return False  # SQL: NULL compares false
    if lookup == "lt":
        return bool(left < right)
    if lookup == "gt":
        return bool(left > right)
    if lookup == "lte":
        return bool(left <= right)
    if lookup == "gte":
        return bool(left >= right)
    return bool(left == right)


def _check(
    lookup: str, row_field: str, wanted: object, convert: Callable[[Any], Any]
) -> Callable[[dict[str, Any]], bool]:
    """One filter as a row predicate: convert the row's value, then compare with `lookup`."""
    return lambda row: _compare(lookup, convert(row.get(row_field)), wanted)


def _check_either(fields: list[str], wanted: str) -> Callable[[dict[str, Any]], bool]:
    """`Q(a=wanted) | Q(b=wanted)` as a row predicate."""
    return lambda row: any(
        row.get(name) is not None and str(row.get(name)) == wanted for name in fields
    )


class _AwareDatetimeError(Exception):
    """Django on SQLite with USE_TZ=False raises ValueError for aware datetimes: a 500."""


def _filter_rows(
    kind: str, rows: list[dict[str, Any]], query: Mapping[str, str]
) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    errors: dict[str, list[str]] = {}
    checks: list[Callable[[dict[str, Any]], bool]] = []
    for param, (value_kind, row_field, lookup) in _FILTERS[kind].items():
        raw = query.get(param)
        if raw is None:
            continue
        if value_kind == "bool":
            flag = _BOOLEAN_WORDS.get(raw.lower())
            if flag is not None:  # anything else: django-filter's BooleanWidget yields None
                checks.append(_check("exact", row_field, flag, lambda value: value))
            continue
        text = raw.strip()
        if not text:
            continue  # django-filter skips empty values
        if value_kind == "text":
            checks.append(
                _check("exact", row_field, raw, lambda value: None if value is None else str(value))
            )
        elif value_kind == "either":
            # A CharFilter with a method: the form strips the value, then either field may match.
            checks.append(_check_either(row_field.split(), text))
        elif value_kind == "number":
            try:
                number = Decimal(text)
            except InvalidOperation:
                number = None
            if number is None or not number.is_finite():
                errors[param] = ["Enter a number."]
                continue
            checks.append(_check(lookup, row_field, number, _row_number))
        else:
            moment = _parse_django_datetime(text)
            if moment is None:
                errors[param] = ["Enter a valid date/time."]
                continue
            if moment.tzinfo is not None:
                raise _AwareDatetimeError(param)
            checks.append(_check(lookup, row_field, moment, _row_datetime))
    if errors:
        return [], errors
    return [row for row in rows if all(check(row) for check in checks)], {}


def _order_rows(kind: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # LNDg: payments by -creation_date, rebalancer and forwards by -id, channels and settings
    # unordered (insertion order).
    if kind == "payments":
        return sorted(
            rows, key=lambda r: _row_datetime(r.get("creation_date")) or datetime.min, reverse=True
        )
    if kind in ("rebalancer", "forwards"):
        return sorted(rows, key=lambda r: _row_number(r.get("id")) or Decimal(0), reverse=True)
    return rows


def _negotiate(accept: str) -> str | None:
    """DRF's DefaultContentNegotiation over [JSONRenderer, BrowsableAPIRenderer]: 'json'/'html'.

    Media ranges are grouped by specificity (q is ignored, as DRF does); the most specific group
    that any renderer matches wins, JSON first within a group. None means 406.
    """
    groups: dict[int, list[str]] = {}
    for part in accept.split(","):
        pieces = [piece.strip() for piece in part.split(";")]
        media = pieces[0].lower()
        if not media:
            continue
        has_params = any(not piece.startswith("q=") for piece in pieces[1:] if piece)
        if media == "*/*":
            level = 0
        elif media.endswith("/*"):
            level = 1
        else:
            level = 3 if has_params else 2
        groups.setdefault(level, []).append(media)
    if not groups:
        return "json"
    for level in sorted(groups, reverse=True):
        for renderer, name in (("application/json", "json"), ("text/html", "html")):
            for media in groups[level]:
                if media in ("*/*", renderer) or (
                    media.endswith("/*") and renderer.startswith(media[:-1])
                ):
                    return name
    return None


def _decode_basic(header: str, user: str, password: str) -> tuple[bool, str | None]:
    """DRF's BasicAuthentication: (authenticated, failure detail or None)."""
    parts = header.split()
    if not parts or parts[0].lower() != "basic":
        return False, None  # another scheme: Basic auth does not apply
    if len(parts) == 1:
        return False, "Invalid basic header. No credentials provided."
    if len(parts) > 2:
        return False, "Invalid basic header. Credentials string should not contain spaces."
    try:
        decoded = base64.b64decode(parts[1])
        try:
            text = decoded.decode("utf-8")
        except UnicodeDecodeError:
            text = decoded.decode("latin-1")
    except (binascii.Error, ValueError):
        return False, "Invalid basic header. Credentials not correctly base64 encoded."
    given_user, colon, given_password = text.partition(":")
    if not colon:
        return False, "Invalid basic header. Credentials not correctly base64 encoded."
    user_ok = hmac.compare_digest(given_user.encode(), user.encode())
    password_ok = hmac.compare_digest(given_password.encode(), password.encode())
    if user_ok and password_ok:
        return True, None
    return False, "Invalid username/password."


# ---------------------------------------------------------------------------------------------
# The server


class RecordedRequest(NamedTuple):
    """One request the fake received: method, path with query, and whether auth let it in."""

    method: str
    path: str
    authorized: bool


class RecordedReply(NamedTuple):
    """One answer the fake gave: the request's method and path, the status, the body's bytes."""

    method: str
    path: str
    status: int
    body_bytes: int


class _Request(NamedTuple):
    method: str
    target: str
    headers: Mapping[str, str]
    body: bytes
    allowed: bool
    auth_failure: str | None


def _host_allowed(host: str, allowed_hosts: Iterable[str]) -> bool:
    """Django's validate_host: exact names, `*`, and `.example.com` for it and its subdomains."""
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.lower().rstrip(".")
    for pattern in allowed_hosts:
        pattern = pattern.lower()
        if pattern == "*" or pattern == name:
            return True
        if pattern.startswith(".") and (name.endswith(pattern) or name == pattern[1:]):
            return True
    return False


@dataclass
class _Reply:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    trickle: float | None = None  # seconds between body bytes (the "trickle" fault)


def _json_reply(status: int, data: object, **headers: str) -> _Reply:
    # DRF's JSONRenderer: compact separators, UTF-8 without escaping.
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    return _Reply(status, body, "application/json", {"Vary": "Accept", **headers})


def _html_reply(status: int, html: str, **headers: str) -> _Reply:
    return _Reply(status, html.encode(), "text/html; charset=utf-8", dict(headers))


class FakeLndg:
    """LNDg's REST API on 127.0.0.1:<free port>, for tests.

    `channels`, `payments` and `rebalancer` are plain row dicts in the samples' shape (default:
    the captured samples); `forwards` too (default: none, so a node built for a test or the
    demo earns nothing it did not add, e.g. `fake.forwards.append(forward_row(...))`).
    `settings` maps LNDg's setting keys to their text values (default: empty, as on a fresh
    LNDg, so every reader falls back to LNDg's code defaults; `sample_settings()` gives the
    captured ones). Tests may mutate all of them while the server runs, holding `lock` for
    anything more than a single append or assignment. Every request is appended to `requests`.
    """

    def __init__(
        self,
        *,
        channels: list[dict[str, Any]] | None = None,
        payments: list[dict[str, Any]] | None = None,
        rebalancer: list[dict[str, Any]] | None = None,
        forwards: list[dict[str, Any]] | None = None,
        settings: dict[str, str] | None = None,
        user: str = "lndg-admin",
        password: str = "secret",  # noqa: S107 - a loopback stand-in's fixed login
        nologin: bool = False,
        port: int = 0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """`tls`: a server-side SSLContext (certificate loaded) to serve HTTPS, as LNDg does
        behind a reverse proxy with a self-signed certificate."""
        self.channels: list[dict[str, Any]] = sample_channels() if channels is None else channels
        self.payments: list[dict[str, Any]] = sample_payments() if payments is None else payments
        self.rebalancer: list[dict[str, Any]] = (
            sample_rebalances() if rebalancer is None else rebalancer
        )
        self.forwards: list[dict[str, Any]] = [] if forwards is None else forwards
        self.settings: dict[str, str] = {} if settings is None else settings
        self.user = user
        self.password = password
        self.nologin = nologin
        self.requests: list[RecordedRequest] = []
        self.replies: list[RecordedReply] = []  # in the order the answers were made
        self.lock = threading.RLock()
        self.slow_seconds = 5.0
        self.trickle_seconds = 2.0
        # Django's ALLOWED_HOSTS as LNDg's initialize.py writes it (`-ip`, default "*").
        self.allowed_hosts: tuple[str, ...] = ("*",)
        self.error_body: dict[str, Any] = {"detail": "database is locked"}
        self.dropped_fields: tuple[str, ...] = ("capacity",)
        self.fault_count: int | None = None
        # LNDg sets no max_limit; a proxy or a future version may cap pages like this.
        self.max_limit: int | None = None
        self.max_concurrent = 0  # most requests ever in progress at once
        self._fault: str | None = None
        self._in_flight = 0
        self._requested_port = port
        self._tls = tls
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def fault(self) -> str | None:
        """The active fault (one of `FAULTS`) or None."""
        return self._fault

    @fault.setter
    def fault(self, value: str | None) -> None:
        if value is not None and value not in FAULTS:
            raise ValueError(f"unknown fault {value!r}; use one of {sorted(FAULTS)}")
        with self.lock:
            self._fault = value

    def set_fault(self, fault: str | None, count: int | None = None) -> None:
        """Set `fault` and `fault_count` together, so no request sees one without the other."""
        with self.lock:
            self.fault = fault
            self.fault_count = count

    @property
    def port(self) -> int:
        """The bound port; only valid once started."""
        if self._server is None:
            raise RuntimeError("FakeLndg is not running; call start() first")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL like `http://127.0.0.1:PORT` (https with `tls`; no trailing slash)."""
        return f"{'https' if self._tls else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> Self:
        """Bind and serve in a daemon thread; returns self."""
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server(self, ("127.0.0.1", self._requested_port))
        if self._tls is not None:
            # The handshake happens in the handler thread, so one stuck client blocks no other.
            self._server.socket = self._tls.wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False
            )
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"FakeLndg:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and drop open connections (keep-alive ones too), like a killed LNDg."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # wakes handlers sleeping in the "slow" fault
        server.shutdown()
        server.drop_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- request handling --------------------------------------------------------------------

    def _take_fault(self, applies: bool) -> str | None:
        """The fault for this request, consuming one unit of `fault_count` if it applies."""
        with self.lock:
            fault = self._fault
            if fault is None or not applies:
                return None
            if self.fault_count is not None:
                if self.fault_count <= 0:
                    self._fault, self.fault_count = None, None
                    return None
                self.fault_count -= 1
                if self.fault_count == 0:
                    self._fault, self.fault_count = None, None
            return fault

    def _fault_applies(
        self, fault: str | None, method: str, path: str, query: dict[str, str]
    ) -> bool:
        if fault == "fail_after_first_page":
            return (
                method in ("GET", "HEAD")
                and _LIST_ROUTE.match(path) is not None
                and _parse_offset(query) > 0
            )
        if fault == "missing_fields":
            return method in ("GET", "HEAD") and (
                _LIST_ROUTE.match(path) is not None or _DETAIL_ROUTE.match(path) is not None
            )
        return True

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> _Reply:
        """Answer one request the way LNDg would (plus any active fault)."""
        with self.lock:
            self._in_flight += 1
            self.max_concurrent = max(self.max_concurrent, self._in_flight)
        try:
            reply = self._answer(method, target, headers, body)
        finally:
            with self.lock:
                self._in_flight -= 1
        size = 0 if method == "HEAD" else len(reply.body)
        with self.lock:  # logged before the answer is sent: a client never outruns the log
            self.replies.append(RecordedReply(method, target, reply.status, size))
        return reply

    def traffic(self, path: Callable[[str], bool] = lambda _path: True) -> tuple[int, int]:
        """(answers, body bytes) of the logged replies whose path (with query) `path` accepts."""
        with self.lock:
            chosen = [r for r in self.replies if path(r.path)]
        return len(chosen), sum(r.body_bytes for r in chosen)

    def _answer(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> _Reply:
        parts = urlsplit(target)
        path = parts.path
        query = {key: values[-1] for key, values in parse_qs(parts.query, True).items()}
        host = headers.get("host") or f"127.0.0.1:{self.port}"

        authenticated, auth_failure = False, None
        if headers.get("authorization"):
            authenticated, auth_failure = _decode_basic(
                headers["authorization"], self.user, self.password
            )
        allowed = authenticated or (self.nologin and auth_failure is None)
        with self.lock:
            self.requests.append(RecordedRequest(method, target, allowed))

        if not _host_allowed(host, self.allowed_hosts):
            # Django's CommonMiddleware asks for the host before any view runs.
            return _html_reply(400, _HTML_400)
        fault = self._take_fault(self._fault_applies(self._fault, method, path, query))
        if fault == "slow":
            self._stopping.wait(self.slow_seconds)
            fault = None
        if fault in ("500", "fail_after_first_page"):
            return _html_reply(500, _HTML_500)
        if fault == "401":
            return _json_reply(
                401, {"detail": "Invalid username/password."}, **{"WWW-Authenticate": _REALM}
            )
        if fault == "garbage":
            return _html_reply(200, _HTML_GARBAGE)
        if fault == "error_body":
            return _json_reply(200, self.error_body)
        drop = self.dropped_fields if fault == "missing_fields" else ()
        request = _Request(method, target, headers, body, allowed, auth_failure)
        reply = self._route(request, drop)
        if fault == "trickle":
            reply.trickle = self.trickle_seconds
        return reply

    def _route(self, request: _Request, drop: Iterable[str]) -> _Reply:
        """The answer of Django and DRF once the fault (if any) has had its say."""
        method, target, headers, body, allowed, auth_failure = request
        parts = urlsplit(target)
        path = parts.path
        query = {key: values[-1] for key, values in parse_qs(parts.query, True).items()}
        host = headers.get("host") or f"127.0.0.1:{self.port}"

        list_match = _LIST_ROUTE.match(path)
        detail_match = _DETAIL_ROUTE.match(path)
        if path == "/api/" or list_match or detail_match:
            pass
        elif _NO_SLASH_ROUTE.match(path) and method in ("GET", "HEAD"):
            # Django's APPEND_SLASH (CommonMiddleware) answers before the view runs.
            location = path + "/" + (f"?{parts.query}" if parts.query else "")
            return _Reply(301, b"", "text/html; charset=utf-8", {"Location": location})
        else:
            return _html_reply(404, _HTML_404)

        # DRF: content negotiation, then authentication, then the method's handler.
        fmt = query.get("format")
        if fmt is not None and fmt not in ("json", "api"):
            return _json_reply(404, {"detail": "Not found."})
        rendering = fmt or _negotiate(headers.get("accept", "*/*"))
        if rendering == "api":
            rendering = "html"
        if rendering is None:
            return _json_reply(406, {"detail": "Could not satisfy the request Accept header."})
        if auth_failure is not None or not allowed:
            detail = auth_failure or "Authentication credentials were not provided."
            return _json_reply(401, {"detail": detail}, **{"WWW-Authenticate": _REALM})

        if path == "/api/":
            allow: tuple[str, ...] = ("GET", "HEAD", "OPTIONS")
        elif list_match:
            allow = _LIST_METHODS[list_match.group(1)]
        else:
            assert detail_match is not None
            allow = _DETAIL_METHODS[detail_match.group(1)]
        if method not in allow:
            return _json_reply(
                405, {"detail": f'Method "{method}" not allowed.'}, Allow=", ".join(allow)
            )

        base = f"http://{host}"
        reply: _Reply
        if path == "/api/":
            reply = _json_reply(200, {kind: f"{base}/api/{kind}/" for kind in _KINDS})
        elif list_match:
            kind = list_match.group(1)
            if method == "POST":
                reply = _json_reply(501, {"detail": "FakeLndg does not create rebalances."})
            else:
                reply = self._list(kind, target, query, base, drop)
        else:
            assert detail_match is not None
            # Django routes the percent-decoded path: /api/settings/AR-Target%25/ is AR-Target%.
            kind, key = detail_match.group(1), unquote(detail_match.group(2))
            if method == "PUT":
                reply = self._update(kind, key, headers, body, query, base)
            else:
                reply = self._detail(kind, key, query, base, drop)
        if rendering == "html" and reply.content_type == "application/json":
            return _html_reply(reply.status, _browsable_page(kind_title(path), reply.body))
        return reply

    def _collection(self, kind: str) -> list[dict[str, Any]]:
        if kind == "settings":
            # LNDg's LocalSettings table: a text key and a text value per row.
            return [{"key": key, "value": str(value)} for key, value in self.settings.items()]
        rows: list[dict[str, Any]] = getattr(self, kind)
        return rows

    def _present(
        self,
        kind: str,
        row: dict[str, Any],
        base: str,
        query: Mapping[str, str],
        drop: Iterable[str],
    ) -> dict[str, Any]:
        """A row as DRF serialises it: `url` first (from the Host header), then the fields."""
        key = quote(str(row.get(_PRIMARY_KEY[kind])), safe=_URL_SAFE)  # `%` -> `%25`
        url = f"{base}/api/{kind}/{key}/"
        if "format" in query:  # DRF's reverse() keeps the format override
            url = _replace_query_param(url, "format", query["format"])
        shown = {"url": url}
        shown.update((key, value) for key, value in row.items() if key != "url")
        for name in drop:
            shown.pop(name, None)
        return shown

    def _list(
        self, kind: str, target: str, query: dict[str, str], base: str, drop: Iterable[str]
    ) -> _Reply:
        with self.lock:
            rows = copy.deepcopy(self._collection(kind))
        try:
            rows, errors = _filter_rows(kind, rows, query)
        except _AwareDatetimeError:
            return _html_reply(500, _HTML_500)
        if errors:
            return _json_reply(400, errors)
        rows = _order_rows(kind, rows)
        limit, offset = _parse_limit(query), _parse_offset(query)
        if self.max_limit is not None:  # DRF's LimitOffsetPagination.max_limit
            limit = min(limit, self.max_limit)
        count = len(rows)
        page = [] if count == 0 or offset > count else rows[offset : offset + limit]
        # DRF's LimitOffsetPagination.get_next_link / get_previous_link.
        current = base + target
        next_link: str | None = None
        if offset + limit < count:
            next_link = _replace_query_param(
                _replace_query_param(current, "limit", limit), "offset", offset + limit
            )
        previous_link: str | None = None
        if offset > 0:
            with_limit = _replace_query_param(current, "limit", limit)
            previous_link = (
                _remove_query_param(with_limit, "offset")
                if offset - limit <= 0
                else _replace_query_param(with_limit, "offset", offset - limit)
            )
        envelope = {
            "count": count,
            "next": next_link,
            "previous": previous_link,
            "results": [self._present(kind, row, base, query, drop) for row in page],
        }
        return _json_reply(200, envelope, Allow=", ".join(_LIST_METHODS[kind]))

    def _find(self, kind: str, key: str) -> dict[str, Any] | None:
        pk = _PRIMARY_KEY[kind]
        for row in self._collection(kind):
            if str(row.get(pk)) == key:
                return row
        return None

    def _detail(
        self, kind: str, key: str, query: dict[str, str], base: str, drop: Iterable[str]
    ) -> _Reply:
        with self.lock:
            row = self._find(kind, key)
            shown = (
                None if row is None else self._present(kind, copy.deepcopy(row), base, query, drop)
            )
        if shown is None:
            return _json_reply(404, {"detail": "Not found."})
        return _json_reply(200, shown, Allow=", ".join(_DETAIL_METHODS[kind]))

    def _update(
        self,
        kind: str,
        key: str,
        headers: Mapping[str, str],
        body: bytes,
        query: dict[str, str],
        base: str,
    ) -> _Reply:
        if kind != "channels":
            return _json_reply(501, {"detail": "FakeLndg only updates channels."})
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        data: Any
        if content_type == "application/json":
            try:
                data = json.loads(body or b"{}")
            except ValueError as exc:
                return _json_reply(400, {"detail": f"JSON parse error - {exc}"})
        elif content_type in ("application/x-www-form-urlencoded", ""):
            data = {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace"), True).items()}
        else:
            return _json_reply(
                415, {"detail": f'Unsupported media type "{content_type}" in request.'}
            )
        if not isinstance(data, dict):
            return _json_reply(
                200,
                {
                    "non_field_errors": [
                        f"Invalid data. Expected a dictionary, but got {type(data).__name__}."
                    ]
                },
            )
        changes, errors = _validate_channel_update(data)
        with self.lock:
            row = self._find(kind, key)
            if row is None:
                return _json_reply(404, {"detail": "Not found."})
            if errors:
                return _json_reply(200, errors)  # LNDg returns serializer.errors with HTTP 200
            row.update(changes)
            shown = self._present(kind, copy.deepcopy(row), base, query, ())
        return _json_reply(200, shown, Allow=", ".join(_DETAIL_METHODS[kind]))


def kind_title(path: str) -> str:
    """The browsable API page title for a path (e.g. 'Channels List')."""
    match = _LIST_ROUTE.match(path) or _DETAIL_ROUTE.match(path)
    if match is None:
        return "Api Root"
    suffix = "List" if _LIST_ROUTE.match(path) else "Instance"
    return f"{_TITLES[match.group(1)]} {suffix}"


def _browsable_page(title: str, json_body: bytes) -> str:
    content = json_body.decode().replace("&", "&amp;").replace("<", "&lt;")
    return (
        f"<!DOCTYPE html>\n<html>\n<head><title>{title} – Django REST framework</title></head>\n"
        f'<body><div class="response-info"><pre class="prettyprint">{content}</pre></div>'
        "</body>\n</html>\n"
    )


def _validate_channel_update(
    data: Mapping[str, Any],
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """DRF field validation for LNDg's writable channel fields (partial update)."""
    changes: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    for name, value in data.items():
        if name in _WRITABLE_INT:
            if value is None:
                errors[name] = ["This field may not be null."]
                continue
            try:
                if isinstance(value, bool):
                    raise ValueError(name)
                changes[name] = int(re.sub(r"\.0*\s*$", "", str(value)))
            except ValueError:
                errors[name] = ["A valid integer is required."]
        elif name in _WRITABLE_BOOL:
            word = str(value).lower()
            if value is None:
                errors[name] = ["This field may not be null."]
            elif word in _TRUE_WORDS:
                changes[name] = True
            elif word in _FALSE_WORDS:
                changes[name] = False
            else:
                errors[name] = ["Must be a valid boolean."]
        elif name in _WRITABLE_TEXT:
            if value is None:
                errors[name] = ["This field may not be null."]
            elif isinstance(value, bool | dict | list):
                errors[name] = ["Not a valid string."]
            else:
                changes[name] = str(value)
        # Read-only and unknown fields are ignored, as DRF does.
    return changes, errors


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeLndg, address: tuple[str, int]) -> None:
        super().__init__(address, _Handler)
        self.fake = fake
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """Close every open connection, so kept-alive clients see LNDg go away."""
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out and hung up, or refused our certificate, is expected in
        # fault tests, not an error.
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError | ssl.SSLError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like LNDg behind gunicorn/uwsgi
    timeout = 30  # idle keep-alive connections end instead of pinning a thread forever
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read `FakeLndg.requests` instead of stderr."""

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        headers = {key.lower(): value for key, value in self.headers.items()}
        try:
            reply = self.server.fake.handle(method, self.path, headers, body)
        except Exception:
            # A bug in the fake must show, not pass as an LNDg 500.
            traceback.print_exc()
            reply = _html_reply(500, _HTML_500)
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        self.send_header("X-Frame-Options", "DENY")
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if self.server.fake._stopping.is_set():
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if method == "HEAD":
            return
        if reply.trickle is None:
            self.wfile.write(reply.body)
            return
        for index in range(len(reply.body)):
            if index and self.server.fake._stopping.wait(reply.trickle):
                self.close_connection = True
                return
            self.wfile.write(reply.body[index : index + 1])

    def do_GET(self) -> None:
        """Serve GET."""
        self._serve("GET")

    def do_HEAD(self) -> None:
        """Serve HEAD (GET without the body)."""
        self._serve("HEAD")

    def do_POST(self) -> None:
        """Serve POST."""
        self._serve("POST")

    def do_PUT(self) -> None:
        """Serve PUT."""
        self._serve("PUT")

    def do_PATCH(self) -> None:
        """Serve PATCH."""
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        """Serve DELETE."""
        self._serve("DELETE")


# ---------------------------------------------------------------------------------------------
# Process mode


def _load_rows(
    path: str | None, default: Callable[[], list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    if path is None:
        return default()
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    if isinstance(data, dict) and isinstance(data.get("results"), list):
        data = data["results"]
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise SystemExit(f"{path}: expected a list of rows or a DRF envelope with 'results'")
    return data


def _load_settings(path: str | None) -> dict[str, str]:
    if path is None:
        return {}
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    if isinstance(data, dict) and "results" not in data:
        return {str(key): str(value) for key, value in data.items()}
    rows = _load_rows(path, list)
    if not all(isinstance(row.get("key"), str) and "value" in row for row in rows):
        raise SystemExit(f"{path}: expected settings rows with 'key' and 'value'")
    return {row["key"]: str(row["value"]) for row in rows}


def main(argv: list[str] | None = None) -> int:
    """Serve a FakeLndg until SIGTERM/SIGINT; print its URL and write it to --ready-file."""
    parser = argparse.ArgumentParser(prog="python -m sim.lndg", description=__doc__)
    parser.add_argument(
        "--channels", help="JSON list of channel rows or an envelope (default: samples)"
    )
    parser.add_argument(
        "--payments", help="JSON list of payment rows or an envelope (default: samples)"
    )
    parser.add_argument(
        "--rebalancer", help="JSON list of rebalancer rows or an envelope (default: samples)"
    )
    parser.add_argument(
        "--forwards", help="JSON list of forward rows or an envelope (default: none)"
    )
    parser.add_argument(
        "--settings",
        help="JSON object of LNDg settings (key: text value) or a list of {key, value} rows "
        "(default: none, so LNDg's defaults apply)",
    )
    parser.add_argument(
        "--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)"
    )
    parser.add_argument("--user", default="lndg-admin")
    parser.add_argument("--password", default="secret")
    parser.add_argument("--nologin", action="store_true", help="API open without credentials")
    parser.add_argument("--ready-file", help="write the URL here (atomically) once listening")
    args = parser.parse_args(argv)

    fake = FakeLndg(
        channels=_load_rows(args.channels, sample_channels),
        payments=_load_rows(args.payments, sample_payments),
        rebalancer=_load_rows(args.rebalancer, sample_rebalances),
        forwards=_load_rows(args.forwards, list),
        settings=_load_settings(args.settings),
        user=args.user,
        password=args.password,
        nologin=args.nologin,
        port=args.port,
    )
    done = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    fake.start()
    try:
        print(fake.url, flush=True)
        if args.ready_file:
            # Write then rename, so a poller never reads half a URL.
            temporary = f"{args.ready_file}.tmp{os.getpid()}"
            Path(temporary).write_text(fake.url + "\n", encoding="utf-8")
            os.replace(temporary, args.ready_file)
        while not done.wait(0.5):
            pass
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
