"""METRICS_LISTEN: `/metrics` and `/healthz` over plain HTTP, served on the event loop.

Not prometheus_client's `start_http_server`: that answers from a thread of its own, and the
collector reads the state store, whose one SQLite connection the event loop uses for its
transactions (a read from another thread could land inside one of them). Here a scrape is
a short synchronous read between two awaits of the loop, like any other job; and a wedged
loop answers no `/healthz`, which is what a liveness probe should see.

A request is one GET (or HEAD) with a few headers; anything else is refused. Each connection
has REQUEST_SECONDS to send its request and take its answer, so a slow or silent client
holds nothing for long.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

log = logging.getLogger("core.metrics_server")

REQUEST_SECONDS = 10.0
MAX_REQUEST_BYTES = 16_384
_LISTEN = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^\s:\[\]/]+)):(?P<port>\d{1,5})$")


class MetricsError(Exception):
    """METRICS_LISTEN cannot be served; the message says what to change."""


@dataclass(frozen=True, slots=True)
class Listen:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_listen(text: str) -> Listen:
    """`127.0.0.1:9110`, `[::1]:9110` or `localhost:9110`; ValueError saying what is wrong."""
    match = _LISTEN.match(text.strip())
    if match is None:
        if text.count(":") > 1 and re.fullmatch(r"[0-9A-Fa-f:.]+", text.strip()):
            raise ValueError(f"{text!r}: put an IPv6 address in brackets, e.g. [::1]:9110")
        raise ValueError(f"{text!r} is not host:port, e.g. 127.0.0.1:9110")
    port = int(match["port"])
    if not 1 <= port <= 65535:
        raise ValueError(f"{text!r}: the port must be 1-65535")
    return Listen(match["v6"] or match["host"], port)


class Endpoints(Protocol):
    """What the server asks of the running daemon (core.metrics.DaemonCollector)."""

    def health(self) -> tuple[bool, str]: ...


@dataclass(frozen=True, slots=True)
class Answer:
    status: str
    content_type: str
    body: bytes


def _text(status: str, line: str) -> Answer:
    return Answer(status, "text/plain; charset=utf-8", (line + "\n").encode())


class MetricsServer:
    """The listening socket, bound before the daemon starts; answers once attached."""

    def __init__(self, listen: Listen) -> None:
        self.listen = listen
        self._server: asyncio.Server | None = None
        self._registry: CollectorRegistry | None = None
        self._health: Callable[[], tuple[bool, str]] | None = None
        self._failing = False  # a scrape that fails is logged once per episode

    @classmethod
    async def open(cls, text: str) -> MetricsServer:
        """Listen on METRICS_LISTEN; MetricsError (one line) when that is not possible."""
        try:
            listen = parse_listen(text)
        except ValueError as exc:
            raise MetricsError(f"METRICS_LISTEN {exc}") from None
        metrics = cls(listen)
        try:
            metrics._server = await asyncio.start_server(
                metrics._handle, listen.host, listen.port, limit=MAX_REQUEST_BYTES
            )
        except OSError as exc:
            # asyncio words a bind failure at length; the errno's own text is the line.
            if isinstance(exc, socket.gaierror) or exc.errno is None:
                reason = exc.strerror or str(exc)
            else:
                reason = os.strerror(exc.errno)
            raise MetricsError(
                f"METRICS_LISTEN {listen}: cannot listen there ({reason}); free the port or "
                "set another host:port"
            ) from None
        log.info("metrics on http://%s/metrics and /healthz", listen)
        return metrics

    @property
    def port(self) -> int:
        """The bound port (the one asked for)."""
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def attach(self, registry: CollectorRegistry, endpoints: Endpoints) -> None:
        """Start answering from the running daemon (until then: 503, starting)."""
        self._registry = registry
        self._health = endpoints.health

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(REQUEST_SECONDS):
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    return  # closed early, or a request no scraper sends: nothing to answer
                method, target, headers = _parse(head)
                answer = self.answer(method, target, headers)
                writer.write(_response(answer, include_body=method != "HEAD"))
                await writer.drain()
        except (TimeoutError, ConnectionError):
            pass  # the client was too slow or went away: nothing to tell anyone
        finally:
            writer.close()

    def answer(self, method: str, target: str, headers: dict[str, str]) -> Answer:
        """The answer to one request (no I/O besides the figures' own reads)."""
        if not method:
            return _text("400 Bad Request", "not an HTTP request")
        if method not in ("GET", "HEAD"):
            return _text("405 Method Not Allowed", "only GET and HEAD")
        path = target.partition("?")[0]
        if path not in ("/metrics", "/healthz"):
            return _text("404 Not Found", "try /metrics or /healthz")
        if self._registry is None or self._health is None:
            return _text("503 Service Unavailable", "starting")
        if path == "/healthz":
            healthy, line = self._health()
            return _text("200 OK" if healthy else "503 Service Unavailable", line)
        encoder, content_type = choose_encoder(headers.get("accept", ""))
        try:
            body = encoder(self._registry)
        except Exception as exc:  # e.g. the state database unreadable: said, not raised
            if not self._failing:
                log.warning("metrics not read: %s: %s", type(exc).__name__, exc)
            self._failing = True
            return _text("500 Internal Server Error", f"metrics not read: {exc}")
        if self._failing:
            log.info("metrics read again")
        self._failing = False
        return Answer("200 OK", content_type, body)


def _parse(head: bytes) -> tuple[str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    method, target = (parts[0], parts[1]) if len(parts) == 3 else ("", "")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    return method, target, headers


def _response(answer: Answer, *, include_body: bool) -> bytes:
    head = (
        f"HTTP/1.1 {answer.status}\r\n"
        f"Content-Type: {answer.content_type}\r\n"
        f"Content-Length: {len(answer.body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    return head + answer.body if include_body else head
