"""The state store: real SQLite files, surviving reopen, migrating, refusing the future."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

import core.state
from core.models import Outcome, RunResult, StatLine
from core.state import SCHEMA_VERSION, StateError, StateStore, ensure_data_dir


def test_switches_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    with StateStore(path) as store:
        assert not store.dry_run
        assert not store.is_paused()
        store.dry_run = True
        store.pause(until=2_000_000_000.0)
    with StateStore(path) as store:
        assert store.dry_run
        assert store.is_paused(now=1_999_999_999.0)
        assert not store.is_paused(now=2_000_000_001.0)
        store.resume()
        assert store.paused_until() is None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_pause_without_end_lasts_until_resume(tmp_path: Path) -> None:
    with StateStore(tmp_path / "s.db") as store:
        store.pause()
        assert store.is_paused(now=4e9)


def test_exclusions(tmp_path: Path) -> None:
    with StateStore(tmp_path / "s.db") as store:
        assert store.exclude("1", "Alice")
        assert not store.exclude("1", "Alice")
        assert store.exclude("2", "Bob", added_by="env")
        assert store.excluded_ids() == {"1", "2"}
        assert [(e.chan_id, e.label, e.added_by) for e in store.exclusions()] == [
            ("1", "Alice", "chat"),
            ("2", "Bob", "env"),
        ]
        assert store.include("1")
        assert not store.include("1")
        store.mark_seeded(["Bob"])
        store.mark_seeded(["x"])
        assert store.seeded_tokens() == {"Bob", "x"}


def test_ledger_rows_outbox_and_position_in_one_transaction(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    line = StatLine(1764021421, "879609302301671425", "879609302301671426", 50_000_000, 12_500)
    with StateStore(path) as store:
        added = store.record_stat_lines([(line, "SourceA", "TargetB")], (42, 100))
        assert [r.line for r in added] == [line]
        assert store.stat_position() == (42, 100)
        pending = store.pending_messages()
        assert [(m.kind, m.payload) for m in pending] == [("rebalance", {"ledger_id": added[0].id})]
        store.mark_sent([pending[0].id])
        assert store.pending_messages() == []
        # another reader already moved on from (0, 0): nothing is recorded twice
        assert store.record_stat_lines([(line, "A", "B")], (42, 160)) == []
        assert store.pending_messages() == []
        store.record_stat_lines([(line, "A", "B")], (42, 160), read_from=(42, 100))
        assert [m.kind for m in store.pending_messages()] == ["rebalance"]
    with StateStore(path) as store:
        totals = store.totals()
        assert (totals.count, totals.amount_sat, totals.fee_sat) == (2, 100_000, 25.0)
        assert totals.ppm == 250
        assert store.rebalance(added[0].id) == added[0]
        assert [r.from_alias for r in store.last_rebalances(5)] == ["A", "SourceA"]
        assert store.totals(since=1764021422).count == 0


def test_failed_transaction_leaves_nothing(tmp_path: Path) -> None:
    line = StatLine(1, "1", "2", 1000, 0)

    with StateStore(tmp_path / "s.db") as store:
        with pytest.raises(sqlite3.Error):
            # an alias that SQLite cannot bind aborts mid-transaction
            store.record_stat_lines([(line, "A", "B"), (line, object(), "B")], (1, 99))  # type: ignore[list-item]
        assert store.ledger() == []
        assert store.pending_messages() == []
        assert store.stat_position() is None


def test_no_channelpairs_runs_of_schema_v1_become_not_qualified(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    db = sqlite3.connect(path)
    with db:  # the store as version 1 left it
        for statement in core.state.MIGRATIONS[0].split(";"):
            db.execute(statement)
        db.execute("PRAGMA user_version = 1")
        db.executemany(
            "INSERT INTO runs (source, target, started_at, ended_at, exit_code, outcome, "
            "last_line) VALUES ('1', '2', 10, 20, 1, ?, ?)",
            [("no_route", "No channelpairs available"), ("no_route", "no routes"), ("success", "")],
        )
    db.close()
    with StateStore(path) as store:
        assert [r.outcome for r in store.runs()] == [
            Outcome.NOT_QUALIFIED,
            Outcome.NO_ROUTE,
            Outcome.SUCCESS,
        ]


def test_runs_and_outcome_counts(tmp_path: Path) -> None:
    with StateStore(tmp_path / "s.db") as store:
        store.record_run(RunResult("1", "2", 100.0, 160.0, 0, Outcome.SUCCESS, "Success!"))
        store.record_run(RunResult("1", "3", 200.0, 210.0, 1, Outcome.NO_ROUTE, "no routes"))
        store.record_run(RunResult("4", "3", 300.0, 310.0, 1, Outcome.NO_ROUTE, "no routes"))
        assert store.outcome_counts() == {Outcome.SUCCESS: 1, Outcome.NO_ROUTE: 2}
        assert store.outcome_counts(since=150) == {Outcome.NO_ROUTE: 2}
        assert store.runs(since=250)[0].source == "4"


def test_reports_are_remembered(tmp_path: Path) -> None:
    with StateStore(tmp_path / "s.db") as store:
        assert not store.report_sent("2026-11-23")
        store.mark_report_sent("2026-11-23")
        store.mark_report_sent("2026-11-23")
        assert store.report_sent("2026-11-23")


def test_newer_schema_is_refused_with_advice(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    StateStore(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StateError, match=r"newer than this version.*upgrade"):
        StateStore(path)


def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StateError, match=r"state database .*s\.db"):
        StateStore(path)


def test_data_dir_created_private(tmp_path: Path) -> None:
    data = tmp_path / "a" / "data"
    ensure_data_dir(data)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700


def test_unwritable_data_dir_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StateError, match=r"DATA_DIR .*cannot create it"):
        ensure_data_dir(blocker / "data")
