"""Delivering the outbox: durable messages leave in order, batched, at most once each.

A message is marked sent only after Telegram accepted it, so an outage or a 429 delays it
and a restart resends what was not accepted. Only a hard kill between Telegram's answer
and the mark can repeat a message (the one in flight).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from telegram import Bot
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter

from bot import render
from core.state import OutboxMessage, StateStore

log = logging.getLogger("bot.outbox")

# Long outages: stop hammering the Bot API, try again at most this often.
MAX_BACKOFF_SECONDS = 60.0


def text_message(text: str) -> dict[str, str]:
    return {"text": text}


@dataclass
class OutboxSender:
    """Sends pending outbox rows to the one authorised chat."""

    bot: Bot
    store: StateStore
    chat_id: int
    min_sats: int = 0
    _hold_until: float = 0.0
    _backoff: float = 1.0
    # One flush at a time: the farewell flush at shutdown can meet the outbox job's, and two
    # flushes reading the same pending rows would both send them.
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

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
        done = 0
        for batch in _batches(self.store.pending_messages(limit=200)):
            ids = [m.id for m in batch]
            text = self._render(batch)
            if text is None:  # dust below NOTIFY_MIN_SATS, or nothing to say
                self.store.mark_sent(ids)
                continue
            try:
                await self._send(text)
            except RetryAfter as exc:
                wait = exc.retry_after
                seconds = wait.total_seconds() if hasattr(wait, "total_seconds") else float(wait)
                self._hold(seconds)
                log.warning("Telegram asks to wait %.0fs; %d messages held", seconds, len(ids))
                return done
            except Forbidden as exc:
                self._hold(self._next_backoff())
                log.error("Telegram refuses the chat (%s): is the bot still in it?", exc.message)
                return done
            except NetworkError as exc:  # also 5xx and timeouts; BadRequest handled inside
                self._hold(self._next_backoff())
                log.warning("Telegram unreachable (%s); %d messages held", exc.message, len(ids))
                return done
            self._backoff = 1.0
            self.store.mark_sent(ids)
            done += len(ids)
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

    def _hold(self, seconds: float) -> None:
        self._hold_until = time.monotonic() + seconds

    def _next_backoff(self) -> float:
        current = self._backoff
        self._backoff = min(self._backoff * 2, MAX_BACKOFF_SECONDS)
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
