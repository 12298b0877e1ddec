"""Disk and state faults: the stat CSV truncated, deleted, unreadable; the state database
locked, from another schema, not a database; DATA_DIR unusable.

The tailer's own cases (rotation, truncation, rewrite, partial lines) are unit-tested in
tests/test_statfile.py; here the daemon meets them and must lose and repeat nothing.
`file_modes=True` makes the child obey file modes even when the tests run as root.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import core.state
from core.state import StateError, StateStore
from sim.lndg import FakeLndg
from tests.daemon_process import Daemon, Node, run_cli, wait_until

HEADER = "timestamp,from_channel,to_channel,amount_msat,fees_msat\n"


def line(n: int) -> str:
    return f"{1_764_021_400 + n},879609302301671425,879609302301671426,{(50_000 + n) * 1000},1000\n"


@pytest.fixture
def lndg() -> Iterator[FakeLndg]:
    with FakeLndg() as fake:
        yield fake


@pytest.fixture
def node(tmp_path: Path, lndg: FakeLndg) -> Node:
    # Dry run: no regolancer writes, the test writes the stat lines at chosen moments.
    node = Node(tmp_path, lndg.url, dry_run="true", sleep_seconds=1)
    node.data.mkdir(mode=0o700)
    return node


def amounts(node: Node) -> list[int]:
    return [row[3] // 1000 - 50_000 for row in node.ledger()]


@pytest.mark.subprocess
def test_truncated_and_deleted_stat_csv_is_read_again_from_the_start(node: Node) -> None:
    node.stat.write_text(HEADER + line(1) + line(2))
    daemon = Daemon(node).start()
    try:
        wait_until(lambda: amounts(node) == [1, 2], 20, "the first lines")
        node.stat.write_text(line(3))  # truncated in place and rewritten, shorter
        wait_until(lambda: amounts(node) == [1, 2, 3], 20, "the line after truncation")
        daemon.wait_for_log("truncated: size .* is below the stored offset")
        node.stat.unlink()  # deleted: nothing to read, nothing lost
        daemon.wait_for_log("cycle finish", count=3)
        node.stat.write_text(HEADER + line(4))  # regolancer creates it again
        wait_until(lambda: amounts(node) == [1, 2, 3, 4], 20, "the line in the new file")
        with node.stat.open("a") as f:
            f.write(line(5))
        wait_until(lambda: amounts(node) == [1, 2, 3, 4, 5], 20, "a line appended")
        code, _ = daemon.stop()
    finally:
        daemon.kill()
    assert code == 0
    assert "Traceback" not in daemon.output


@pytest.mark.subprocess
def test_unreadable_stat_csv_alerts_once_and_loses_nothing(node: Node) -> None:
    node.stat.write_text(HEADER + line(1))
    daemon = Daemon(node, file_modes=True).start()
    try:
        wait_until(lambda: amounts(node) == [1], 20, "the first line")
        node.stat.chmod(0o000)
        with node.stat.open("a") as f:  # the test (root or owner) still writes
            f.write(line(2))
        daemon.wait_for_log(
            r"alert: stat CSV: cannot read regolancer stat file .*stat\.csv: permission denied; "
            "run the orchestrator as the user that runs regolancer"
        )
        daemon.wait_for_log("cycle finish", count=3)
        assert amounts(node) == [1]
        node.stat.chmod(0o644)
        wait_until(lambda: amounts(node) == [1, 2], 20, "the line written while unreadable")
        daemon.wait_for_log("recovered: stat CSV .* is readable again")
        code, _ = daemon.stop()
    finally:
        daemon.kill()
    assert code == 0
    assert daemon.output.count("alert: stat CSV") == 1


def hold_write_lock(database: Path, seconds: float, held: threading.Event) -> None:
    """Another process's writer (sqlite3 CLI, a backup tool) keeps the database locked."""
    with sqlite3.connect(database, timeout=10) as db:
        db.execute("BEGIN EXCLUSIVE")
        held.set()
        time.sleep(seconds)
        db.rollback()


def lock_while_appending(node: Node, seconds: float, *lines: str) -> None:
    held = threading.Event()
    locker = threading.Thread(
        target=hold_write_lock, args=(node.data / "state.sqlite3", seconds, held)
    )
    locker.start()
    held.wait(10)
    with node.stat.open("a") as f:
        f.write("".join(lines))
    locker.join()


@pytest.mark.parametrize("seconds", [3.0, 8.0], ids=["within-busy-timeout", "beyond-it"])
@pytest.mark.subprocess
def test_locked_state_database_delays_but_loses_nothing(node: Node, seconds: float) -> None:
    node.stat.write_text(HEADER + line(1))
    daemon = Daemon(node).start()
    try:
        wait_until(lambda: amounts(node) == [1], 20, "the first line")
        lock_while_appending(node, seconds, line(2), line(3))
        wait_until(lambda: amounts(node) == [1, 2, 3], 20, "the lines written while locked")
        assert daemon.proc is not None
        assert daemon.proc.poll() is None
        code, _ = daemon.stop()
    finally:
        daemon.kill()
    assert code == 0
    assert node.ledger() == node.stat_lines()
    if seconds < 5:  # inside busy_timeout: waited, said nothing
        assert "database is locked" not in daemon.output
    else:  # beyond: a write fails (logged: the feed's mark or the ledger poll), then catches up
        assert "database is locked" in daemon.output
        assert "Traceback" not in daemon.output  # one line per event


@pytest.mark.subprocess
def test_cycles_go_on_after_the_event_loop_was_held_up(node: Node) -> None:
    node.stat.write_text(HEADER + line(1))
    daemon = Daemon(node).start()
    try:
        wait_until(lambda: amounts(node) == [1], 20, "the first line")
        lock_while_appending(node, 3.0, line(2))
        wait_until(lambda: amounts(node) == [1, 2], 20, "the line written while locked")
        daemon.wait_for_log(
            "cycle finish", timeout=10, count=daemon.output.count("cycle finish") + 2
        )
    finally:
        daemon.kill()


def test_state_from_an_older_schema_is_migrated_keeping_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state.sqlite3"
    with StateStore(path) as old:  # this version's schema, with data in it
        old.exclude("123", "Peer", "chat")
        old.pause(2e9)
        old.enqueue("text", {"text": "queued before the upgrade"})
        assert old.schema_version == core.state.SCHEMA_VERSION
    current = core.state.SCHEMA_VERSION
    upgraded = (*core.state.MIGRATIONS, "ALTER TABLE runs ADD COLUMN worker INTEGER;")
    monkeypatch.setattr(core.state, "MIGRATIONS", upgraded)
    monkeypatch.setattr(core.state, "SCHEMA_VERSION", len(upgraded))
    with StateStore(path) as new:
        assert new.schema_version == current + 1
        assert [e.chan_id for e in new.exclusions()] == ["123"]
        assert new.paused_until() == 2e9
        assert [m.payload for m in new.pending_messages()] == [
            {"text": "queued before the upgrade"}
        ]


def test_failed_migration_leaves_the_old_state_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state.sqlite3"
    current = core.state.SCHEMA_VERSION
    with StateStore(path) as old:
        old.exclude("123", "Peer", "chat")
    broken = (*core.state.MIGRATIONS, "ALTER TABLE runs ADD COLUMN w INTEGER; NOT SQL;")
    monkeypatch.setattr(core.state, "MIGRATIONS", broken)
    monkeypatch.setattr(core.state, "SCHEMA_VERSION", len(broken))
    with pytest.raises(StateError, match=r"state database .*syntax error"):
        StateStore(path)
    monkeypatch.undo()
    with StateStore(path) as again:
        assert again.schema_version == current
        assert [e.chan_id for e in again.exclusions()] == ["123"]
        assert "w" not in [r[1] for r in again._db.execute("PRAGMA table_info(runs)")]


@pytest.mark.parametrize("kind", ["newer-schema", "not-a-database"])
@pytest.mark.subprocess
def test_unusable_state_database_stops_start_up_with_one_line(node: Node, kind: str) -> None:
    database = node.data / "state.sqlite3"
    if kind == "newer-schema":
        with sqlite3.connect(database) as db:
            db.execute("PRAGMA user_version = 99")
        expected = (
            f"is schema v99, newer than this version (v{core.state.SCHEMA_VERSION}); "
            "upgrade regolancer-orchestrator"
        )
    else:
        database.write_bytes(b"this is not an SQLite database, not even close" * 100)
        expected = "file is not a database"
    result = run_cli(node, "run", timeout=30)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: state database {database} {expected}".replace(
            f"{database} file", f"{database}: file"
        )
    ]
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize("kind", ["read-only", "under-a-file"])
@pytest.mark.subprocess
def test_data_dir_not_writable_is_a_clear_error_at_start(tmp_path: Path, kind: str) -> None:
    with FakeLndg() as lndg:
        node = Node(tmp_path, lndg.url)
        if kind == "read-only":
            node.data.mkdir(mode=0o500)
            expected = (
                f"error: DATA_DIR {node.data}: not writable by this user; fix its owner or mode"
            )
        else:
            blocker = tmp_path / "not-a-dir"
            blocker.write_text("")
            node.env["DATA_DIR"] = str(blocker / "data")
            expected = f"error: DATA_DIR {blocker / 'data'}: cannot create it (Not a directory)"
        result = run_cli(node, "run", timeout=30, file_modes=True)
        check = run_cli(node, "check", timeout=30, file_modes=True)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [expected]
    assert check.returncode == 1
    assert f"FAIL data: {expected.removeprefix('error: ')}" in check.stdout
