"""Log lines: secrets redacted, library tracebacks folded into one line."""

from __future__ import annotations

import logging

import pytest

from core.logs import Episode, OneLineLibraryErrors, RedactSecrets


def _record(
    name: str, msg: str, *args: object, error: BaseException | None = None
) -> logging.LogRecord:
    exc_info = (type(error), error, error.__traceback__) if error else None
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, exc_info)


def test_secrets_are_redacted_from_message_and_traceback() -> None:
    try:
        raise RuntimeError("POST https://api.telegram.org/bot123:tok-en/getMe failed")
    except RuntimeError as exc:
        record = _record("x", "url %s pass %s", "bot123:tok-en", "hunter22", error=exc)
    RedactSecrets(["123:tok-en", "hunter22", ""]).filter(record)
    text = logging.Formatter().format(record)
    assert "tok-en" not in text
    assert "hunter22" not in text
    assert "url bot*** pass ***" in text


@pytest.mark.parametrize(
    ("name", "folded"), [("telegram.ext.Updater", True), ("core.engine", False)]
)
def test_library_tracebacks_become_one_line(name: str, folded: bool) -> None:
    try:
        raise ConnectionError("network flapped")
    except ConnectionError as exc:
        record = _record(name, "Error while getting Updates", error=exc)
    OneLineLibraryErrors().filter(record)
    text = logging.Formatter().format(record)
    assert (len(text.splitlines()) == 1) is folded
    if folded:
        assert text == "Error while getting Updates: ConnectionError: network flapped"


def test_an_episode_warns_at_its_first_failure_and_again_after_it_ended(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("test.episode")
    caplog.set_level(logging.DEBUG, logger="test.episode")
    episode = Episode(logger)
    episode.failed("down: %s", "a")
    episode.failed("down: %s", "b")
    episode.ok()
    episode.failed("down: %s", "c", quiet=True)
    episode.ok()
    episode.failed("down: %s", "d")
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "down: a"),
        (logging.DEBUG, "down: b"),
        (logging.DEBUG, "down: c"),
        (logging.WARNING, "down: d"),
    ]
