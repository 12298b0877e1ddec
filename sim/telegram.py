"""Loopback stand-in for the Telegram Bot API, for the tests and the benchmarks.

The daemon under test talks to it through PTB's ``base_url`` (``TELEGRAM_API_BASE_URL``), so
it has to speak the wire protocol the way Telegram does: ``POST /bot<token>/<method>`` with
form, JSON or multipart bodies, ``{"ok": true, "result": ...}`` answers and
``{"ok": false, "error_code": ..., "description": ...}`` failures whose descriptions match
Telegram's, because PTB maps status codes and descriptions to exception types and texts.

Stdlib only: it also runs as a separate process (``python -m sim.telegram``).

Typical use::

    with FakeTelegram("123:ABC") as tg:
        start_daemon(env={"TELEGRAM_API_BASE_URL": tg.url})
        tg.inject_message(chat_id=42, user_id=42, text="/status")
        reply = tg.wait_for_message(chat_id=42, text="balanced")

Fidelity notes: HTML is parsed like tdlib does (same error texts, UTF-8 byte offsets); the
4096/1024 limits count code points of the parsed, trimmed text; a newer getUpdates ends a
waiting one with 409 Conflict; editing without reply_markup drops the inline keyboard and an
identical edit is "message is not modified".

Deliberate simplifications: no entities are computed for outgoing messages (the ``text`` of
a result is the plain text after parsing, like Telegram's); MarkdownV2/Markdown parsing is an
approximation that catches unescaped reserved characters and unclosed markers; updates are
kept forever (no 24 h expiry); webhooks are only recorded, never called.

In process mode, ``POST /_fake/<action>`` with JSON keyword arguments calls the injection and
fault methods (``inject_message``, ``fail_next``, ...); ``GET /_fake/calls`` lists the calls.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import itertools
import json
import logging
import os
import re
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from email.message import Message as _EmailMessage
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = ["ApiError", "Call", "FakeTelegram", "UploadedFile", "main"]

_log = logging.getLogger(__name__)

JSONDict = dict[str, Any]

MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
MAX_CALLBACK_DATA_BYTES = 64

# Form values arrive as strings; these stay strings even when they look like JSON numbers,
# everything else is JSON-decoded (chat_id=42 -> 42, reply_markup={...} -> dict, true -> True).
_STRING_PARAMS = frozenset(
    [
        "text",
        "caption",
        "parse_mode",
        "callback_query_id",
        "inline_query_id",
        "inline_message_id",
        "url",
        "action",
        "language_code",
        "description",
        "short_description",
        "name",
        "title",
        "secret_token",
        "business_connection_id",
        "message_effect_id",
        "next_offset",
        "switch_pm_parameter",
        "file_id",
        "photo",
        "document",
        "emoji",
        "custom_emoji_id",
        "payload",
        "question",
        "explanation",
        "address",
        "first_name",
        "last_name",
        "phone_number",
        "vcard",
    ]
)

_INLINE_BUTTON_ACTIONS = tuple(
    [
        "url",
        "callback_data",
        "web_app",
        "login_url",
        "switch_inline_query",
        "switch_inline_query_current_chat",
        "switch_inline_query_chosen_chat",
        "copy_text",
        "callback_game",
        "pay",
    ]
)

_CHAT_ACTIONS = frozenset(
    [
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    ]
)

# getUpdates without allowed_updates delivers everything except these (Bot API docs).
_NOT_DEFAULT_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})

_NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)
_CONFLICT_POLL = (
    "Conflict: terminated by other getUpdates request; make sure that only one bot instance "
    "is running"
)
_CONFLICT_WEBHOOK = (
    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to "
    "delete the webhook first"
)


class ApiError(Exception):
    """An error answer of the Bot API (``ok: false``)."""

    def __init__(self, status: int, description: str, parameters: JSONDict | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters

    def body(self) -> JSONDict:
        body: JSONDict = {"ok": False, "error_code": self.status, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def _bad_request(message: str) -> ApiError:
    return ApiError(400, f"Bad Request: {message}")


class _DropConnection(Exception):
    """Close the client connection without writing any response."""


@dataclass(frozen=True)
class UploadedFile:
    """One file part of a multipart request."""

    field: str
    filename: str
    content_type: str
    data: bytes = dataclass_field(repr=False)

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class Call:
    """One recorded API request (including failed and fault-injected ones)."""

    method: str  # canonical camelCase name, or the raw path segment if unknown
    params: JSONDict  # nested JSON values decoded; uploaded files live in ``files``
    files: dict[str, UploadedFile]
    time: float  # time.time() when the request arrived
    status: int  # HTTP status answered; 0 if the connection was dropped
    response: JSONDict | None  # JSON body answered (None if dropped)
    http_method: str = "POST"

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def result(self) -> Any:
        return (self.response or {}).get("result")

    def to_json(self) -> JSONDict:
        return {
            "method": self.method,
            "params": self.params,
            "files": {
                k: {"filename": f.filename, "content_type": f.content_type, "size": f.size}
                for k, f in self.files.items()
            },
            "time": self.time,
            "status": self.status,
            "response": self.response,
            "http_method": self.http_method,
        }


@dataclass
class _Fault:
    kind: Literal["error", "drop", "delay"]
    remaining: int
    methods: frozenset[str] | None  # lower-case method names, None = every method
    status: int = 500
    description: str = ""
    parameters: JSONDict | None = None
    delay: float = 0.0

    def matches(self, method: str) -> bool:
        return self.remaining > 0 and (self.methods is None or method.lower() in self.methods)


# --------------------------------------------------------------------------- text parsing


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _parse_error(message: str) -> ApiError:
    return _bad_request(f"can't parse entities: {message}")


def _decode_html_entity(text: str, pos: int) -> tuple[str | None, int]:
    """Decode ``&...`` at ``pos`` like tdlib: only lt/gt/amp/quot and numeric references;
    the ``;`` is optional. Returns (None, pos) when it is not an entity (kept literally)."""
    n = len(text)
    end = pos + 1
    if end < n and text[end] == "#":
        end += 1
        digits = "0123456789"
        base = 10
        if end < n and text[end] == "x":
            end += 1
            digits += "abcdefABCDEF"
            base = 16
        start = end
        while end < n and text[end] in digits:
            end += 1
        if end == start:
            return None, pos
        code = int(text[start:end], base)
        if code == 0 or code >= 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            return None, pos
        char = chr(code)
    else:
        while end < n and text[end].isascii() and text[end].isalpha():
            end += 1
        named = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}.get(text[pos + 1 : end])
        if named is None:
            return None, pos
        char = named
    if end < n and text[end] == ";":
        end += 1
    return char, end


_HTML_TAGS = frozenset(
    [
        "a",
        "b",
        "strong",
        "i",
        "em",
        "s",
        "strike",
        "del",
        "u",
        "ins",
        "tg-spoiler",
        "tg-emoji",
        "span",
        "pre",
        "code",
        "blockquote",
    ]
)


def parse_html(text: str) -> str:
    """Return the plain text of a ``parse_mode=HTML`` string, raising ApiError with
    Telegram's (tdlib's) descriptions for malformed markup."""
    out: list[str] = []
    stack: list[str] = []
    n = len(text)
    i = 0

    def offset(pos: int) -> int:  # Telegram reports UTF-8 byte offsets
        return len(text[:pos].encode("utf-8"))

    def unclosed(begin: int, tag: str | None = None) -> ApiError:
        what = f'Unclosed start tag "{tag}"' if tag else "Unclosed start tag"
        return _parse_error(f"{what} at byte offset {offset(begin)}")

    while i < n:
        char = text[i]
        if char == "&":
            decoded, after = _decode_html_entity(text, i)
            out.append(decoded if decoded is not None else "&")
            i = after if decoded is not None else i + 1
            continue
        if char != "<":
            out.append(char)
            i += 1
            continue

        begin = i
        i += 1
        if i < n and text[i] == "/":
            if not stack:
                raise _parse_error(f"Unexpected end tag at byte offset {offset(begin)}")
            i += 1
            name_start = i
            while i < n and not text[i].isspace() and text[i] != ">":
                i += 1
            end_name = text[name_start:i].lower()
            while i < n and text[i].isspace():
                i += 1
            if i >= n or text[i] != ">":
                raise _parse_error(f"Unclosed end tag at byte offset {offset(begin)}")
            expected = stack.pop()
            if end_name and end_name != expected:
                raise _parse_error(
                    f"Unmatched end tag at byte offset {offset(begin)}, "
                    f'expected "</{expected}>", found "</{end_name}>"'
                )
            i += 1
            continue

        name_start = i
        while i < n and not text[i].isspace() and text[i] != ">":
            i += 1
        if i >= n:
            raise unclosed(begin)
        tag = text[name_start:i].lower()
        if tag not in _HTML_TAGS:
            raise _parse_error(f'Unsupported start tag "{tag}" at byte offset {offset(begin)}')
        attributes: dict[str, str] = {}
        while True:
            while i < n and text[i].isspace():
                i += 1
            if i >= n:
                raise unclosed(begin, tag)
            if text[i] == ">":
                break
            attr_start = i
            while i < n and not text[i].isspace() and text[i] not in "=>":
                i += 1
            attr = text[attr_start:i].lower()
            if not attr:
                raise _parse_error(
                    f'Empty attribute name in the tag "{tag}" at byte offset {offset(begin)}'
                )
            while i < n and text[i].isspace():
                i += 1
            if i >= n:
                raise unclosed(begin, tag)
            if text[i] != "=":
                if tag == "blockquote" and attr == "expandable":
                    attributes[attr] = ""
                    continue
                raise _parse_error(
                    "Expected equal sign in declaration of an attribute of the tag "
                    f'"{tag}" at byte offset {offset(begin)}'
                )
            i += 1
            while i < n and text[i].isspace():
                i += 1
            if i >= n:
                raise unclosed(begin, tag)
            if text[i] not in "'\"":
                token_start = i
                while i < n and (text[i].isalnum() or text[i] in ".-"):
                    i += 1
                if i >= n:
                    raise unclosed(begin, tag)
                if not text[i].isspace() and text[i] != ">":
                    raise _parse_error(
                        f"Unexpected end of name token at byte offset {offset(token_start)}"
                    )
                attributes[attr] = text[token_start:i].lower()
                continue
            quote = text[i]
            i += 1
            value: list[str] = []
            while i < n and text[i] != quote:
                if text[i] == "&":
                    decoded, after = _decode_html_entity(text, i)
                    if decoded is not None:
                        value.append(decoded)
                        i = after
                        continue
                value.append(text[i])
                i += 1
            if i >= n:
                raise unclosed(begin)
            i += 1
            attributes[attr] = "".join(value)
        i += 1  # the '>'
        if tag == "span" and attributes.get("class") != "tg-spoiler":
            raise _parse_error(
                f'Tag "span" must have class "tg-spoiler" at byte offset {offset(begin)}'
            )
        stack.append(tag)

    if stack:
        raise _parse_error(f'Can\'t find end tag corresponding to start tag "{stack[-1]}"')
    return "".join(out)


_MDV2_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")
_MDV2_MARKERS = {"*": "Bold", "_": "Italic", "__": "Underline", "~": "Strikethrough"}


def parse_markdown_v2(text: str) -> str:
    """Approximate ``parse_mode=MarkdownV2``: strips markup and escapes, and rejects what
    Telegram rejects most often (unescaped reserved characters, unclosed markers)."""
    out: list[str] = []
    open_markers: dict[str, int] = {}
    n = len(text)
    i = 0
    in_link = False

    def offset(pos: int) -> int:
        return len(text[:pos].encode("utf-8"))

    while i < n:
        char = text[i]
        if char == "\\" and i + 1 < n and 0 < ord(text[i + 1]) <= 126:
            out.append(text[i + 1])
            i += 2
            continue
        if text.startswith("```", i) or char == "`":
            fence = "```" if text.startswith("```", i) else "`"
            close = text.find(fence, i + len(fence))
            while close != -1 and text[close - 1] == "\\":
                close = text.find(fence, close + 1)
            if close == -1:
                kind = "Pre" if fence == "```" else "Code"
                raise _parse_error(f"Can't find end of {kind} entity at byte offset {offset(i)}")
            body = text[i + len(fence) : close]
            if fence == "```" and "\n" in body:
                first, rest = body.split("\n", 1)
                if first and " " not in first:  # a language tag
                    body = rest
            out.append(re.sub(r"\\([`\\])", r"\1", body))
            i = close + len(fence)
            continue
        marker = (
            "||"
            if text.startswith("||", i)
            else "__"
            if text.startswith("__", i)
            else char
            if char in "*_~"
            else None
        )
        if marker is not None:
            if marker in open_markers:
                del open_markers[marker]
            else:
                open_markers[marker] = i
            i += len(marker)
            continue
        if char == "[" or (char == "!" and text.startswith("![", i)):
            in_link = True
            i += 1 if char == "[" else 2
            continue
        if char == "]" and in_link:
            in_link = False
            i += 1
            if i < n and text[i] == "(":
                close = text.find(")", i)
                if close == -1:
                    raise _parse_error(f"Can't find end of a URL at byte offset {offset(i)}")
                i = close + 1
            continue
        if char == ">" and (i == 0 or text[i - 1] == "\n"):
            i += 1
            continue
        if char in _MDV2_RESERVED:
            raise _parse_error(
                f"Character '{char}' is reserved and must be escaped with the preceding '\\'"
            )
        out.append(char)
        i += 1
    if open_markers:
        marker, pos = min(open_markers.items(), key=lambda item: item[1])
        kind = _MDV2_MARKERS.get(marker, "Spoiler")
        raise _parse_error(f"Can't find end of {kind} entity at byte offset {offset(pos)}")
    return "".join(out)


def parse_markdown(text: str) -> str:
    """Approximate legacy ``parse_mode=Markdown`` (``*bold*``, ``_italic_``, `` `code` ``,
    ``[text](url)``)."""
    out: list[str] = []
    n = len(text)
    i = 0
    while i < n:
        char = text[i]
        if char == "\\" and i + 1 < n and text[i + 1] in "_*`[":
            out.append(text[i + 1])
            i += 2
            continue
        if char in "*_`" or char == "[":
            fence = "```" if text.startswith("```", i) else ("]" if char == "[" else char)
            start = i + (3 if fence == "```" else 1)
            close = text.find(fence, start)
            if close == -1:
                offset = len(text[:i].encode("utf-8"))
                raise _parse_error(f"Can't find end of the entity starting at byte offset {offset}")
            out.append(text[start:close])
            i = close + len(fence)
            if fence == "]" and i < n and text[i] == "(":
                end = text.find(")", i)
                i = end + 1 if end != -1 else n
            continue
        out.append(char)
        i += 1
    return "".join(out)


def plain_text(text: str, parse_mode: str | None) -> str:
    """The text Telegram would store: markup parsed away, surrounding whitespace trimmed."""
    mode = (parse_mode or "").lower()
    if mode == "html":
        parsed = parse_html(text)
    elif mode == "markdownv2":
        parsed = parse_markdown_v2(text)
    elif mode == "markdown":
        parsed = parse_markdown(text)
    elif mode == "":
        parsed = text
    else:
        raise _bad_request("unsupported parse_mode")
    return parsed.strip()


_COMMAND_RE = re.compile(r"(?<!\S)/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?(?![A-Za-z0-9_@/])")
_MENTION_RE = re.compile(r"(?<![\w@])@[A-Za-z0-9_]{5,32}(?![\w@])")


def detect_entities(text: str) -> list[JSONDict]:
    """Entities Telegram adds to incoming text: bot commands and @mentions (UTF-16 units)."""
    found: list[tuple[int, int, str]] = []
    for regex, kind in ((_COMMAND_RE, "bot_command"), (_MENTION_RE, "mention")):
        found += [(m.start(), m.end(), kind) for m in regex.finditer(text)]
    return [
        {
            "offset": _utf16_len(text[:start]),
            "length": _utf16_len(text[start:end]),
            "type": kind,
        }
        for start, end, kind in sorted(found)
    ]


# --------------------------------------------------------------------------- request parsing


def _decode_param(name: str, value: Any) -> Any:
    if not isinstance(value, str) or name in _STRING_PARAMS:
        return value
    stripped = value.strip()
    if not stripped or stripped[0] not in '{["-0123456789tfn':
        return value
    try:
        decoded = json.loads(stripped)
    except ValueError:
        return value
    return value if isinstance(decoded, str) else decoded


def _parse_multipart(
    body: bytes, content_type: str
) -> tuple[dict[str, str], dict[str, UploadedFile]]:
    header = _EmailMessage()
    header["content-type"] = content_type
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise _bad_request("multipart boundary is missing")
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    fields: dict[str, str] = {}
    files: dict[str, UploadedFile] = {}
    # Prefix CRLF so the first delimiter looks like the others.
    for part in (b"\r\n" + body).split(delimiter)[1:]:
        if part.startswith(b"--"):
            break
        head, sep, content = part.partition(b"\r\n\r\n")
        if not sep:
            continue
        headers = _EmailMessage()
        for line in head.decode("utf-8", "replace").split("\r\n"):
            name, colon, value = line.partition(":")
            if colon:
                headers[name.strip()] = value.strip()
        field_name = headers.get_param("name", header="content-disposition")
        filename = headers.get_param("filename", header="content-disposition")
        if not isinstance(field_name, str):
            continue
        if isinstance(filename, str):
            files[field_name] = UploadedFile(
                field=field_name,
                filename=filename,
                content_type=headers.get("content-type", "application/octet-stream"),
                data=content,
            )
        else:
            fields[field_name] = content.decode("utf-8", "replace")
    return fields, files


def _parse_body(body: bytes, content_type: str) -> tuple[dict[str, Any], dict[str, UploadedFile]]:
    ctype = content_type.split(";", 1)[0].strip().lower()
    if not body:
        return {}, {}
    if ctype == "multipart/form-data":
        fields, files = _parse_multipart(body, content_type)
        return dict(fields), files
    if ctype == "application/json":
        try:
            data = json.loads(body)
        except ValueError:
            raise _bad_request("can't parse JSON body") from None
        if not isinstance(data, dict):
            raise _bad_request("JSON body must be an object")
        return data, {}
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)), {}


def _image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height of PNG/JPEG/GIF/WebP/BMP data, None if not an image."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return int(width), int(height)
    if data.startswith(b"BM") and len(data) >= 26:
        width, height = struct.unpack("<ii", data[18:26])
        return abs(int(width)), abs(int(height))
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return 512, 512  # dimensions need a VP8 decoder; good enough for a fake
    if data.startswith(b"\xff\xd8"):
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                i += 1
                continue
            marker = data[i + 1]
            if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD):
                height, width = struct.unpack(">HH", data[i + 5 : i + 9])
                return int(width), int(height)
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                i += 2
                continue
            (length,) = struct.unpack(">H", data[i + 2 : i + 4])
            i += 2 + int(length)
    return None


# --------------------------------------------------------------------------- HTTP plumbing


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], fake: FakeTelegram) -> None:
        self.fake = fake
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A bot that exits (or is killed) mid long-poll hangs up: expected, not an error.
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 so httpx keeps connections alive like it does with api.telegram.org.
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.fake._track_connection(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.fake._track_connection(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("fake telegram: " + format, *args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self, http_method: str) -> None:
        fake = self.server.fake
        try:
            body = self._read_body()
            status, content_type, payload = fake._handle_http(
                http_method, self.path, self.headers.get("Content-Type", ""), body
            )
        except _DropConnection:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except OSError:  # the client gave up (e.g. a cancelled long poll)
            self.close_connection = True


def _json_bytes(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


# --------------------------------------------------------------------------- the fake


class FakeTelegram:
    """In-process fake of the Telegram Bot API (see module docstring).

    All state is guarded by one re-entrant Condition, so it is safe to inject updates and
    inspect calls from test threads while handler threads serve the daemon.
    """

    def __init__(
        self,
        token: str = "123456789:TEST-token-for-the-fake-telegram-api",  # noqa: S107 - a test token
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        bot_username: str = "regolancer_test_bot",
        bot_first_name: str = "Regolancer Test Bot",
        known_chats: Iterable[int] | None = None,
        max_long_poll: float | None = None,
        validate_photos: bool = True,
    ) -> None:
        self.token = token
        head = token.split(":", 1)[0]
        self.bot_id = int(head) if head.isdigit() else 123456789
        self.bot_username = bot_username
        self.bot_first_name = bot_first_name
        # None = any chat id is accepted; otherwise unknown ids get "chat not found".
        # Chats that sent an injected update are always known.
        self.known_chats: set[int] | None = set(known_chats) if known_chats is not None else None
        # Caps getUpdates' wait (seconds), e.g. to make daemon shutdown faster in tests.
        self.max_long_poll = max_long_poll
        # Reject photos that are not PNG/JPEG/GIF/WebP/BMP, like Telegram does.
        self.validate_photos = validate_photos
        self.host = host

        self._cond = threading.Condition(threading.RLock())
        self._port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._state: Literal["stopped", "up", "refusing", "dropping"] = "stopped"

        self._calls: list[Call] = []
        self._faults: list[_Fault] = []
        self._token_rejected = False  # reject_token(): 401 to every method
        self._migrated: dict[int, int] = {}  # migrate_chat(): old chat id -> supergroup id
        self._kicked: set[int] = set()  # kick_bot(): groups the bot was removed from
        self._chats: dict[int, JSONDict] = {}
        self._next_message_id: dict[int, int] = {}
        self._messages: dict[tuple[int, int], JSONDict] = {}
        self._last_user_message: dict[tuple[int, int], int] = {}
        self._updates: list[JSONDict] = []
        self._injected: dict[int, JSONDict] = {}
        self._next_update_id = 100_000_001
        self._allowed_updates: list[str] = []
        self._poll_generation = 0
        self._polls_waiting = 0
        self._webhook: JSONDict = {}
        self._commands: dict[tuple[str, str], list[JSONDict]] = {}
        self._pending_callbacks: dict[str, JSONDict] = {}
        self._pending_inline: dict[str, JSONDict] = {}
        self._files: dict[str, tuple[str, UploadedFile]] = {}
        self._ids = itertools.count(1)

        self._methods: dict[str, tuple[str, Callable[[JSONDict, dict[str, UploadedFile]], Any]]]
        self._methods = {
            name.lower(): (name, handler)
            for name, handler in {
                "getMe": self._m_get_me,
                "logOut": self._m_true,
                "close": self._m_true,
                "getUpdates": self._m_get_updates,
                "setWebhook": self._m_set_webhook,
                "deleteWebhook": self._m_delete_webhook,
                "getWebhookInfo": self._m_get_webhook_info,
                "setMyCommands": self._m_set_my_commands,
                "getMyCommands": self._m_get_my_commands,
                "deleteMyCommands": self._m_delete_my_commands,
                "setMyDescription": self._m_true,
                "setMyShortDescription": self._m_true,
                "setMyName": self._m_true,
                "setChatMenuButton": self._m_true,
                "getChatMenuButton": lambda p, f: {"type": "commands"},
                "sendMessage": self._m_send_message,
                "sendPhoto": self._m_send_photo,
                "sendDocument": self._m_send_document,
                "editMessageText": self._m_edit_message_text,
                "editMessageCaption": self._m_edit_message_caption,
                "editMessageReplyMarkup": self._m_edit_message_reply_markup,
                "deleteMessage": self._m_delete_message,
                "pinChatMessage": self._m_pin,
                "unpinChatMessage": self._m_pin,
                "answerCallbackQuery": self._m_answer_callback_query,
                "answerInlineQuery": self._m_answer_inline_query,
                "sendChatAction": self._m_send_chat_action,
                "getChat": self._m_get_chat,
                "getFile": self._m_get_file,
            }.items()
        }

    # ------------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """Base URL for PTB's ``base_url`` (PTB appends ``<token>/<method>``)."""
        return f"http://{self.host}:{self._port}/bot"

    @property
    def file_url(self) -> str:
        """Base URL for PTB's ``base_file_url``."""
        return f"http://{self.host}:{self._port}/file/bot"

    @property
    def control_url(self) -> str:
        """Base URL of the test-control endpoints used in process mode."""
        return f"http://{self.host}:{self._port}/_fake"

    def start(self) -> FakeTelegram:
        with self._cond:
            if self._state != "stopped":
                return self
            self._listen()
            self._state = "up"
        return self

    def stop(self) -> None:
        with self._cond:
            self._state = "stopped"
            self._cond.notify_all()  # wake long polls so they drop their connections
        self._close_listener()
        self._close_connections()

    def __enter__(self) -> FakeTelegram:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def go_down(self, mode: Literal["refuse", "drop"] = "refuse") -> None:
        """Simulate an outage until come_back().

        ``refuse``: stop listening (connection refused); ``drop``: accept and read requests
        but close the connection without answering. Open keep-alive connections and
        pending long polls are cut in both modes.
        """
        with self._cond:
            if self._state == "stopped":
                raise RuntimeError("FakeTelegram is not started")
            self._state = "refusing" if mode == "refuse" else "dropping"
            self._cond.notify_all()
        if mode == "refuse":
            self._close_listener()
        self._close_connections()

    def come_back(self) -> None:
        """End an outage; the server listens on the same port again."""
        with self._cond:
            if self._state == "refusing":
                self._listen()
            if self._state != "stopped":
                self._state = "up"

    @property
    def down(self) -> bool:
        return self._state in ("refusing", "dropping")

    @down.setter
    def down(self, value: bool) -> None:
        if value:
            self.go_down()
        else:
            self.come_back()

    def _listen(self) -> None:
        deadline = time.monotonic() + 5
        while True:
            try:
                server = _Server((self.host, self._port), self)
                break
            except OSError:
                # Re-binding the same port right after closing it can briefly fail.
                if not self._port or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self._server = server
        self._port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-telegram:{self._port}",
            daemon=True,
        )
        self._thread.start()

    def _close_listener(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def _track_connection(self, conn: socket.socket, *, add: bool) -> None:
        with self._cond:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def _close_connections(self) -> None:
        with self._cond:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    # ------------------------------------------------------------------ recording

    @property
    def calls(self) -> list[Call]:
        """Snapshot of every recorded request, oldest first."""
        with self._cond:
            return list(self._calls)

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method.lower() == method.lower()]

    def mark(self) -> int:
        """Index to pass as ``since=`` to only consider calls made after this point."""
        with self._cond:
            return len(self._calls)

    def clear(self) -> None:
        """Forget recorded calls (chat, update and message state is kept)."""
        with self._cond:
            self._calls.clear()

    def sent_messages(self, chat_id: int | str | None = None) -> list[JSONDict]:
        """Results of successful sendMessage/sendPhoto/sendDocument calls, oldest first."""
        out = []
        for call in self.calls:
            if call.ok and call.method in ("sendMessage", "sendPhoto", "sendDocument"):
                message = call.result
                if chat_id is None or message["chat"]["id"] == chat_id:
                    out.append(message)
        return out

    def message(self, chat_id: int, message_id: int) -> JSONDict | None:
        """Current state of a stored message (after edits), None if unknown or deleted."""
        with self._cond:
            stored = self._messages.get((chat_id, message_id))
            return copy.deepcopy(stored) if stored is not None else None

    def wait_for(
        self,
        predicate: Callable[[Call], bool] | str,
        timeout: float = 5.0,
        *,
        since: int = 0,
    ) -> Call:
        """Block until a recorded call (index >= since) matches; a str matches the method.

        Raises TimeoutError listing the methods seen, to make failures readable.
        """
        if isinstance(predicate, str):
            method = predicate.lower()
            predicate = lambda call: call.method.lower() == method  # noqa: E731
        deadline = time.monotonic() + timeout
        index = since
        with self._cond:
            while True:
                index = min(index, len(self._calls))  # clear() may have shrunk the list
                for call in self._calls[index:]:
                    if predicate(call):
                        return call
                index = len(self._calls)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [c.method for c in self._calls[since:]]
                    raise TimeoutError(f"no matching call within {timeout}s; calls: {seen}")
                self._cond.wait(remaining)

    async def wait_for_async(
        self,
        predicate: Callable[[Call], bool] | str,
        timeout: float = 5.0,  # noqa: ASYNC109 - the same signature as wait_for()
        *,
        since: int = 0,
    ) -> Call:
        """wait_for() without blocking the event loop (for tests running PTB in-process)."""
        return await asyncio.to_thread(self.wait_for, predicate, timeout, since=since)

    def wait_for_message(
        self,
        chat_id: int | None = None,
        *,
        text: str | None = None,
        timeout: float = 5.0,
        since: int = 0,
    ) -> JSONDict:
        """Block until the bot sent a message (to chat_id, containing text in its text or
        caption) and return the resulting Message dict."""

        def matches(call: Call) -> bool:
            if not call.ok or call.method not in ("sendMessage", "sendPhoto", "sendDocument"):
                return False
            message = call.result
            if chat_id is not None and message["chat"]["id"] != chat_id:
                return False
            body = message.get("text") or message.get("caption") or ""
            return text is None or text in body

        result: JSONDict = self.wait_for(matches, timeout, since=since).result
        return result

    @property
    def polls_waiting(self) -> int:
        """Number of getUpdates requests currently being served (long polling)."""
        with self._cond:
            return self._polls_waiting

    def wait_for_poller(self, timeout: float = 10.0) -> None:
        """Block until some client is inside getUpdates, i.e. the bot is polling and an
        injected update will be picked up right away."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._polls_waiting == 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no getUpdates request within {timeout}s")
                self._cond.wait(remaining)

    # ------------------------------------------------------------------ faults

    @staticmethod
    def _methods_set(method: str | Iterable[str] | None) -> frozenset[str] | None:
        if method is None:
            return None
        names = [method] if isinstance(method, str) else list(method)
        return frozenset(name.lower() for name in names)

    def fail_next(
        self,
        n: int = 1,
        status: int = 500,
        *,
        method: str | Iterable[str] | None = None,
        description: str | None = None,
    ) -> None:
        """Answer the next n API calls (optionally only to ``method``) with an error."""
        if description is None:
            try:
                description = HTTPStatus(status).phrase
            except ValueError:
                description = "Error"
        with self._cond:
            self._faults.append(_Fault("error", n, self._methods_set(method), status, description))

    def rate_limit_next(
        self, n: int = 1, retry_after: int = 1, *, method: str | Iterable[str] | None = None
    ) -> None:
        """Answer the next n API calls with 429 Too Many Requests + retry_after."""
        with self._cond:
            self._faults.append(
                _Fault(
                    "error",
                    n,
                    self._methods_set(method),
                    429,
                    f"Too Many Requests: retry after {retry_after}",
                    {"retry_after": retry_after},
                )
            )

    def drop_next(self, n: int = 1, *, method: str | Iterable[str] | None = None) -> None:
        """Close the connection of the next n API calls without answering."""
        with self._cond:
            self._faults.append(_Fault("drop", n, self._methods_set(method)))

    def delay_next(
        self, n: int = 1, seconds: float = 1.0, *, method: str | Iterable[str] | None = None
    ) -> None:
        """Answer the next n API calls normally, but only after ``seconds``."""
        with self._cond:
            self._faults.append(_Fault("delay", n, self._methods_set(method), delay=seconds))

    def reject_token(self) -> None:
        """Answer every Bot API method with 401 Unauthorized, as Telegram does once the token
        was revoked in @BotFather; until ``clear_faults``."""
        with self._cond:
            self._token_rejected = True

    def migrate_chat(self, chat_id: int, to_chat_id: int = -100123) -> None:
        """The group ``chat_id`` was upgraded to the supergroup ``to_chat_id``: every method
        addressing the old id answers 400 with ``migrate_to_chat_id``; until ``clear_faults``."""
        with self._cond:
            self._migrated[chat_id] = to_chat_id

    def kick_bot(self, chat_id: int) -> None:
        """The bot was removed from the group ``chat_id``: every method addressing it answers
        403 ``Forbidden: bot was kicked from the <type> chat``; until ``clear_faults``."""
        if chat_id > 0:
            raise ValueError("only a group, supergroup or channel can kick the bot")
        with self._cond:
            self._kicked.add(chat_id)

    def clear_faults(self) -> None:
        with self._cond:
            self._faults.clear()
            self._token_rejected = False
            self._migrated.clear()
            self._kicked.clear()

    def _take_fault(self, method: str) -> _Fault | None:
        with self._cond:
            for fault in self._faults:
                if fault.matches(method):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    # ------------------------------------------------------------------ chats & users

    def add_chat(
        self,
        chat_id: int,
        *,
        chat_type: Literal["private", "group", "supergroup", "channel"] | None = None,
        title: str | None = None,
        username: str | None = None,
        first_name: str | None = None,
    ) -> JSONDict:
        """Register (or update) a chat so it is known and has realistic fields."""
        with self._cond:
            return copy.deepcopy(
                self._ensure_chat(
                    chat_id, chat_type, title=title, username=username, first_name=first_name
                )
            )

    def _ensure_chat(
        self,
        chat_id: int,
        chat_type: str | None = None,
        *,
        title: str | None = None,
        username: str | None = None,
        first_name: str | None = None,
    ) -> JSONDict:
        chat = self._chats.get(chat_id)
        if chat is None or (chat_type and chat["type"] != chat_type):
            chat = self._synthesize_chat(chat_id, chat_type)
            self._chats[chat_id] = chat
        if title and chat["type"] != "private":
            chat["title"] = title
        if first_name and chat["type"] == "private":
            chat["first_name"] = first_name
        if username:
            chat["username"] = username
        return chat

    @staticmethod
    def _synthesize_chat(chat_id: int, chat_type: str | None) -> JSONDict:
        if chat_type is None:
            if chat_id > 0:
                chat_type = "private"
            else:
                chat_type = "supergroup" if chat_id <= -1_000_000_000_000 else "group"
        if chat_type == "private":
            return {"id": chat_id, "first_name": f"User{chat_id}", "type": "private"}
        return {"id": chat_id, "title": f"Test {chat_type} {chat_id}", "type": chat_type}

    def _user(
        self, user_id: int, username: str | None = None, first_name: str | None = None
    ) -> JSONDict:
        user: JSONDict = {
            "id": user_id,
            "is_bot": False,
            "first_name": first_name or f"User{user_id}",
            "language_code": "en",
        }
        if username:
            user["username"] = username
        return user

    def _bot_user(self) -> JSONDict:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": self.bot_first_name,
            "username": self.bot_username,
        }

    def _resolve_chat(self, params: JSONDict) -> JSONDict:
        raw = params.get("chat_id")
        if raw is None or raw == "":
            raise _bad_request("chat_id is empty")
        if isinstance(raw, str):
            if raw.startswith("@"):
                for chat in self._chats.values():
                    if chat.get("username", "").lower() == raw[1:].lower():
                        return chat
            raise _bad_request("chat not found")
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise _bad_request("chat not found")
        if raw in self._migrated:
            raise ApiError(
                400,
                "Bad Request: group chat was upgraded to a supergroup chat",
                {"migrate_to_chat_id": self._migrated[raw]},
            )
        if raw in self._kicked:
            kind = self._chats[raw]["type"] if raw in self._chats else "group"
            raise ApiError(403, f"Forbidden: bot was kicked from the {kind} chat")
        if raw in self._chats:
            return self._chats[raw]
        if self.known_chats is not None and raw not in self.known_chats:
            raise _bad_request("chat not found")
        return self._ensure_chat(raw)

    def _alloc_message_id(self, chat_id: int) -> int:
        message_id = self._next_message_id.get(chat_id, 1)
        self._next_message_id[chat_id] = message_id + 1
        return message_id

    # ------------------------------------------------------------------ injection

    def _enqueue(self, payload: JSONDict) -> int:
        with self._cond:
            update_id = self._next_update_id
            self._next_update_id += 1
            update = {"update_id": update_id, **copy.deepcopy(payload)}
            self._updates.append(update)
            self._injected[update_id] = update
            self._cond.notify_all()
            return update_id

    def inject_update(self, payload: JSONDict) -> int:
        """Queue an arbitrary update (``update_id`` is assigned); returns the update_id."""
        payload = {k: v for k, v in payload.items() if k != "update_id"}
        return self._enqueue(payload)

    def update(self, update_id: int) -> JSONDict:
        """The update injected under ``update_id`` (e.g. to read a callback query id)."""
        with self._cond:
            return copy.deepcopy(self._injected[update_id])

    @property
    def pending_updates(self) -> list[JSONDict]:
        """Updates not yet confirmed by a getUpdates offset."""
        with self._cond:
            return copy.deepcopy(self._updates)

    def inject_message(
        self,
        chat_id: int,
        user_id: int,
        text: str,
        *,
        chat_type: Literal["private", "group", "supergroup"] | None = None,
        username: str | None = None,
        first_name: str | None = None,
        title: str | None = None,
        reply_to_message_id: int | None = None,
    ) -> int:
        """A user sends ``text`` (commands get a bot_command entity); returns the update_id."""
        with self._cond:
            message = self._user_message(
                chat_id, user_id, text, chat_type, username, first_name, title
            )
            if reply_to_message_id is not None:
                target = self._messages.get((chat_id, reply_to_message_id))
                if target is not None:
                    message["reply_to_message"] = self._reply_copy(target)
            self._messages[(chat_id, message["message_id"])] = message
            self._last_user_message[(chat_id, user_id)] = message["message_id"]
            return self._enqueue({"message": message})

    def inject_edited_message(
        self,
        chat_id: int,
        user_id: int,
        text: str,
        *,
        message_id: int | None = None,
        chat_type: Literal["private", "group", "supergroup"] | None = None,
        username: str | None = None,
        first_name: str | None = None,
    ) -> int:
        """The user edits a message (default: their last injected one in this chat)."""
        with self._cond:
            if message_id is None:
                message_id = self._last_user_message.get((chat_id, user_id))
            original = self._messages.get((chat_id, message_id)) if message_id else None
            if original is None:
                message = self._user_message(
                    chat_id, user_id, text, chat_type, username, first_name, None
                )
            else:
                message = copy.deepcopy(original)
                message["text"] = text
                message.pop("entities", None)
                if entities := detect_entities(text):
                    message["entities"] = entities
            message["edit_date"] = max(int(time.time()), message["date"])
            self._messages[(chat_id, message["message_id"])] = message
            return self._enqueue({"edited_message": message})

    def inject_channel_post(
        self,
        chat_id: int,
        text: str,
        *,
        title: str | None = None,
        username: str | None = None,
        author_signature: str | None = None,
    ) -> int:
        """A post appears in a channel the bot administers."""
        with self._cond:
            chat = self._ensure_chat(chat_id, "channel", title=title, username=username)
            message: JSONDict = {
                "message_id": self._alloc_message_id(chat_id),
                "sender_chat": copy.deepcopy(chat),
                "chat": copy.deepcopy(chat),
                "date": int(time.time()),
                "text": text,
            }
            if author_signature:
                message["author_signature"] = author_signature
            if entities := detect_entities(text):
                message["entities"] = entities
            self._messages[(chat_id, message["message_id"])] = message
            return self._enqueue({"channel_post": message})

    def inject_callback_query(
        self,
        chat_id: int,
        user_id: int,
        data: str,
        *,
        message_id: int | None = None,
        username: str | None = None,
        first_name: str | None = None,
    ) -> int:
        """The user presses an inline button of a bot message (default: the bot's latest
        message in the chat). An unknown message_id yields an InaccessibleMessage."""
        with self._cond:
            chat = self._ensure_chat(chat_id)
            if message_id is None:
                own = [
                    mid
                    for (cid, mid), msg in self._messages.items()
                    if cid == chat_id and msg.get("from", {}).get("id") == self.bot_id
                ]
                if not own:
                    raise ValueError(f"the bot has not sent a message to chat {chat_id}")
                message_id = max(own)
            stored = self._messages.get((chat_id, message_id))
            message = (
                copy.deepcopy(stored)
                if stored is not None
                else {"chat": copy.deepcopy(chat), "message_id": message_id, "date": 0}
            )
            query_id = str(4_000_000_000_000_000 + next(self._ids))
            query: JSONDict = {
                "id": query_id,
                "from": self._user(user_id, username, first_name),
                "message": message,
                "chat_instance": str(abs(hash((self.bot_id, chat_id))) % 10**18),
                "data": data,
            }
            self._pending_callbacks[query_id] = query
            return self._enqueue({"callback_query": query})

    def inject_inline_query(
        self,
        user_id: int,
        query: str,
        *,
        offset: str = "",
        chat_type: str | None = "private",
        username: str | None = None,
        first_name: str | None = None,
    ) -> int:
        """The user types ``@bot query`` in some chat."""
        with self._cond:
            query_id = str(5_000_000_000_000_000 + next(self._ids))
            inline: JSONDict = {
                "id": query_id,
                "from": self._user(user_id, username, first_name),
                "query": query,
                "offset": offset,
            }
            if chat_type:
                inline["chat_type"] = chat_type
            self._pending_inline[query_id] = inline
            return self._enqueue({"inline_query": inline})

    def _user_message(
        self,
        chat_id: int,
        user_id: int,
        text: str,
        chat_type: str | None,
        username: str | None,
        first_name: str | None,
        title: str | None,
    ) -> JSONDict:
        chat = self._ensure_chat(chat_id, chat_type, title=title)
        if chat["type"] == "private":  # a private chat mirrors the user's names
            if first_name:
                chat["first_name"] = first_name
            if username:
                chat["username"] = username
        message: JSONDict = {
            "message_id": self._alloc_message_id(chat_id),
            "from": self._user(user_id, username, first_name),
            "chat": copy.deepcopy(chat),
            "date": int(time.time()),
            "text": text,
        }
        if entities := detect_entities(text):
            message["entities"] = entities
        return message

    @staticmethod
    def _reply_copy(message: JSONDict) -> JSONDict:
        target = copy.deepcopy(message)
        target.pop("reply_to_message", None)  # Telegram does not nest replies
        return target

    # ------------------------------------------------------------------ HTTP entry

    def _handle_http(
        self, http_method: str, path: str, content_type: str, body: bytes
    ) -> tuple[int, str, bytes]:
        with self._cond:
            state = self._state
        if state != "up":
            raise _DropConnection

        split = urlsplit(path)
        route = unquote(split.path)  # httpx percent-encodes the ':' of the token
        if route.startswith("/_fake/"):
            return self._handle_control(http_method, route[len("/_fake/") :], body)
        if file_match := re.fullmatch(r"/file/bot([^/]+)/(.+)", route):
            return self._handle_download(*file_match.groups())

        match = re.fullmatch(r"/bot([^/]*)/([^/]*)", route)
        if match is None:
            return 404, "application/json", _json_bytes(ApiError(404, "Not Found").body())
        token, raw_method = match.groups()
        received = time.time()
        params: JSONDict = {}
        files: dict[str, UploadedFile] = {}
        try:
            query = dict(parse_qsl(split.query, keep_blank_values=True))
            body_params, files = _parse_body(body, content_type)
            raw = {**query, **body_params}
            params = {k: _decode_param(k, v) for k, v in raw.items()}
            params = self._resolve_attachments(params, files)
        except ApiError as exc:
            return self._answer(raw_method, params, files, received, http_method, exc)

        if token != self.token or self._token_rejected:
            return self._answer(
                raw_method, params, files, received, http_method, ApiError(401, "Unauthorized")
            )
        spec = self._methods.get(raw_method.lower())
        if spec is None:
            return self._answer(
                raw_method, params, files, received, http_method, ApiError(404, "Not Found")
            )
        method, handler = spec

        fault = self._take_fault(method)
        if fault is not None and fault.kind == "drop":
            self._record(Call(method, params, files, received, 0, None, http_method))
            raise _DropConnection
        if fault is not None and fault.kind == "delay":
            time.sleep(fault.delay)
            if self._state != "up":  # went down while we were stalling
                raise _DropConnection
        if fault is not None and fault.kind == "error":
            error = ApiError(fault.status, fault.description, fault.parameters)
            return self._answer(method, params, files, received, http_method, error)

        try:
            with self._cond:  # copy under the lock: later edits mutate stored messages
                result = copy.deepcopy(handler(params, files))
        except ApiError as exc:
            return self._answer(method, params, files, received, http_method, exc)
        except (ValueError, TypeError) as exc:  # e.g. offset=abc: Telegram says 400 too
            error = _bad_request(f"invalid parameters: {exc}")
            return self._answer(method, params, files, received, http_method, error)
        except _DropConnection:
            raise
        except Exception:  # a bug in the fake: make it loud but keep serving
            _log.exception("fake telegram: %s failed", method)
            error = ApiError(500, "Internal Server Error")
            return self._answer(method, params, files, received, http_method, error)
        return self._answer(method, params, files, received, http_method, result=result)

    def _answer(
        self,
        method: str,
        params: JSONDict,
        files: dict[str, UploadedFile],
        received: float,
        http_method: str,
        error: ApiError | None = None,
        *,
        result: Any = None,
    ) -> tuple[int, str, bytes]:
        if error is not None:
            status, body = error.status, error.body()
        else:
            status, body = 200, {"ok": True, "result": result}
        self._record(Call(method, params, files, received, status, body, http_method))
        return status, "application/json", _json_bytes(body)

    def _record(self, call: Call) -> None:
        with self._cond:
            self._calls.append(call)
            self._cond.notify_all()

    @staticmethod
    def _resolve_attachments(params: JSONDict, files: dict[str, UploadedFile]) -> JSONDict:
        """Map ``attach://name`` references onto the uploaded part they name."""
        for key, value in list(params.items()):
            if isinstance(value, str) and value.startswith("attach://"):
                part = files.get(value[len("attach://") :])
                if part is not None:
                    files[key] = part
                    del params[key]
        return params

    def _handle_download(self, token: str, file_path: str) -> tuple[int, str, bytes]:
        if token != self.token:
            return 401, "application/json", _json_bytes(ApiError(401, "Unauthorized").body())
        with self._cond:
            for path, upload in self._files.values():
                if path == file_path:
                    return 200, upload.content_type, upload.data
        return 404, "application/json", _json_bytes(ApiError(404, "Not Found").body())

    # Control endpoints make the fake usable when it runs as a separate process.
    _CONTROL_ACTIONS = frozenset(
        [
            "inject_message",
            "inject_edited_message",
            "inject_channel_post",
            "inject_callback_query",
            "inject_inline_query",
            "inject_update",
            "fail_next",
            "rate_limit_next",
            "drop_next",
            "delay_next",
            "reject_token",
            "migrate_chat",
            "kick_bot",
            "clear_faults",
            "clear",
            "add_chat",
            "sent_messages",
        ]
    )

    def _handle_control(self, http_method: str, action: str, body: bytes) -> tuple[int, str, bytes]:
        try:
            if action == "calls":
                result: Any = [call.to_json() for call in self.calls]
            elif action in self._CONTROL_ACTIONS:
                kwargs = json.loads(body) if body else {}
                result = getattr(self, action)(**kwargs)
            else:
                return 404, "application/json", _json_bytes(ApiError(404, "Not Found").body())
        except (TypeError, ValueError, KeyError) as exc:
            error = ApiError(400, f"Bad Request: {exc}")
            return 400, "application/json", _json_bytes(error.body())
        return 200, "application/json", _json_bytes({"ok": True, "result": result})

    # ------------------------------------------------------------------ validation helpers

    @staticmethod
    def _text_param(params: JSONDict, name: str) -> str | None:
        value = params.get(name)
        if value is None:
            return None
        return value if isinstance(value, str) else json.dumps(value)

    def _checked_text(self, params: JSONDict) -> str:
        raw = self._text_param(params, "text")
        text = plain_text(raw, params.get("parse_mode")) if raw else ""
        if not text:
            raise _bad_request("message text is empty")
        if len(text) > MAX_TEXT_LENGTH:
            raise _bad_request("message is too long")
        return text

    def _checked_caption(self, params: JSONDict) -> str:
        raw = self._text_param(params, "caption")
        caption = plain_text(raw, params.get("parse_mode")) if raw else ""
        if len(caption) > MAX_CAPTION_LENGTH:
            raise _bad_request("message caption is too long")
        return caption

    @staticmethod
    def _checked_markup(params: JSONDict) -> JSONDict | None:
        """Validate reply_markup; returns it only if it is an inline keyboard, because that
        is the only kind Telegram echoes back in the resulting Message."""
        markup = params.get("reply_markup")
        if markup is None or markup == "":
            return None
        if not isinstance(markup, dict):
            raise _bad_request("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" not in markup:
            return None
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise _bad_request(
                'field "inline_keyboard" of the InlineKeyboardMarkup should be an Array of Arrays'
            )
        for row in rows:
            for button in row:
                if not isinstance(button, dict) or "text" not in button:
                    raise _bad_request(
                        "can't parse inline keyboard button: Can't find field \"text\""
                    )
                if not any(key in button for key in _INLINE_BUTTON_ACTIONS):
                    raise _bad_request(
                        "can't parse inline keyboard button: "
                        "Text buttons are unallowed in the inline keyboard"
                    )
                if "callback_data" in button:
                    data = str(button["callback_data"]).encode("utf-8")
                    if not 1 <= len(data) <= MAX_CALLBACK_DATA_BYTES:
                        raise _bad_request("BUTTON_DATA_INVALID")
        return {"inline_keyboard": rows}

    def _new_bot_message(self, chat: JSONDict, params: JSONDict) -> JSONDict:
        """Common fields of a message the bot sends, including the reply target."""
        reply = params.get("reply_parameters")
        if not isinstance(reply, dict):
            reply = {}
        reply_to = reply.get("message_id", params.get("reply_to_message_id"))
        allow_missing = reply.get(
            "allow_sending_without_reply", params.get("allow_sending_without_reply", False)
        )
        target = None
        if reply_to is not None:
            target = self._messages.get((chat["id"], int(reply_to)))
            if target is None and not allow_missing:
                raise _bad_request("message to be replied not found")

        message: JSONDict = {"message_id": self._alloc_message_id(chat["id"])}
        if chat["type"] == "channel":
            message["sender_chat"] = copy.deepcopy(chat)
        else:
            message["from"] = self._bot_user()
        message["chat"] = copy.deepcopy(chat)
        message["date"] = int(time.time())
        if params.get("message_thread_id") is not None:
            message["message_thread_id"] = params["message_thread_id"]
        if target is not None:
            message["reply_to_message"] = self._reply_copy(target)
        return message

    def _store(self, message: JSONDict) -> JSONDict:
        self._messages[(message["chat"]["id"], message["message_id"])] = message
        return message

    def _target_message(self, params: JSONDict, missing: str) -> JSONDict:
        chat = self._resolve_chat(params)
        message_id = params.get("message_id")
        if message_id is None or message_id == "":
            raise _bad_request("message identifier is not specified")
        message = self._messages.get((chat["id"], int(message_id)))
        if message is None:
            raise _bad_request(missing)
        return message

    def _register_file(self, kind: str, upload: UploadedFile) -> tuple[str, str]:
        serial = next(self._ids)
        file_id = f"{kind}-{serial:06d}-{self.bot_id}"
        extension = os.path.splitext(upload.filename)[1] or ".bin"
        folder = "photos" if kind == "photo" else "documents"
        self._files[file_id] = (f"{folder}/file_{serial}{extension}", upload)
        return file_id, f"uniq{serial:08d}"

    # ------------------------------------------------------------------ API methods

    def _m_true(self, params: JSONDict, files: dict[str, UploadedFile]) -> bool:
        return True

    def _m_get_me(self, params: JSONDict, files: dict[str, UploadedFile]) -> JSONDict:
        return {
            **self._bot_user(),
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    def _m_get_updates(self, params: JSONDict, files: dict[str, UploadedFile]) -> list[JSONDict]:
        offset = int(params.get("offset") or 0)
        limit = min(max(int(params.get("limit") or 100), 1), 100)
        timeout = max(float(params.get("timeout") or 0), 0.0)
        if self.max_long_poll is not None:
            timeout = min(timeout, self.max_long_poll)
        allowed = params.get("allowed_updates")
        if isinstance(allowed, list):
            self._allowed_updates = [str(kind) for kind in allowed]  # sticky, like Telegram
        if self._webhook.get("url"):
            raise ApiError(409, _CONFLICT_WEBHOOK)

        # A newer getUpdates terminates a waiting one with 409, like Telegram does.
        self._poll_generation += 1
        generation = self._poll_generation
        self._cond.notify_all()

        if offset > 0:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        elif offset < 0:
            self._updates = self._updates[offset:]

        deadline = time.monotonic() + timeout
        self._polls_waiting += 1
        self._cond.notify_all()  # for wait_for_poller()
        try:
            while True:
                if self._state != "up":
                    raise _DropConnection
                if self._poll_generation != generation:
                    raise ApiError(409, _CONFLICT_POLL)
                self._updates = [u for u in self._updates if self._is_allowed(u)]
                if self._updates:
                    return copy.deepcopy(self._updates[:limit])
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                self._cond.wait(remaining)
        finally:
            self._polls_waiting -= 1

    def _is_allowed(self, update: JSONDict) -> bool:
        kinds = [key for key in update if key != "update_id"]
        if not kinds:
            return True
        if self._allowed_updates:
            return kinds[0] in self._allowed_updates
        return kinds[0] not in _NOT_DEFAULT_UPDATES

    def _m_set_webhook(self, params: JSONDict, files: dict[str, UploadedFile]) -> bool:
        url = params.get("url") or ""
        if url and not str(url).startswith("https://"):
            raise _bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        if params.get("drop_pending_updates") is True:
            self._updates.clear()
        if isinstance(params.get("allowed_updates"), list):
            self._allowed_updates = list(params["allowed_updates"])
        self._webhook = {"url": url} if url else {}
        self._cond.notify_all()
        return True

    def _m_delete_webhook(self, params: JSONDict, files: dict[str, UploadedFile]) -> bool:
        self._webhook = {}
        if params.get("drop_pending_updates") is True:
            self._updates.clear()
        return True

    def _m_get_webhook_info(self, params: JSONDict, files: dict[str, UploadedFile]) -> JSONDict:
        info: JSONDict = {
            "url": self._webhook.get("url", ""),
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }
        if self._webhook and self._allowed_updates:
            info["allowed_updates"] = list(self._allowed_updates)
        return info

    @staticmethod
    def _commands_key(params: JSONDict) -> tuple[str, str]:
        scope = params.get("scope") or {"type": "default"}
        return json.dumps(scope, sort_keys=True), str(params.get("language_code") or "")

    def _m_set_my_commands(self, params: JSONDict, files: dict[str, UploadedFile]) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise _bad_request("can't parse commands JSON object")
        for command in commands:
            name = command.get("command", "") if isinstance(command, dict) else ""
            if not re.fullmatch(r"[a-z0-9_]{1,32}", str(name)):
                raise _bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", ""))) <= 256:
                raise _bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
        self._commands[self._commands_key(params)] = [
            {"command": c["command"], "description": c["description"]} for c in commands
        ]
        return True

    def _m_get_my_commands(
        self, params: JSONDict, files: dict[str, UploadedFile]
    ) -> list[JSONDict]:
        return copy.deepcopy(self._commands.get(self._commands_key(params), []))

    def _m_delete_my_commands(self, params: JSONDict, files: dict[str, UploadedFile]) -> bool:
        self._commands.pop(self._commands_key(params), None)
        return True

    def commands(self, scope: JSONDict | None = None, language_code: str = "") -> list[JSONDict]:
        """Commands currently registered for a scope (default scope by default)."""
        with self._cond:
            params = {"scope": scope, "language_code": language_code}
            return copy.deepcopy(self._commands.get(self._commands_key(params), []))

    def _m_send_message(self, params: JSONDict, files: dict[str, UploadedFile]) -> JSONDict:
        chat = self._resolve_chat(params)
        text = self._checked_text(params)
        markup = self._checked_markup(params)
        message = self._new_bot_message(chat, params)
        message["text"] = text
        if markup is not None:
            message["reply_markup"] = markup
        return self._store(message)

    def _media_message(
        self, params: JSONDict, files: dict[str, UploadedFile], kind: str
    ) -> tuple[JSONDict, UploadedFile | None, str | None]:
        chat = self._resolve_chat(params)
        upload = files.get(kind)
        reference = params.get(kind)
        if upload is None and not reference:
            raise _bad_request(f"there is no {kind} in the request")
        if upload is not None and not upload.data:
            raise _bad_request("file must be non-empty")
        caption = self._checked_caption(params)
        markup = self._checked_markup(params)
        message = self._new_bot_message(chat, params)
        if caption:
            message["caption"] = caption
        if markup is not None:
            message["reply_markup"] = markup
        return message, upload, str(reference) if reference else None

    def _m_send_photo(self, params: JSONDict, files: dict[str, UploadedFile]) -> JSONDict:
        message, upload, reference = self._media_message(params, files, "photo")
        if upload is None:
            # A file_id we issued or a URL Telegram would download; dimensions are invented.
            upload = self._files[reference][1] if reference in self._files else None
        size = _image_size(upload.data) if upload is not None else (800, 600)
        if size is None:
            if self.validate_photos:
                raise _bad_request("IMAGE_PROCESS_FAILED")
            size = (800, 600)
        width, height = size
        if upload is not None:
            file_id, unique_id = self._register_file("photo", upload)
        else:
            file_id, unique_id = str(reference), f"uniq{next(self._ids):08d}"
        sizes = []
        for limit in (90, 320, 800):
            if max(width, height) > limit:
                scale = limit / max(width, height)
                sizes.append(
                    {
                        "file_id": f"{file_id}-{limit}",
                        "file_unique_id": f"{unique_id}-{limit}",
                        "width": max(1, round(width * scale)),
                        "height": max(1, round(height * scale)),
                    }
                )
        scale = min(1.0, 1280 / max(width, height, 1))
        largest: JSONDict = {
            "file_id": file_id,
            "file_unique_id": unique_id,
            "width": max(1, round(width * scale)),
            "height": max(1, round(height * scale)),
        }
        if upload is not None:
            largest["file_size"] = upload.size
        message["photo"] = [*sizes, largest]
        return self._store(message)

    def _m_send_document(self, params: JSONDict, files: dict[str, UploadedFile]) -> JSONDict:
        message, upload, reference = self._media_message(params, files, "document")
        if upload is None and reference in self._files:
            upload = self._files[reference][1]
        if upload is not None:
            file_id, unique_id = self._register_file("document", upload)
            message["document"] = {
                "file_name": upload.filename,
                "mime_type": upload.content_type,
                "file_id": file_id,
                "file_unique_id": unique_id,
                "file_size": upload.size,
            }
        else:
            message["document"] = {
                "file_id": str(reference),
                "file_unique_id": f"uniq{next(self._ids):08d}",
            }
        return self._store(message)

    def _m_edit_message_text(
        self, params: JSONDict, files: dict[str, UploadedFile]
    ) -> JSONDict | bool:
        if params.get("inline_message_id"):
            self._checked_text(params)
            self._checked_markup(params)
            return True
        message = self._target_message(params, "message to edit not found")
        if message.get("from", {}).get("id") != self.bot_id and "sender_chat" not in message:
            raise _bad_request("message can't be edited")
        if "text" not in message:
            raise _bad_request("there is no text in the message to edit")
        text = self._checked_text(params)
        markup = self._checked_markup(params)
        if text == message["text"] and markup == message.get("reply_markup"):
            raise _bad_request(_NOT_MODIFIED.removeprefix("Bad Request: "))
        message["text"] = text
        self._apply_edit(message, markup)
        return copy.deepcopy(message)

    def _m_edit_message_caption(
        self, params: JSONDict, files: dict[str, UploadedFile]
    ) -> JSONDict | bool:
        if params.get("inline_message_id"):
            return True
        message = self._target_message(params, "message to edit not found")
        if "photo" not in message and "document" not in message:
            raise _bad_request("there is no caption in the message to edit")
        caption = self._checked_caption(params)
        markup = self._checked_markup(params)
        if caption == message.get("caption", "") and markup == message.get("reply_markup"):
            raise _bad_request(_NOT_MODIFIED.removeprefix("Bad Request: "))
        if caption:
            message["caption"] = caption
        else:
            message.pop("caption", None)
        self._apply_edit(message, markup)
        return copy.deepcopy(message)

    def _m_edit_message_reply_markup(
        self, params: JSONDict, files: dict[str, UploadedFile]
    ) -> JSONDict | bool:
        if params.get("inline_message_id"):
            self._checked_markup(params)
            return True
        message = self._target_message(params, "message to edit not found")
        markup = self._checked_markup(params)
        if markup == message.get("reply_markup"):
            raise _bad_request(_NOT_MODIFIED.removeprefix("Bad Request: "))
        self._apply_edit(message, markup)
        return copy.deepcopy(message)

    @staticmethod
    def _apply_edit(message: JSONDict, markup: JSONDict | None) -> None:
        # Editing without reply_markup removes the inline keyboard, as on Telegram.
        if markup is None:
            message.pop("reply_markup", None)
        else:
            message["reply_markup"] = markup
        message["edit_date"] = int(time.time())

    def _m_delete_message(self, params: JSONDict, files: dict[str, UploadedFile]) -> bool:
        message = self._target_message(params, "message to delete not found")
        del self._messages[(message["chat"]["id"], message["message_id"])]
        return True

    def _m_pin(self, params: JSONDict, files: dict[str, UploadedFile]) -> bool:
        if params.get("message_id") is not None:
            self._target_message(params, "message to pin not found")
        else:
            self._resolve_chat(params)
        return True

    def _m_answer_callback_query(self, params: JSONDict, files: dict[str, UploadedFile]) -> bool:
        query_id = str(params.get("callback_query_id") or "")
        if self._pending_callbacks.pop(query_id, None) is None:
            raise _bad_request(
                "query is too old and response timeout expired or query ID is invalid"
            )
        return True

    def _m_answer_inline_query(self, params: JSONDict, files: dict[str, UploadedFile]) -> bool:
        query_id = str(params.get("inline_query_id") or "")
        if self._pending_inline.pop(query_id, None) is None:
            raise _bad_request(
                "query is too old and response timeout expired or query ID is invalid"
            )
        if not isinstance(params.get("results"), list):
            raise _bad_request("can't parse inline query results JSON object")
        return True

    def _m_send_chat_action(self, params: JSONDict, files: dict[str, UploadedFile]) -> bool:
        self._resolve_chat(params)
        if params.get("action") not in _CHAT_ACTIONS:
            raise _bad_request("wrong parameter action in request")
        return True

    def _m_get_chat(self, params: JSONDict, files: dict[str, UploadedFile]) -> JSONDict:
        chat = self._resolve_chat(params)
        return {
            **copy.deepcopy(chat),
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        }

    def _m_get_file(self, params: JSONDict, files: dict[str, UploadedFile]) -> JSONDict:
        file_id = str(params.get("file_id") or "")
        if file_id not in self._files:
            raise _bad_request("invalid file_id")
        path, upload = self._files[file_id]
        return {
            "file_id": file_id,
            "file_unique_id": f"uniq-{file_id}",
            "file_size": upload.size,
            "file_path": path,
        }


# --------------------------------------------------------------------------- process mode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fake Telegram Bot API for tests")
    parser.add_argument("--token", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--bot-username", default="regolancer_test_bot")
    parser.add_argument("--ready-file", help="write the base URL here (atomically) once listening")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    fake = FakeTelegram(args.token, host=args.host, port=args.port, bot_username=args.bot_username)
    with fake:
        if args.ready_file:
            tmp = f"{args.ready_file}.tmp"
            with open(tmp, "w", encoding="utf-8") as handle:
                handle.write(fake.url + "\n")
            os.replace(tmp, args.ready_file)
        print(fake.url, flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
