"""The split between `make check` and `make test`: markers declared, slow modules marked, and
the guard in tests/conftest.py that fails an unmarked test which starts a child process."""

from __future__ import annotations

import importlib
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import SpawnWatch, spawn_watch

REPO = Path(__file__).resolve().parents[1]
FAST_LANE_LEAVES_OUT = {"subprocess", "soak", "crash"}


def module_marks(module: str) -> set[str]:
    marks = importlib.import_module(f"tests.{module}").pytestmark
    return {mark.name for mark in (marks if isinstance(marks, list) else [marks])}


def test_the_markers_are_declared_and_strict() -> None:
    ini = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "--strict-markers" in ini["addopts"].split()
    declared = {line.split(":", 1)[0] for line in ini["markers"]}
    assert declared >= FAST_LANE_LEAVES_OUT
    makefile = (REPO / "Makefile").read_text()
    assert '-m "not subprocess and not soak and not crash"' in makefile


def test_soak_and_crash_modules_carry_their_markers() -> None:
    soak_modules = sorted(path.stem for path in (REPO / "tests").glob("test_soak*.py"))
    assert soak_modules
    for module in soak_modules:
        assert "soak" in module_marks(module), module
    assert {"crash", "subprocess"} <= module_marks("test_crash_consistency")


def test_the_guard_watches_an_unmarked_test() -> None:
    assert spawn_watch.watching is not None  # this test is unmarked: watched
    seen = len(spawn_watch.watching)
    # The audit event Popen raises, without starting anything.
    sys.audit("subprocess.Popen", "/bin/true", ["/bin/true"], None, None)
    assert spawn_watch.watching[seen:] == ["subprocess.Popen /bin/true"]
    del spawn_watch.watching[seen:]  # or the guard would fail this test at teardown


@pytest.mark.subprocess
def test_the_guard_leaves_a_marked_test_alone() -> None:
    assert spawn_watch.watching is None


def test_the_guard_records_only_process_starts_and_only_while_watching() -> None:
    watch = SpawnWatch()
    watch("subprocess.Popen", ("/bin/true",))
    assert watch.stop() == []
    watch.start()
    for event in ("open", "socket.connect", "os.system", "os.fork", "os.posix_spawn", "os.exec"):
        watch(event, ("x",))
    assert watch.stop() == ["os.system x", "os.fork x", "os.posix_spawn x", "os.exec x"]
    assert watch.watching is None
