"""`check` proves the chain, in process: LND's files, regolancer's verdict, Telegram, the CLI's
first lines. The same checks run end to end in tests/test_check_chain_cli.py."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.cli import main
from core.check_lnd import LndFile, check_lnd_file, info_verdict, lnd_files
from core.check_telegram import check_allowed_users, check_telegram
from core.settings import load_settings
from sim.telegram import FakeTelegram

TOKEN = "123456789:AAcheck-chain-token-never-shown"
CHAT = -1001234567890
SECRET_DIR = "/home/bitcoin/.lnd/data/chain/bitcoin/mainnet-secret"


@pytest.fixture(autouse=True)
def _keep_umask() -> Iterator[None]:
    # main() sets umask 077 for the daemon's files; this process's other tests keep theirs.
    umask = os.umask(0o022)
    os.umask(umask)
    yield
    os.umask(umask)


# --- LND's files --------------------------------------------------------------------------


def test_lnd_files_default_like_regolancer(tmp_path: Path) -> None:
    assert lnd_files({}, tmp_path) == [
        LndFile("tlscert", tmp_path / ".lnd" / "tls.cert"),
        LndFile(
            "macaroon",
            tmp_path / ".lnd" / "data" / "chain" / "bitcoin" / "mainnet" / "admin.macaroon",
        ),
    ]
    template = {"tlscert": "/t/tls.cert", "macaroon_dir": "/m", "macaroon_filename": "x.mac"}
    paths = [file.path for file in lnd_files(template, tmp_path)]
    assert paths == [Path("/t/tls.cert"), Path("/m/x.mac")]
    signet = lnd_files({"network": "signet", "macaroon_filename": ""}, tmp_path)[1]
    assert signet.path == tmp_path / ".lnd/data/chain/bitcoin/signet/admin.macaroon"


def test_missing_cert_fails_without_showing_its_directory(tmp_path: Path) -> None:
    check = check_lnd_file(LndFile("tlscert", tmp_path / "tls.cert"), "bitcoin")
    assert check.line() == (
        'FAIL tlscert: .../tls.cert does not exist -> fix "tlscert" in the template'
    )
    assert str(tmp_path) not in check.line()


def test_cert_that_is_a_directory_fails(tmp_path: Path) -> None:
    (tmp_path / "tls.cert").mkdir()  # what Docker makes of a mount whose file was missing
    check = check_lnd_file(LndFile("tlscert", tmp_path / "tls.cert"), "bitcoin")
    assert check.line() == (
        'FAIL tlscert: .../tls.cert is a directory, not a file -> point "tlscert" in the '
        "template at the file"
    )


def test_readable_macaroon_passes_and_a_tilde_path_fails(tmp_path: Path) -> None:
    (tmp_path / "admin.macaroon").write_bytes(b"\x02\x01")
    ok = check_lnd_file(LndFile("macaroon", tmp_path / "admin.macaroon"), "bitcoin")
    assert ok.line() == "ok   macaroon: .../admin.macaroon is a readable file"
    tilde = check_lnd_file(LndFile("macaroon", Path("~/.lnd/admin.macaroon")), "bitcoin")
    assert tilde.line() == (
        'FAIL macaroon: .../admin.macaroon starts with ~ -> write "macaroon_dir" in the '
        "template as a full path"
    )


# --- regolancer's verdict -----------------------------------------------------------------


def test_info_failure_is_said_in_regolancers_words_with_paths_hidden() -> None:
    stderr = [
        "2026/01/02 03:04:05 unable to read macaroon path (check the network setting!): "
        f"open {SECRET_DIR}/admin.macaroon: permission denied",
    ]
    secrets = {"macaroon": f"{SECRET_DIR}/admin.macaroon", "macaroon_dir": SECRET_DIR}
    check = info_verdict(1, stderr, secrets, "10.0.0.2:10009")
    assert check.line() == (
        "FAIL regolancer --info: exit 1: unable to read macaroon path (check the network "
        'setting!): open <macaroon>: permission denied -> fix "connect", "tlscert", '
        '"macaroon_dir" in the template, or LND'
    )


def test_info_success_no_qualifying_channel_and_no_answer() -> None:
    assert info_verdict(0, [], {}, "10.0.0.2:10009").line() == (
        "ok   regolancer --info: LND at 10.0.0.2:10009 answers regolancer"
    )
    reached = info_verdict(1, ["2026/01/02 03:04:05 No source channels selected"], {})
    assert reached.ok
    assert reached.warning
    assert "LND answers, but regolancer says: No source channels selected" in reached.line()
    hung = info_verdict(None, [], {}, "10.0.0.2:10009", 60)
    assert hung.line().startswith(
        "FAIL regolancer --info: no answer from LND at 10.0.0.2:10009 within 60 s"
    )


# --- Telegram -----------------------------------------------------------------------------


@pytest.fixture
def telegram() -> Iterator[FakeTelegram]:
    with FakeTelegram(TOKEN, known_chats={CHAT, 4242}) as fake:
        fake.add_chat(CHAT, chat_type="supergroup", title="Node ops")
        yield fake


def _telegram_lines(url: str, token: str = TOKEN, **settings: Any) -> list[str]:
    loaded = load_settings(
        None,
        telegram_token=token,
        telegram_chat_id=settings.pop("chat", CHAT),
        telegram_api_base_url=url,
        **settings,
    )
    lines = [check.line() for check in asyncio.run(check_telegram(loaded))]
    for line in lines:
        assert token not in line
        assert token.split(":")[1] not in line
    return lines


def test_telegram_token_chat_and_users_pass(telegram: FakeTelegram) -> None:
    lines = _telegram_lines(telegram.url, telegram_allowed_user_ids="4242,5151")
    assert lines == [
        "ok   Telegram: token accepted: the bot is @regolancer_test_bot",
        f'ok   Telegram chat: @regolancer_test_bot is in supergroup chat {CHAT} "Node ops"',
        f"ok   Telegram users: only user id(s) 4242, 5151 may command the bot in chat {CHAT}",
    ]
    assert [call.method for call in telegram.calls] == ["getMe", "getChat"]  # nothing sent


def test_a_chat_title_cannot_write_lines_or_escapes(telegram: FakeTelegram) -> None:
    telegram.add_chat(CHAT, chat_type="supergroup", title="Ops\nok   all checks passed\x1b[2J")
    line = _telegram_lines(telegram.url)[1]
    assert line.endswith('"Ops\\nok   all checks passed\\x1b[2J"')


def test_bad_token_is_rejected(telegram: FakeTelegram) -> None:
    lines = _telegram_lines(telegram.url, token="123456789:AAwrong-token-also-never-shown")
    assert lines[0] == (
        "FAIL Telegram: token rejected (401 Unauthorized) -> copy the token @BotFather gave "
        "into TELEGRAM_TOKEN (or /revoke and take the new one)"
    )
    assert not any("Telegram chat" in line for line in lines)


def test_bot_not_in_the_chat(telegram: FakeTelegram) -> None:
    lines = _telegram_lines(telegram.url, chat=-1009999999999)
    assert lines[1] == (
        "FAIL Telegram chat: @regolancer_test_bot cannot use chat -1009999999999: Bad Request: "
        "chat not found -> add @regolancer_test_bot to the group, or send it /start from the "
        "account of a private chat; check TELEGRAM_CHAT_ID (group ids are negative)"
    )


def test_bot_kicked_from_the_chat(telegram: FakeTelegram) -> None:
    telegram.kick_bot(CHAT)
    lines = _telegram_lines(telegram.url)
    assert lines[1] == (
        f"FAIL Telegram chat: @regolancer_test_bot cannot use chat {CHAT}: Forbidden: bot was "
        "kicked from the supergroup chat -> add @regolancer_test_bot to that chat again "
        "(or unblock it)"
    )


def test_unreachable_bot_api() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    lines = _telegram_lines(f"http://127.0.0.1:{port}/bot")
    assert len(lines) == 1
    assert lines[0].startswith(
        f"FAIL Telegram: cannot reach the Bot API at http://127.0.0.1:{port}/bot: "
    )
    assert lines[0].endswith("-> check the network (or TELEGRAM_API_BASE_URL)")


def test_a_chat_id_among_the_allowed_users_is_a_warning() -> None:
    check = check_allowed_users([4242, CHAT], CHAT)
    assert check.ok
    assert check.warning
    assert f"holds {CHAT}: a chat id, not a user's" in check.line()
    assert "everyone in chat 42 may command" in check_allowed_users([], 42).line()


# --- the CLI's first lines ----------------------------------------------------------------


def test_missing_env_file_is_an_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["--env-file", str(tmp_path / "prod.env"), "check"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"error: --env-file {tmp_path / 'prod.env'}: no such file\n"
    assert main(["--env-file", str(tmp_path), "check"]) == 2
    assert capsys.readouterr().err == f"error: --env-file {tmp_path} is a directory, not a file\n"


def test_unparsable_allowed_user_ids_stop_check_with_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TELEGRAM_TOKEN", TOKEN)
    monkeypatch.setenv("TELEGRAM_CHAT_ID", str(CHAT))
    monkeypatch.setenv("TELEGRAM_ALLOWED_USER_IDS", "4242, @operator")
    assert main(["check"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "configuration error: TELEGRAM_ALLOWED_USER_IDS: '@operator' is not a Telegram user id; "
        "give numeric ids separated by commas, e.g. 12345678,87654321 (@userinfobot tells yours)\n"
    )
