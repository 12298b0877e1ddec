"""The state store: one SQLite file in DATA_DIR holding everything that must survive a restart.

Switches (pause, dry run), exclusions, the stat CSV position, the ledger, run records, the
outbox of messages and the reports sent. WAL mode; the schema is versioned with
`PRAGMA user_version` and migrated forward at open.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.models import Outcome, Rebalance, RunResult, StatLine

# Each entry migrates the schema from version i to i+1; never edit a released entry.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE exclusions (
        chan_id TEXT PRIMARY KEY,
        label TEXT NOT NULL DEFAULT '',
        added_at REAL NOT NULL,
        added_by TEXT NOT NULL
    );
    CREATE TABLE ledger (
        id INTEGER PRIMARY KEY,
        ts INTEGER NOT NULL,
        from_channel TEXT NOT NULL,
        to_channel TEXT NOT NULL,
        amount_msat INTEGER NOT NULL,
        fees_msat INTEGER NOT NULL,
        from_alias TEXT NOT NULL DEFAULT '',
        to_alias TEXT NOT NULL DEFAULT '',
        recorded_at REAL NOT NULL
    );
    CREATE INDEX ledger_ts ON ledger (ts);
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        source TEXT NOT NULL,
        target TEXT NOT NULL,
        started_at REAL NOT NULL,
        ended_at REAL NOT NULL,
        exit_code INTEGER,
        outcome TEXT NOT NULL,
        last_line TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX runs_started ON runs (started_at);
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        created_at REAL NOT NULL,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL,
        sent_at REAL,
        attempts INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX outbox_pending ON outbox (sent_at, id);
    CREATE TABLE reports (day TEXT PRIMARY KEY, sent_at REAL NOT NULL);
    """,
    # v2: regolancer's "no channelpairs available" has its own outcome (it was a no route).
    """
    UPDATE runs SET outcome = 'not_qualified'
    WHERE outcome = 'no_route' AND lower(last_line) LIKE '%no channelpairs available%';
    """,
    # v3: closed days' report figures (core.report_cache), keyed by zone and match window.
    """
    CREATE TABLE report_days (
        zone TEXT NOT NULL,
        window REAL NOT NULL,
        day TEXT NOT NULL,
        figures TEXT NOT NULL,
        ledger_mark INTEGER NOT NULL,
        runs_mark INTEGER NOT NULL,
        computed_at REAL NOT NULL,
        PRIMARY KEY (zone, window, day)
    );
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

log = logging.getLogger(__name__)

# Longer than any run (RUN_TIMEOUT_SECONDS is at most a day, plus the stop grace).
RUN_HORIZON_SECONDS = 2 * 86_400


class StateError(Exception):
    """The state database cannot be used; the message says what to do."""


@dataclass(frozen=True, slots=True)
class Exclusion:
    chan_id: str
    label: str
    added_at: float
    added_by: str


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    id: int
    kind: str
    payload: dict[str, Any]
    created_at: float
    attempts: int


@dataclass(frozen=True, slots=True)
class Totals:
    count: int
    amount_sat: int
    fee_sat: float

    @property
    def ppm(self) -> int:
        return int(self.fee_sat * 1_000_000 // self.amount_sat) if self.amount_sat else 0


def ensure_data_dir(path: Path) -> None:
    """Create DATA_DIR private to this user (0700); a clear error if it cannot be written.

    An existing directory of ours is tightened to 0700 too (`mkdir -p data` makes 0755):
    the ledger, logs and reports tell what the node does.
    """
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise StateError(f"DATA_DIR {path}: cannot create it ({exc.strerror})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise StateError(f"DATA_DIR {path}: not writable by this user; fix its owner or mode")
    try:
        info = path.stat()
        if info.st_uid == os.geteuid() and info.st_mode & 0o077:
            path.chmod(0o700)
    except OSError as exc:  # e.g. a read-only bind mount: usable, just not tightened
        log.warning("DATA_DIR %s: could not restrict it to 0700 (%s)", path, exc.strerror)


class StateStore:
    """All durable state. Methods are short transactions; safe to call from the event loop."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA busy_timeout = 5000")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StateError(f"state database {path}: {exc}") from None
        os.chmod(path, 0o600)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def reader(self) -> Iterator[sqlite3.Connection]:
        """A read-only connection of its own, for a worker thread, in one read transaction.

        WAL lets it read a consistent snapshot while this store's connection (the event
        loop's) writes; `query_only` makes sure it never writes. Closed on exit.
        """
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA busy_timeout = 5000")
            db.execute("PRAGMA query_only = 1")
            db.execute("BEGIN")
            yield db
        finally:
            db.close()

    @contextmanager
    def writer(self) -> Iterator[sqlite3.Connection]:
        """A connection of its own for a worker thread's writes (it opens its transactions);
        the event loop's connection is never shared with a thread. Closed on exit."""
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA busy_timeout = 5000")
            yield db
        finally:
            db.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        # BEGIN IMMEDIATE takes the write lock up front, so a second daemon on the same
        # file waits (busy_timeout) instead of failing half way.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StateError(
                f"state database {self.path} is schema v{version}, newer than this version "
                f"(v{SCHEMA_VERSION}); upgrade regolancer-orchestrator"
            )
        for number in range(version, SCHEMA_VERSION):
            with self._transaction() as db:
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {number + 1}")

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    # --- switches and small values -------------------------------------------------------

    def get_value(self, key: str, default: str | None = None) -> str | None:
        row = self._db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return default if row is None else str(row[0])

    def put_value(self, key: str, value: str | None) -> None:
        with self._transaction() as db:
            self._put(db, key, value)

    @staticmethod
    def _put(db: sqlite3.Connection, key: str, value: str | None) -> None:
        if value is None:
            db.execute("DELETE FROM kv WHERE key = ?", (key,))
        else:
            db.execute(
                "INSERT INTO kv (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    @property
    def dry_run(self) -> bool:
        return self.get_value("dry_run") == "1"

    @dry_run.setter
    def dry_run(self, on: bool) -> None:
        self.put_value("dry_run", "1" if on else "0")

    def paused_until(self) -> float | None:
        """None when running; a Unix time, or infinity for 'until /resume'."""
        value = self.get_value("paused_until")
        return None if value is None else float(value)

    def is_paused(self, now: float | None = None) -> bool:
        until = self.paused_until()
        return until is not None and until > (time.time() if now is None else now)

    def pause(self, until: float = float("inf")) -> None:
        self.put_value("paused_until", repr(until))

    def resume(self) -> None:
        self.put_value("paused_until", None)

    # --- exclusions ----------------------------------------------------------------------

    def exclusions(self) -> list[Exclusion]:
        rows = self._db.execute(
            "SELECT chan_id, label, added_at, added_by FROM exclusions ORDER BY added_at"
        ).fetchall()
        return [Exclusion(*row) for row in rows]

    def excluded_ids(self) -> frozenset[str]:
        return frozenset(r[0] for r in self._db.execute("SELECT chan_id FROM exclusions"))

    def exclude(self, chan_id: str, label: str = "", added_by: str = "chat") -> bool:
        """Add an exclusion; False when the channel was already excluded."""
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO exclusions (chan_id, label, added_at, added_by) "
                "VALUES (?, ?, ?, ?)",
                (chan_id, label, time.time(), added_by),
            )
            return cursor.rowcount == 1

    def include(self, chan_id: str) -> bool:
        """Remove an exclusion; False when the channel was not excluded."""
        with self._transaction() as db:
            return db.execute("DELETE FROM exclusions WHERE chan_id = ?", (chan_id,)).rowcount == 1

    def seeded_tokens(self) -> set[str]:
        """EXCLUDE_CHANNELS entries already applied once (so /include is not undone)."""
        return set(json.loads(self.get_value("exclude_seeded", "[]") or "[]"))

    def mark_seeded(self, tokens: Iterable[str]) -> None:
        self.put_value("exclude_seeded", json.dumps(sorted(self.seeded_tokens() | set(tokens))))

    # --- the stat CSV and the ledger -----------------------------------------------------

    def stat_position(self) -> tuple[int, int] | None:
        """(inode, offset) up to which the stat CSV was read, None before the first read."""
        value = self.get_value("stat_position")
        if value is None:
            return None
        inode, offset = json.loads(value)
        return int(inode), int(offset)

    def record_stat_lines(
        self,
        entries: Sequence[tuple[StatLine, str, str]],
        position: tuple[int, int],
        *,
        read_from: tuple[int, int] | None = None,
    ) -> list[Rebalance]:
        """Ledger rows for new stat lines, their feed rows and the new CSV position.

        One transaction: after a crash either all of it happened or none, so every line
        becomes exactly one ledger row and one feed row (see core.feed). `read_from` is the
        position the lines were read from; if another process moved it meanwhile, nothing is
        recorded.
        """
        now = time.time()
        added: list[Rebalance] = []
        with self._transaction() as db:
            if self.stat_position() != read_from:
                return added
            for line, from_alias, to_alias in entries:
                cursor = db.execute(
                    "INSERT INTO ledger (ts, from_channel, to_channel, amount_msat, fees_msat, "
                    "from_alias, to_alias, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        line.timestamp,
                        line.from_channel,
                        line.to_channel,
                        line.amount_msat,
                        line.fees_msat,
                        from_alias,
                        to_alias,
                        now,
                    ),
                )
                rebalance_id = int(cursor.lastrowid or 0)
                added.append(Rebalance(rebalance_id, line, from_alias, to_alias))
                self._enqueue(db, "rebalance", {"ledger_id": rebalance_id}, now)
            self._put(db, "stat_position", json.dumps(list(position)))
        return added

    def ledger(self, since: float = 0, until: float = float("inf")) -> list[Rebalance]:
        return read_ledger(self._db, since, until)

    def rebalance(self, ledger_id: int) -> Rebalance | None:
        row = self._db.execute(
            "SELECT id, ts, from_channel, to_channel, amount_msat, fees_msat, from_alias, "
            "to_alias FROM ledger WHERE id = ?",
            (ledger_id,),
        ).fetchone()
        return None if row is None else _rebalance(row)

    def last_rebalances(self, count: int) -> list[Rebalance]:
        rows = self._db.execute(
            "SELECT id, ts, from_channel, to_channel, amount_msat, fees_msat, from_alias, "
            "to_alias FROM ledger ORDER BY id DESC LIMIT ?",
            (count,),
        ).fetchall()
        return [_rebalance(row) for row in rows]

    def totals(self, since: float = 0, until: float = float("inf")) -> Totals:
        count, amount, fees = self._db.execute(
            # total() sums as a float: a ledger written before stat lines were bounded can
            # hold amounts whose integer sum would overflow and fail /status for the day.
            "SELECT count(*), total(amount_msat), total(fees_msat) "
            "FROM ledger WHERE ts >= ? AND ts < ?",
            (since, min(until, 2**62)),
        ).fetchone()
        return Totals(int(count), int(amount // 1000), fees / 1000)

    # --- runs ----------------------------------------------------------------------------

    def record_run(self, run: RunResult) -> int:
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO runs (source, target, started_at, ended_at, exit_code, outcome, "
                "last_line) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    run.source,
                    run.target,
                    run.started_at,
                    run.ended_at,
                    run.exit_code,
                    run.outcome.value,
                    run.last_line,
                ),
            )
            return int(cursor.lastrowid or 0)

    def runs(self, since: float = 0, until: float = float("inf")) -> list[RunResult]:
        return read_runs(self._db, since, until)

    def prune_runs(self, before: float) -> int:
        """Delete the runs started before `before` (a POSIX time); the number deleted.

        The ledger is never pruned: it is the record of what was paid.
        """
        with self._transaction() as db:
            return db.execute("DELETE FROM runs WHERE started_at < ?", (before,)).rowcount

    def run_covering(self, source: str, target: str, ts: int) -> int | None:
        """The id of the recorded run of (source, target) that was going at `ts`, if any.

        `ts` is a stat line's timestamp (whole seconds, regolancer's clock on this host): the
        payment happened in [ts, ts + 1), so the run started before ts + 1 and ended after ts.
        A run lasts at most RUN_TIMEOUT_SECONDS (a day at most): older runs are not looked at.
        """
        row = self._db.execute(
            "SELECT id FROM runs WHERE started_at >= ? AND started_at < ? AND ended_at >= ? "
            "AND source = ? AND target = ? ORDER BY id DESC LIMIT 1",
            (ts - RUN_HORIZON_SECONDS, ts + 1, ts, source, target),
        ).fetchone()
        return None if row is None else int(row[0])

    def outcome_counts(self, since: float = 0, until: float = float("inf")) -> dict[Outcome, int]:
        rows = self._db.execute(
            "SELECT outcome, count(*) FROM runs WHERE started_at >= ? AND started_at < ? "
            "GROUP BY outcome",
            (since, min(until, 2**62)),
        ).fetchall()
        return {Outcome(outcome): int(count) for outcome, count in rows}

    def run_durations(
        self, bounds: Sequence[float], *, leave_out: Iterable[Outcome] = ()
    ) -> tuple[list[int], int, float]:
        """Runs by duration: (cumulative count at or below each bound, count, sum of seconds).

        Counted in SQL, so a year of runs is one scan, not a year of rows in Python.
        """
        skipped = [outcome.value for outcome in leave_out]
        marks = ", ".join(f"total(d <= {float(bound)!r})" for bound in bounds)
        row = self._db.execute(
            f"SELECT {marks}{', ' if marks else ''}count(*), total(d) "  # noqa: S608 (floats)
            "FROM (SELECT ended_at - started_at AS d FROM runs "
            f"WHERE outcome NOT IN ({', '.join('?' * len(skipped))}))",
            skipped,
        ).fetchone()
        *cumulative, count, seconds = row
        return [int(n) for n in cumulative], int(count), float(seconds)

    # --- outbox --------------------------------------------------------------------------

    def enqueue(self, kind: str, payload: dict[str, Any]) -> int:
        with self._transaction() as db:
            return self._enqueue(db, kind, payload, time.time())

    @staticmethod
    def _enqueue(db: sqlite3.Connection, kind: str, payload: dict[str, Any], now: float) -> int:
        cursor = db.execute(
            "INSERT INTO outbox (created_at, kind, payload) VALUES (?, ?, ?)",
            (now, kind, json.dumps(payload)),
        )
        return int(cursor.lastrowid or 0)

    def pending_messages(self, limit: int = 50) -> list[OutboxMessage]:
        rows = self._db.execute(
            "SELECT id, kind, payload, created_at, attempts FROM outbox "
            "WHERE sent_at IS NULL ORDER BY id LIMIT ?",
            (limit,),
        ).fetchall()
        return [OutboxMessage(i, k, json.loads(p), c, a) for i, k, p, c, a in rows]

    def pending_count(self) -> int:
        """Feed rows not delivered yet (the outbox backlog)."""
        return int(
            self._db.execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL").fetchone()[0]
        )

    def mark_sent(self, ids: Iterable[int]) -> None:
        with self._transaction() as db:
            db.executemany(
                "UPDATE outbox SET sent_at = ? WHERE id = ?", [(time.time(), i) for i in ids]
            )

    def mark_attempt(self, ids: Iterable[int]) -> None:
        with self._transaction() as db:
            db.executemany(
                "UPDATE outbox SET attempts = attempts + 1 WHERE id = ?", [(i,) for i in ids]
            )

    # --- reports -------------------------------------------------------------------------

    def report_sent(self, day: str) -> bool:
        return (
            self._db.execute("SELECT 1 FROM reports WHERE day = ?", (day,)).fetchone() is not None
        )

    def mark_report_sent(self, day: str) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO reports (day, sent_at) VALUES (?, ?)", (day, time.time())
            )


def read_ledger(
    db: sqlite3.Connection, since: float = 0, until: float = float("inf")
) -> list[Rebalance]:
    """Ledger rows with `since <= ts < until`, in id order, from any connection to the store."""
    rows = db.execute(
        "SELECT id, ts, from_channel, to_channel, amount_msat, fees_msat, from_alias, "
        "to_alias FROM ledger WHERE ts >= ? AND ts < ? ORDER BY id",
        (since, min(until, 2**62)),
    ).fetchall()
    return [_rebalance(row) for row in rows]


def read_runs(
    db: sqlite3.Connection, since: float = 0, until: float = float("inf")
) -> list[RunResult]:
    """Runs started in `[since, until)`, in id order, from any connection to the store."""
    rows = db.execute(
        "SELECT source, target, started_at, ended_at, exit_code, outcome, last_line "
        "FROM runs WHERE started_at >= ? AND started_at < ? ORDER BY id",
        (since, min(until, 2**62)),
    ).fetchall()
    return [
        RunResult(s, t, start, end, code, Outcome(outcome), line)
        for s, t, start, end, code, outcome, line in rows
    ]


def _rebalance(row: tuple[Any, ...]) -> Rebalance:
    ledger_id, ts, source, target, amount, fees, from_alias, to_alias = row
    return Rebalance(
        int(ledger_id),
        StatLine(int(ts), source, target, int(amount), int(fees)),
        from_alias,
        to_alias,
    )
