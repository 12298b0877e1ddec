"""Commands that fail, arguments that look like numbers, buttons that were forged or have
expired, unknown commands, and a slow LNDg: every time the operator gets a reply.

In process: PTB's real dispatch of the daemon's own Application and handlers, against the
loopback Bot API. End to end: the daemon as a child process with the LNDg and Bot API
stand-ins.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from telegram import Update

from bot import render
from bot.app import App, build_application
from bot.arguments import (
    FIRST_REPORT_DAY,
    ArgumentError,
    parse_count,
    parse_duration,
    parse_report_period,
)
from bot.handlers import CONFIRMABLE, Commands, Confirmations
from core.control import Control, Schedule
from core.engine import Engine
from core.settings import load_settings
from sim.lndg import FakeLndg
from sim.telegram import FakeTelegram
from tests.daemon_process import Node, bot_node, running, wait_until
from tests.test_e2e_bot import ask, buttons, channels, press
from tests.test_engine import Node as Channels
from tests.test_engine import ScriptedRunner, make_engine, star_node

CHAT = 4242
OPERATOR = 4242
TOKEN = "123456:trust-chat-token"
TODAY = dt.date(2026, 11, 24)


# --- arguments: ASCII digits, sane dates ------------------------------------------------------


@pytest.mark.parametrize("text", ["²", "³", "٣", "１", "1²"])
def test_digits_that_are_not_ascii_are_refused_with_a_hint(text: str) -> None:
    with pytest.raises(ArgumentError, match="from 1 to 50"):
        parse_count([text])
    with pytest.raises(ArgumentError):
        parse_duration(text)
    with pytest.raises(ArgumentError):
        parse_report_period([f"{text}d"], TODAY)


@pytest.mark.parametrize(
    ("day", "problem"),
    [
        ("0001-01-01", "reports begin on 2018-01-01"),
        ("2017-12-31", "reports begin on 2018-01-01"),
        ("2026-11-25", "has not happened yet"),
        ("2026-02-30", "not a day of the calendar"),
        ("２０２６-11-01", "is not today, yesterday"),
        ("20261101", "is not today, yesterday"),
    ],
)
def test_report_dates_lie_between_mainnet_and_today(day: str, problem: str) -> None:
    with pytest.raises(ArgumentError, match=problem) as caught:
        parse_report_period([day], TODAY)
    assert caught.value.example.startswith("/report")
    assert parse_report_period([FIRST_REPORT_DAY.isoformat()], TODAY) == (FIRST_REPORT_DAY, 1)


# --- confirmations: one registry, short random tokens, in memory -----------------------------


def test_a_confirmation_is_taken_once_by_its_asker_within_ten_minutes() -> None:
    now = [1000.0]
    pending = Confirmations(clock=lambda: now[0])
    token = pending.ask("pause", 7200, user_id=7)
    assert 8 <= len(token) <= 20
    assert ":" not in token
    assert pending.take(token, user_id=8) is None  # someone else in the group
    taken = pending.take(token, user_id=7)
    assert taken is not None
    assert (taken.action, taken.argument) == ("pause", 7200)
    assert pending.take(token, user_id=7) is None  # once
    late = pending.ask("resume", None, user_id=7)
    now[0] += 600
    assert pending.take(late, user_id=7) is None  # expired
    assert len(pending) == 0
    assert Confirmations().take(token, 7) is None  # a restart knows no question


def test_every_confirmable_action_has_a_question() -> None:
    assert set(CONFIRMABLE) == {"dryrun", "pause", "resume", "run", "exclude", "include"}
    assert "Exclude Tgt1" in CONFIRMABLE["exclude"].question(("11", "Tgt1"))
    assert "2h" in CONFIRMABLE["pause"].question(7200)
    assert "until /resume" in CONFIRMABLE["pause"].question(None)
    assert "OFF" in CONFIRMABLE["dryrun"].question(False)


# --- in process: PTB's dispatch, the daemon's handlers ----------------------------------------


class Chat:
    """The daemon's Application and Commands against the Bot API stand-in, fed one update at
    a time through PTB's real dispatch (`process_update`)."""

    def __init__(self, app: App, commands: Commands, telegram: FakeTelegram) -> None:
        self.app = app
        self.commands = commands
        self.telegram = telegram

    async def dispatch(self, update_id: int) -> list[dict[str, Any]]:
        since = self.telegram.mark()
        payload = self.telegram.update(update_id)
        await self.app.process_update(Update.de_json(payload, self.app.bot))
        return [
            {"method": c.method, **c.params}
            for c in self.telegram.calls[since:]
            if c.method in ("sendMessage", "editMessageText", "answerCallbackQuery")
        ]

    async def say(self, text: str, user: int = OPERATOR) -> list[dict[str, Any]]:
        return await self.dispatch(self.telegram.inject_message(CHAT, user, text))

    async def press(self, message_id: int, data: str, user: int = OPERATOR) -> list[dict[str, Any]]:
        return await self.dispatch(
            self.telegram.inject_callback_query(CHAT, user, data, message_id=message_id)
        )


@pytest.fixture
def telegram() -> Iterator[FakeTelegram]:
    with FakeTelegram(token=TOKEN) as fake:
        yield fake


@pytest.fixture
def clock() -> list[float]:
    return [1000.0]


@pytest.fixture
async def chat(tmp_path: Path, telegram: FakeTelegram, clock: list[float]) -> AsyncIterator[Chat]:
    engine, _ = make_engine(tmp_path, Channels(star_node()), ScriptedRunner())
    settings = load_settings(
        None, telegram_token=TOKEN, telegram_chat_id=CHAT, telegram_api_base_url=telegram.url
    )
    app = build_application(settings)
    control = Control(engine, Schedule(start_cycle=lambda: asyncio.create_task(engine.cycle())))
    commands = Commands(
        control, None, settings, confirmations=Confirmations(clock=lambda: clock[0])
    )
    commands.register(app)
    await app.initialize()
    try:
        yield Chat(app, commands, telegram)
    finally:
        await app.shutdown()
        engine.store.close()


def engine_of(chat: Chat) -> Engine:
    return chat.commands.control.engine


def texts(calls: list[dict[str, Any]]) -> list[str]:
    return [str(c.get("text")) for c in calls if c["method"] != "answerCallbackQuery"]


async def test_a_command_that_raises_is_answered_in_one_line_without_its_text(
    chat: Chat, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(count: int) -> list[Any]:
        raise sqlite3.OperationalError("disk I/O error reading /srv/secret-path?token=SECRET")

    monkeypatch.setattr(engine_of(chat).store, "last_rebalances", broken)
    replies = texts(await chat.say("/history 5"))
    assert replies == ["Sorry, /history failed: OperationalError; the log has details."]
    assert "SECRET" not in replies[0]
    failures = [r for r in caplog.records if r.getMessage() == "chat: /history failed"]
    assert len(failures) == 1
    assert failures[0].exc_info is not None
    # the next command works as before
    assert texts(await chat.say("/exclusions"))[0].startswith("No channel is excluded")


async def test_arguments_with_other_digits_get_a_hint_not_silence(chat: Chat) -> None:
    assert texts(await chat.say("/history ²")) == [
        "give a number from 1 to 50. Example: <code>/history 20</code>"
    ]
    assert "Example" in texts(await chat.say("/report ³d"))[0]
    assert "reports begin on 2018-01-01" in texts(await chat.say("/report 0001-01-01"))[0]


async def test_an_unknown_command_gets_a_hint_to_help(chat: Chat) -> None:
    assert texts(await chat.say("/foo bar")) == ["Unknown command /foo; /help lists the commands."]
    assert texts(await chat.say("/foo@some_other_bot")) == []  # not ours to answer
    assert "/status" in texts(await chat.say("/help"))[0]  # known ones still go to theirs


async def test_buttons_carry_a_token_and_forged_or_expired_ones_change_nothing(
    chat: Chat, clock: list[float]
) -> None:
    store = engine_of(chat).store
    (question,) = await chat.say("/pause 2h")
    confirm, cancel = [b["callback_data"] for b in question["reply_markup"]["inline_keyboard"][0]]
    assert confirm.startswith("ok:")
    assert "pause" not in confirm
    assert "7200" not in confirm
    assert cancel == "no:" + confirm[3:]
    asked = chat.telegram.sent_messages(CHAT)[-1]["message_id"]

    for forged in ("ok:pause:99999999999999999999", "ok:dryrun:off", "ok:", "no:nope", "run"):
        calls = await chat.press(asked, forged)
        answers = [c for c in calls if c["method"] == "answerCallbackQuery"]
        assert [a["text"] for a in answers] == [render.CONFIRMATION_VOID], forged
        assert [c for c in calls if c["method"] == "editMessageText"] == []  # not our button
    assert store.paused_until() is None
    assert "Mode</b>: live" in texts(await chat.say("/status"))[0]

    assert texts(await chat.press(asked, confirm, user=777)) == []  # not the asker
    clock[0] += 600  # ten minutes later
    assert texts(await chat.press(asked, confirm)) == [render.CONFIRMATION_VOID]
    assert store.paused_until() is None

    (question,) = await chat.say("/pause 2h")
    asked = chat.telegram.sent_messages(CHAT)[-1]["message_id"]
    confirm = question["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    (done,) = texts(await chat.press(asked, confirm))
    assert done.startswith("Paused. Mode: live, paused until ")
    until = store.paused_until()
    assert until is not None
    assert 7100 < until - time.time() <= 7200
    again = await chat.press(asked, confirm)  # a second tap: the question is gone
    assert [c.get("text") for c in again] == [render.CONFIRMATION_VOID]
    assert "paused until" in texts(await chat.say("/status"))[0]


async def test_a_forged_pause_stored_by_an_older_version_does_not_break_status(
    chat: Chat,
) -> None:
    engine_of(chat).store.pause(1e20)  # what `ok:pause:99999999999999999999` used to store
    assert "Mode</b>: live, paused" in texts(await chat.say("/status"))[0]


async def test_a_slow_pair_list_asked_first_does_not_replace_a_newer_one(
    chat: Chat, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Updates run concurrently: the page buttons must page through the newest list.
    engine = engine_of(chat)
    old_list = await engine.pairs()
    new_list: tuple[list[Any], list[Any]] = ([], [])
    answers = iter([(2.0, old_list), (0.0, new_list)])

    async def pairs() -> Any:
        delay, result = next(answers)
        await asyncio.sleep(delay)
        return result

    monkeypatch.setattr(engine, "pairs", pairs)
    update = Update.de_json(
        chat.telegram.update(chat.telegram.inject_message(CHAT, 1, "/pairs")), chat.app.bot
    )
    slow = asyncio.create_task(chat.commands._fetch_pairs(update))
    await asyncio.sleep(0.1)
    assert await chat.commands._fetch_pairs(update) == new_list
    assert await slow == old_list
    assert chat.commands._pairs == new_list


# --- end to end: the daemon as a child process ------------------------------------------------


@pytest.fixture
def lndg() -> Iterator[FakeLndg]:
    with FakeLndg(channels=channels()) as fake:
        yield fake


@pytest.fixture
def node(tmp_path: Path, lndg: FakeLndg, telegram: FakeTelegram) -> Node:
    node = bot_node(tmp_path, lndg.url, telegram.url, token=TOKEN, chat_id=CHAT, sleep_seconds=3600)
    node.set_scenario({"outcome": "success", "amount_sat": 50_000, "fee_sat": 12, "delay": 0.1})
    return node


def reply_to(telegram: FakeTelegram, text: str, expect: str, timeout: float = 15) -> str:
    since = telegram.mark()
    telegram.inject_message(CHAT, OPERATOR, text)
    return str(telegram.wait_for_message(CHAT, text=expect, timeout=timeout, since=since)["text"])


@pytest.mark.subprocess
def test_every_failing_command_gets_a_reply_and_a_forged_button_changes_nothing(
    node: Node, telegram: FakeTelegram
) -> None:
    with running(node) as daemon:
        telegram.wait_for_message(CHAT, text="started", timeout=30)
        daemon.wait_for_log("cycle finish", timeout=30)
        assert "Example" in reply_to(telegram, "/history ²", "give a number")
        assert "Example" in reply_to(telegram, "/report ³d", "is not today")
        assert "2018-01-01" in reply_to(telegram, "/report 0001-01-01", "reports begin")
        assert "/help" in reply_to(telegram, "/foo", "Unknown command /foo")
        since = telegram.mark()
        telegram.inject_message(CHAT, OPERATOR, "/pause")
        question = telegram.wait_for_message(CHAT, text="Pause until /resume?", since=since)
        since = telegram.mark()
        telegram.inject_callback_query(
            CHAT, OPERATOR, "ok:pause:99999999999999999999", message_id=question["message_id"]
        )
        answer = telegram.wait_for(lambda c: c.method == "answerCallbackQuery", since=since)
        assert answer.params["text"] == render.CONFIRMATION_VOID
        assert "Mode: live" in reply_to(telegram, "/status", "Mode")
        assert node.query("SELECT value FROM kv WHERE key = 'paused_until'") == []
        # the real button of the same question still works
        since = telegram.mark()
        telegram.inject_callback_query(
            CHAT, OPERATOR, buttons(question)[0], message_id=question["message_id"]
        )
        telegram.wait_for(
            lambda c: c.method == "editMessageText" and "Paused" in str(c.params.get("text")),
            since=since,
            timeout=15,
        )
        code, _ = daemon.stop()
    assert code == 0
    assert "Traceback" not in daemon.output


@pytest.mark.subprocess
def test_a_command_failing_on_a_locked_database_is_answered(
    node: Node, telegram: FakeTelegram
) -> None:
    with running(node) as daemon:
        telegram.wait_for_message(CHAT, text="started", timeout=30)
        daemon.wait_for_log("cycle finish", timeout=30)
        other = sqlite3.connect(node.data / "state.sqlite3", isolation_level=None, timeout=10)
        other.execute("BEGIN IMMEDIATE")  # held beyond the daemon's busy_timeout (5 s)
        try:
            reply = reply_to(telegram, "/exclude Src2", "failed", timeout=30)
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert reply == "Sorry, /exclude failed: OperationalError; the log has details."
        assert "excluded" in reply_to(telegram, "/exclude Src2", "excluded")
        daemon.wait_for_log(r"chat: /exclude failed")
        code, _ = daemon.stop()
    assert code == 0
    assert daemon.output.count("chat: /exclude failed") == 1


@pytest.mark.subprocess
def test_status_answers_while_pairs_waits_on_a_slow_lndg(
    node: Node, telegram: FakeTelegram, lndg: FakeLndg
) -> None:
    with running(node) as daemon:
        telegram.wait_for_message(CHAT, text="started", timeout=30)
        daemon.wait_for_log("cycle finish", timeout=30)
        lndg.slow_seconds = 6.0
        lndg.set_fault("slow")
        since, before = telegram.mark(), len(lndg.requests)
        asked = time.monotonic()
        telegram.inject_message(CHAT, OPERATOR, "/pairs")
        wait_until(lambda: len(lndg.requests) > before, 10, "/pairs asking LNDg")
        telegram.inject_message(CHAT, OPERATOR, "/status")
        telegram.wait_for_message(CHAT, text="Mode", timeout=15, since=since)
        status_after = time.monotonic() - asked
        pairs_so_far = [
            c for c in telegram.calls[since:] if "Pairs" in str(c.params.get("text", ""))
        ]
        assert pairs_so_far == []  # /pairs is still waiting on LNDg
        assert status_after < 5
        telegram.wait_for_message(CHAT, text="Pairs", timeout=30, since=since)
        lndg.set_fault(None)
        code, _ = daemon.stop()
    assert code == 0


@pytest.mark.subprocess
def test_pause_confirmed_during_a_run_cycle_stops_new_runs_at_once(
    node: Node, telegram: FakeTelegram
) -> None:
    # Issue 12.1: a /run cycle overrides the pause that was there when it started, but a
    # /pause confirmed while it runs stops it from starting anything more, and says so.
    node.env["MAX_WORKERS"] = "1"
    with running(node) as daemon:
        telegram.wait_for_message(CHAT, text="started", timeout=30)
        daemon.wait_for_log("cycle finish", timeout=30)
        node.set_scenario({"outcome": "success", "amount_sat": 50_000, "fee_sat": 12, "delay": 2})
        question = ask(telegram, "/pause", "Pause until /resume?")
        press(telegram, question, buttons(question)[0], "Paused")
        question = ask(telegram, "/run", "Start a cycle now?")
        press(telegram, question, buttons(question)[0], "Cycle started")
        starts = daemon.output.count(": started SRC")
        daemon.wait_for_log(r": started SRC", count=starts + 1, timeout=20)
        question = ask(telegram, "/pause", "Pause until /resume?")
        assert "Paused" in press(telegram, question, buttons(question)[0], "Paused")
        paused_at = len(daemon.output)
        time.sleep(7)  # three more 2 s runs would have started here before the fix
        assert daemon.output[paused_at:].count(": started SRC") == 0
        assert "cycle finish" in daemon.output[paused_at:]
