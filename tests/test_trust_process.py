"""Issue 12 with the real entry point as a child process: one daemon per DATA_DIR, private
files, report dates LNDg can hold, and a shutdown a stuck LNDg cannot hold up."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sim.lndg import FakeLndg
from sim.telegram import FakeTelegram
from tests.daemon_process import REPO, Daemon, Node, run_cli, running, wait_until
from tests.test_e2e_bot import CHAT, TOKEN
from tests.test_e2e_headless import node_channels

pytestmark = pytest.mark.subprocess  # every test starts the daemon or a CLI run


@pytest.fixture
def lndg() -> Iterator[FakeLndg]:
    with FakeLndg(channels=node_channels()) as fake:
        yield fake


@pytest.fixture
def node(tmp_path: Path, lndg: FakeLndg) -> Node:
    return Node(tmp_path, lndg.url)


# --- 2. one daemon per DATA_DIR ------------------------------------------------------------------


@pytest.mark.crash
def test_a_second_daemon_on_the_same_data_dir_exits_2_while_the_first_keeps_working(
    node: Node,
) -> None:
    with running(node) as first:
        first.wait_for_log(r"cycle start")
        assert first.proc is not None
        for command in ("run", "cycle"):
            started = time.monotonic()
            second = run_cli(node, command, timeout=20)
            took = time.monotonic() - started
            assert second.returncode == 2, second.stderr
            assert took < 5
            lines = second.stderr.strip().splitlines()
            assert len(lines) == 1
            assert str(node.data.resolve()) in lines[0]
            assert f"pid {first.proc.pid}" in lines[0]
        # Read-only commands work beside it.
        for command in ("pairs", "health", "check"):
            result = run_cli(node, command, timeout=30)
            assert result.returncode == 0, (command, result.stdout, result.stderr)
        # The first one went on: more cycles, and its runs were never doubled.
        cycles = first.output.count("cycle start")
        first.wait_for_log(r"cycle start", count=cycles + 1, timeout=20)
        assert first.proc.poll() is None
        first.kill()  # SIGKILL: the kernel releases the lock
    with running(node) as after_kill:
        after_kill.wait_for_log(r"started headless")
        code, _ = after_kill.stop()
        assert code == 0


def test_two_demos_on_one_directory_the_second_exits_2_and_wipes_nothing(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEGRAM_")}
    env["PYTHONPATH"] = str(REPO)
    demo_dir = tmp_path / "demo-data"
    command = [sys.executable, "-m", "bot", "demo", "--data-dir", str(demo_dir)]
    log = (tmp_path / "first.log").open("wb")
    first = subprocess.Popen(
        [*command, "--seconds", "60"], cwd=tmp_path, env=env, stdout=log, stderr=log
    )
    try:
        wait_until(
            lambda: (demo_dir / "state.sqlite3").exists() and (demo_dir / "logs").exists(),
            30,
            "the first demo's files",
        )
        second = subprocess.run(
            [*command, "--seconds", "5"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
        assert second.returncode == 2
        assert f"pid {first.pid}" in second.stderr
        assert (demo_dir / "state.sqlite3").exists()  # not wiped under the first demo
        assert first.poll() is None
    finally:
        first.send_signal(signal.SIGINT)
        first.wait(20)
        log.close()


# --- 12. private files ---------------------------------------------------------------------------


def test_data_dir_is_tightened_and_every_file_is_private(node: Node) -> None:
    node.data.mkdir(mode=0o755)
    os.chmod(node.data, 0o755)  # as `mkdir -p data` leaves it under umask 022
    # The test process' umask is 022: the daemon must not depend on it.
    previous = os.umask(0o022)
    try:
        result = run_cli(node, "cycle", timeout=60)
        assert result.returncode == 0, result.stderr
        report = run_cli(node, "report", timeout=60)
        assert report.returncode == 0, report.stderr
    finally:
        os.umask(previous)
    assert stat.S_IMODE(node.data.stat().st_mode) == 0o700
    files = [p for p in node.data.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"state.sqlite3", "stat.csv", "daily-report.csv", "worker-1.log"} <= names
    loose = {str(p): oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    assert {p: m for p, m in loose.items() if m != "0o600"} == {}
    dirs = [p for p in node.data.rglob("*") if p.is_dir()]
    assert all(stat.S_IMODE(d.stat().st_mode) == 0o700 for d in dirs)


# --- 11. report dates ----------------------------------------------------------------------------


@pytest.mark.parametrize("day", ["1970-01-02", "0001-01-01", "2017-12-31"])
def test_a_report_before_lightning_existed_is_refused_in_one_line(node: Node, day: str) -> None:
    result = run_cli(node, "report", "--date", day, timeout=30)
    assert result.returncode == 2
    assert "2018-01-01" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    csv = node.data / "daily-report.csv"
    assert not csv.exists() or day not in csv.read_text()


# --- 10. shutdown with LNDg stuck -----------------------------------------------------------------


@pytest.mark.parametrize("face", ["headless", "bot"])
def test_sigterm_while_lndg_trickles_its_answer_exits_0_promptly(
    node: Node, lndg: FakeLndg, face: str
) -> None:
    lndg.trickle_seconds = 2.0
    lndg.fault = "trickle"
    env = {"LNDG_TIMEOUT_SECONDS": "60"}
    with contextlib.ExitStack() as stack:
        if face == "bot":
            telegram = stack.enter_context(FakeTelegram(token=TOKEN))
            env |= {
                "TELEGRAM_TOKEN": TOKEN,
                "TELEGRAM_CHAT_ID": str(CHAT),
                "TELEGRAM_API_BASE_URL": telegram.url,
            }
        daemon = Daemon(node, "run", env=env).start()
        try:
            daemon.wait_for_log(r"cycle start")
            time.sleep(1.0)  # the cycle is now reading a body that comes a byte every 2 s
            code, took = daemon.stop(signal.SIGTERM, timeout=60)
        finally:
            daemon.kill()
    assert code == 0, daemon.output[-2000:]
    assert took < 12
    assert "Traceback" not in daemon.output


def test_a_lock_file_this_user_cannot_open_is_one_line_and_exit_2(node: Node) -> None:
    node.data.mkdir(mode=0o700)
    (node.data / "daemon.lock").mkdir()  # unopenable for anyone, root included
    result = run_cli(node, "cycle", timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {node.data / 'daemon.lock'}: cannot open it (Is a directory); "
        "fix its owner or remove it"
    ]
