"""Shared fixtures: every test starts from an environment without the daemon's variables."""

from __future__ import annotations

import pytest

from core.settings import Settings


@pytest.fixture(autouse=True)
def _clean_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # A developer's own .env or exported variables must not leak into tests.
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    # As the console script does (bot/cli.py): PTB's durations as timedelta, no notices.
    monkeypatch.setenv("PTB_TIMEDELTA", "true")
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
