"""Telegram faults: the outbox against the loopback Bot API with PTB's real HTTP stack, and
the daemon as a child process for what happens at start-up.

Rows of docs/RELIABILITY.md: Bot API down, 5xx, 429 with retry_after, a message rejected as
too long, network flaps. Every message leaves exactly once, in order, whatever happened.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.app import App, build_application
from bot.outbox import MAX_BACKOFF_SECONDS, OutboxSender
from core.events import Text
from core.feed import Feed
from core.models import StatLine
from core.settings import load_settings
from core.state import StateStore
from sim.lndg import FakeLndg
from sim.telegram import FakeTelegram
from tests.daemon_process import Daemon, Node, wait_until
from tests.feed_messages import announced_lines

CHAT = 4242
TOKEN = "123456:reliability-telegram-token"


@pytest.fixture
def telegram() -> Iterator[FakeTelegram]:
    with FakeTelegram(token=TOKEN) as fake:
        yield fake


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    with StateStore(tmp_path / "state.sqlite3") as state:
        yield state


@pytest.fixture
async def app(telegram: FakeTelegram) -> AsyncIterator[App]:
    """The daemon's own PTB application (rate limiter and all), pointed at the stand-in."""
    settings = load_settings(
        None,
        telegram_token=TOKEN,
        telegram_chat_id=CHAT,
        telegram_api_base_url=telegram.url,
    )
    application = build_application(settings)
    await application.initialize()
    try:
        yield application
    finally:
        await application.shutdown()


def sent_texts(telegram: FakeTelegram) -> list[str]:
    return [str(c.params["text"]) for c in telegram.calls_to("sendMessage") if c.ok]


def queue(store: StateStore, *texts: str) -> None:
    for text in texts:
        Feed(store).put(Text(text))


async def flush_until_empty(sender: OutboxSender, store: StateStore, timeout: float = 15) -> None:
    """What the daemon's 1 s outbox job does, faster: flush until nothing is pending."""
    deadline = time.monotonic() + timeout
    while store.pending_messages():
        assert time.monotonic() < deadline, "outbox not drained"
        await sender.flush()
        await asyncio.sleep(0.05)


async def test_5xx_answers_hold_the_outbox_then_each_message_leaves_once(
    app: App, telegram: FakeTelegram, store: StateStore
) -> None:
    sender = OutboxSender(app.bot, store, CHAT)
    queue(store, "one", "two", "three")
    telegram.fail_next(1, 500, method="sendMessage")
    telegram.fail_next(1, 502, method="sendMessage")
    assert await sender.flush() == 0  # 500: held for the first backoff step
    assert await sender.flush() == 0  # still held: no request made
    assert len(telegram.calls_to("sendMessage")) == 1
    await flush_until_empty(sender, store)
    assert sent_texts(telegram) == ["one", "two", "three"]
    assert [c.status for c in telegram.calls_to("sendMessage")] == [500, 502, 200, 200, 200]


async def test_429_waits_the_retry_after_it_was_given(
    app: App, telegram: FakeTelegram, store: StateStore
) -> None:
    sender = OutboxSender(app.bot, store, CHAT)
    queue(store, "rate limited")
    telegram.rate_limit_next(1, retry_after=2, method="sendMessage")
    started = time.monotonic()
    await flush_until_empty(sender, store)
    calls = telegram.calls_to("sendMessage")
    assert [c.status for c in calls] == [429, 200]
    assert calls[1].time - calls[0].time >= 1.9  # not before Telegram allowed it
    assert time.monotonic() - started < 6
    assert sent_texts(telegram) == ["rate limited"]


async def test_message_rejected_as_too_long_is_sent_as_a_cut_plain_copy(
    app: App, telegram: FakeTelegram, store: StateStore
) -> None:
    sender = OutboxSender(app.bot, store, CHAT)
    long_text = "<b>history</b>\n" + "\n".join(f"line {i} &amp; more" for i in range(600))
    queue(store, long_text, "after it")
    await flush_until_empty(sender, store)
    first, second = telegram.calls_to("sendMessage")[:2]
    assert first.status == 400
    assert "message is too long" in str(first.response)
    assert second.ok
    plain = str(second.params["text"])
    assert "parse_mode" not in second.params
    assert plain.startswith("history\nline 0 & more")
    assert plain.endswith("… (cut)")
    assert len(plain) <= 4096
    assert sent_texts(telegram)[-1] == "after it"  # the queue moved on
    assert store.pending_messages() == []


async def test_message_rejected_twice_is_dropped_not_stuck(
    app: App, telegram: FakeTelegram, store: StateStore, caplog: pytest.LogCaptureFixture
) -> None:
    sender = OutboxSender(app.bot, store, CHAT)
    queue(store, "poison", "next")
    telegram.fail_next(2, 400, method="sendMessage", description="Bad Request: message is too long")
    await flush_until_empty(sender, store)
    assert sent_texts(telegram) == ["next"]
    assert "rejected the plain copy too" in caplog.text


@pytest.mark.parametrize("mode", ["refuse", "drop"])
async def test_outage_and_flaps_deliver_everything_once_in_order(
    app: App, telegram: FakeTelegram, store: StateStore, mode: str
) -> None:
    sender = OutboxSender(app.bot, store, CHAT)
    texts = [f"message {i}" for i in range(12)]
    for index, text in enumerate(texts):
        queue(store, text)
        if index % 3 == 0:
            telegram.go_down(mode)  # type: ignore[arg-type]
            await sender.flush()
            telegram.come_back()
        elif index % 3 == 1:
            telegram.drop_next(1, method="sendMessage")  # one connection cut mid-request
        sender._hold_until = 0  # the test does not wait out the backoff
        await sender.flush()
    await flush_until_empty(sender, store)
    assert sent_texts(telegram) == texts


async def test_backoff_of_a_long_outage_is_bounded(
    app: App, telegram: FakeTelegram, store: StateStore
) -> None:
    sender = OutboxSender(app.bot, store, CHAT)
    queue(store, "waiting")
    telegram.go_down("refuse")
    holds = []
    for _ in range(10):
        sender._hold_until = 0
        await sender.flush()
        holds.append(round(sender._hold_until - time.monotonic()))
    assert holds[:4] == [1, 2, 4, 8]
    assert max(holds) == MAX_BACKOFF_SECONDS
    telegram.come_back()
    sender._hold_until = 0
    await flush_until_empty(sender, store)
    assert sent_texts(telegram) == ["waiting"]
    assert sender.telegram._backoff == 1.0  # a success resets it


async def test_concurrent_flushes_send_each_message_once(
    app: App, telegram: FakeTelegram, store: StateStore
) -> None:
    # At shutdown the farewell flush runs while the outbox job may be mid-flush.
    sender = OutboxSender(app.bot, store, CHAT)
    queue(store, "first", "second")
    telegram.delay_next(1, 0.5, method="sendMessage")
    await asyncio.gather(sender.flush(), sender.flush(), sender.flush())
    await flush_until_empty(sender, store)
    assert sent_texts(telegram) == ["first", "second"]


async def test_rebalance_rows_are_batched_within_the_limit(
    app: App, telegram: FakeTelegram, store: StateStore
) -> None:
    sender = OutboxSender(app.bot, store, CHAT)
    long_alias = "A" * 32  # LND's longest alias
    lines = [
        (
            StatLine(1_764_000_000 + i, "1", "2", 1_000_000_000 + i * 1000, 123_456),
            long_alias,
            "🦄" * 32,
        )
        for i in range(75)
    ]
    store.record_stat_lines(lines, (1, 1), read_from=None)
    await flush_until_empty(sender, store)
    texts = sent_texts(telegram)
    shown = [line for text in texts for line in text.splitlines() if line.startswith("• ")]
    assert len(texts) == 3  # 30 + 30 + 15
    assert len(shown) == 75  # nothing cut away
    assert all("… (cut)" not in text for text in texts)


# --- the daemon as a child process ------------------------------------------------------


def bot_node(tmp_path: Path, lndg: FakeLndg, telegram: FakeTelegram, **extra: Any) -> Node:
    settings: dict[str, Any] = {"sleep_seconds": 3600, **extra}
    return Node(
        tmp_path,
        lndg.url,
        telegram_token=TOKEN,
        telegram_chat_id=CHAT,
        telegram_api_base_url=telegram.url,
        **settings,
    )


@pytest.mark.subprocess
def test_bot_api_down_at_start_up_the_daemon_waits_and_stops_promptly(
    tmp_path: Path, telegram: FakeTelegram
) -> None:
    telegram.go_down("refuse")
    with FakeLndg() as lndg:
        daemon = Daemon(bot_node(tmp_path, lndg, telegram)).start()
        try:
            daemon.wait_for_log(r"Telegram Bot API unreachable .*; retrying in 2s", timeout=30)
            daemon.wait_for_log(r"retrying in 4s", timeout=30)
            code, seconds = daemon.stop(signal.SIGTERM)
        finally:
            daemon.kill()
    assert (code, seconds < 5) == (0, True)
    assert "Traceback" not in daemon.output
    assert TOKEN not in daemon.output
    telegram.come_back()
    daemon = Daemon(daemon.node).start()  # back up: it starts and says so
    try:
        telegram.wait_for_message(CHAT, text="started", timeout=30)
    finally:
        daemon.kill()


@pytest.mark.subprocess
def test_bot_api_back_after_a_start_up_outage_gets_the_started_message(
    tmp_path: Path, telegram: FakeTelegram
) -> None:
    telegram.go_down("drop")
    with FakeLndg() as lndg:
        daemon = Daemon(bot_node(tmp_path, lndg, telegram)).start()
        try:
            daemon.wait_for_log(r"Telegram Bot API unreachable", timeout=30)
            telegram.come_back()
            telegram.wait_for_message(CHAT, text="started", timeout=30)
            code, _ = daemon.stop()
        finally:
            daemon.kill()
    assert code == 0
    assert len([t for t in sent_texts(telegram) if "started" in t]) == 1


@pytest.mark.subprocess
def test_rebalancing_does_not_wait_for_an_unreachable_bot_api(
    tmp_path: Path, telegram: FakeTelegram
) -> None:
    """A Tor-only node, DNS at boot: the engine starts at once, the chat catches up later."""
    telegram.go_down("refuse")
    with FakeLndg() as lndg:
        node = bot_node(tmp_path, lndg, telegram, sleep_seconds=3600)
        node.set_scenario({"outcome": "success", "steps": 1, "delay": 0.05})
        daemon = Daemon(node).start()
        try:
            daemon.wait_for_log(r"Telegram Bot API unreachable .*rebalancing goes on", timeout=30)
            # the first cycle runs while Telegram is still down, and its rebalances land
            daemon.wait_for_log("cycle finish: [1-9][0-9]* runs", timeout=30)
            wait_until(lambda: node.ledger(), 30, "a ledger row while Telegram is down")
            assert telegram.calls_to("sendMessage") == []
            telegram.come_back()
            telegram.wait_for_message(CHAT, text="started", timeout=30)
            wait_until(
                lambda: arrows(sent_texts(telegram)) == len(node.ledger()),
                30,
                "every rebalance in the chat",
            )
            code, _ = daemon.stop()
        finally:
            daemon.kill()
    assert code == 0
    texts = sent_texts(telegram)
    # the start-up message first, then what landed while the chat was away, each once
    assert "started" in texts[0]
    assert len([t for t in texts if "started" in t]) == 1
    assert arrows(texts) == len(node.ledger()) > 0
    assert "Telegram connected" in daemon.output


def arrows(texts: list[str]) -> int:
    """Rebalances told in the chat: one `→` per rebalance line."""
    return sum(t.count("→") for t in texts)


@pytest.mark.subprocess
def test_connection_cut_while_polling_starts_does_not_end_the_daemon(
    tmp_path: Path, telegram: FakeTelegram
) -> None:
    with FakeLndg() as lndg:
        node = bot_node(tmp_path, lndg, telegram)
        telegram.drop_next(1, method="deleteWebhook")
        daemon = Daemon(node).start()
        proc = daemon.proc
        assert proc is not None
        try:
            wait_until(
                lambda: proc.poll() is not None or telegram.polls_waiting > 0,
                30,
                "long polling or the daemon's end",
            )
            assert proc.poll() is None, daemon.output[-2000:]
        finally:
            daemon.kill()


@pytest.mark.subprocess
def test_flapping_bot_api_while_rebalancing_loses_and_repeats_nothing(
    tmp_path: Path, telegram: FakeTelegram
) -> None:
    with FakeLndg() as lndg:
        node = bot_node(tmp_path, lndg, telegram, sleep_seconds=1)
        node.set_scenario({"outcome": "success", "steps": 2, "delay": 0.05, "unique_amounts": True})
        daemon = Daemon(node).start()
        try:
            telegram.wait_for_message(CHAT, text="started", timeout=30)
            for round_ in range(6):
                telegram.go_down("drop" if round_ % 2 else "refuse")
                time.sleep(0.7)
                telegram.come_back()
                telegram.clear_faults()  # at most one pending 5xx
                telegram.fail_next(1, 502, method="sendMessage")
                time.sleep(1.0)
            telegram.clear_faults()
            wait_until(lambda: len(node.ledger()) >= 10, 30, "rebalances")
            code, _ = daemon.stop()
        finally:
            daemon.kill()
        assert code == 0
        # a graceful restart delivers what was held, nothing twice
        node.set_scenario({"outcome": "no_route"})
        daemon = Daemon(node).start()
        try:
            daemon.wait_for_log("started with Telegram", timeout=30)
            wait_until(
                lambda: not node.query("SELECT 1 FROM outbox WHERE sent_at IS NULL"), 60, "outbox"
            )
            code, _ = daemon.stop()
        finally:
            daemon.kill()
    assert code == 0
    # A run's two payments are one rebalance in the chat: each line is announced once.
    amounts = announced_lines(sent_texts(telegram), node.ledger())
    assert sorted(amounts) == sorted(row[3] // 1000 for row in node.ledger())
    assert node.ledger() == node.stat_lines()
