"""The Telegram face: the feed's sink, the chat's commands and long polling.

The runtime (core.runtime) runs the daemon; this only adds what the chat needs, and never
holds the engine up: it connects in the background, logs while the Bot API is unreachable,
and the feed's notices (the start-up message first) leave once Telegram answers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from telegram import BotCommand, Update
from telegram.error import InvalidToken, NetworkError, TelegramError
from telegram.ext import AIORateLimiter, Application, ApplicationBuilder, TypeHandler
from telegram.request import HTTPXRequest

from bot import render
from bot.auth import make_guard
from bot.handlers import Commands
from bot.outbox import BOTFATHER_HINT, TelegramSink
from core.control import Control
from core.feed import Episodes
from core.report_delivery import Reporter
from core.settings import Settings

log = logging.getLogger("bot.app")

# While the Bot API is unreachable at start, connecting is retried after this, doubling.
CONNECT_RETRY_SECONDS = 2.0
CONNECT_RETRY_MAX = 60.0
# Polling that keeps failing sleeps between tries (PTB: up to 30 s) before it sees a stop.
POLLING_STOP_SECONDS = 2.0

App = Application[Any, Any, Any, Any, Any, Any]


def file_url(base_url: str) -> str:
    """PTB's file URL for a Bot API base URL (`.../bot` -> `.../file/bot`)."""
    head, _, _ = base_url.rpartition("/bot")
    return f"{head}/file/bot" if head else base_url


class TokenRejected(TelegramError):
    """getUpdates was refused for the token (PTB's InvalidToken), as an error polling retries."""


class PollingWatch:
    """Polling trouble in the log: one line when getUpdates starts failing, one when it works.

    `failed` is the updater's `error_callback`; `worked` is called by `PollingRequest`.
    """

    def __init__(self, episodes: Episodes) -> None:
        self.episodes = episodes

    def failed(self, exc: TelegramError) -> None:
        if isinstance(exc, TokenRejected):
            self.episodes.begin("token", BOTFATHER_HINT)
        else:
            self.episodes.begin(
                "polling",
                f"Telegram polling fails ({exc.message}); commands wait, retrying",
                logging.WARNING,
            )

    def worked(self, asked_at: float) -> None:
        self.episodes.end("token", "Telegram accepts TELEGRAM_TOKEN again", asked_at)
        self.episodes.end("polling", "Telegram polling works again", asked_at)


class PollingRequest(HTTPXRequest):
    """getUpdates' connection (PTB's default for it), reporting to a `PollingWatch`.

    PTB's polling loop gives up for good on a 401/404 (InvalidToken), silently for the chat,
    and `Updater.stop` raises it again at shutdown; as `TokenRejected` it is retried like any
    error (PTB backs off to 30 s), and commands are read again once the token works.
    """

    def __init__(self, watch: PollingWatch) -> None:
        super().__init__(connection_pool_size=1)
        self.watch = watch

    async def do_request(self, *args: Any, **kwargs: Any) -> tuple[int, bytes]:
        asked = time.monotonic()
        code, payload = await super().do_request(*args, **kwargs)
        if code in (HTTPStatus.UNAUTHORIZED, HTTPStatus.NOT_FOUND):
            raise TokenRejected(f"{HTTPStatus(code).phrase} ({code})")
        if HTTPStatus.OK <= code < HTTPStatus.MULTIPLE_CHOICES:
            self.watch.worked(asked)
        return code, payload


def build_application(settings: Settings, watch: PollingWatch | None = None) -> App:
    assert settings.telegram_token is not None
    builder = (
        ApplicationBuilder()
        .token(settings.telegram_token.get_secret_value())
        .base_url(settings.telegram_api_base_url)
        .base_file_url(file_url(settings.telegram_api_base_url))
        .rate_limiter(AIORateLimiter(max_retries=0))
        # A command waiting on a slow LNDg (/pairs) must not hold up /status.
        .concurrent_updates(True)
        # The runtime (core.runtime) schedules every job; PTB only polls and dispatches.
        .job_queue(None)
    )
    if watch is not None:
        builder = builder.get_updates_request(PollingRequest(watch))
    return builder.build()


class TelegramFace:
    """The chat: connects in the background, then reads commands and delivers the feed."""

    name = "with Telegram"

    def __init__(self, settings: Settings) -> None:
        assert settings.telegram_chat_id is not None
        self.settings = settings
        self.episodes = Episodes(logging.getLogger("bot.outbox"))  # once per episode in the log
        self.watch = PollingWatch(self.episodes)
        self.app = build_application(settings, self.watch)
        self.sink = TelegramSink(
            self.app.bot,
            settings.telegram_chat_id,
            settings.notify_min_sats,
            settings.zone,
            self.episodes,
            connected=False,
        )
        self._connecting: asyncio.Task[None] | None = None
        self._polling: asyncio.Task[Any] | None = None

    def start(self, control: Control, reporter: Reporter, stop: Callable[[int], None]) -> None:
        settings = self.settings
        assert settings.telegram_chat_id is not None
        self.app.add_handler(
            TypeHandler(
                Update, make_guard(settings.telegram_chat_id, settings.telegram_allowed_user_ids)
            ),
            group=-1,
        )
        Commands(control, reporter, settings).register(self.app)
        self._connecting = asyncio.create_task(self._connect(stop), name="telegram connect")

    async def _connect(self, stop: Callable[[int], None]) -> None:
        """getMe until Telegram answers, then the command menu, the feed and polling."""
        delay = CONNECT_RETRY_SECONDS
        while True:
            try:
                await self.app.initialize()
                break
            except InvalidToken:
                log.error(
                    "TELEGRAM_TOKEN was rejected by Telegram; get a valid one from @BotFather"
                )
                stop(2)
                return
            except (NetworkError, TelegramError) as exc:
                log.warning(
                    "Telegram Bot API unreachable (%s); rebalancing goes on, the chat waits; "
                    "retrying in %.0fs",
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, CONNECT_RETRY_MAX)
        try:
            await self.app.bot.set_my_commands([BotCommand(c, d) for c, d in render.COMMANDS])
        except TelegramError as exc:
            log.warning("could not set the chat's command menu: %s", exc)
        self.sink.connected = True
        log.info("Telegram connected: the chat gets the feed, commands are read")
        await self.app.start()
        assert self.app.updater is not None
        # bootstrap_retries=-1: a network blip while polling starts is retried, not fatal.
        try:
            await self.app.updater.start_polling(
                allowed_updates=Update.ALL_TYPES,
                drop_pending_updates=False,
                timeout=10,
                bootstrap_retries=-1,
                error_callback=self.watch.failed,
            )
        except Exception as failure:  # e.g. the token rejected between getMe and polling
            log.error(
                "Telegram polling did not start (%s: %s); commands are not read until restart",
                type(failure).__name__,
                failure,
            )

    async def stop(self) -> None:
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
            await asyncio.gather(self._connecting, return_exceptions=True)
        if not self.sink.connected:
            return
        updater = self.app.updater
        if updater is not None and updater.running:
            try:
                await asyncio.wait_for(updater.stop(), POLLING_STOP_SECONDS)
            except TimeoutError:  # cancelled in its sleep: stopped all the same
                log.info("Telegram polling was waiting to retry; stopped")
            except TelegramError as exc:  # polling ended in an error: a line, no traceback
                log.warning("Telegram polling ended with %s: %s", type(exc).__name__, exc)
        if self.app.running:
            await self.app.stop()
        await self.app.shutdown()
