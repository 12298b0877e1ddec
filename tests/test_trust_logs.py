"""Issue 12, the log side: a peer cannot forge log lines, a URL's password is never written.

`setup_logging` is run for real and stderr read back (capfd), as journald would see it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from bot.cli import _secrets
from core.logs import EscapeControlCharacters, setup_logging
from core.settings import load_settings, masked, shown_url


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    # setup_logging changes the root and the noisy libraries' levels: later tests expect neither.
    loggers = [logging.getLogger(name) for name in ("", "httpx", "httpcore", "apscheduler")]
    loggers.append(logging.getLogger("telegram.ext"))
    saved = [(logger, logger.handlers[:], logger.level) for logger in loggers]
    yield
    for logger, handlers, level in saved:
        logger.handlers, logger.level = handlers, level


# -- 5: control characters in a log line -----------------------------------------------------


def test_an_alias_with_a_newline_cannot_forge_a_log_line(capfd: pytest.CaptureFixture[str]) -> None:
    setup_logging("INFO")
    alias = "Nice Peer\nINFO core.engine: fake"
    logging.getLogger("core.lndg").warning("LNDg channel %s (1): skipped", alias)
    err = capfd.readouterr().err
    assert len(err.splitlines()) == 1
    assert "Nice Peer\\nINFO core.engine: fake (1): skipped" in err


def test_escape_sequences_and_other_controls_are_shown_not_obeyed(
    capfd: pytest.CaptureFixture[str],
) -> None:
    setup_logging("INFO")
    alias = "\x1b[2K\rred\x1b[31m\ttab\x00\x7f\x85\u2028end"
    logging.getLogger("core.engine").info("pair %s", alias)
    err = capfd.readouterr().err
    assert err.endswith("pair \\x1b[2K\\rred\\x1b[31m\\ttab\\x00\\x7f\\x85\\u2028end\n")
    assert len(err.splitlines()) == 1


def test_our_own_tracebacks_stay_readable(capfd: pytest.CaptureFixture[str]) -> None:
    setup_logging("INFO")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("core.engine").exception("cycle failed for %s", "a\nb")
    lines = capfd.readouterr().err.splitlines()
    assert lines[0].endswith("cycle failed for a\\nb")
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-1] == "ValueError: boom"


def test_a_message_whose_arguments_do_not_fit_is_still_reported() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%d", ("no",), None)
    assert EscapeControlCharacters().filter(record)  # logging reports the error itself


# -- 4: a password in LNDG_BASE_URL ----------------------------------------------------------


def test_a_password_in_lndg_base_url_is_redacted_from_the_log(
    capfd: pytest.CaptureFixture[str],
) -> None:
    settings = load_settings(lndg_base_url="http://lndg-admin:pa%24%24word@10.0.0.2:8889")
    setup_logging("INFO", _secrets(settings))
    logging.getLogger("x").warning("raw %s, decoded %s", "pa%24%24word", "pa$$word")
    err = capfd.readouterr().err
    assert "pa$$word" not in err
    assert "pa%24%24word" not in err
    assert "raw ***, decoded ***" in err


def test_masked_settings_hide_url_passwords_and_any_echoed_token() -> None:
    settings = load_settings(
        lndg_base_url="http://lndg-admin:hunter22@10.0.0.2:8889",
        telegram_api_base_url="https://proxy-user:proxy-pass@api.example/bot12345:secret-token/",
        telegram_token="12345:secret-token",
        telegram_chat_id=5,
    )
    shown = masked(settings)
    assert shown["LNDG_BASE_URL"] == "http://lndg-admin:***@10.0.0.2:8889"
    assert shown["TELEGRAM_API_BASE_URL"] == "https://proxy-user:***@api.example/bot***/"
    for secret in ("hunter22", "proxy-pass", "secret-token"):
        assert secret not in repr(shown)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://localhost:8889", "http://localhost:8889"),
        ("http://u:p@host:1/x?y=1", "http://u:***@host:1/x?y=1"),
        ("http://u:p@ss@host", "http://u:***@host"),  # the last @ ends the userinfo
        ("http://u:p@host/a@b", "http://u:***@host/a@b"),  # an @ in the path is no userinfo
        ("http://lndg-admin@host", "http://lndg-admin@host"),  # a user name alone is no secret
        ("https://u:@host", "https://u:***@host"),
    ],
)
def test_shown_url(url: str, shown: str) -> None:
    assert shown_url(url) == shown
