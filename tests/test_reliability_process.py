"""Process faults: SIGTERM and SIGINT mid-run in both modes; SIGKILL of the daemon mid-burst,
then a restart. (SIGTERM headless is also in tests/test_e2e_headless.py; random SIGKILLs in
tests/test_crash_consistency.py.)
"""

from __future__ import annotations

import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from sim.lndg import FakeLndg
from sim.telegram import FakeTelegram
from tests.daemon_process import Daemon, Node, wait_until

pytestmark = pytest.mark.subprocess  # every test starts the daemon

TOKEN = "123456:process-faults-token"
CHAT = 4242


@pytest.fixture
def lndg() -> Iterator[FakeLndg]:
    with FakeLndg() as fake:
        yield fake


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
@pytest.mark.parametrize("mode", ["headless", "bot"])
def test_signal_mid_run_stops_the_run_records_it_and_exits_0(
    tmp_path: Path, lndg: FakeLndg, signum: signal.Signals, mode: str
) -> None:
    with FakeTelegram(token=TOKEN) as telegram:
        settings = (
            {}
            if mode == "headless"
            else {
                "telegram_token": TOKEN,
                "telegram_chat_id": CHAT,
                "telegram_api_base_url": telegram.url,
            }
        )
        node = Node(tmp_path, lndg.url, **settings)
        node.set_scenario({"outcome": "hang"})
        daemon = Daemon(node).start()
        try:
            wait_until(node.leftover_processes, 30, "a running regolancer")
            code, seconds = daemon.stop(signum)
        finally:
            daemon.kill()
        if mode == "bot":
            assert "stopping" in str(telegram.calls_to("sendMessage")[-1].params["text"])
    assert code == 0
    assert seconds < 10
    assert node.leftover_processes() == []
    assert list(node.data.glob("*.json")) == []  # its config removed
    with sqlite3.connect(node.data / "state.sqlite3") as db:  # the daemon is gone
        assert db.execute("SELECT outcome FROM runs").fetchall() == [("stopped",)]
    assert "Traceback" not in daemon.output


@pytest.mark.crash
def test_sigkill_mid_burst_then_restart_records_every_line_once(
    tmp_path: Path, lndg: FakeLndg
) -> None:
    node = Node(tmp_path, lndg.url, sleep_seconds=1)
    node.set_scenario({"outcome": "success", "steps": 8, "delay": 0.25, "unique_amounts": True})
    daemon = Daemon(node).start()
    try:
        wait_until(lambda: len(node.ledger()) >= 2, 30, "the burst under way")
        assert node.leftover_processes()  # regolancer is mid-burst
        daemon.proc.kill()  # type: ignore[union-attr]
        daemon.proc.wait(10)  # type: ignore[union-attr]
    finally:
        daemon.kill()
    # Orphaned, regolancer dies at its next write to the dead daemon's pipe (as Go does on
    # EPIPE to stdout/stderr); its generated config stays behind until the next start.
    wait_until(lambda: not node.leftover_processes(), 10, "the orphan to end")
    left = list(node.data.glob("regolancer-*.json"))
    assert len(left) == 1
    assert oct(left[0].stat().st_mode & 0o777) == "0o600"
    written = node.stat_lines()
    node.set_scenario({"outcome": "no_route"})
    daemon = Daemon(node).start()
    try:
        wait_until(lambda: node.ledger() == written, 30, "the lines written before the kill")
        wait_until(lambda: not list(node.data.glob("regolancer-*.json")), 30, "stale config")
        code, _ = daemon.stop()
    finally:
        daemon.kill()
    assert code == 0
    assert node.ledger() == node.stat_lines() == written
    assert "removed 1 regolancer config(s) left by an earlier run" in daemon.output
