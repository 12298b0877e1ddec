"""The chat as the feed's sink: notices rendered and sent to the one authorised chat.

Delivery order, at-most-once marks and the store's refusals are the feed's (core.feed); here
is what is Telegram's: rendering, NOTIFY_MIN_SATS, and Telegram's ways of saying "not now".
An outage or a 429 holds the feed; a token Telegram rejects, or a chat that became a
supergroup, does not heal without the operator: said once, and retried ever more rarely.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Sequence
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
from core.events import (
    AlertCleared,
    AlertRaised,
    DaemonStarted,
    DaemonStopping,
    Digest,
    Notice,
    RebalanceLanded,
    ReportReady,
    Text,
)
from core.feed import DeliveryHeld, Episodes, FeedPump
from core.state import StateStore

log = logging.getLogger("bot.outbox")

# Long outages: stop hammering the Bot API, try again at most this often.
MAX_BACKOFF_SECONDS = 60.0
# Refusals only the operator can end (token, chat id): retry rarely, in case one heals.
MAX_REFUSED_BACKOFF_SECONDS = 300.0
CAPTION_LIMIT = 1024
# Until the face has connected (getMe answered), the feed looks again this often.
NOT_CONNECTED_SECONDS = 1.0

BOTFATHER_HINT = (
    "TELEGRAM_TOKEN was rejected (revoked?): get a new token from @BotFather and restart"
)


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


def notice_text(
    notices: Sequence[Notice], min_sats: int, now: float, zone: dt.tzinfo
) -> str | None:
    """The chat message for one feed batch; None when it says nothing (dust, nothing left)."""
    first = notices[0]
    match first:
        case RebalanceLanded():  # NOTIFY_MIN_SATS on each run's total
            shown = [
                n for n in notices if isinstance(n, RebalanceLanded) and n.amount_sat >= min_sats
            ]
            return render.rebalances(shown) if shown else None
        case Digest(start, end, landed):
            kept = [r for r in landed if r.amount_sat >= min_sats]
            return render.digest(start, end, kept, zone) if kept else None
        case AlertRaised(_, message):
            return render.alert(message)
        case AlertCleared(_, message):
            return render.recovered(message)
        case DaemonStarted():
            return render.started(first, now, zone)
        case DaemonStopping():
            return render.stopping(first, now, zone)
        case ReportReady(_, summary, _):
            return render.report(summary)
        case Text(text):
            return text


@dataclass
class TelegramSink:
    """Sends feed notices to the one authorised chat (see core.feed.Sink)."""

    bot: Bot
    chat_id: int
    min_sats: int = 0
    zone: dt.tzinfo = dt.UTC
    episodes: Episodes = field(default_factory=lambda: Episodes(log))
    # False until the face has connected: the feed holds what the chat should hear.
    connected: bool = True
    _backoff: float = 1.0

    async def deliver(self, notices: Sequence[Notice]) -> None:
        if not self.connected:
            raise DeliveryHeld(NOT_CONNECTED_SECONDS)
        text = notice_text(notices, self.min_sats, time.time(), self.zone)
        if text is None:
            return
        asked = time.monotonic()
        try:
            if isinstance(notices[0], ReportReady):
                await self._send_report(text, notices[0].chart)
            else:
                await self._send(text)
        except RetryAfter as exc:
            wait = exc.retry_after
            seconds = wait.total_seconds() if isinstance(wait, dt.timedelta) else float(wait)
            log.warning("Telegram asks to wait %.0fs; %d messages held", seconds, len(notices))
            raise DeliveryHeld(seconds) from exc
        except NetworkError as exc:  # also 5xx and timeouts; BadRequest handled inside
            log.warning("Telegram unreachable (%s); %d messages held", exc.message, len(notices))
            raise DeliveryHeld(self._next_backoff(MAX_BACKOFF_SECONDS)) from exc
        except TelegramError as exc:
            refused = refusal(exc)
            if refused is None:
                raise
            self.episodes.begin(*refused)
            raise DeliveryHeld(self._next_backoff(MAX_REFUSED_BACKOFF_SECONDS)) from exc
        self._accepted(asked)

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

    async def _send_report(self, text: str, chart: bytes) -> None:
        """The summary as the chart's caption when it fits, else a message and the chart."""
        if len(render.plain(text)) <= CAPTION_LIMIT:
            await self.bot.send_photo(self.chat_id, chart, caption=text, parse_mode=ParseMode.HTML)
        else:
            await self._send(text)
            await self.bot.send_photo(self.chat_id, chart)

    def _accepted(self, asked_at: float) -> None:
        self._backoff = 1.0
        self.episodes.end("token", "Telegram accepts TELEGRAM_TOKEN again", asked_at)
        self.episodes.end(
            "chat", "Telegram delivers to the chat again; held messages follow", asked_at
        )

    def _next_backoff(self, cap: float) -> float:
        current = min(self._backoff, cap)
        self._backoff = min(self._backoff * 2, cap)
        return current


class OutboxSender(FeedPump):
    """The feed delivered to the chat: a `FeedPump` with a `TelegramSink`."""

    def __init__(
        self,
        bot: Bot,
        store: StateStore,
        chat_id: int,
        min_sats: int = 0,
        episodes: Episodes | None = None,
    ) -> None:
        episodes = episodes or Episodes(log)
        self.telegram = TelegramSink(bot, chat_id, min_sats, episodes=episodes)
        super().__init__(store, self.telegram, episodes)
