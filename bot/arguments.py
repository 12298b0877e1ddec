"""Parsing chat command arguments: pure functions raising ArgumentError with a hint.

Numbers are matched with ASCII patterns only: `str.isdigit()` and `\\d` accept '²' or '٣',
which `int()` then refuses or reads as a number the operator never typed.
"""

from __future__ import annotations

import datetime as dt
import re

from core.models import LIGHTNING_MAINNET

_DURATION = re.compile(r"([0-9]{1,5})\s*(s|sec|m|min|h|hr|d|day|days)?", re.IGNORECASE | re.ASCII)
_COUNT = re.compile(r"[0-9]{1,3}")
_DAYS = re.compile(r"([0-9]{1,3})d")
_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_UNIT_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400}
MAX_PAUSE_SECONDS = 30 * 86400
MAX_HISTORY = 50
MAX_REPORT_DAYS = 90
# Reports begin where LNDg's data can: no payment is older than Lightning's mainnet.
FIRST_REPORT_DAY = LIGHTNING_MAINNET


class ArgumentError(ValueError):
    """A bad command argument; `example` shows the operator a correct use."""

    def __init__(self, problem: str, example: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.example = example


def parse_duration(text: str) -> int:
    """`90s`, `30m`, `2h`, `1d` (a bare number is minutes) into seconds."""
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise ArgumentError(f"{text!r} is not a duration", "/pause 2h")
    number, unit = int(match.group(1)), (match.group(2) or "m").lower()
    seconds = number * _UNIT_SECONDS[unit[0] if unit.startswith("d") else unit]
    if not 0 < seconds <= MAX_PAUSE_SECONDS:
        raise ArgumentError("a pause lasts from 1 second to 30 days", "/pause 30m")
    return seconds


def describe_duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def parse_on_off(text: str) -> bool:
    word = text.strip().lower()
    if word in ("on", "true", "yes", "1"):
        return True
    if word in ("off", "false", "no", "0"):
        return False
    raise ArgumentError(f"{text!r} is neither on nor off", "/dryrun on")


def parse_count(args: list[str], default: int = 10) -> int:
    if not args:
        return default
    if len(args) > 1 or not _COUNT.fullmatch(args[0]) or not 1 <= int(args[0]) <= MAX_HISTORY:
        raise ArgumentError(f"give a number from 1 to {MAX_HISTORY}", "/history 20")
    return int(args[0])


def parse_channel(args: list[str], command: str) -> str:
    text = " ".join(args).strip()
    if not text:
        raise ArgumentError(
            "name a channel by chan_id, short id or alias", f"/{command} 800000x1234x1"
        )
    if len(text) > 200:
        raise ArgumentError("that is too long for a channel name", f"/{command} 800000x1234x1")
    return text


def parse_report_period(args: list[str], today: dt.date) -> tuple[dt.date, int]:
    """`today`, `yesterday`, `YYYY-MM-DD`, `7d`, `30d` into (last day, number of days).

    A date lies between FIRST_REPORT_DAY and `today`.
    """
    word = args[0].strip().lower() if args else "today"
    example = "/report yesterday"
    if len(args) > 1:
        raise ArgumentError("give one period", example)
    if word == "today":
        return today, 1
    if word == "yesterday":
        return today - dt.timedelta(days=1), 1
    if days_match := _DAYS.fullmatch(word):
        days = int(days_match.group(1))
        if not 1 <= days <= MAX_REPORT_DAYS:
            raise ArgumentError(f"a period lasts 1 to {MAX_REPORT_DAYS} days", "/report 7d")
        return today, days
    date_match = _DATE.fullmatch(word)
    if date_match is None:
        raise ArgumentError(
            f"{args[0]!r} is not today, yesterday, a date like 2026-11-23, or 7d", example
        )
    try:
        day = dt.date(*(int(part) for part in date_match.groups()))
    except ValueError:
        raise ArgumentError(f"{args[0]!r} is not a day of the calendar", example) from None
    if day > today:
        raise ArgumentError("that day has not happened yet", example)
    if day < FIRST_REPORT_DAY:
        raise ArgumentError(
            f"reports begin on {FIRST_REPORT_DAY.isoformat()} (Lightning mainnet)", example
        )
    return day, 1


def parse_pnl_days(args: list[str], default: int = 7) -> int:
    """`/pnl`, `/pnl 7d`, `/pnl 30d` (any 1d to 90d) into a number of days."""
    if not args:
        return default
    match = _DAYS.fullmatch(args[0].strip().lower()) if len(args) == 1 else None
    if match is None or not 1 <= int(match.group(1)) <= MAX_REPORT_DAYS:
        raise ArgumentError(
            f"give 7d or 30d (any 1d to {MAX_REPORT_DAYS}d), not {' '.join(args)!r}", "/pnl 30d"
        )
    return int(match.group(1))
