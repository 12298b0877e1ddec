"""Shared fixtures: every test starts from an environment without the daemon's variables."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

from core.settings import Settings

# CI must not depend on hypothesis's luck: the same examples on every run, derived from each
# test's name. `HYPOTHESIS_PROFILE=explore` draws fresh ones to look for new failures (add
# what it finds as an `@example`).
settings.register_profile("deterministic", derandomize=True, database=None)
settings.register_profile("explore", max_examples=2000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))


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
