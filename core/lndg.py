"""Read channels, payments, forwards, LNDg's own rebalances and its global AR settings from
LNDg's REST API (read-only).

Only the HTTP side lives here; the rows it returns are pure types (core.models.Channel,
core.node_records), so the logic that reads them never imports this adapter.

The contract is /work/shared/contracts/lndg.md. Points that shape this module:

- LNDg runs on SQLite and locks under load: one request at a time per client, a deadline on every
  request (on the whole answer, not on each read, so an LNDg trickling bytes is cut off), and a
  small bounded retry on 5xx, timeouts and dropped connections. Connection refusals are retried
  by httpx's transport (`retries=2`) and then reported at once.
- DRF answers some errors with HTTP 200 and an error body, so every body is checked for the
  pagination envelope; anything else is an `LndgProtocolError`, never an empty list.
- Pagination follows `next` until null, but only its `offset` is taken: the request always goes
  to our own base URL with our own filters, so a `next` naming another host (a reverse proxy's
  internal name) is followed safely and can never receive our credentials.
- A row that does not validate is skipped with a WARNING naming it; the rest are returned and
  the skipped ones are listed on the result (`Fetched.skipped`). Rows came but none could be
  read (channels, forwards) is an `LndgProtocolError`: an LNDg upgrade renamed a field, and
  an empty answer would pass for "nothing to do". A channel whose role field
  (`ar_in_target` with AR on, else `ar_out_target`) is outside 0..100 is kept, takes no role
  (core.pairing) and is named in one WARNING per value, not one per cycle.
- No message, log line or exception text carries the password: credentials travel only in the
  Basic auth header, and any `user:pass@` in the base URL is removed from every URL we use.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import ssl
from collections.abc import Coroutine, Hashable, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

import httpx
from pydantic import BaseModel, SecretStr, ValidationError

from core.models import Channel
from core.node_records import (
    PAYMENT_SUCCEEDED,
    REBALANCE_IN_FLIGHT,
    REBALANCE_PENDING,
    REBALANCE_SUCCEEDED,
    ArSettings,
    ArSettingsError,
    Forward,
    LndgRebalance,
    Payment,
    as_utc,
)
from core.pairing import role_problem
from core.settings import Settings

logger = logging.getLogger(__name__)

CHANNELS_PATH = "/api/channels/"
PAYMENTS_PATH = "/api/payments/"
REBALANCER_PATH = "/api/rebalancer/"
FORWARDS_PATH = "/api/forwards/"
SETTINGS_PATH = "/api/settings/"
DEFAULT_PAGE_SIZE = 10_000
DEFAULT_MAX_PAGES = 1_000
_USER_AGENT = "regolancer-orchestrator"
_MAX_DETAIL = 200
# OpenSSL's words when the other end answers TLS with plain HTTP (versions differ).
_PLAIN_HTTP_SSL_ERRORS = ("wrong version number", "record layer failure", "packet length too long")
# Django's "Bad Request (400)" page (DEBUG off, LNDg's default) and its debug page.
_DJANGO_HOST_REFUSED = ("<h1>Bad Request (400)</h1>", "DisallowedHost")
_ROLES = {"ar_in_target": "target", "ar_out_target": "source"}
_CHAN_ID = re.compile(r"\d{1,20}")


# ---------------------------------------------------------------------------------------------
# Errors


class LndgError(Exception):
    """LNDg could not be read. `str(error)` is one line an operator can act on."""

    def __init__(self, message: str, *, url: str | None = None, status: int | None = None):
        super().__init__(message)
        self.url = url
        self.status = status


class LndgUnreachable(LndgError):
    """No HTTP answer: wrong LNDG_BASE_URL, LNDg down, network or TLS trouble."""


class LndgTimeout(LndgUnreachable):
    """LNDg did not answer within LNDG_TIMEOUT_SECONDS, every try."""


class LndgStopped(LndgError):
    """The client was aborted (shutdown): the request was abandoned or never made."""


class LndgAuthError(LndgError):
    """LNDg refused the credentials, or wants credentials and none are configured."""


class LndgProtocolError(LndgError):
    """The answer is not what LNDg's API gives: wrong URL, error body, malformed envelope."""


class LndgNotFound(LndgProtocolError):
    """LNDg has no row under that key (HTTP 404 on a detail URL, e.g. an unknown chan_id)."""


class LndgServerError(LndgError):
    """LNDg (or a proxy in front of it) answered 5xx on every try."""


class LndgSettingError(LndgError):
    """A global LNDg setting holds a value LNDg's own code cannot read (e.g. AR-MaxFeeRate
    "abc"); the message names the key. Fixed on LNDg's settings page, not here."""


# ---------------------------------------------------------------------------------------------
# Results


T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


class Fetched(list[T]):
    """The rows that validated, in a plain list, plus `skipped`: one line per rejected row.

    A list so callers can iterate and count it directly; `skipped` tells how many rows LNDg
    sent that could not be used (each was also logged at WARNING).
    """

    def __init__(self, items: list[T] | None = None, skipped: list[str] | None = None) -> None:
        super().__init__(items or [])
        self.skipped: list[str] = skipped or []


class ChannelFetch(Fetched[Channel]):
    """What `fetch_channels` returns: the usable channels (also as `.channels`) and `.skipped`."""

    @property
    def channels(self) -> list[Channel]:
        """The channels as a plain list (a copy)."""
        return list(self)


# ---------------------------------------------------------------------------------------------
# Client


def _naive_utc_text(moment: datetime) -> str:
    """LNDg's filter form: naive UTC ISO 8601. A naive input is taken to be UTC already."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.isoformat(timespec="microseconds")


def _strip_userinfo(url: str) -> tuple[str, str | None, str | None]:
    """(url without `user:pass@`, user, password) — the URL is what logs and messages show."""
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at:
        return url, None, None
    user, colon, password = userinfo.partition(":")
    clean = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return clean, unquote(user) or None, unquote(password) if colon else None


def _describe_body(body: object) -> str:
    """The gist of a DRF error body: its `detail`, or `field: message` pairs."""
    if isinstance(body, dict):
        if isinstance(body.get("detail"), str):
            text = str(body["detail"])
        else:
            pairs = []
            for key, value in body.items():
                message = "; ".join(map(str, value)) if isinstance(value, list) else str(value)
                pairs.append(f"{key}: {message}")
            text = ", ".join(pairs)
    else:
        text = str(body)
    text = " ".join(text.split())
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "…"


def _row_name(row: object, key: str, index: int) -> str:
    if isinstance(row, dict):
        value = row.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool):
            text = str(value)
            return text if len(text) <= 70 else text[:69] + "…"
    return f"#{index}"


def _validation_summary(error: ValidationError) -> str:
    # include_input=False: a row's values are never copied into the log line.
    problems = []
    for item in error.errors(include_url=False, include_input=False):
        location = ".".join(str(part) for part in item["loc"]) or "row"
        problems.append(f"{location}: {item['msg']}")
    return "; ".join(problems)


class LndgClient:
    """Async, read-only client for LNDg's REST API; use as `async with LndgClient(...) as c:`.

    Build it with `LndgClient.from_settings(settings)` in the daemon; the constructor takes
    explicit values for tests and tools.
    """

    def __init__(
        self,
        base_url: str,
        *,
        user: str | None = "lndg-admin",
        password: str | SecretStr | None = None,
        verify: bool | str | os.PathLike[str] | ssl.SSLContext = True,
        timeout: float = 15.0,
        page_size: int = DEFAULT_PAGE_SIZE,
        attempts: int = 3,
        backoff: float = 0.5,
        max_pages: int = DEFAULT_MAX_PAGES,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """Prepare a client (no request is made yet).

        `password` None or empty means no Basic auth (LNDg installed with `-nologin`); when the
        URL itself carries `user:pass@`, those are used unless `password` is given. `verify` is
        a bool, a CA file path (a self-signed LNDg certificate) or an SSLContext. `attempts`
        bounds tries on 5xx and timeouts, waiting `backoff`, 2×`backoff`, ... between them.
        Raises LndgError when the URL or CA file cannot be used.
        """
        if page_size < 1 or attempts < 1 or max_pages < 1 or timeout <= 0 or backoff < 0:
            raise ValueError("page_size, attempts, max_pages and timeout must be positive")
        clean_url, url_user, url_password = _strip_userinfo(base_url.strip())
        secret = password.get_secret_value() if isinstance(password, SecretStr) else password
        if not secret and url_password:
            user, secret = url_user or user, url_password
        self._secrets = [s for s in (secret, url_password) if s]
        parts = urlsplit(clean_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise LndgError(
                f"LNDG_BASE_URL {self._scrub(clean_url)!r} is not an http(s) URL; "
                "use e.g. http://localhost:8889"
            )
        self.base_url = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
        if url_password or url_user:
            logger.warning(
                "LNDG_BASE_URL contains credentials; they are sent as Basic auth and hidden "
                "from logs. Prefer LNDG_USER and LNDG_PASS."
            )
        self._user = user or ""
        self._authenticated = bool(secret)
        self._page_size = page_size
        self._attempts = attempts
        self._backoff = backoff
        self._max_pages = max_pages
        self._timeout = timeout
        self._warned_roles: set[tuple[str, str, int]] = set()
        self._aborted = asyncio.Event()
        # LNDg's SQLite locks under concurrent load: one request at a time per client.
        self._lock = asyncio.Lock()
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        if transport is None:
            transport = httpx.AsyncHTTPTransport(
                verify=self._ssl_context(verify), retries=2, limits=limits
            )
        self._http = httpx.AsyncClient(
            transport=transport,
            auth=httpx.BasicAuth(self._user, secret) if secret else None,
            timeout=httpx.Timeout(timeout),
            headers={"Accept": "application/json", "User-Agent": _USER_AGENT},
            follow_redirects=False,  # a redirect means a wrong URL; never replay credentials
        )

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> LndgClient:
        """A client configured from LNDG_* settings; `overrides` go to the constructor."""
        options: dict[str, Any] = {
            "user": settings.lndg_user,
            "password": settings.lndg_pass,
            "verify": settings.lndg_ca_file or settings.lndg_verify_tls,
            "timeout": settings.lndg_timeout_seconds,
        }
        options.update(overrides)
        return cls(settings.lndg_base_url, **options)

    def _ssl_context(
        self, verify: bool | str | os.PathLike[str] | ssl.SSLContext
    ) -> bool | ssl.SSLContext:
        if isinstance(verify, bool | ssl.SSLContext):
            return verify
        try:
            # Only this CA: a self-signed LNDg certificate, not the public ones.
            return ssl.create_default_context(cafile=os.fspath(verify))
        except (OSError, ssl.SSLError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise LndgError(
                f"LNDG_CA_FILE {os.fspath(verify)!s} cannot be used as a CA certificate: {reason}"
            ) from None

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- public reads --------------------------------------------------------------------------

    async def fetch_channels(self) -> ChannelFetch:
        """Open, active, public channels (LNDg filters them), every page.

        Returns a `ChannelFetch`: a list of `Channel` (also `.channels`) whose `skipped` lists
        the rows that failed validation (each logged at WARNING with its chan_id and the
        problem). Raises an LndgError subclass when LNDg cannot be read completely: never a
        partial list. When rows came but none could be read (an LNDg upgrade renamed a field),
        that is an LndgProtocolError too, so the operator is alerted instead of the daemon
        quietly finding nothing to do.
        """
        params = {"is_open": "true", "is_active": "true", "private": "false"}
        rows = await self._fetch_all(CHANNELS_PATH, params)
        parsed = self._parse(rows, Channel, "channel", "chan_id")
        self._require_some(rows, parsed, "channels", CHANNELS_PATH)
        self._warn_role_problems(parsed)
        return ChannelFetch(parsed, parsed.skipped)

    async def fetch_channel(self, chan_id: str) -> Channel:
        """One channel from LNDg's detail endpoint `GET /api/channels/<chan_id>/`.

        LNDg's ChannelsViewSet is a DRF ReadOnlyModelViewSet keyed by chan_id: the detail
        answer is one channel serialised as a row of the list, without the list's filters (a
        closed channel is still there, with `is_open` false). A few hundred bytes instead of
        the whole list, so confirming what a run moved costs LNDg next to nothing.

        Raises `LndgNotFound` when LNDg has no such channel (HTTP 404), `LndgProtocolError`
        when the answer is not a channel row, and the other LndgErrors as `fetch_channels`.
        """
        if not _CHAN_ID.fullmatch(chan_id):
            raise ValueError(f"not a channel id: {chan_id!r}")
        url = f"{self.base_url}{CHANNELS_PATH}{chan_id}/"
        try:
            body = await self._get_json(url, {})
        except LndgProtocolError as exc:
            if exc.status != 404:
                raise
            raise self._fail(
                LndgNotFound,
                f"LNDg at {url} has no channel {chan_id} (HTTP 404): closed and removed, "
                "or this LNDg does not serve channel details",
                url,
                404,
            ) from None
        if not isinstance(body, dict) or "chan_id" not in body:
            # DRF answers some failures with HTTP 200 and an error body.
            raise self._fail(
                LndgProtocolError,
                f"LNDg at {url} answered with something other than a channel: "
                f"{_describe_body(body)}",
                url,
                200,
            )
        try:
            channel = Channel.model_validate(body)
        except ValidationError as exc:
            raise self._fail(
                LndgProtocolError,
                f"LNDg at {url}: channel {chan_id} could not be read "
                f"({_validation_summary(exc)}): is this LNDg version supported?",
                url,
                200,
            ) from None
        if channel.chan_id != chan_id:
            raise self._fail(
                LndgProtocolError,
                f"LNDg at {url} answered with channel {channel.chan_id}, not {chan_id}",
                url,
                200,
            )
        return channel

    def _require_some(self, rows: list[Any], parsed: Fetched[M], what: str, path: str) -> None:
        """Rows came and none validated: a renamed field, not an empty node."""
        if rows and not parsed:
            url = self.base_url + path
            raise self._fail(
                LndgProtocolError,
                f"LNDg at {url} listed {len(rows)} {what} and none could be read "
                f"({parsed.skipped[0]}): is this LNDg version supported?",
                url,
                200,
            )

    def _warn_role_problems(self, channels: list[Channel]) -> None:
        """One WARNING per channel, field and value outside 0..100, while LNDg keeps it."""
        current: set[tuple[str, str, int]] = set()
        for channel in channels:
            problem = role_problem(channel)
            if problem is None:
                continue
            field, value = problem
            key = (channel.chan_id, field, value)
            current.add(key)
            if key not in self._warned_roles:
                logger.warning(
                    "LNDg channel %s (%s): %s %d is outside 0-100; it is not used as a %s "
                    "until fixed in LNDg",
                    channel.label,
                    channel.chan_id,
                    field,
                    value,
                    _ROLES[field],
                )
        # Only what LNDg still holds: a value fixed and broken again is warned again.
        self._warned_roles = current

    async def fetch_payments(self, start: datetime, end: datetime) -> Fetched[Payment]:
        """Succeeded payments created in [start, end], oldest first.

        Naive datetimes are taken as UTC; aware ones are converted (LNDg filters on naive UTC).
        Rows that fail validation are skipped as for channels.
        """
        if end < start:
            raise ValueError("end must not be before start")
        params = {
            "status": str(PAYMENT_SUCCEEDED),
            "creation_date__gte": _naive_utc_text(start),
            "creation_date__lte": _naive_utc_text(end),
        }
        rows = await self._fetch_all(PAYMENTS_PATH, params)
        payments = self._parse(rows, Payment, "payment", "payment_hash")
        payments.sort(key=lambda payment: payment.creation_date)
        return payments

    async def fetch_rebalances(
        self,
        stop_after: datetime | None = None,
        *,
        stop_until: datetime | None = None,
        status: int | None = REBALANCE_SUCCEEDED,
    ) -> Fetched[LndgRebalance]:
        """LNDg's own rebalances that stopped after `stop_after`, by stop time, then id.

        Only the successful ones unless `status` says otherwise (None: every status). LNDg
        only filters `stop__gt`; `stop_until` (inclusive) is applied here. Naive datetimes
        are UTC. Pending (0) and in-flight (1) attempts have no stop yet: ask for them with
        `stop_after` None (no date filter), or use `fetch_open_rebalances`. Rows that fail
        validation are skipped as for channels.
        """
        params: dict[str, str] = {}
        if stop_after is not None:
            params["stop__gt"] = _naive_utc_text(stop_after)
        if status is not None:
            params["status"] = str(status)
        rows = await self._fetch_all(REBALANCER_PATH, params)
        rebalances = self._parse(rows, LndgRebalance, "rebalance", "id")
        if stop_until is not None:
            until = as_utc(stop_until)
            kept = [r for r in rebalances if r.stop is not None and r.stop <= until]
            rebalances = Fetched(kept, rebalances.skipped)
        rebalances.sort(key=lambda r: (r.stop or datetime.min.replace(tzinfo=UTC), r.id))
        return rebalances

    async def fetch_open_rebalances(self) -> Fetched[LndgRebalance]:
        """LNDg's attempts not finished yet: pending (status 0) and in flight (status 1).

        Two reads, `status=0` then `status=1`, oldest id first; an attempt that moved from
        pending to in flight between them is listed once. LNDg keys them by `last_hop_pubkey`
        (the target's peer). Rows that fail validation are skipped as for channels.
        """
        pending = await self.fetch_rebalances(None, status=REBALANCE_PENDING)
        in_flight = await self.fetch_rebalances(None, status=REBALANCE_IN_FLIGHT)
        by_id = {r.id: r for r in pending}
        by_id.update((r.id, r) for r in in_flight)  # the later read is the fresher
        return Fetched(
            sorted(by_id.values(), key=lambda r: r.id), pending.skipped + in_flight.skipped
        )

    async def fetch_forwards(
        self, since: datetime, until: datetime | None = None
    ) -> Fetched[Forward]:
        """Forwards LNDg recorded in [since, until) (no upper bound when `until` is None),
        oldest first; each forward's `fee_sat` is revenue of its `chan_id_out`.

        Half-open, so consecutive windows never count a forward twice. Naive datetimes are
        UTC; aware ones are converted (LNDg filters on naive UTC). Every page is read (a busy
        node forwards thousands a day); a row listed twice across pages is kept once. Rows
        that fail validation are skipped as for channels; none readable at all is an
        `LndgProtocolError`, so a renamed field never reads as a node that earned nothing.
        """
        if until is not None and until < since:
            raise ValueError("until must not be before since")
        params = {"forward_date__gte": _naive_utc_text(since)}
        if until is not None:
            params["forward_date__lt"] = _naive_utc_text(until)
        rows = await self._fetch_all(FORWARDS_PATH, params)
        forwards = self._parse(rows, Forward, "forward", "id")
        self._require_some(rows, forwards, "forwards", FORWARDS_PATH)
        forwards.sort(key=lambda forward: (forward.forward_date, forward.id))
        return forwards

    async def fetch_settings(self) -> ArSettings:
        """LNDg's global AR settings, with LNDg's code defaults for keys it does not hold.

        Raises `LndgSettingError` naming the key when a setting used here is not a whole
        number (LNDg's own rebalancer cannot read it either), and the other LndgErrors when
        LNDg cannot be read. Rows without a text `key` are skipped with a WARNING.
        """
        url = self.base_url + SETTINGS_PATH
        rows = await self._fetch_all(SETTINGS_PATH, {})
        usable: list[Mapping[str, Any]] = []
        for index, row in enumerate(rows):
            if isinstance(row, dict) and isinstance(row.get("key"), str):
                usable.append(row)
            else:
                logger.warning("LNDg setting #%d skipped: not a {key, value} row", index)
        try:
            settings = ArSettings.from_rows(usable)
        except ArSettingsError as exc:
            raise self._fail(LndgSettingError, f"LNDg at {url}: {exc}", url, 200) from None
        if settings.defaulted:
            logger.debug("LNDg holds no %s yet: its defaults apply", ", ".join(settings.defaulted))
        return settings

    # -- plumbing ------------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        """Belt and braces: no configured secret survives into a message."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _fail(
        self, kind: type[LndgError], message: str, url: str, status: int | None = None
    ) -> LndgError:
        return kind(self._scrub(message), url=self._scrub(url), status=status)

    async def _fetch_all(self, path: str, params: Mapping[str, str]) -> list[Any]:
        """Every row of a paginated list, or an LndgError: a failed page fails the whole read."""
        url = self.base_url + path
        rows: list[Any] = []
        offset = 0
        for _page in range(self._max_pages):
            query = {**params, "limit": str(self._page_size)}
            if offset:
                query["offset"] = str(offset)
            body = await self._get_json(url, query)
            results, next_link = self._envelope(body, url)
            rows.extend(results)
            if next_link is None:
                return rows
            offset = self._next_offset(next_link, path, offset, url)
        raise self._fail(
            LndgProtocolError,
            f"LNDg at {url} kept paginating after {self._max_pages} pages; "
            "this does not look like LNDg's API",
            url,
        )

    def _envelope(self, body: object, url: str) -> tuple[list[Any], str | None]:
        if isinstance(body, dict) and isinstance(body.get("results"), list):
            next_link = body.get("next")
            if next_link is None or isinstance(next_link, str):
                return body["results"], next_link or None
        if isinstance(body, dict) and body and "results" not in body:
            # DRF reports some failures with HTTP 200 and an error body.
            raise self._fail(
                LndgProtocolError,
                f"LNDg at {url} answered with an error instead of data: {_describe_body(body)}",
                url,
                200,
            )
        raise self._fail(
            LndgProtocolError,
            f"{url} answered JSON without LNDg's count/next/results envelope: "
            "not an LNDg API? Check LNDG_BASE_URL",
            url,
            200,
        )

    def _next_offset(self, next_link: str, path: str, offset: int, url: str) -> int:
        parts = urlsplit(next_link)
        if not parts.path.endswith(path):
            raise self._fail(
                LndgProtocolError,
                f"LNDg at {url} sent a next-page link to another endpoint ({parts.path})",
                url,
            )
        try:
            next_offset = int(parse_qs(parts.query).get("offset", [""])[-1])
        except ValueError:
            next_offset = -1
        if next_offset <= offset:
            raise self._fail(
                LndgProtocolError,
                f"LNDg at {url} sent a next-page link that does not advance (offset {offset})",
                url,
            )
        if parts.netloc and parts.netloc.rpartition("@")[2] != urlsplit(url).netloc:
            logger.debug("LNDg's next link names another host; following it on %s", url)
        return next_offset

    def abort(self) -> None:
        """Shutdown: every request in flight ends at once with `LndgStopped`, and so does
        every later one; a slow LNDg then holds up neither the daemon's exit nor a command."""
        self._aborted.set()

    async def _get(self, url: str, params: Mapping[str, str]) -> httpx.Response:
        async with self._lock:
            # httpx's timeout is per read: an LNDg trickling its answer a byte at a time
            # would never trip it, so the whole request has the deadline too.
            async with asyncio.timeout(self._timeout):
                return await self._http.get(url, params=params)

    async def _unless_aborted(
        self, request: Coroutine[Any, Any, httpx.Response], url: str
    ) -> httpx.Response:
        stopped = self._fail(LndgStopped, f"LNDg request to {url} abandoned: stopping", url)
        if self._aborted.is_set():
            request.close()
            raise stopped
        answer = asyncio.ensure_future(request)
        aborted = asyncio.ensure_future(self._aborted.wait())
        try:
            await asyncio.wait({answer, aborted}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            aborted.cancel()
            if not answer.done():
                answer.cancel()
                await asyncio.wait({answer})
        if answer.cancelled():
            raise stopped
        return answer.result()

    async def _get_json(self, url: str, params: Mapping[str, str]) -> Any:
        """One GET with the bounded retry; the decoded JSON body, or an LndgError."""
        failure: LndgError | None = None
        for attempt in range(1, self._attempts + 1):
            if attempt > 1:
                await asyncio.sleep(self._backoff * 2 ** (attempt - 2))
            try:
                response = await self._unless_aborted(self._get(url, params), url)
            except (httpx.TimeoutException, TimeoutError):
                failure = self._fail(
                    LndgTimeout,
                    f"LNDg at {url} did not answer within {self._timeout:g}s "
                    f"({attempt} tries): it may be busy or down; check that LNDg is running "
                    "and LNDG_BASE_URL, or raise LNDG_TIMEOUT_SECONDS",
                    url,
                )
                continue
            except httpx.ConnectError as exc:
                # The transport already retried the connection: report it now.
                raise self._unreachable(url, exc) from None
            except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError) as exc:
                # A dropped keep-alive connection or LNDg restarting: worth another try.
                failure = self._fail(
                    LndgUnreachable,
                    f"LNDg at {url} dropped the connection ({type(exc).__name__}): "
                    "check that LNDg is running and LNDG_BASE_URL",
                    url,
                )
                continue
            except httpx.TransportError as exc:
                raise self._unreachable(url, exc) from None
            if response.status_code >= 500:
                failure = self._fail(
                    LndgServerError,
                    f"LNDg at {url} answered HTTP {response.status_code} "
                    f"{response.reason_phrase} {attempt} time(s): check LNDg's logs "
                    "(its database may be locked) and that it is running",
                    url,
                    response.status_code,
                )
                logger.debug("LNDg answered %s on try %d", response.status_code, attempt)
                continue
            return self._decode(response, url)
        assert failure is not None
        raise failure

    def _unreachable(self, url: str, exc: httpx.TransportError) -> LndgError:
        reason = str(exc) or type(exc).__name__
        hint = "check LNDG_BASE_URL and that LNDg is running"
        if url.startswith("https://") and any(
            words in reason.lower() for words in _PLAIN_HTTP_SSL_ERRORS
        ):
            # Certificates have nothing to do with it: no TLS answers on that port at all.
            plain = "http://" + self.base_url.removeprefix("https://")
            hint = f"LNDg speaks plain http there, not https: use {plain} in LNDG_BASE_URL"
        elif "CERTIFICATE_VERIFY_FAILED" in reason or "SSL" in reason:
            hint = "TLS failed: set LNDG_CA_FILE to LNDg's certificate or LNDG_VERIFY_TLS=false"
        return self._fail(LndgUnreachable, f"cannot reach LNDg at {url}: {reason}; {hint}", url)

    def _decode(self, response: httpx.Response, url: str) -> Any:
        status = response.status_code
        detail = ""
        if status >= 300:
            try:
                detail = _describe_body(response.json())
            except ValueError:
                detail = ""
        if status in (401, 403):
            if not self._authenticated:
                message = (
                    f"LNDg at {url} requires a login: set LNDG_USER and LNDG_PASS "
                    "(a default install keeps the password in LNDg's data/lndg-admin.txt)"
                )
            else:
                message = (
                    f"LNDg at {url} rejected the credentials of user {self._user!r} "
                    f"(HTTP {status}: {detail or response.reason_phrase}): "
                    "check LNDG_USER/LNDG_PASS"
                )
            raise self._fail(LndgAuthError, message, url, status)
        if 300 <= status < 400:
            location, _user, _password = _strip_userinfo(response.headers.get("location", "?"))
            raise self._fail(
                LndgProtocolError,
                f"LNDg at {url} redirected (HTTP {status}) to {location}: "
                "set LNDG_BASE_URL to the final address (http vs https, path)",
                url,
                status,
            )
        if status == 404:
            raise self._fail(
                LndgProtocolError,
                f"{url} does not exist (HTTP 404): not an LNDg API? LNDG_BASE_URL should be "
                "LNDg's address, e.g. http://localhost:8889",
                url,
                status,
            )
        if status == 400 and any(mark in response.text for mark in _DJANGO_HOST_REFUSED):
            # Django answers this before LNDg's code runs: the host is not in ALLOWED_HOSTS.
            host = urlsplit(url).hostname or "?"
            raise self._fail(
                LndgProtocolError,
                f"LNDg at {url} refused the host name {host} (HTTP 400 Bad Request from "
                f"Django's ALLOWED_HOSTS): add '{host}' to ALLOWED_HOSTS in LNDg's "
                f"lndg/settings.py (set by `initialize.py -ip`; `-ip {host} -f` rewrites "
                "that file) and restart LNDg",
                url,
                status,
            )
        if status >= 400:
            raise self._fail(
                LndgProtocolError,
                f"LNDg at {url} refused the request (HTTP {status}): "
                f"{detail or response.reason_phrase}",
                url,
                status,
            )
        try:
            return response.json()
        except ValueError:
            kind = response.headers.get("content-type", "no content type").split(";")[0]
            raise self._fail(
                LndgProtocolError,
                f"{url} answered HTTP {status} with {kind}, not JSON: not an LNDg API? "
                "Check LNDG_BASE_URL",
                url,
                status,
            ) from None

    def _parse(self, rows: list[Any], model: type[M], what: str, key: str) -> Fetched[M]:
        """Validate rows into `model`; log and list the ones that fail, drop duplicates."""
        result: Fetched[M] = Fetched()
        seen: set[Hashable] = set()
        for index, row in enumerate(rows):
            name = _row_name(row, key, index)
            try:
                if not isinstance(row, dict):
                    raise TypeError(f"not an object but {type(row).__name__}")
                item = model.model_validate(row)
            except (ValidationError, TypeError) as exc:
                problem = _validation_summary(exc) if isinstance(exc, ValidationError) else str(exc)
                logger.warning("LNDg %s %s skipped: %s", what, name, problem)
                result.skipped.append(f"{what} {name}: {problem}")
                continue
            marker: Hashable = getattr(item, key)
            if marker in seen:
                # Offset pagination over a changing table can repeat a row between pages.
                logger.debug("LNDg %s %s listed twice; kept once", what, name)
                continue
            seen.add(marker)
            result.append(item)
        return result
