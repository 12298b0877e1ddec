"""Delivering the outbox: durable messages leave in order, batched, at most once each.

A message is marked sent only after Telegram accepted it, so an outage or a 429 delays it
and a restart resends what was not accepted. Only a hard kill between Telegram's answer
and the mark can repeat a message (the one in flight).

A mark the state database refuses (locked past busy_timeout, disk full) is kept in memory
and written first at the next flush; until it is written nothing new is sent, so a message
Telegram accepted never goes out twice from this process.

A token Telegram rejects, or a chat that became a supergroup, does not heal without the
operator: the outbox says once what to do and holds, retrying ever more rarely.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from telegram import Bot
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)

from bot import render
from core.state import OutboxMessage, StateStore

log = logging.getLogger("bot.outbox")

# Long outages: stop hammering the Bot API, try again at most this often.
MAX_BACKOFF_SECONDS = 60.0
# Refusals only the operator can end (token, chat id): retry rarely, in case one heals.
MAX_REFUSED_BACKOFF_SECONDS = 300.0

BOTFATHER_HINT = (
    "TELEGRAM_TOKEN was rejected (revoked?): get a new token from @BotFather and restart"
)


def text_message(text: str) -> dict[str, str]:
    return {"text": text}


def refusal(exc: TelegramError) -> tuple[str, str] | None:
    """(episode key, what the operator must do) for refusals no retry can end; else None."""
    if isinstance(exc, InvalidToken):
        return "token", BOTFATHER_HINT
    if isinstance(exc, ChatMigrated):
        return "chat", (
            f"the chat became a supergroup: set TELEGRAM_CHAT_ID={exc.new_chat_id} and restart"
        )
    if isinstance(exc, Forbidden):
        return "chat", f"Telegram refuses the chat ({exc.message}): is the bot still in it?"
    return None


@dataclass
class Episodes:
    """Problems said once per episode in the log: one line as each begins, one as it ends.

    Shared by the outbox and polling, so a rejected token seen by both is one line.
    """

    logger: logging.Logger = field(default_factory=lambda: log)
    _began: dict[str, float] = field(default_factory=dict)  # key -> time.monotonic()

    def begin(self, key: str, message: str, level: int = logging.ERROR) -> None:
        if key not in self._began:
            self._began[key] = time.monotonic()
            self.logger.log(level, "%s", message)

    def end(self, key: str, message: str, asked_at: float) -> None:
        """End `key` by a request (asked at `asked_at`, monotonic) that worked.

        A request already in flight when the episode began (a long poll) proves nothing.
        """
        began = self._began.get(key)
        if began is not None and asked_at > began:
            del self._began[key]
            self.logger.info("%s", message)


@dataclass
class OutboxSender:
    """Sends pending outbox rows to the one authorised chat."""

    bot: Bot
    store: StateStore
    chat_id: int
    min_sats: int = 0
    episodes: Episodes = field(default_factory=Episodes)
    _hold_until: float = 0.0
    _backoff: float = 1.0
    # One flush at a time: the farewell flush at shutdown can meet the outbox job's, and two
    # flushes reading the same pending rows would both send them.
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Rows Telegram accepted whose sent-mark the database refused: never sent again.
    _unmarked: list[int] = field(default_factory=list)

    def _render(self, batch: Sequence[OutboxMessage]) -> str | None:
        if batch[0].kind != "rebalance":
            return str(batch[0].payload.get("text", "")) or None
        rows = [self.store.rebalance(int(m.payload["ledger_id"])) for m in batch]
        shown = [r for r in rows if r is not None and r.line.amount_sat >= self.min_sats]
        return render.rebalances(shown) if shown else None

    async def flush(self) -> int:
        """Send what is pending; returns how many outbox rows were delivered (or dropped)."""
        async with self._lock:
            return await self._flush()

    async def _flush(self) -> int:
        if time.monotonic() < self._hold_until:
            return 0
        if not self._mark([]):  # the marks of an earlier flush first
            return 0
        done = 0
        unmarked = set(self._unmarked)
        pending = [m for m in self.store.pending_messages(limit=200) if m.id not in unmarked]
        for batch in _batches(pending):
            ids = [m.id for m in batch]
            text = self._render(batch)
            if text is not None:  # None: dust below NOTIFY_MIN_SATS, or nothing to say
                asked = time.monotonic()
                try:
                    await self._send(text)
                except RetryAfter as exc:
                    wait = exc.retry_after
                    seconds = (
                        wait.total_seconds() if hasattr(wait, "total_seconds") else float(wait)
                    )
                    self._hold(seconds)
                    log.warning("Telegram asks to wait %.0fs; %d messages held", seconds, len(ids))
                    return done
                except NetworkError as exc:  # also 5xx and timeouts; BadRequest handled inside
                    self._hold(self._next_backoff(MAX_BACKOFF_SECONDS))
                    log.warning(
                        "Telegram unreachable (%s); %d messages held", exc.message, len(ids)
                    )
                    return done
                except TelegramError as exc:
                    refused = refusal(exc)
                    if refused is None:
                        raise
                    self._hold(self._next_backoff(MAX_REFUSED_BACKOFF_SECONDS))
                    self.episodes.begin(*refused)
                    return done
                self._accepted(asked)
            done += len(ids)
            if not self._mark(ids):
                return done
        return done

    async def _send(self, text: str) -> None:
        try:
            await self.bot.send_message(
                self.chat_id, text, parse_mode=ParseMode.HTML, disable_web_page_preview=True
            )
        except BadRequest as exc:
            # Rejected for its content (entities, length): a plain, cut copy still informs.
            log.warning("Telegram rejected a message (%s); sending it as plain text", exc.message)
            try:
                await self.bot.send_message(self.chat_id, render.fit(render.plain(text), 4000))
            except BadRequest as again:
                log.error("Telegram rejected the plain copy too (%s); dropped", again.message)

    def _accepted(self, asked_at: float) -> None:
        self._backoff = 1.0
        self.episodes.end("token", "Telegram accepts TELEGRAM_TOKEN again", asked_at)
        self.episodes.end(
            "chat", "Telegram delivers to the chat again; held messages follow", asked_at
        )

    def _mark(self, ids: list[int]) -> bool:
        """Mark rows sent, with any the database refused before; False while it refuses."""
        marks = sorted({*self._unmarked, *ids})
        if not marks:
            return True
        try:
            self.store.mark_sent(marks)
        except sqlite3.Error as exc:
            self._unmarked = marks
            self.episodes.begin(
                "store",
                f"state database refuses to record {len(marks)} sent message(s) ({exc}): "
                "they are not sent again, and the outbox holds until it takes writes",
            )
            return False
        self._unmarked = []
        self.episodes.end(
            "store", "state database takes writes again; the outbox goes on", time.monotonic()
        )
        return True

    def _hold(self, seconds: float) -> None:
        self._hold_until = time.monotonic() + seconds

    def _next_backoff(self, cap: float) -> float:
        current = min(self._backoff, cap)
        self._backoff = min(self._backoff * 2, cap)
        return current


def _batches(pending: Sequence[OutboxMessage]) -> Iterator[list[OutboxMessage]]:
    """Runs of rebalance rows become one message; every other row stands alone."""
    run: list[OutboxMessage] = []
    for message in pending:
        if message.kind == "rebalance" and len(run) < 30:
            run.append(message)
            continue
        if run:
            yield run
            run = []
        if message.kind == "rebalance":
            run.append(message)
        else:
            yield [message]
    if run:
        yield run
