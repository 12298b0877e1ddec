"""Logging for operators: one line per event, secrets never written.

journald and `docker logs` show one record per line; a multi-line traceback from a library
that merely lost its network connection buries the events that matter. Text from the network
(a peer's alias) can hold a newline or a terminal escape: it is shown escaped, so it can never
write a line that looks like the daemon's own or rewrite the operator's terminal.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable

# Libraries that log expected network trouble (Telegram flaps) at ERROR with a traceback.
_ONE_LINE_LOGGERS = ("telegram", "httpx", "httpcore", "apscheduler")

# C0 and C1 controls and DEL, plus the Unicode line and paragraph separators some viewers break on.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_controls(text: str) -> str:
    """`text` with every control character written out: newline as `\\n`, ESC as `\\x1b`."""
    return _CONTROL.sub(lambda m: _NAMED.get(m[0]) or ascii(m[0])[1:-1], text)


class RedactSecrets(logging.Filter):
    """Replace every secret value in a formatted record by `***`."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if len(s) >= 4]

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        for secret in self.secrets:
            message = message.replace(secret, "***")
            if record.exc_text:
                record.exc_text = record.exc_text.replace(secret, "***")
        record.msg, record.args = message, None
        return True


class OneLineLibraryErrors(logging.Filter):
    """Fold a library's traceback into its message's single line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.name.startswith(_ONE_LINE_LOGGERS):
            error = record.exc_info[1]
            record.msg = f"{record.getMessage()}: {type(error).__name__}: {error}"
            record.args, record.exc_info, record.exc_text = None, None, None
        return True


class EscapeControlCharacters(logging.Filter):
    """Escape control characters in the formatted message: one record, one line.

    Only the message: a traceback (`exc_text`) is our own and stays on its lines.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # arguments that do not fit: the handler reports it itself
            return True
        escaped = escape_controls(message)
        if escaped != message:
            record.msg, record.args = escaped, None
        return True


def setup_logging(level: str, secrets: Iterable[str] = ()) -> None:
    """Configure the root logger; journald adds its own timestamps, so leave them out there."""
    fmt = "%(levelname)s %(name)s: %(message)s"
    if "JOURNAL_STREAM" not in os.environ:
        fmt = "%(asctime)s " + fmt
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(fmt))
    handler.addFilter(OneLineLibraryErrors())
    handler.addFilter(RedactSecrets(secrets))
    handler.addFilter(EscapeControlCharacters())  # last: it sees the final message
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # httpx logs every request URL at INFO, and Telegram's URLs carry the bot token.
    for noisy in ("httpx", "httpcore", "apscheduler", "telegram.ext"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


class Episode:
    """A failure said once: WARNING at its first occurrence, DEBUG while it lasts.

    A source polled every few seconds (LNDg down between two cycles) is not news at each
    poll; `ok()` ends the episode so the next failure is said again.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self.failing = False

    def failed(self, message: str, *args: object, quiet: bool = False) -> None:
        """Log one failure; `quiet` (e.g. while stopping) keeps even the first at DEBUG."""
        level = logging.DEBUG if quiet or self.failing else logging.WARNING
        self.failing = True
        self.logger.log(level, message, *args)

    def ok(self) -> None:
        self.failing = False
