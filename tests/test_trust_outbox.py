"""The outbox when its own ground gives way: a state database that refuses the sent-mark,
a token Telegram rejects, a chat that became a supergroup, and polling through them.

Real SQLite, PTB's real HTTP stack against the loopback Bot API (sim/telegram.py).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from telegram import Update
from telegram.ext import TypeHandler

from bot.app import App, PollingWatch, build_application
from bot.outbox import BOTFATHER_HINT, OutboxSender
from core.events import Text
from core.feed import Episodes, Feed
from core.settings import load_settings
from core.state import StateStore
from sim.telegram import FakeTelegram
from tests.fakes.state import RefusingStore

CHAT = 4242
TOKEN = "123456:trust-outbox-token"


@pytest.fixture
def telegram() -> Iterator[FakeTelegram]:
    with FakeTelegram(token=TOKEN, max_long_poll=1.0) as fake:
        yield fake


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RefusingStore]:
    refusing = RefusingStore(tmp_path / "state.sqlite3")
    try:
        yield refusing
    finally:
        refusing.close()


async def application(telegram: FakeTelegram, watch: PollingWatch | None = None) -> App:
    settings = load_settings(
        None, telegram_token=TOKEN, telegram_chat_id=CHAT, telegram_api_base_url=telegram.url
    )
    app = build_application(settings, watch)
    await app.initialize()
    return app


@pytest.fixture
async def app(telegram: FakeTelegram) -> AsyncIterator[App]:
    application_ = await application(telegram)
    try:
        yield application_
    finally:
        await application_.shutdown()


def sent_texts(telegram: FakeTelegram) -> list[str]:
    return [str(c.params["text"]) for c in telegram.calls_to("sendMessage") if c.ok]


def queue(store: StateStore, *texts: str) -> None:
    for text in texts:
        Feed(store).put(Text(text))


def lines(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(text in record.getMessage() for record in caplog.records)


async def eventually(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def drain(sender: OutboxSender, store: StateStore, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while store.pending_messages():
        assert time.monotonic() < deadline, "outbox not drained"
        sender._hold_until = 0  # the test does not wait out backoffs
        await sender.flush()
        await asyncio.sleep(0.02)


# --- the state database refuses the sent-mark ----------------------------------------------


async def test_a_message_telegram_accepted_is_not_sent_again_while_its_mark_fails(
    app: App, telegram: FakeTelegram, store: RefusingStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    sender = OutboxSender(app.bot, store, CHAT)
    queue(store, "one", "two")
    store.refusing = True
    for _ in range(22):  # the outbox job, once a second for 22 s
        await sender.flush()
    assert sent_texts(telegram) == ["one"]  # accepted once; nothing new while marks fail
    assert store.refused == 22  # the mark is tried again at every flush, before anything
    assert lines(caplog, "state database refuses to record 1 sent message(s)") == 1
    store.refusing = False
    await drain(sender, store)
    assert sent_texts(telegram) == ["one", "two"]
    assert lines(caplog, "state database takes writes again") == 1
    assert store.pending_messages() == []


async def test_a_write_lock_held_beyond_busy_timeout_repeats_no_message(
    app: App, telegram: FakeTelegram, tmp_path: Path
) -> None:
    path = tmp_path / "locked.sqlite3"
    with StateStore(path) as real:
        sender = OutboxSender(app.bot, real, CHAT)
        queue(real, "first", "second")
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        try:
            started = time.monotonic()
            assert await sender.flush() == 1  # sent; the mark waits busy_timeout, fails
            assert time.monotonic() - started >= 4.5
            await sender.flush()  # still locked: the mark is retried, nothing is sent
            assert sent_texts(telegram) == ["first"]
        finally:
            other.execute("COMMIT")
            other.close()
        await drain(sender, real)
        assert sent_texts(telegram) == ["first", "second"]
        assert real.pending_messages() == []


# --- refusals only the operator can end ----------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "said"),
    [
        ("token", BOTFATHER_HINT),
        ("chat", "the chat became a supergroup: set TELEGRAM_CHAT_ID=-100123 and restart"),
    ],
)
async def test_a_refusal_is_said_once_and_held_with_growing_backoff(
    app: App,
    telegram: FakeTelegram,
    store: RefusingStore,
    caplog: pytest.LogCaptureFixture,
    fault: str,
    said: str,
) -> None:
    caplog.set_level(logging.INFO)
    sender = OutboxSender(app.bot, store, CHAT)
    queue(store, "held")
    if fault == "token":
        telegram.reject_token()
    else:
        telegram.migrate_chat(CHAT, -100123)
    holds = []
    for _ in range(12):
        sender._hold_until = 0  # each flush meets the refusal again
        assert await sender.flush() == 0
        holds.append(round(sender._hold_until - time.monotonic()))
    assert holds[:5] == [1, 2, 4, 8, 16]
    assert max(holds) == 300  # a few minutes at most, then it keeps trying that often
    assert lines(caplog, said) == 1
    assert sent_texts(telegram) == []
    telegram.clear_faults()  # a new token / the operator fixed it (or it healed)
    await drain(sender, store)
    assert sent_texts(telegram) == ["held"]
    assert lines(caplog, "again") == 1
    assert sender.telegram._backoff == 1.0


@asynccontextmanager
async def polling(telegram: FakeTelegram, watch: PollingWatch) -> AsyncIterator[App]:
    """The daemon's Application polling the stand-in as the Telegram face has it poll."""
    app = await application(telegram, watch)
    assert app.updater is not None
    try:
        await app.start()
        await app.updater.start_polling(timeout=1, error_callback=watch.failed)
        await eventually(lambda: telegram.polls_waiting, 10, "a poll")
        yield app
    finally:
        if app.updater.running:
            await app.updater.stop()
        if app.running:
            await app.stop()
        await app.shutdown()


async def test_polling_survives_a_rejected_token_and_reads_commands_again(
    telegram: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    received: list[Update] = []

    async def collect(update: Update, context: object) -> None:
        received.append(update)

    async with polling(telegram, PollingWatch(Episodes())) as app:
        app.add_handler(TypeHandler(Update, collect))
        telegram.reject_token()
        await eventually(lambda: lines(caplog, BOTFATHER_HINT), 10, "the refusal said")
        await asyncio.sleep(3)  # PTB retries meanwhile (1, 1.5, 2.25 s ...)
        assert len([c for c in telegram.calls_to("getUpdates") if c.status == 401]) >= 2
        assert lines(caplog, BOTFATHER_HINT) == 1
        telegram.clear_faults()  # a transient refusal, or the token works again
        telegram.inject_message(CHAT, CHAT, "/status")
        await eventually(lambda: received, 30, "the command read after the token works")
        assert lines(caplog, "Telegram accepts TELEGRAM_TOKEN again") == 1
        assert app.updater is not None
        await app.updater.stop()  # raises nothing: polling never died


async def test_polling_failures_are_one_line_as_they_begin_and_one_as_they_end(
    telegram: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with polling(telegram, PollingWatch(Episodes())):
        telegram.go_down("refuse")
        await eventually(lambda: lines(caplog, "Telegram polling fails"), 15, "the failure said")
        await asyncio.sleep(4)  # PTB retries meanwhile (1, 1.5 s ...)
        assert lines(caplog, "Telegram polling fails") == 1
        telegram.come_back()
        await eventually(lambda: lines(caplog, "Telegram polling works again"), 30, "recovery")
    assert "Exception happened while polling" not in caplog.text
