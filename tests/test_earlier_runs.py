"""regolancer runs left by a killed daemon hold their channels until they end (+1 s)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core import earlier_runs
from core.earlier_runs import EarlierRuns
from core.runner import RegolancerRunner
from tests.test_engine import Node, ScriptedRunner, make_engine, star_node


def left_config(work_dir: Path, source: str, target: str, age: float = 60.0) -> Path:
    """A config as a killed daemon left it (written `age` seconds ago)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    path = work_dir / f"regolancer-{source}-{target}.json"
    path.write_text(json.dumps({"from": [source], "to": [target], "amount": 50_000}))
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def fake_proc(root: Path, pid: int, args: list[str], state: str = "S") -> None:
    entry = root / str(pid)
    entry.mkdir(parents=True)
    entry.joinpath("cmdline").write_bytes(b"\0".join(a.encode() for a in args) + b"\0")
    entry.joinpath("stat").write_text(f"{pid} (regolancer) {state} 1 1 1")


def test_a_live_earlier_run_holds_its_channels_until_a_second_after_it_ends(
    tmp_path: Path,
) -> None:
    work, proc = tmp_path / "work", tmp_path / "proc"
    config = left_config(work, "11", "22")
    left_config(work, "33", "44")  # its process is gone already
    fake_proc(proc, 4242, ["regolancer", "-f", str(config)])
    fake_proc(proc, 7, ["bash"])
    found = earlier_runs.find(work, time.time(), proc)
    assert {(r.channels, r.pid) for r in found} == {
        (frozenset({"11", "22"}), 4242),
        (frozenset({"33", "44"}), None),
    }
    held = EarlierRuns(found, 100.0, proc)
    assert held.busy(100.0) == {"11", "22", "33", "44"}
    assert held.busy(101.0) == {"11", "22"}  # the dead one's second is over
    (proc / "4242" / "stat").write_text("4242 (regolancer) Z 1 1 1")  # it ended (a zombie)
    assert held.busy(150.0) == {"11", "22"}  # seen gone at 150: held until 151
    assert held.busy(151.0) == frozenset()
    assert not held


def test_configs_of_this_daemon_are_not_earlier_runs(tmp_path: Path) -> None:
    work = tmp_path / "work"
    left_config(work, "11", "22", age=0)
    assert earlier_runs.find(work, time.time() - 30, tmp_path / "proc") == []


@pytest.mark.subprocess
def test_the_runner_finds_a_real_process_still_using_a_left_config(tmp_path: Path) -> None:
    work = tmp_path / "work"
    config = left_config(work, "11", "22")
    orphan = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "-f", str(config)]
    )
    try:
        runner = RegolancerRunner(
            binary="regolancer",
            template={"amount": 50_000},
            stat_path=tmp_path / "stat.csv",
            work_dir=work,
            log_dir=tmp_path / "logs",
            timeout_seconds=20.0,
        )
        assert runner.earlier_busy() == {"11", "22"}
        orphan.kill()
        orphan.wait(5)
        assert runner.earlier_busy() == {"11", "22"}  # gone now: held one second more
        time.sleep(1.05)
        assert runner.earlier_busy() == frozenset()
    finally:
        orphan.kill()


class HeldRunner(ScriptedRunner):
    """A runner reporting channels an earlier daemon's regolancer still holds."""

    held: frozenset[str] = frozenset()

    def earlier_busy(self) -> frozenset[str]:
        return self.held


async def test_the_engine_starts_no_run_through_a_channel_an_earlier_run_holds(
    tmp_path: Path,
) -> None:
    runner = HeldRunner(delay=0.02)
    runner.held = frozenset({"11", "1"})
    engine, _ = make_engine(tmp_path, Node(star_node()), runner, max_workers=4)
    await engine.cycle()
    assert runner.started != []
    assert all({"11", "1"}.isdisjoint(pair) for pair in runner.started)
