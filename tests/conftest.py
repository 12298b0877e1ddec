"""Shared fixtures: every test starts from an environment without the daemon's variables."""

from __future__ import annotations

import os
import sys
from collections.abc import Generator
from typing import Any

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


# --- the fast lane ------------------------------------------------------------------------------
# `make check` runs `-m "not subprocess and not soak and not crash"` (markers: pyproject.toml).
# A test that starts a child process must carry @pytest.mark.subprocess (or its module's
# pytestmark): any process started while an unmarked test sets up, runs or tears down fails it,
# so a process test cannot slip into the fast lane unnoticed. Python's audit events see every
# way of starting one: subprocess, asyncio.create_subprocess_*, os.system, os.fork, os.exec*.
SPAWN_EVENTS = frozenset(
    {
        "subprocess.Popen",
        "os.system",
        "os.exec",
        "os.spawn",
        "os.posix_spawn",
        "os.fork",
        "os.forkpty",
    }
)


class SpawnWatch:
    """Audit hook: what was started while `watching` (None: not watching)."""

    def __init__(self) -> None:
        self.watching: list[str] | None = None

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if self.watching is not None and event in SPAWN_EVENTS:
            self.watching.append(f"{event} {str(args[0] if args else '')[:120]}")

    def start(self) -> None:
        self.watching = []

    def stop(self) -> list[str]:
        started, self.watching = self.watching or [], None
        return started


spawn_watch = SpawnWatch()
sys.addaudithook(spawn_watch)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("subprocess") is None:
        spawn_watch.start()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    try:
        yield
    finally:
        started = spawn_watch.stop()
    if started:
        pytest.fail(
            f"{item.nodeid} started a child process but is not marked "
            f"@pytest.mark.subprocess (so `make check` would run it): {started[0]}",
            pytrace=False,
        )
