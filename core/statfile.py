"""Tail regolancer's `stat` CSV: every complete line is one successful payment.

`parse_stat_line` is pure. `read_new_lines` reads what was appended since a stored
`StatPosition`, survives rotation and truncation, and never consumes a partial line, so the
caller can store each ledger row together with the position just after it.
"""

from __future__ import annotations

import calendar
import fcntl
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from core.models import LIGHTNING_MAINNET, StatLine

__all__ = [
    "DEFAULT_MAX_BYTES",
    "HEADER",
    "StatBatch",
    "StatFileError",
    "StatLineError",
    "StatPosition",
    "parse_stat_line",
    "read_new_lines",
    "seal_partial_line",
]

HEADER = "timestamp,from_channel,to_channel,amount_msat,fees_msat"
_COLUMNS = HEADER.split(",")

# No Lightning payment is older than mainnet or more than a day ahead of this host's clock
# (a milliseconds timestamp lands far above that).
_MIN_TIMESTAMP = calendar.timegm(LIGHTNING_MAINNET.timetuple())
MAX_CLOCK_SKEW_SECONDS = 86_400
# 21 million bitcoin in msat: no payment moves more (and day totals cannot overflow).
MAX_AMOUNT_MSAT = 21_000_000 * 100_000_000 * 1000
_MAX_UINT64 = (1 << 64) - 1
# Amounts are Go int64 and end up in SQLite INTEGER columns.
_MAX_INT64 = (1 << 63) - 1
# ASCII only: `int()` and `\d` also accept "+5", "1_0" and non-ASCII digits.
_UNSIGNED = re.compile(r"[0-9]+")
_NEGATIVE = re.compile(r"-[0-9]+")

DEFAULT_MAX_BYTES = 1 << 20
_CHUNK = 64 * 1024
# A real stat line is about 100 bytes; keep at most this much of a runaway line in memory.
_MAX_LINE_BYTES = 4096
_REASON_VALUE_CHARS = 40


class StatLineError(ValueError):
    """A stat line that is not `timestamp,from,to,amount_msat,fees_msat`; str() is one line."""


class StatFileError(OSError):
    """The stat file exists but cannot be read; the message says what to do about it."""


@dataclass(frozen=True, slots=True)
class StatPosition:
    """Where reading stopped: the file's inode and the byte offset just after a complete line.

    The device number is deliberately not part of it: it can change across reboots or
    remounts, and a spurious "rotation" would re-read the whole file. `inode == 0` (never a
    real inode) means "no file seen yet" and behaves like passing no position at all.
    """

    inode: int
    offset: int


@dataclass(frozen=True, slots=True)
class StatBatch:
    """What one `read_new_lines` call found.

    `entries` pairs each payment with the position just after its line. `end` is the position
    after the last complete line consumed, including headers, blank and malformed lines, so
    storing it never re-reads them. `reset_reason` says why reading restarted at offset 0.
    `has_more` is True when the byte budget stopped the read before the end of the file:
    call again without waiting.
    """

    entries: list[tuple[StatLine, StatPosition]]
    malformed: list[tuple[str, str]]
    end: StatPosition
    reset_reason: str | None = None
    has_more: bool = False

    @property
    def lines(self) -> list[StatLine]:
        """The parsed payments, without their positions."""
        return [line for line, _ in self.entries]


def _show(value: str) -> str:
    # Quote (so spaces and control characters show) and bound what goes into a one-line reason.
    if len(value) > _REASON_VALUE_CHARS:
        value = value[:_REASON_VALUE_CHARS] + "…"
    return repr(value)


def _parse_int(name: str, raw: str, *, maximum: int) -> int:
    if _NEGATIVE.fullmatch(raw):
        raise StatLineError(f"{name} is negative: {raw}")
    if not _UNSIGNED.fullmatch(raw):
        raise StatLineError(f"{name} is not an unsigned integer: {_show(raw)}")
    value = int(raw)
    if value > maximum:
        raise StatLineError(f"{name} {raw} is larger than {maximum}")
    return value


def _parse_chan_id(name: str, raw: str) -> str:
    value = _parse_int(name, raw, maximum=_MAX_UINT64)
    if value == 0:
        raise StatLineError(f"{name} is 0, which is not a channel id")
    # Canonical decimal (no leading zeros) so it matches LND's chan_id strings.
    return str(value)


def parse_stat_line(text: str, now: float | None = None) -> StatLine | None:
    """Parse one stat CSV line; None for the header and blank lines.

    Tolerates a trailing `\\r\\n`, spaces around the line and its fields, and a UTF-8 BOM.
    Channel ids stay decimal strings (uint64). Raises `StatLineError` with a one-line reason
    when the line is not a payment regolancer could have made: more than 21 M BTC, a fee
    above the amount, a time before Lightning's mainnet or more than a day after `now`
    (default: this host's clock).
    """
    latest = (time.time() if now is None else now) + MAX_CLOCK_SKEW_SECONDS
    stripped = text.strip().lstrip("\ufeff").strip()
    if not stripped:
        return None
    fields = [f.strip() for f in stripped.split(",")]
    if fields == _COLUMNS:
        # Written when regolancer creates the file, so it reappears after every rotation.
        return None
    if len(fields) != len(_COLUMNS):
        raise StatLineError(f"expected {len(_COLUMNS)} comma-separated columns, got {len(fields)}")
    raw_ts, raw_from, raw_to, raw_amount, raw_fees = fields
    timestamp = _parse_int("timestamp", raw_ts, maximum=_MAX_INT64)
    if not _MIN_TIMESTAMP <= timestamp <= latest:
        raise StatLineError(
            f"timestamp {timestamp} is not a plausible Unix time in seconds "
            "(2018 to a day from now; is this host's clock right?)"
        )
    from_channel = _parse_chan_id("from_channel", raw_from)
    to_channel = _parse_chan_id("to_channel", raw_to)
    amount_msat = _parse_int("amount_msat", raw_amount, maximum=_MAX_INT64)
    if amount_msat == 0:
        raise StatLineError("amount_msat is 0: a payment always moves something")
    if amount_msat > MAX_AMOUNT_MSAT:
        raise StatLineError(f"amount_msat {amount_msat} is more than 21 million BTC")
    fees_msat = _parse_int("fees_msat", raw_fees, maximum=_MAX_INT64)
    if fees_msat > amount_msat:
        raise StatLineError(f"fees_msat {fees_msat} is above amount_msat {amount_msat}")
    return StatLine(
        timestamp=timestamp,
        from_channel=from_channel,
        to_channel=to_channel,
        amount_msat=amount_msat,
        fees_msat=fees_msat,
    )


def _unreadable(path: Path, exc: OSError) -> StatFileError:
    if isinstance(exc, PermissionError):
        hint = (
            "permission denied; run the orchestrator as the user that runs regolancer, "
            "or make the file readable to it (shared group + chmod g+r)"
        )
    elif isinstance(exc, IsADirectoryError):
        hint = "it is a directory; point the stat setting at a file path"
    else:
        hint = f"{exc.strerror or exc}"
    return StatFileError(f"cannot read regolancer stat file {path}: {hint}")


def _read_long_line(f: BinaryIO, head: bytes) -> tuple[bytes, int] | None:
    """Finish a line longer than the byte budget; (kept prefix, length incl. newline) or None.

    None means end of file came first: the line is still being written. Only a bounded
    prefix is kept so a runaway line (say a NUL-filled hole) cannot exhaust memory.
    """
    kept = head[:_MAX_LINE_BYTES]
    length = len(head)
    while True:
        chunk = f.read(_CHUNK)
        if not chunk:
            return None
        newline = chunk.find(b"\n")
        if newline >= 0:
            if len(kept) < _MAX_LINE_BYTES:
                kept += chunk[: min(newline, _MAX_LINE_BYTES - len(kept))]
            return kept, length + newline + 1
        if len(kept) < _MAX_LINE_BYTES:
            kept += chunk[: _MAX_LINE_BYTES - len(kept)]
        length += len(chunk)


def read_new_lines(
    path: Path,
    position: StatPosition | None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    now: float | None = None,
) -> StatBatch:
    """Read the complete lines appended to the stat file since `position`.

    At most about `max_bytes` are read per call (a single line longer than that is still
    consumed whole, so every call makes progress); call again while `has_more` is True.
    A trailing line without `\\n` is left for a later call. A missing file gives an empty
    batch with the same position (regolancer creates the file on its first success).

    Reading restarts at offset 0, with `reset_reason` set, when the inode changed (rotated
    or replaced), the file is shorter than the offset (truncated), or the byte before the
    offset is no longer a newline (truncated and rewritten, or a new file that reused the
    inode). Like `tail -F`, lines appended to the old file after it was rotated away and
    before this call noticed are lost to us: we follow the path, not the old file.

    `now` is the time stat lines are judged against (see `parse_stat_line`).

    Raises `StatFileError` when the file exists but cannot be read.
    """
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be positive, got {max_bytes}")
    known = position if position is not None and position.inode != 0 else None
    now = time.time() if now is None else now  # one clock reading for the whole batch
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return StatBatch(entries=[], malformed=[], end=position or StatPosition(0, 0))
    except OSError as exc:
        raise _unreadable(path, exc) from exc
    try:
        with f:
            return _read_from(f, known, max_bytes, now)
    except OSError as exc:
        raise _unreadable(path, exc) from exc


def _read_from(f: BinaryIO, known: StatPosition | None, max_bytes: int, now: float) -> StatBatch:
    # fstat the open file, not the path: the path may be renamed between a stat and the open.
    st = os.fstat(f.fileno())
    inode, size = st.st_ino, st.st_size
    start = 0
    reset_reason: str | None = None
    if known is not None:
        if known.inode != inode:
            reset_reason = f"rotated: inode changed from {known.inode} to {inode}"
        elif size < known.offset:
            reset_reason = f"truncated: size {size} is below the stored offset {known.offset}"
        elif known.offset > 0:
            f.seek(known.offset - 1)
            # Our offsets always follow a newline; anything else means the content changed.
            if f.read(1) != b"\n":
                reset_reason = (
                    f"rewritten: the byte before offset {known.offset} is no longer a newline"
                )
            else:
                start = known.offset

    f.seek(start)
    data = f.read(max_bytes)
    entries: list[tuple[StatLine, StatPosition]] = []
    malformed: list[tuple[str, str]] = []
    offset = start

    def take(raw: bytes, length: int) -> None:
        nonlocal offset
        offset += length
        text = raw.decode("utf-8", errors="replace")
        try:
            line = parse_stat_line(text, now)
        except StatLineError as exc:
            malformed.append((text.rstrip("\r\n"), str(exc)))
            return
        if line is not None:
            entries.append((line, StatPosition(inode, offset)))

    last_newline = data.rfind(b"\n")
    waiting = False  # a partial line longer than the budget: nothing more until it ends
    if last_newline >= 0:
        for raw in data[:last_newline].split(b"\n"):
            take(raw, len(raw) + 1)
    elif len(data) == max_bytes:
        # One line longer than the whole budget: finish it so the next call can move on.
        finished = _read_long_line(f, data)
        waiting = finished is None
        if finished is not None:
            raw, length = finished
            if length - 1 > _MAX_LINE_BYTES:
                offset += length
                shown = raw.decode("utf-8", errors="replace")[:_REASON_VALUE_CHARS]
                malformed.append((shown, f"line is {length - 1} bytes long, not a stat line"))
            else:
                take(raw, length)

    # A long line can carry `offset` past what `data` held; whichever is further counts.
    has_more = not waiting and len(data) == max_bytes and max(offset, start + len(data)) < size
    return StatBatch(
        entries=entries,
        malformed=malformed,
        end=StatPosition(inode, offset),
        reset_reason=reset_reason,
        has_more=has_more,
    )


def seal_partial_line(path: Path, lock_dir: str | None = None) -> str | None:
    """End a stat file whose last line was left incomplete by a writer that is gone.

    regolancer appends each line with one write while holding an exclusive flock on
    `$TMPDIR/regolancer.lock` (`lock_dir`, default our TMPDIR, which the runs inherit), so
    a fragment seen while we hold that lock belongs to no writer in progress. Without a
    newline the next payment's line would be glued to it and both skipped as malformed.
    Returns the fragment's text when one was closed, else None. Raises OSError.
    """
    lock_path = os.path.join(lock_dir or tempfile.gettempdir(), "regolancer.lock")
    lock_fd = os.open(lock_path, os.O_CREAT | os.O_RDONLY, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        try:
            f = path.open("rb+")
        except FileNotFoundError:
            return None
        with f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return None
            start = max(0, size - _MAX_LINE_BYTES)
            f.seek(start)
            tail = f.read()
            if tail.endswith(b"\n"):
                return None
            f.write(b"\n")
            return tail[tail.rfind(b"\n") + 1 :].decode("utf-8", errors="replace")
    finally:
        os.close(lock_fd)  # releases the flock
