"""The Telegram face: a PTB Application embedding the engine, scheduled on its JobQueue."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from http import HTTPStatus
from typing import Any

from telegram import BotCommand, Update
from telegram.constants import ParseMode
from telegram.error import InvalidToken, NetworkError, TelegramError
from telegram.ext import AIORateLimiter, Application, ApplicationBuilder, ContextTypes, TypeHandler
from telegram.request import HTTPXRequest

from bot import render
from bot.auth import make_guard
from bot.handlers import Commands
from bot.outbox import BOTFATHER_HINT, Episodes, OutboxSender, text_message
from core.daemon import (
    LEDGER_POLL_SECONDS,
    REPORT_CHECK_SECONDS,
    DailyReports,
    SendReport,
    describe_mode,
    open_services,
    stop_services,
)
from core.engine import Engine
from core.events import AlertCleared, AlertRaised, Event
from core.report import DayReport, format_summary
from core.settings import Settings

log = logging.getLogger("bot.app")

OUTBOX_FLUSH_SECONDS = 1.0
CAPTION_LIMIT = 1024
# The shutdown message gets this long to leave before the process exits.
FAREWELL_SECONDS = 2.0
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
    )
    if watch is not None:
        builder = builder.get_updates_request(PollingRequest(watch))
    return builder.build()


def alerts_to_outbox(engine: Engine) -> Any:
    """Listener: alerts and recoveries become outbox messages (rebalances already are)."""

    def listener(event: Event) -> None:
        if isinstance(event, AlertRaised):
            engine.store.enqueue("text", text_message(render.alert(event.message)))
        elif isinstance(event, AlertCleared):
            engine.store.enqueue("text", text_message(render.recovered(event.message)))

    return listener


async def _initialize(app: App, stopping: asyncio.Event) -> bool:
    """Connect to the Bot API, retrying while it is unreachable; False if told to stop."""
    delay = 2.0
    while not stopping.is_set():
        try:
            await app.initialize()
            return True
        except InvalidToken:
            raise
        except (NetworkError, TelegramError) as exc:
            log.warning("Telegram Bot API unreachable (%s); retrying in %.0fs", exc, delay)
            try:
                await asyncio.wait_for(stopping.wait(), delay)
            except TimeoutError:
                delay = min(delay * 2, 60.0)
    return False


async def run_bot(settings: Settings) -> int:
    """Run the daemon with the chat until SIGTERM or SIGINT."""
    assert settings.telegram_chat_id is not None
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)

    async with open_services(settings, notify=True) as services:
        engine = services.engine
        engine.events.subscribe(alerts_to_outbox(engine))
        episodes = Episodes()  # Telegram trouble, once per episode in the log
        watch = PollingWatch(episodes)
        app = build_application(settings, watch)
        try:
            if not await _initialize(app, stopping):
                return 0
        except InvalidToken:
            log.error("TELEGRAM_TOKEN was rejected by Telegram; get a valid one from @BotFather")
            return 2
        sender = OutboxSender(
            app.bot,
            engine.store,
            settings.telegram_chat_id,
            settings.notify_min_sats,
            episodes=episodes,
        )
        commands = Commands(engine, services.reporter)
        reports = DailyReports(
            services.reporter, engine, report_sender(app, settings.telegram_chat_id)
        )
        app.add_handler(
            TypeHandler(
                Update, make_guard(settings.telegram_chat_id, settings.telegram_allowed_user_ids)
            ),
            group=-1,
        )
        commands.register(app)
        _schedule(app, engine, sender, settings, commands, reports)
        try:
            await app.bot.set_my_commands([BotCommand(c, d) for c, d in render.COMMANDS])
        except TelegramError as exc:
            log.warning("could not set the chat's command menu: %s", exc)
        mode = describe_mode(engine)
        engine.store.enqueue(
            "text", text_message(render.started(mode, settings.sleep_seconds, settings.max_workers))
        )
        log.info(
            "regolancer-orchestrator started with Telegram (%s), cycle every %ds, %d workers",
            mode,
            settings.sleep_seconds,
            settings.max_workers,
        )
        await app.start()
        assert app.updater is not None
        # bootstrap_retries=-1: a network blip while polling starts is retried, not fatal;
        # raced against the stop signal so SIGTERM still ends a start that never succeeds.
        polling = asyncio.create_task(
            app.updater.start_polling(
                allowed_updates=Update.ALL_TYPES,
                drop_pending_updates=False,
                timeout=10,
                bootstrap_retries=-1,
                error_callback=watch.failed,
            )
        )
        stop_wait = asyncio.create_task(stopping.wait())
        await asyncio.wait({polling, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        if not polling.done():
            polling.cancel()
        elif (failure := polling.exception()) is not None:
            # e.g. the token rejected between getMe and polling: the engine still runs.
            log.error(
                "Telegram polling did not start (%s: %s); commands are not read until restart",
                type(failure).__name__,
                failure,
            )
        await stopping.wait()

        log.info("stopping: no new runs, stopping running regolancer processes")
        # Stop the engine first: PTB waits for running jobs, and a cycle job waits for
        # its regolancer runs.
        await stop_services(services)
        engine.store.enqueue("text", text_message(render.stopping(describe_mode(engine))))
        try:
            await asyncio.wait_for(sender.flush(), FAREWELL_SECONDS)
        except TimeoutError:
            log.warning("shutdown message not delivered in time; it stays in the outbox")
        if app.updater.running:
            try:
                await asyncio.wait_for(app.updater.stop(), POLLING_STOP_SECONDS)
            except TimeoutError:  # cancelled in its sleep: stopped all the same
                log.info("Telegram polling was waiting to retry; stopped")
            except TelegramError as exc:  # polling ended in an error: a line, no traceback
                log.warning("Telegram polling ended with %s: %s", type(exc).__name__, exc)
        await app.stop()
        await app.shutdown()
    log.info("stopped")
    return 0


def report_sender(app: App, chat_id: int) -> SendReport:
    """Daily reports go straight to the chat (the report store makes them at most once)."""

    async def send(report: DayReport, chart: bytes) -> None:
        text = render.report(format_summary(report))
        if len(render.plain(text)) <= CAPTION_LIMIT:
            await app.bot.send_photo(chat_id, chart, caption=text, parse_mode=ParseMode.HTML)
        else:
            await app.bot.send_message(chat_id, text, parse_mode=ParseMode.HTML)
            await app.bot.send_photo(chat_id, chart)

    return send


def _schedule(
    app: App,
    engine: Engine,
    sender: OutboxSender,
    settings: Settings,
    commands: Commands,
    reports: DailyReports,
) -> None:
    jobs = app.job_queue
    assert jobs is not None

    # A busy event loop must delay the next cycle, never drop it as missed.
    late_ok = {"misfire_grace_time": None}

    async def cycle(context: ContextTypes.DEFAULT_TYPE) -> None:
        # A cycle, then the pause the engine asks for (SLEEP_SECONDS unless work is
        # waiting), so cycles never overlap.
        try:
            await engine.cycle()
        finally:
            if not engine.stopping:
                jobs.run_once(
                    cycle, when=engine.next_cycle_delay(), name="cycle", job_kwargs=late_ok
                )

    async def ledger(context: ContextTypes.DEFAULT_TYPE) -> None:
        engine.poll_ledger()

    async def outbox(context: ContextTypes.DEFAULT_TYPE) -> None:
        await sender.flush()

    async def report(context: ContextTypes.DEFAULT_TYPE) -> None:
        await reports.tick()

    once = {"max_instances": 1, "coalesce": True}
    jobs.run_repeating(
        report, interval=REPORT_CHECK_SECONDS, first=5.0, name="report", job_kwargs=once
    )
    jobs.run_once(cycle, when=1.0, name="cycle", job_kwargs=late_ok)
    jobs.run_repeating(
        ledger, interval=LEDGER_POLL_SECONDS, first=0.5, name="ledger", job_kwargs=once
    )
    jobs.run_repeating(
        outbox, interval=OUTBOX_FLUSH_SECONDS, first=0.5, name="outbox", job_kwargs=once
    )

    def next_cycle() -> float | None:
        pending = [job.next_t for job in jobs.get_jobs_by_name("cycle") if job.next_t is not None]
        return min(pending).timestamp() if pending else None

    commands.next_cycle = next_cycle
