"""`regolancer-orchestrator demo` end to end: the real entry point as a child process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sim.telegram import FakeTelegram
from tests.daemon_process import REPO, processes_mentioning, wait_until

pytestmark = pytest.mark.subprocess  # every test starts `python -m bot demo`

BANNER = "SIMULATION — no real node, no real payments"
PAIR_LINE = re.compile(r"SRC .+ \(LOCAL \d+%\) -> TGT .+ \(LOCAL \d+%\)")
REBALANCED = re.compile(r"rebalanced ([\d,]+) sat .+ -> .+, fee")
STATUS_MOVED = re.compile(rf"{BANNER} \| .*this daemon moved ([\d,]+) sats in (\d+) rebalances")
REPORT_COUNT = re.compile(r"^rebalances by this daemon: (\d+), ([\d,]+) sat\b", re.MULTILINE)
TOKEN = "123456:demo-test-token"
CHAT = 4242


class Demo:
    """`python -m bot demo` in its own working directory, its console in a file."""

    def __init__(self, root: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.data = root / "demo-data"
        self.log = root / "console.log"
        environment = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
        environment.pop("JOURNAL_STREAM", None)  # keep timestamps: the lines are read here
        with self.log.open("wb") as console:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bot", "demo", "--data-dir", str(self.data), *args],
                cwd=root,
                env=environment,
                stdout=console,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, pattern: re.Pattern[str] | str, timeout: float) -> None:
        def seen() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"demo exited {self.proc.returncode}:\n{self.output[-3000:]}")
            return re.search(pattern, self.output) is not None

        wait_until(seen, timeout, f"{pattern!r} in the demo's console")

    def leftover_processes(self) -> list[str]:
        """Live processes whose command line mentions the demo's data directory."""
        return processes_mentioning(str(self.data))


def _report_totals(report: str) -> tuple[int, int]:
    """(rebalances, sats) of this daemon from the closing report."""
    match = REPORT_COUNT.search(report)
    assert match is not None, report
    return int(match.group(1)), int(match.group(2).replace(",", ""))


def _kill(demo: Demo) -> None:
    """A failed test must not leave a demo running."""
    if demo.proc.poll() is None:
        demo.proc.kill()
        demo.proc.wait(10)


def test_demo_runs_the_daemon_live_and_reports(tmp_path: Path) -> None:
    demo = Demo(tmp_path, "--seconds", "25")
    try:
        code = demo.proc.wait(60)
    finally:
        _kill(demo)
    out = demo.output
    assert code == 0, out[-3000:]
    assert out.startswith("=" * 78 + "\n  " + BANNER)
    assert "cycle start (live)" in out
    # The demo's runs are real for the daemon, but nothing is LIVE: the start says so.
    assert "started headless (SIMULATION), cycle every 5s" in out
    assert "(LIVE" not in out
    # LNDg's week before the demo is served, and the daemon learns from it at its first cycle
    seeded = re.search(r"LNDg's rebalancer made (\d+) attempts in the past week, (\d+) paid", out)
    learned = re.search(r"learned from (\d+) past attempts \((\d+) routes that worked\)", out)
    assert seeded is not None
    assert learned is not None
    attempts, paid = int(seeded.group(1)), int(seeded.group(2))
    assert 0 < paid < attempts
    # every success is learned, and a failure when it names its target (exact counts:
    # tests/test_demo_node.py); the live node's first rebalances may add one or two
    assert paid <= int(learned.group(1))
    assert 0 < int(learned.group(2)) <= int(learned.group(1))
    assert PAIR_LINE.search(out)
    assert re.search(r"worker \d: started SRC", out)
    assert [int(n.replace(",", "")) for n in REBALANCED.findall(out)]
    # The simulated node's balances follow the daemon's rebalances.
    assert re.search(
        r"simulated node: rebalance by this daemon: [\d,]+ sat out of .+ \(local \d+% -> \d+%\), "
        r"into .+ \(local \d+% -> \d+%\)",
        out,
    )
    moved = [int(sats.replace(",", "")) for sats, _count in STATUS_MOVED.findall(out)]
    assert moved[0] == 0, "the first status line is before any run"
    assert moved[-1] > 0
    # The report: this daemon's ledger, and the daily report with all three shares.
    report = out[out.rindex(f"{BANNER}: report") :]
    count, sats = _report_totals(report)
    assert count > 0
    assert sats > 0
    assert re.search(r"regolancer runs: \d+ \(.*\bsuccess \d+", report)  # outcomes by count
    assert re.search(r"  This daemon: [1-9]\d* · ", report)
    assert re.search(r"  LNDg: [1-9]\d* · ", report)
    assert re.search(r"  Other tools: [1-9]\d* · ", report)
    assert "not found in LNDg's payments" not in report  # every stat line has its payment
    assert demo.leftover_processes() == []


def test_ctrl_c_stops_the_demo_cleanly_with_the_report(tmp_path: Path) -> None:
    demo = Demo(tmp_path)
    try:
        demo.wait_for(REBALANCED, timeout=30)
        started = time.monotonic()
        demo.proc.send_signal(signal.SIGINT)
        code = demo.proc.wait(10)
        seconds = time.monotonic() - started
    finally:
        _kill(demo)
    out = demo.output
    assert code == 0, out[-3000:]
    assert seconds < 10
    assert "core.runtime: stopped" in out
    report = out[out.rindex(f"{BANNER}: report") :]
    assert _report_totals(report)[0] >= 1
    assert demo.leftover_processes() == []


def test_demo_with_a_token_drives_the_chat_labelled_as_a_simulation(tmp_path: Path) -> None:
    with FakeTelegram(token=TOKEN) as telegram:
        demo = Demo(
            tmp_path,
            env={
                "TELEGRAM_TOKEN": TOKEN,
                "TELEGRAM_CHAT_ID": str(CHAT),
                "TELEGRAM_API_BASE_URL": telegram.url,
            },
        )
        try:
            first = telegram.wait_for_message(CHAT, timeout=30)
            assert BANNER in first["text"]
            start = telegram.wait_for_message(CHAT, text="started", timeout=30)
            assert "orchestrator started: SIMULATION\n" in start["text"], start["text"]
            assert "LIVE" not in start["text"]
            telegram.wait_for_message(CHAT, text="✅", timeout=30)
            demo.proc.send_signal(signal.SIGINT)
            code = demo.proc.wait(10)
        finally:
            _kill(demo)
    assert code == 0, demo.output[-3000:]
    assert "with Telegram, in chat 4242" in demo.output
    assert TOKEN not in demo.output
    assert demo.leftover_processes() == []


def test_demo_refuses_a_directory_it_did_not_make(tmp_path: Path) -> None:
    precious = tmp_path / "demo-data"
    precious.mkdir()
    (precious / "state.sqlite3").write_text("the operator's real state")
    result = subprocess.run(
        [sys.executable, "-m", "bot", "demo", "--data-dir", str(precious), "--seconds", "1"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "not empty and was not made by the demo" in result.stderr
    assert (precious / "state.sqlite3").read_text() == "the operator's real state"


def test_the_cli_reads_beside_the_running_demo_through_its_env_file(tmp_path: Path) -> None:
    demo = Demo(tmp_path, "--seconds", "40")
    try:
        demo.wait_for(r"rebalanced [\d,]+ sat", 30)
        env_file = demo.data / "demo.env"
        assert f"--env-file {env_file} pnl" in demo.output
        assert env_file.stat().st_mode & 0o777 == 0o600  # it holds the demo LNDg's password
        pnl = subprocess.run(
            [sys.executable, "-m", "bot", "--env-file", str(env_file), "pnl", "30d"],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert pnl.returncode == 0, pnl.stderr
        revenue = re.search(
            r"^Routing revenue: ([\d,.]+) sat from ([\d,]+) forwards$", pnl.stdout, re.M
        )
        assert revenue is not None, pnl.stdout
        assert float(revenue.group(1).replace(",", "")) > 0  # the demo's node earns
        assert re.search(r"this daemon [\d,.]+ sat", pnl.stdout)
    finally:
        _kill(demo)
