"""regolancer faults as the operator meets them: the real daemon runs the stand-in, which is
made to misbehave in each way docs/RELIABILITY.md lists, one after another.

How each exit is classified, and the escalation SIGINT -> SIGTERM -> SIGKILL, are unit-tested
in tests/test_runner.py; here: what the daemon records, says and leaves behind.
"""

from __future__ import annotations

import os
import signal
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sim.lndg import FakeLndg
from tests.daemon_process import FAKE_REGOLANCER, Daemon, Node, run_cli, wait_until

pytestmark = pytest.mark.subprocess  # every test starts the daemon


@pytest.fixture
def lndg() -> Iterator[FakeLndg]:
    with FakeLndg() as fake:  # the samples: one pair, SourceA -> TargetB
        yield fake


def runs(node: Node) -> list[tuple[str, int | None, str]]:
    return [
        (str(outcome), code, str(line))
        for outcome, code, line in node.query(
            "SELECT outcome, exit_code, last_line FROM runs ORDER BY id"
        )
    ]


def next_run(node: Node, after: int, outcome: str, timeout: float = 30) -> tuple[Any, ...]:
    """The first run recorded after the first `after` runs with `outcome`."""

    def found() -> tuple[Any, ...] | None:
        return next((run for run in runs(node)[after:] if run[0] == outcome), None)

    run: tuple[Any, ...] = wait_until(found, timeout, f"a run ending {outcome!r}")
    return run


def test_each_misbehaviour_is_recorded_said_and_cleaned_up(tmp_path: Path, lndg: FakeLndg) -> None:
    node = Node(tmp_path, lndg.url, sleep_seconds=1, max_workers=1)
    node.set_scenario({"outcome": "no_route"})
    daemon = Daemon(node).start()
    try:
        next_run(node, 0, "no_route")

        # exits 1 at once with an LND error: recorded, alerted once, recovered by a success
        done = len(runs(node))
        node.set_scenario({"outcome": "lnd_error"})
        _, code, line = next_run(node, done, "lnd_error")
        assert code == 1
        assert line.startswith("rpc error: code = Unavailable")
        daemon.wait_for_log("alert: regolancer: LND or config error: rpc error")
        next_run(node, done, "lnd_error")
        node.set_scenario({"outcome": "success"})
        next_run(node, done, "success")
        daemon.wait_for_log("recovered: regolancer runs work again")
        assert daemon.output.count("alert: regolancer") == 1

        # crashes: exit 2 with a Go panic, told apart from regolancer's own deadline
        done = len(runs(node))
        node.set_scenario({"outcome": "crash"})
        _, code, line = next_run(node, done, "crashed")
        assert code == 2
        assert line == "panic: runtime error: invalid memory address or nil pointer dereference"

        # killed from outside (an operator's kill -9, the OOM killer): recorded, next run goes
        done = len(runs(node))
        node.set_scenario({"outcome": "hang"})
        pid = int(wait_until(node.leftover_processes, 20, "a hanging regolancer")[0].split(":")[0])
        os.kill(pid, signal.SIGKILL)
        _, code, line = next_run(node, done, "crashed")
        assert code == -signal.SIGKILL
        node.set_scenario({"outcome": "no_route"})
        next_run(node, done, "no_route")

        # leaves a grandchild behind in its process group: the group is stopped with it
        done = len(runs(node))
        node.set_scenario({"outcome": "spawn_grandchild", "exit_after": 0.2})
        next_run(node, done, "success")
        node.set_scenario({"outcome": "no_route"})
        next_run(node, done, "no_route")
        grandchildren = [r["grandchild_pid"] for r in node.runs_recorded() if r["grandchild_pid"]]
        assert grandchildren
        assert all(not _alive(pid) for pid in grandchildren)

        code, _ = daemon.stop()
    finally:
        daemon.kill()
    assert code == 0
    assert node.leftover_processes() == []
    assert list(node.data.glob("*.json")) == []  # no generated config left behind
    assert "Traceback" not in daemon.output


def test_half_a_stat_line_costs_no_later_rebalance(tmp_path: Path, lndg: FakeLndg) -> None:
    node = Node(tmp_path, lndg.url, sleep_seconds=1, max_workers=1)
    node.set_scenario({"outcome": "half_line"})
    daemon = Daemon(node).start()
    try:
        wait_until(lambda: node.stat.exists() and node.stat.read_bytes(), 30, "the half line")
        node.set_scenario({"outcome": "success", "amount_sat": 70_000})
        wait_until(
            lambda: any(r["outcome"] == "success" for r in node.runs_recorded()), 30, "a success"
        )
        node.set_scenario({"outcome": "no_route"})
        wait_until(
            lambda: node.runs_recorded()[-1]["outcome"] == "no_route", 30, "the successes to end"
        )
        code, _ = daemon.stop()
    finally:
        daemon.kill()
    assert code == 0
    successes = sum(r["outcome"] == "success" for r in node.runs_recorded())
    # every success after the half line is one ledger row: none merged into the fragment
    assert sum(row[3] == 70_000_000 for row in node.ledger()) == successes
    assert node.stat.read_bytes().endswith(b"\n")
    assert "ended in an incomplete line" in daemon.output


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except OSError:
        return False
    return state != "Z"


def _break(binary: Path, problem: str) -> None:
    if problem == "missing":
        binary.unlink()
    else:
        binary.chmod(0o644)


def _fix(binary: Path) -> None:
    if not binary.exists():
        binary.write_bytes(FAKE_REGOLANCER.read_bytes())
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)


@pytest.mark.parametrize("problem", ["missing", "not-executable"])
def test_unusable_binary_refuses_live_start_and_alerts_once_when_it_goes_away(
    tmp_path: Path, lndg: FakeLndg, problem: str
) -> None:
    binary = tmp_path / "bin" / "regolancer"
    binary.parent.mkdir()
    binary.write_bytes(FAKE_REGOLANCER.read_bytes())
    _break(binary, problem)
    node = Node(tmp_path, lndg.url, sleep_seconds=1, regolancer_bin=binary)
    node.set_scenario({"outcome": "no_route"})
    check = run_cli(node, "check")
    line = next(line for line in check.stdout.splitlines() if " regolancer:" in line)
    assert check.returncode == 1
    if problem == "missing":
        reason, fix = "not found", "install regolancer or set REGOLANCER_BIN to its full path"
    else:
        reason, fix = "is not executable", f"chmod +x {binary}"
    assert line == f"FAIL regolancer: {binary} {reason} -> {fix}"
    # Live, it refuses to start at all: one line, exit 2 (systemd then keeps it down).
    for command in (["run"], ["cycle"]):
        refused = run_cli(node, *command, timeout=30)
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr.splitlines() == [
            f"error: regolancer binary {binary} {reason}: {fix} "
            "(a dry run needs none: DRY_RUN=true, or cycle --dry-run)"
        ]
    # A binary that goes away while the daemon runs: every run says so, one alert, and it
    # recovers by itself once the binary is back.
    _fix(binary)
    daemon = Daemon(node).start()
    try:
        next_run(node, 0, "no_route")
        _break(binary, problem)
        daemon.wait_for_log(
            f"alert: regolancer: regolancer binary missing: regolancer binary '{binary}'"
        )
        wait_until(
            lambda: sum(run[0] == "binary_missing" for run in runs(node)) >= 3,
            30,
            "more runs without a binary",
        )
        _fix(binary)
        next_run(node, len(runs(node)), "no_route")
        daemon.wait_for_log("recovered: regolancer runs work again")
        code, _ = daemon.stop()
    finally:
        daemon.kill()
    assert code == 0
    assert daemon.output.count("alert: regolancer") == 1
