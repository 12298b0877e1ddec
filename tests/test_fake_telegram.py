"""The fake Telegram API must look like the real one to python-telegram-bot, so these tests
drive it with a real ``telegram.Bot`` / ``Application`` rather than with raw HTTP."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from telegram import Bot, BotCommand, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import (
    BadRequest,
    Conflict,
    EndPointNotFound,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
)
from telegram.ext import ApplicationBuilder, CommandHandler, ContextTypes

from sim.telegram import FakeTelegram

TOKEN = "123456789:AAFakeTokenForTheTestSuiteOnly-0123456"
CHAT = 4242
USER = 4242

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def fake() -> Iterator[FakeTelegram]:
    with FakeTelegram(TOKEN) as server:
        yield server


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    async with Bot(TOKEN, base_url=fake.url, base_file_url=fake.file_url) as client:
        yield client


def _png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    rows = b"".join(b"\x00" + b"\x00\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _http(url: str, body: bytes | None = None, content_type: str = "") -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, method="POST" if body else "GET")
    if content_type:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


# ----------------------------------------------------------------------------- basics


async def test_get_me(fake: FakeTelegram, bot: Bot) -> None:
    me = await bot.get_me()
    assert me.id == 123456789
    assert me.is_bot
    assert me.username == fake.bot_username
    assert fake.calls[0].method == "getMe"  # Bot.initialize() already asked


async def test_send_message_html_with_inline_keyboard(fake: FakeTelegram, bot: Bot) -> None:
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Run", callback_data="run:1")]])
    raw = "<b>Balanced</b> &amp; <i>done</i>"
    message = await bot.send_message(CHAT, raw, parse_mode="HTML", reply_markup=keyboard)

    assert message.text == "Balanced & done"  # Telegram returns the parsed plain text
    assert message.message_id == 1
    assert message.chat.id == CHAT
    assert message.from_user is not None
    assert message.from_user.id == fake.bot_id
    assert message.reply_markup == keyboard

    call = fake.calls_to("sendMessage")[0]
    assert call.params == {
        "chat_id": CHAT,
        "text": raw,
        "parse_mode": "HTML",
        "reply_markup": {"inline_keyboard": [[{"text": "Run", "callback_data": "run:1"}]]},
    }
    # message ids count per chat
    assert (await bot.send_message(CHAT, "two")).message_id == 2
    assert (await bot.send_message(7, "other chat")).message_id == 1
    assert [m["text"] for m in fake.sent_messages(CHAT)] == ["Balanced & done", "two"]


async def test_message_length_counts_plain_text(bot: Bot) -> None:
    with pytest.raises(BadRequest, match="Message is too long"):
        await bot.send_message(CHAT, "x" * 4097)
    # Markup and entities do not count towards the 4096 limit.
    await bot.send_message(CHAT, "<b>" + "x" * 4096 + "</b>", parse_mode="HTML")
    await bot.send_message(CHAT, "&amp;" * 4096, parse_mode="HTML")
    with pytest.raises(BadRequest, match="Message text is empty"):
        await bot.send_message(CHAT, "  \n ")


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("<b>bold", 'can\'t find end tag corresponding to start tag "b"'),
        ("line<br>break", 'unsupported start tag "br" at byte offset 4'),
        ("<b>x</i>", 'unmatched end tag at byte offset 4, expected "</b>", found "</i>"'),
        ("1 < 2", 'unsupported start tag "" at byte offset 2'),
        ("x</b>", "unexpected end tag at byte offset 1"),
    ],
)
async def test_malformed_html_is_rejected(bot: Bot, text: str, error: str) -> None:
    with pytest.raises(BadRequest) as excinfo:
        await bot.send_message(CHAT, text, parse_mode="HTML")
    assert excinfo.value.message.lower() == f"can't parse entities: {error}".lower()


async def test_markdown_v2_reserved_characters(bot: Bot) -> None:
    with pytest.raises(BadRequest, match=r"(?i)character '\.' is reserved"):
        await bot.send_message(CHAT, "Done.", parse_mode="MarkdownV2")
    message = await bot.send_message(CHAT, r"*Done*\.", parse_mode="MarkdownV2")
    assert message.text == "Done."


async def test_unknown_chat(fake: FakeTelegram, bot: Bot) -> None:
    fake.known_chats = {CHAT}
    await bot.send_message(CHAT, "hi")
    with pytest.raises(BadRequest, match="Chat not found"):
        await bot.send_message(CHAT + 1, "hi")
    fake.inject_message(99, 99, "hello")  # a chat that wrote to the bot exists
    await bot.send_message(99, "hi")


async def test_kicked_bot_is_forbidden_in_that_group(fake: FakeTelegram, bot: Bot) -> None:
    group = -1001234567890
    fake.add_chat(group, chat_type="supergroup")
    await bot.send_message(group, "hi")
    fake.kick_bot(group)
    for call in (bot.get_chat(group), bot.send_message(group, "hi")):
        with pytest.raises(Forbidden, match="bot was kicked from the supergroup chat"):
            await call
    await bot.send_message(CHAT, "hi")  # other chats are untouched
    fake.clear_faults()
    assert (await bot.get_chat(group)).id == group


async def test_callback_data_limit(bot: Bot) -> None:
    too_long = InlineKeyboardMarkup([[InlineKeyboardButton("x", callback_data="a" * 65)]])
    with pytest.raises(BadRequest, match=r"(?i)button_data_invalid"):
        await bot.send_message(CHAT, "pick", reply_markup=too_long)
    text_only = InlineKeyboardMarkup([[InlineKeyboardButton("x")]])
    with pytest.raises(BadRequest, match=r"(?i)text buttons are unallowed"):
        await bot.send_message(CHAT, "pick", reply_markup=text_only)
    # 64 bytes of UTF-8 is fine
    ok = InlineKeyboardMarkup([[InlineKeyboardButton("x", callback_data="é" * 32)]])
    await bot.send_message(CHAT, "pick", reply_markup=ok)


# ----------------------------------------------------------------------------- faults


# PTB 22 warns that RetryAfter.retry_after will become a timedelta.
@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
async def test_rate_limit_raises_retry_after(fake: FakeTelegram, bot: Bot) -> None:
    fake.rate_limit_next(1, retry_after=1, method="sendMessage")
    with pytest.raises(RetryAfter) as excinfo:
        await bot.send_message(CHAT, "hi")
    retry_after = excinfo.value.retry_after
    seconds = retry_after.total_seconds() if isinstance(retry_after, dt.timedelta) else retry_after
    assert seconds == 1
    assert fake.calls[-1].response == {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 1",
        "parameters": {"retry_after": 1},
    }
    await bot.send_message(CHAT, "hi")  # only the next call was limited


async def test_server_errors_are_network_errors(fake: FakeTelegram, bot: Bot) -> None:
    fake.fail_next(1)
    with pytest.raises(NetworkError, match="Internal Server Error"):
        await bot.get_me()
    assert (await bot.get_me()).id == fake.bot_id

    fake.fail_next(2, status=502, method="sendMessage")
    assert (await bot.get_me()).id == fake.bot_id  # other methods are unaffected
    for _ in range(2):
        with pytest.raises(NetworkError, match="Bad Gateway"):
            await bot.send_message(CHAT, "hi")
    await bot.send_message(CHAT, "hi")


async def test_dropped_and_delayed_calls(fake: FakeTelegram, bot: Bot) -> None:
    fake.drop_next(1, method="sendMessage")
    with pytest.raises(NetworkError):
        await bot.send_message(CHAT, "hi")
    assert fake.calls[-1].status == 0

    fake.delay_next(1, seconds=0.5, method="getMe")
    with pytest.raises(NetworkError):  # TimedOut is a NetworkError
        await bot.get_me(read_timeout=0.1)


@pytest.mark.parametrize("mode", ["refuse", "drop"])
async def test_outage_and_recovery_on_same_port(fake: FakeTelegram, bot: Bot, mode: str) -> None:
    port = fake.port
    fake.go_down("refuse" if mode == "refuse" else "drop")
    assert fake.down
    with pytest.raises(NetworkError):
        await bot.get_me()
    fake.come_back()
    assert fake.port == port
    assert (await bot.get_me()).id == fake.bot_id


def test_wrong_token_unknown_method_and_raw_http(fake: FakeTelegram) -> None:
    status, body = _http(f"{fake.url}999:nope/getMe")
    assert (status, body) == (401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
    status, body = _http(f"{fake.url}{TOKEN}/noSuchMethod")
    assert (status, body) == (404, {"ok": False, "error_code": 404, "description": "Not Found"})

    # JSON bodies and case-insensitive method names work like on Telegram.
    payload = json.dumps({"chat_id": CHAT, "text": "hi"}).encode()
    status, body = _http(f"{fake.url}{TOKEN}/SENDMESSAGE", payload, "application/json")
    assert status == 200
    assert body["result"]["text"] == "hi"
    assert fake.calls[-1].method == "sendMessage"


async def test_wrong_token_with_ptb(fake: FakeTelegram, bot: Bot) -> None:
    with pytest.raises(InvalidToken):
        async with Bot("999:wrong", base_url=fake.url):
            pass
    with pytest.raises(EndPointNotFound):
        await bot.do_api_request("noSuchMethod")


# ----------------------------------------------------------------------------- updates


async def test_injected_updates_parse_in_ptb(fake: FakeTelegram, bot: Bot) -> None:
    sent = await bot.send_message(
        CHAT,
        "menu",
        reply_markup=InlineKeyboardMarkup.from_button(
            InlineKeyboardButton("Go", callback_data="go")
        ),
    )
    ids = [
        fake.inject_message(CHAT, USER, "/status@regolancer_test_bot now", username="alice"),
        fake.inject_message(-1001234567890, USER, "hello group", chat_type="supergroup"),
        fake.inject_edited_message(CHAT, USER, "/status later"),
        fake.inject_callback_query(CHAT, USER, "go"),
        fake.inject_channel_post(-1009876543210, "news", title="Alerts"),
        fake.inject_inline_query(USER, "chan"),
    ]
    updates = await bot.get_updates(timeout=0)
    assert [u.update_id for u in updates] == ids
    command, group, edited, callback, post, inline = updates

    assert command.message is not None
    assert command.message.text == "/status@regolancer_test_bot now"
    assert command.message.entities[0].type == "bot_command"
    assert command.message.entities[0].length == len("/status@regolancer_test_bot")
    assert command.effective_user is not None
    assert command.effective_user.username == "alice"
    assert command.effective_chat is not None
    assert command.effective_chat.type == "private"

    assert group.effective_chat is not None
    assert group.effective_chat.type == "supergroup"
    assert group.message is not None
    assert not group.message.entities

    assert edited.edited_message is not None
    assert edited.edited_message.message_id == command.message.message_id
    assert edited.edited_message.edit_date is not None

    assert callback.callback_query is not None
    assert callback.callback_query.data == "go"
    assert callback.effective_user is not None
    assert callback.effective_user.id == USER
    assert callback.callback_query.message is not None
    assert callback.callback_query.message.message_id == sent.message_id

    assert post.channel_post is not None
    assert post.channel_post.text == "news"
    assert post.effective_chat is not None
    assert post.effective_chat.title == "Alerts"

    assert inline.inline_query is not None
    assert inline.inline_query.query == "chan"


async def test_offset_confirms_and_limit(fake: FakeTelegram, bot: Bot) -> None:
    first = fake.inject_message(CHAT, USER, "one")
    fake.inject_message(CHAT, USER, "two")
    assert [u.update_id for u in await bot.get_updates(limit=1)] == [first]
    # Not confirmed yet: the same updates come again.
    assert len(await bot.get_updates()) == 2
    updates = await bot.get_updates(offset=first + 1)
    assert [u.message.text for u in updates if u.message] == ["two"]
    assert await bot.get_updates(offset=updates[-1].update_id + 1) == ()
    assert fake.pending_updates == []


async def test_allowed_updates_and_drop_pending(fake: FakeTelegram, bot: Bot) -> None:
    fake.inject_message(CHAT, USER, "ignored")
    await bot.send_message(
        CHAT,
        "menu",
        reply_markup=InlineKeyboardMarkup.from_button(
            InlineKeyboardButton("Go", callback_data="go")
        ),
    )
    fake.inject_callback_query(CHAT, USER, "go")
    updates = await bot.get_updates(allowed_updates=["callback_query"])
    assert [u.callback_query.data for u in updates if u.callback_query] == ["go"]
    assert len(updates) == 1

    fake.inject_callback_query(CHAT, USER, "again")
    assert await bot.delete_webhook(drop_pending_updates=True)
    assert fake.pending_updates == []


async def test_long_poll_waits_and_wakes_on_injection(fake: FakeTelegram, bot: Bot) -> None:
    started = time.monotonic()
    assert await bot.get_updates(timeout=1) == ()
    assert 0.9 <= time.monotonic() - started < 2

    poll = asyncio.create_task(bot.get_updates(timeout=10))
    await asyncio.to_thread(fake.wait_for_poller, 5)
    started = time.monotonic()
    fake.inject_message(CHAT, USER, "wake up")
    updates = await poll
    assert time.monotonic() - started < 1
    assert updates[0].message is not None
    assert updates[0].message.text == "wake up"


async def test_second_poller_terminates_first(fake: FakeTelegram, bot: Bot) -> None:
    first = asyncio.create_task(bot.get_updates(timeout=5))
    await asyncio.to_thread(fake.wait_for_poller, 5)
    # A second bot instance (a Bot has a one-connection pool for getUpdates).
    async with Bot(TOKEN, base_url=fake.url) as other:
        assert await other.get_updates(timeout=0) == ()
    with pytest.raises(Conflict, match="terminated by other getUpdates request"):
        await first


# ----------------------------------------------------------------------------- other methods


async def test_send_photo_and_document_uploads(fake: FakeTelegram, bot: Bot) -> None:
    png = _png(200, 100)
    photo = await bot.send_photo(CHAT, png, caption="<i>chart</i>", parse_mode="HTML")
    assert photo.caption == "chart"
    assert (photo.photo[-1].width, photo.photo[-1].height) == (200, 100)
    assert photo.photo[-1].file_size == len(png)
    upload = fake.calls[-1].files["photo"]
    assert upload.size == len(png)
    assert upload.data == png

    downloaded = await (await bot.get_file(photo.photo[-1].file_id)).download_as_bytearray()
    assert bytes(downloaded) == png

    with pytest.raises(BadRequest, match=r"(?i)image_process_failed"):
        await bot.send_photo(CHAT, b"not an image")

    document = await bot.send_document(CHAT, b"a,b\n1,2\n", filename="report.csv")
    assert document.document is not None
    assert document.document.file_name == "report.csv"
    assert document.document.file_size == 8
    assert fake.calls[-1].files["document"].filename == "report.csv"
    assert [m.get("caption") for m in fake.sent_messages(CHAT)] == ["chart", None]


async def test_commands_roundtrip(fake: FakeTelegram, bot: Bot) -> None:
    assert await bot.set_my_commands([("status", "Show balance"), BotCommand("ping", "Ping")])
    assert fake.calls[-1].params["commands"] == [
        {"command": "status", "description": "Show balance"},
        {"command": "ping", "description": "Ping"},
    ]
    assert [c.command for c in await bot.get_my_commands()] == ["status", "ping"]
    assert fake.commands() == fake.calls[-2].params["commands"]
    with pytest.raises(BadRequest, match=r"(?i)bot_command_invalid"):
        await bot.set_my_commands([("Bad-Name", "x")])
    assert await bot.delete_my_commands()
    assert await bot.get_my_commands() == ()


async def test_edits_callbacks_and_deletes(fake: FakeTelegram, bot: Bot) -> None:
    keyboard = InlineKeyboardMarkup.from_button(InlineKeyboardButton("Stop", callback_data="s"))
    sent = await bot.send_message(CHAT, "running", reply_markup=keyboard)
    with pytest.raises(BadRequest, match="Message is not modified"):
        await bot.edit_message_text("running", CHAT, sent.message_id, reply_markup=keyboard)
    edited = await bot.edit_message_text("<b>stopped</b>", CHAT, sent.message_id, parse_mode="HTML")
    assert isinstance(edited, type(sent))
    assert edited.text == "stopped"
    assert edited.reply_markup is None  # editing without reply_markup drops the keyboard
    await bot.edit_message_reply_markup(CHAT, sent.message_id, reply_markup=keyboard)
    stored = fake.message(CHAT, sent.message_id)
    assert stored is not None
    assert (stored["text"], stored["reply_markup"]) == ("stopped", keyboard.to_dict())
    assert "edit_date" in stored

    update_id = fake.inject_callback_query(CHAT, USER, "s")
    query_id = fake.update(update_id)["callback_query"]["id"]
    assert await bot.answer_callback_query(query_id, text="ok")
    with pytest.raises(BadRequest, match="Query is too old"):
        await bot.answer_callback_query(query_id)

    assert await bot.send_chat_action(CHAT, "typing")
    assert (await bot.get_chat(CHAT)).id == CHAT
    assert await bot.delete_message(CHAT, sent.message_id)
    with pytest.raises(BadRequest, match="Message to edit not found"):
        await bot.edit_message_text("gone", CHAT, sent.message_id)


def test_wait_for_times_out_with_context(fake: FakeTelegram) -> None:
    with pytest.raises(TimeoutError, match="no matching call"):
        fake.wait_for("sendPhoto", timeout=0.05)


# ----------------------------------------------------------------------------- Application


async def test_application_answers_ping(fake: FakeTelegram) -> None:
    async def ping(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.message is not None
        await update.message.reply_text("pong")

    app = ApplicationBuilder().token(TOKEN).base_url(fake.url).build()
    app.add_handler(CommandHandler("ping", ping))
    async with app:
        await app.start()
        assert app.updater is not None
        await app.updater.start_polling(poll_interval=0.0, timeout=1)
        await asyncio.to_thread(fake.wait_for_poller, 5)
        since = fake.mark()
        fake.inject_message(CHAT, USER, "/ping")
        reply = await fake.wait_for_async(
            lambda c: c.method == "sendMessage" and c.ok, timeout=5, since=since
        )
        await app.updater.stop()
        await app.stop()

    assert reply.result["text"] == "pong"
    assert reply.result["chat"]["id"] == CHAT
    assert fake.pending_updates == []  # the updater confirmed the update on shutdown


# ----------------------------------------------------------------------------- process mode


@pytest.mark.subprocess
def test_runs_as_a_process(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sim.telegram", "--token", TOKEN, "--ready-file", ready],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not ready.exists():
            assert proc.poll() is None
            assert time.monotonic() < deadline
            time.sleep(0.02)
        url = ready.read_text().strip()
        assert _http(f"{url}{TOKEN}/getMe")[1]["result"]["is_bot"] is True

        control = url.removesuffix("/bot") + "/_fake/inject_message"
        payload = json.dumps({"chat_id": CHAT, "user_id": USER, "text": "/ping"}).encode()
        update_id = _http(control, payload, "application/json")[1]["result"]
        updates = _http(f"{url}{TOKEN}/getUpdates")[1]["result"]
        assert [u["update_id"] for u in updates] == [update_id]
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
