"""The real daemon and the demo as child processes: systemd's notify socket, /metrics, /healthz."""

from __future__ import annotations

import contextlib
import re
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sim.lndg import FakeLndg
from tests.daemon_process import Node, run_cli, running, wait_until
from tests.test_demo import Demo
from tests.test_e2e_headless import node_channels
from tests.test_metrics import free_port

pytestmark = pytest.mark.subprocess  # every test starts the daemon or the demo

FAMILIES = (
    "regolancer_orchestrator_rebalances_total",
    "regolancer_orchestrator_rebalanced_sats_total",
    "regolancer_orchestrator_rebalance_fees_sats_total",
    "regolancer_orchestrator_reported_rebalances_total",
    "regolancer_orchestrator_runs_total",
    "regolancer_orchestrator_run_duration_seconds_bucket",
    "regolancer_orchestrator_paused",
    "regolancer_orchestrator_dry_run",
    "regolancer_orchestrator_workers_busy",
    "regolancer_orchestrator_outbox_pending_messages",
    "regolancer_orchestrator_lndg_up",
    "regolancer_orchestrator_seconds_since_last_cycle",
    "regolancer_orchestrator_daily_fees_spent_sats",
)


def sample(text: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match is not None, f"{name} not in\n{text}"
    return float(match.group(1))


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[socket.socket]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path / "notify"))
        sock.settimeout(0.1)
        yield sock


def test_the_daemon_tells_systemd_and_serves_metrics(
    tmp_path: Path, systemd: socket.socket
) -> None:
    heard: list[str] = []

    def hear(state: str, count: int = 1) -> bool:
        with contextlib.suppress(TimeoutError):
            heard.append(systemd.recv(4096).decode())
        return heard.count(state) >= count

    port = free_port()
    env = {
        "NOTIFY_SOCKET": str(tmp_path / "notify"),
        "WATCHDOG_USEC": "400000",  # a ping every 0.2 s
        "METRICS_LISTEN": f"127.0.0.1:{port}",
    }
    with FakeLndg(channels=node_channels()) as lndg:
        node = Node(tmp_path, lndg.url)
        with running(node, env=env) as daemon:
            wait_until(lambda: hear("READY=1"), 20, f"READY=1, heard {heard}")
            assert heard == ["READY=1"]
            wait_until(lambda: hear("WATCHDOG=1", 5), 10, f"pings, heard {heard}")
            # the daemon's runs land, and /metrics shows them as they do
            wait_until(lambda: node.ledger(), 20, "a rebalance in the ledger")

            def landed() -> str | None:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
                return text if sample(text, "regolancer_orchestrator_rebalances_total") else None

            metrics = wait_until(landed, 10, "a rebalance in /metrics")
            for family in FAMILIES:
                assert re.search(rf"^{family}\b", metrics, re.MULTILINE), family
            assert sample(metrics, "regolancer_orchestrator_lndg_up") == 1
            # every run of the stand-in pays 50,000 sat for 12 sat (tests/daemon_process.py)
            count = sample(metrics, "regolancer_orchestrator_rebalances_total")
            assert (
                sample(metrics, "regolancer_orchestrator_rebalanced_sats_total") == 50_000 * count
            )
            assert (
                sample(metrics, "regolancer_orchestrator_rebalance_fees_sats_total") == 12 * count
            )
            health = httpx.get(f"http://127.0.0.1:{port}/healthz")
            assert health.status_code == 200, health.text
            assert health.text.startswith("healthy: last heartbeat ")
            code, _seconds = daemon.stop()
            assert code == 0, daemon.output[-2000:]
    wait_until(lambda: hear("STOPPING=1"), 5, f"STOPPING=1, heard {heard}")
    assert heard[-1] == "STOPPING=1"
    assert set(heard[1:-1]) == {"WATCHDOG=1"}


def test_a_taken_metrics_port_stops_the_start_with_exit_2(tmp_path: Path) -> None:
    with socket.socket() as taken, FakeLndg(channels=node_channels()) as lndg:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        node = Node(tmp_path, lndg.url, metrics_listen=f"127.0.0.1:{port}")
        result = run_cli(node, "run", timeout=30)
    assert result.returncode == 2
    assert result.stderr == (
        f"error: METRICS_LISTEN 127.0.0.1:{port}: cannot listen there (Address already in use); "
        "free the port or set another host:port\n"
    )
    assert "Traceback" not in result.stdout + result.stderr
    assert not node.runs_recorded()  # nothing started


def test_a_bad_metrics_listen_is_a_configuration_error(tmp_path: Path) -> None:
    with FakeLndg() as lndg:
        result = run_cli(Node(tmp_path, lndg.url, metrics_listen="9110"), "run")
    assert result.returncode == 2
    assert result.stderr == (
        "configuration error: METRICS_LISTEN: '9110' is not host:port, e.g. 127.0.0.1:9110\n"
    )


def test_curl_of_metrics_during_the_demo_shows_the_families(tmp_path: Path) -> None:
    port = free_port()
    demo = Demo(tmp_path, "--seconds", "40", env={"METRICS_LISTEN": f"127.0.0.1:{port}"})
    try:
        demo.wait_for(r"rebalanced [\d,]+ sat", 40)
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        demo.proc.send_signal(signal.SIGTERM)
        code = demo.proc.wait(30)
    finally:
        if demo.proc.poll() is None:
            demo.proc.kill()
            demo.proc.wait(10)
    assert code == 0, demo.output[-3000:]
    for family in FAMILIES:
        assert re.search(rf"^{family}\b", metrics, re.MULTILINE), family
    assert sample(metrics, "regolancer_orchestrator_rebalances_total") >= 1
    assert sample(metrics, "regolancer_orchestrator_dry_run") == 0
    assert health.status_code == 200, health.text
    assert f"metrics on http://127.0.0.1:{port}/metrics and /healthz" in demo.output
