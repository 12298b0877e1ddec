"""RUN_RETENTION_DAYS: run records older than the retention go, the ledger stays."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from core.models import Outcome, RunResult, StatLine
from core.runtime import prune_runs
from core.settings import SettingsError, load_settings
from core.state import StateStore

DAY = 86_400.0
NOW = 1_800_000_000.0


def run_at(started: float) -> RunResult:
    return RunResult("1", "2", started, started + 60, 0, Outcome.SUCCESS, "")


def test_runs_past_the_retention_are_deleted_and_the_ledger_is_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="core.runtime")
    with StateStore(tmp_path / "state.sqlite3") as store:
        for age in (200, 91, 90.01, 89.99, 1):
            store.record_run(run_at(NOW - age * DAY))
        old = StatLine(int(NOW - 400 * DAY), "1", "2", 5_000_000, 100)
        store.record_stat_lines([(old, "", "")], (1, 1))
        assert prune_runs(store, 90, now=NOW) == 3
        assert [round((NOW - r.started_at) / DAY, 2) for r in store.runs()] == [89.99, 1]
        assert [row.line for row in store.ledger()] == [old]  # the ledger is kept forever
        assert prune_runs(store, 90, now=NOW) == 0  # twice: nothing more to do
    assert [r.getMessage() for r in caplog.records] == ["pruned 3 run records older than 90 days"]


def test_the_retention_setting_has_a_floor(tmp_path: Path) -> None:
    assert load_settings(None, data_dir=tmp_path).run_retention_days == 90
    with pytest.raises(SettingsError, match="RUN_RETENTION_DAYS"):
        load_settings(None, data_dir=tmp_path, run_retention_days=3)
