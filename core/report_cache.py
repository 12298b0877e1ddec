"""Closed days' report figures, kept in the state database so a long report sums stored days.

A day's figures (its `DayReport` with the money lines) depend on LNDg's rows of the day and
on this daemon's ledger rows and runs. They are stored once the day is *frozen*:

- Frozen at the day's end + the match window + `SETTLE_SECONDS` (6 h). LNDg copies LND's
  payments and forwards every ~20 s, but after LNDg (or its sync job) was down it catches up
  later; a report during those hours reads the day afresh. 6 h also keeps at most two days
  (today, and yesterday until 06:05) to compute for a `/report 30d`.
- Invalidated when this daemon's own rows of the day change: each entry keeps the highest
  ledger id and run id in the database when it was computed, and a row in the day's window
  (the 7 days ending with it for the worst and best nets) with a higher id is a late stat
  line or run, so the day is read afresh. Deleting rows never invalidates: runs pruned by
  RUN_RETENTION_DAYS keep the figures stored for their day.
- Keyed by zone and match window: a TIMEZONE change cuts days elsewhere, so nothing stored
  for another zone is used. `VERSION` is bumped when the figures' rules change.

LNDg's rows of a frozen day are assumed final (see the 6 h above); what LNDg learns about a
day later than that is not seen by a stored day. Functions take a connection to the store,
so a worker thread reads with its own (`StateStore.reader`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from core.models import Outcome
from core.report_figures import (
    ChannelNet,
    DayMoney,
    DayReport,
    RunStats,
    Share,
    day_bounds,
    zone_name,
)

VERSION = 1
SETTLE_SECONDS = 6 * 3600
NETS_DAYS = 7  # the worst and best nets of a day cover this many days ending with it


@dataclass(frozen=True, slots=True)
class Marks:
    """The highest ledger id and run id in the database when figures were computed."""

    ledger: int
    runs: int


@dataclass(frozen=True, slots=True)
class Stored:
    """A day's figures as stored; `nets` False when its worst and best nets were not computed."""

    report: DayReport
    nets: bool


def frozen(day: date, zone: tzinfo, match_window_seconds: float, now: datetime) -> bool:
    """Whether `day`'s figures may be stored at `now` (see the module doc)."""
    end = day_bounds(day, zone)[1]
    return now >= end + timedelta(seconds=match_window_seconds + SETTLE_SECONDS)


def marks(db: sqlite3.Connection) -> Marks:
    """The highest ids now; read in the same transaction as the rows figures are made from."""
    ledger = db.execute("SELECT coalesce(max(id), 0) FROM ledger").fetchone()[0]
    runs = db.execute("SELECT coalesce(max(id), 0) FROM runs").fetchone()[0]
    return Marks(int(ledger), int(runs))


def _share(share: Share) -> list[int]:
    return [share.count, share.amount_msat, share.fee_msat]


def _nets(channels: Sequence[ChannelNet]) -> list[list[Any]]:
    return [[c.chan_id, c.alias, c.net_msat] for c in channels]


def encode(report: DayReport, nets: bool) -> str:
    """A daily report with its money lines as JSON (msat integers: sums stay exact)."""
    money = report.money
    assert money is not None, "only days with their money lines are stored"
    runs = report.runs
    return json.dumps(
        {
            "v": VERSION,
            "node": _share(report.node),
            "lndg": _share(report.lndg),
            "daemon": _share(report.daemon),
            "other": _share(report.other),
            "unmatched": _share(report.unmatched),
            "runs": [runs.attempts, runs.successes, runs.stopped, runs.dry_runs],
            "not_qualified": runs.not_qualified,
            "failures": {o.value: n for o, n in runs.failures.items()},
            "revenue": money.revenue_msat,
            "forwards": money.forwards,
            "window": money.window_days,
            "worst": _nets(money.worst) if nets else None,
            "best": _nets(money.best) if nets else None,
        },
        separators=(",", ":"),
    )


def decode(text: str, day: date, zone: str) -> Stored | None:
    """`encode`'s figures back; None for another VERSION or anything unreadable."""
    try:
        raw = json.loads(text)
        if raw.get("v") != VERSION:
            return None
        attempts, successes, stopped, dry = raw["runs"]
        has_nets = raw["worst"] is not None
        money = DayMoney(
            int(raw["revenue"]),
            int(raw["forwards"]),
            tuple(ChannelNet(c, a, int(n)) for c, a, n in raw["worst"] or ()),
            tuple(ChannelNet(c, a, int(n)) for c, a, n in raw["best"] or ()),
            int(raw["window"]),
        )
        report = DayReport(
            day=day,
            zone_name=zone,
            node=Share(*raw["node"]),
            lndg=Share(*raw["lndg"]),
            daemon=Share(*raw["daemon"]),
            other=Share(*raw["other"]),
            unmatched=Share(*raw["unmatched"]),
            runs=RunStats(
                attempts,
                successes,
                {Outcome(o): int(n) for o, n in raw["failures"].items()},
                stopped,
                dry,
                int(raw["not_qualified"]),
            ),
            money=money,
        )
    except (ValueError, KeyError, TypeError):
        return None
    return Stored(report, has_nets)


def _late(
    db: sqlite3.Connection, table: str, column: str, start: float, end: float, mark: int
) -> bool:
    # The ts / started_at index holds the id too: a range scan of the index, no table reads.
    row = db.execute(
        f"SELECT coalesce(max(id), 0) FROM {table} WHERE {column} >= ? AND {column} < ?",  # noqa: S608
        (start, end),
    ).fetchone()
    return int(row[0]) > mark


def load(
    db: sqlite3.Connection,
    days: Sequence[date],
    zone: tzinfo,
    match_window_seconds: float,
    *,
    nets_for: Collection[date] = (),
) -> dict[date, DayReport]:
    """The stored figures of `days` still valid (see the module doc); those in `nets_for`
    only if stored with their nets."""
    if not days:
        return {}
    name = zone_name(zone)
    rows = db.execute(
        "SELECT day, figures, ledger_mark, runs_mark FROM report_days "
        "WHERE zone = ? AND window = ? AND day >= ? AND day <= ?",
        (name, float(match_window_seconds), min(days).isoformat(), max(days).isoformat()),
    ).fetchall()
    wanted = set(days)
    found: dict[date, DayReport] = {}
    for text_day, figures, ledger_mark, runs_mark in rows:
        day = date.fromisoformat(text_day)
        if day not in wanted:
            continue
        stored = decode(figures, day, name)
        if stored is None or (day in nets_for and not stored.nets):
            continue
        start, end = (moment.timestamp() for moment in day_bounds(day, zone))
        if _late(db, "runs", "started_at", start, end, runs_mark):
            continue
        reach = day_bounds(day - timedelta(days=NETS_DAYS - 1), zone)[0].timestamp()
        since = (reach if day in nets_for else start) - match_window_seconds
        if _late(db, "ledger", "ts", since, end + match_window_seconds + 1, ledger_mark):
            continue
        found[day] = stored.report
    return found


def save(
    db: sqlite3.Connection,
    reports: Sequence[tuple[DayReport, bool]],
    zone: tzinfo,
    match_window_seconds: float,
    made_from: Marks,
    now: float,
) -> None:
    """Store (report, with nets) of frozen days, replacing what was stored for them."""
    name = zone_name(zone)
    db.execute("BEGIN IMMEDIATE")
    try:
        for report, nets in reports:
            key = (name, float(match_window_seconds), report.day.isoformat())
            db.execute(
                "INSERT OR REPLACE INTO report_days (zone, window, day, figures, ledger_mark, "
                "runs_mark, computed_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (*key, encode(report, nets), made_from.ledger, made_from.runs, now),
            )
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
