"""/metrics and /healthz: figures from a known state, the HTTP edge, the Grafana dashboard."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from core.control import Control
from core.engine import ActiveRun, Engine
from core.metrics import (
    CYCLE_GRACE_SECONDS,
    DaemonCollector,
    cycle_verdict,
    daemon_registry,
    metric_names,
)
from core.metrics_server import MetricsError, MetricsServer, parse_listen
from core.models import Outcome, Pair, RunResult, StatLine
from core.report_csv import COLUMNS, CSV_NAME, write_rows
from core.settings import SettingsError, load_settings
from tests.test_engine import Node, ScriptedRunner, make_engine, star_node

DASHBOARD = Path(__file__).resolve().parents[1] / "docs" / "grafana-dashboard.json"
NOW = time.time()
SLEEP = 300

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def report_row(day: str, **cells: str) -> dict[str, str]:
    return {column: "" for column in COLUMNS} | {"date": day} | cells


@dataclass
class Daemon:
    engine: Engine
    control: Control
    collector: DaemonCollector


@pytest.fixture
def daemon(tmp_path: Path) -> Daemon:
    """A daemon's state with figures worked out by hand below."""
    engine, _events = make_engine(
        tmp_path,
        Node(star_node()),
        ScriptedRunner(),
        sleep_seconds=SLEEP,
        max_workers=4,
        daily_fee_budget_sats=1000,
    )
    store = engine.store
    # Two rebalances today: 100,000 and 50,000 sat for 10 and 5.5 sat in fees.
    store.record_stat_lines(
        [
            (StatLine(int(NOW) - 20, "1", "11", 100_000_000, 10_000), "a", "b"),
            (StatLine(int(NOW) - 10, "2", "12", 50_000_000, 5_500), "c", "d"),
        ],
        (1, 200),
    )
    # Runs of 3 s, 40 s and 700 s that started regolancer, and two that did not.
    for outcome, seconds in [
        (Outcome.SUCCESS, 3),
        (Outcome.SUCCESS, 40),
        (Outcome.NO_ROUTE, 700),
        (Outcome.DRY_RUN, 0),
        (Outcome.BINARY_MISSING, 0),
    ]:
        store.record_run(RunResult("1", "11", NOW - 900, NOW - 900 + seconds, 0, outcome, ""))
    write_rows(
        tmp_path / CSV_NAME,
        [
            report_row(
                "2026-01-01",
                daemon_rebalances="2",
                daemon_sats="150000",
                daemon_fee_sat="15.500",
                lndg_rebalances="3",
                lndg_sats="300000",
                lndg_fee_sat="90.250",
                other_rebalances="1",
                other_sats="20000",
                other_fee_sat="4.000",
            ),
            # an older layout: the other tools' cells are empty
            report_row(
                "2026-01-02", daemon_rebalances="1", daemon_sats="10000", daemon_fee_sat="1.5"
            ),
        ],
    )
    engine.pause(NOW + 3600)
    store.dry_run = True
    channels = star_node()
    for worker in (1, 2):
        pair = Pair(channels[worker - 1], channels[3 + worker], 40, 20)
        engine.status.active[worker] = ActiveRun(pair, worker, NOW - 5)
    engine.status.lndg_ok = True
    engine.status.last_cycle = (NOW - 50, NOW - 30)
    store.put_value("heartbeat", repr(NOW - 4))
    control = Control(engine, clock=lambda: NOW)
    return Daemon(engine, control, DaemonCollector(control, NOW - 3600, clock=lambda: NOW))


def scrape(collector: DaemonCollector) -> Samples:
    text = generate_latest(daemon_registry(collector, process=False)).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(f"regolancer_orchestrator_{name}", frozenset(labels.items()))]


def test_the_figures_of_a_known_state(daemon: Daemon) -> None:
    samples = scrape(daemon.collector)
    assert value(samples, "rebalances_total") == 2
    assert value(samples, "rebalanced_sats_total") == 150_000
    assert value(samples, "rebalance_fees_sats_total") == 15.5
    # by tool, summed over the two reported days (empty cells count nothing)
    assert value(samples, "reported_rebalances_total", tool="orchestrator") == 3
    assert value(samples, "reported_rebalanced_sats_total", tool="orchestrator") == 160_000
    assert value(samples, "reported_rebalance_fees_sats_total", tool="orchestrator") == 17.0
    assert value(samples, "reported_rebalances_total", tool="lndg") == 3
    assert value(samples, "reported_rebalanced_sats_total", tool="lndg") == 300_000
    assert value(samples, "reported_rebalance_fees_sats_total", tool="lndg") == 90.25
    assert value(samples, "reported_rebalances_total", tool="other") == 1
    assert value(samples, "reported_rebalanced_sats_total", tool="other") == 20_000
    # every outcome has its series, 0 when none happened
    runs = {o.value: value(samples, "runs_total", outcome=o.value) for o in Outcome}
    assert runs == {o.value: 0 for o in Outcome} | {
        "success": 2,
        "no_route": 1,
        "dry_run": 1,
        "binary_missing": 1,
    }
    # 3 s, 40 s and 700 s; the dry run and the missing binary started nothing
    buckets = {
        le: value(samples, "run_duration_seconds_bucket", le=le)
        for le in ("1.0", "5.0", "30.0", "60.0", "600.0", "1200.0", "+Inf")
    }
    assert buckets == {
        "1.0": 0,
        "5.0": 1,
        "30.0": 1,
        "60.0": 2,
        "600.0": 2,
        "1200.0": 3,
        "+Inf": 3,
    }
    assert value(samples, "run_duration_seconds_count") == 3
    assert value(samples, "run_duration_seconds_sum") == pytest.approx(743)
    assert value(samples, "paused") == 1
    assert value(samples, "dry_run") == 1
    assert value(samples, "workers_busy") == 2
    assert value(samples, "workers_max") == 4
    assert value(samples, "cycle_running") == 0
    assert value(samples, "outbox_pending_messages") == 2  # one feed row per rebalance
    assert value(samples, "lndg_up") == 1
    assert value(samples, "last_cycle_end_timestamp_seconds") == pytest.approx(NOW - 30)
    assert value(samples, "seconds_since_last_cycle") == pytest.approx(30)
    assert value(samples, "daily_fee_budget_sats") == 1000
    assert value(samples, "daily_fees_spent_sats") == 15.5


def test_figures_follow_the_state_between_scrapes(daemon: Daemon, tmp_path: Path) -> None:
    store = daemon.engine.store
    store.mark_sent([m.id for m in store.pending_messages()])
    daemon.engine.resume()
    daemon.engine.status.lndg_ok = False
    daemon.engine.status.active.clear()
    write_rows(tmp_path / CSV_NAME, [])  # the report file rewritten: read again
    samples = scrape(daemon.collector)
    assert value(samples, "outbox_pending_messages") == 0
    assert value(samples, "paused") == 0
    assert value(samples, "lndg_up") == 0
    assert value(samples, "workers_busy") == 0
    assert value(samples, "reported_rebalances_total", tool="lndg") == 0


def test_before_the_first_cycle_and_lndg_read(daemon: Daemon) -> None:
    daemon.engine.status.last_cycle = None
    daemon.engine.status.lndg_ok = None
    samples = scrape(daemon.collector)
    names = {name for name, _labels in samples}
    # unknown is absent, not a made-up 0
    assert "regolancer_orchestrator_lndg_up" not in names
    assert "regolancer_orchestrator_last_cycle_end_timestamp_seconds" not in names
    assert value(samples, "seconds_since_last_cycle") == pytest.approx(3600)  # since start


def test_cycle_verdict() -> None:
    late = SLEEP + CYCLE_GRACE_SECONDS
    assert cycle_verdict(1000.0, 1000.0 - late + 1, None, SLEEP, 1800) == (
        True,
        f"last cycle ended {late - 1:.0f}s ago",
    )
    assert cycle_verdict(1000.0, 1000.0 - late - 1, None, SLEEP, 1800) == (
        False,
        f"no cycle for {late + 1:.0f}s (expected every {SLEEP}s)",
    )
    # a long cycle is fine within its round budget, stuck after it
    assert cycle_verdict(5000.0, 0.0, 5000.0 - 1800, SLEEP, 1800)[0]
    assert not cycle_verdict(5000.0, 0.0, 5000.0 - 1800 - CYCLE_GRACE_SECONDS - 1, SLEEP, 1800)[0]


def test_health_uses_the_heartbeat_rule_and_the_cycle_loop(daemon: Daemon) -> None:
    assert daemon.collector.health() == (
        True,
        "healthy: last heartbeat 4s ago; last cycle ended 30s ago",
    )
    daemon.engine.status.last_cycle = (NOW - 1000, NOW - 900)
    assert daemon.collector.health() == (
        False,
        "unhealthy: no cycle for 900s (expected every 300s)",
    )
    daemon.engine.status.last_cycle = (NOW - 50, NOW - 30)
    daemon.engine.alert("start", "runs cannot be started: disk full")
    healthy, line = daemon.collector.health()
    assert not healthy
    assert line.startswith("unhealthy: runs cannot be started: disk full")
    daemon.engine.clear("start", "ok")
    daemon.engine.store.put_value("heartbeat", repr(NOW - 500))
    assert daemon.collector.health()[0] is False


# --- METRICS_LISTEN ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("127.0.0.1:9110", "127.0.0.1", 9110),
        ("[::1]:9110", "::1", 9110),
        ("localhost:1", "localhost", 1),
    ],
)
def test_listen_addresses(text: str, host: str, port: int) -> None:
    listen = parse_listen(text)
    assert (listen.host, listen.port) == (host, port)
    assert str(listen) == text


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("9110", "METRICS_LISTEN: '9110' is not host:port, e.g. 127.0.0.1:9110"),
        (":9110", "METRICS_LISTEN: ':9110' is not host:port, e.g. 127.0.0.1:9110"),
        ("127.0.0.1:0", "METRICS_LISTEN: '127.0.0.1:0': the port must be 1-65535"),
        ("127.0.0.1:70000", "METRICS_LISTEN: '127.0.0.1:70000': the port must be 1-65535"),
        (
            "::1:9110",
            "METRICS_LISTEN: '::1:9110': put an IPv6 address in brackets, e.g. [::1]:9110",
        ),
        (
            "http://127.0.0.1:9110",
            "METRICS_LISTEN: 'http://127.0.0.1:9110' is not host:port, e.g. 127.0.0.1:9110",
        ),
    ],
)
def test_a_bad_metrics_listen_is_one_configuration_line(text: str, problem: str) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(None, metrics_listen=text)
    assert raised.value.problems == [problem]


def test_metrics_are_off_by_default() -> None:
    assert load_settings(None).metrics_listen == ""
    assert load_settings(None, metrics_listen="  ").metrics_listen == ""


@pytest.fixture
async def server(daemon: Daemon) -> AsyncIterator[MetricsServer]:
    metrics = await MetricsServer.open(f"127.0.0.1:{free_port()}")
    metrics.attach(daemon_registry(daemon.collector), daemon.collector)
    try:
        yield metrics
    finally:
        await metrics.close()


async def get(server: MetricsServer, path: str, **options: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        return await client.request(options.pop("method", "GET"), path, **options)


async def test_the_server_answers_metrics_and_health(server: MetricsServer) -> None:
    metrics = await get(server, "/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "regolancer_orchestrator_rebalanced_sats_total 150000.0" in metrics.text
    assert "process_start_time_seconds" in metrics.text  # the process's own figures too
    openmetrics = await get(
        server, "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.text.endswith("# EOF\n")
    health = await get(server, "/healthz")
    assert (health.status_code, health.text) == (
        200,
        "healthy: last heartbeat 4s ago; last cycle ended 30s ago\n",
    )
    head = await get(server, "/metrics", method="HEAD")
    assert head.status_code == 200
    assert head.content == b""
    assert (await get(server, "/metrics?x=1")).status_code == 200
    assert (await get(server, "/")).status_code == 404
    assert (await get(server, "/metrics", method="POST")).status_code == 405


async def test_many_scrapes_at_once_get_the_same_figures(server: MetricsServer) -> None:
    answers = await asyncio.gather(*(get(server, "/metrics") for _ in range(20)))
    assert {answer.status_code for answer in answers} == {200}
    assert all("regolancer_orchestrator_rebalances_total 2.0" in a.text for a in answers)


async def test_health_says_503_when_the_loop_is_late(server: MetricsServer, daemon: Daemon) -> None:
    daemon.engine.status.last_cycle = (NOW - 1000, NOW - 900)
    health = await get(server, "/healthz")
    assert (health.status_code, health.text) == (
        503,
        "unhealthy: no cycle for 900s (expected every 300s)\n",
    )


async def test_before_the_daemon_runs_the_server_says_starting() -> None:
    metrics = await MetricsServer.open(f"127.0.0.1:{free_port()}")
    try:
        for path in ("/metrics", "/healthz"):
            answer = await get(metrics, path)
            assert (answer.status_code, answer.text) == (503, "starting\n")
    finally:
        await metrics.close()


async def test_a_silent_client_is_dropped_after_the_request_time(
    server: MetricsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("core.metrics_server.REQUEST_SECONDS", 0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /metr")  # and nothing more
    async with asyncio.timeout(5):
        assert await reader.read() == b""
    writer.close()


async def test_a_silent_or_garbled_client_holds_nothing(server: MetricsServer) -> None:
    silent = await asyncio.open_connection("127.0.0.1", server.port)
    garbled_reader, garbled = await asyncio.open_connection("127.0.0.1", server.port)
    garbled.write(b"\x16\x03\x01 hello\r\n\r\n")  # e.g. TLS spoken to plain http
    answer = await get(server, "/metrics")  # answered while the others sit there
    assert answer.status_code == 200
    assert (await garbled_reader.read()).startswith(b"HTTP/1.1 400 Bad Request")
    huge_reader, huge = await asyncio.open_connection("127.0.0.1", server.port)
    huge.write(b"GET /metrics HTTP/1.1\r\n" + b"X: " + b"a" * 20_000 + b"\r\n\r\n")
    assert await huge_reader.read() == b""  # closed without an answer
    silent[1].close()
    garbled.close()
    huge.close()


async def test_a_failing_read_is_a_500_logged_once(
    server: MetricsServer, daemon: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    daemon.engine.store.close()  # the database cannot be read any more
    first = await get(server, "/metrics")
    second = await get(server, "/metrics")
    assert first.status_code == second.status_code == 500
    assert first.text.startswith("metrics not read: ")
    assert caplog.text.count("metrics not read") == 1


async def test_an_unknown_host_is_a_clear_error() -> None:
    with pytest.raises(MetricsError) as raised:
        await MetricsServer.open("no-such-host.invalid:9110")
    assert str(raised.value).startswith("METRICS_LISTEN no-such-host.invalid:9110: cannot listen")


async def test_a_taken_port_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(MetricsError) as raised:
            await MetricsServer.open(f"127.0.0.1:{port}")
    assert str(raised.value) == (
        f"METRICS_LISTEN 127.0.0.1:{port}: cannot listen there (Address already in use); "
        "free the port or set another host:port"
    )


# --- the Grafana dashboard ---------------------------------------------------------------


def test_the_dashboard_is_grafana_json_over_served_metrics(daemon: Daemon) -> None:
    board = json.loads(DASHBOARD.read_text())
    for key in ("title", "panels", "schemaVersion", "uid"):
        assert key in board, key
    assert isinstance(board["schemaVersion"], int)
    # imported with a Prometheus data source of the operator's choice
    assert board["__inputs"][0]["name"] == "DS_PROMETHEUS"
    assert board["__inputs"][0]["pluginId"] == "prometheus"
    served = set(metric_names(daemon_registry(daemon.collector)))
    used: set[str] = set()
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert {"type", "gridPos", "targets", "title"} <= set(panel), panel.get("title")
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = re.findall(r"\b(?:regolancer_orchestrator|process)_[a-z_]+\b", target["expr"])
            assert names, target["expr"]
            used.update(names)
    assert used - served == set()
    # every family of the daemon has a panel
    families = {re.sub(r"_(bucket|count|sum)$", "", name) for name in served}
    ours = {name for name in families if name.startswith("regolancer_orchestrator_")}
    shown = {re.sub(r"_(bucket|count|sum)$", "", name) for name in used}
    assert ours - shown == set()
