"""LNDg faults as the operator meets them: the real daemon and `check` against the loopback
LNDg, which is made to fail in every way docs/RELIABILITY.md lists.

The client's own handling of each fault is unit-tested in tests/test_lndg_client.py; here the
question is what the daemon does about it (skips the cycle, alerts once, recovers) and what
it says.
"""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from sim.lndg import FakeLndg, channel_row
from tests.daemon_process import Daemon, Node, run_cli

pytestmark = pytest.mark.subprocess  # every test starts the daemon or a CLI run

SECRET = "lndg-password-that-must-not-leak"


def channels() -> list[dict[str, object]]:
    rows = [
        channel_row(f"800000x{i}x0", alias=f"Src{i}", local_balance=900_000, ar_out_target=60)
        for i in range(1, 4)
    ]
    rows += [
        channel_row(
            f"800000x{100 + i}x0",
            alias=f"Tgt{i}",
            local_balance=20_000,
            auto_rebalance=True,
            ar_in_target=80,
        )
        for i in range(1, 4)
    ]
    return rows


@pytest.fixture
def lndg() -> Iterator[FakeLndg]:
    with FakeLndg(channels=channels(), password=SECRET) as fake:
        yield fake


def headless(tmp_path: Path, url: str, **settings: object) -> Node:
    """A headless daemon in dry run: each cycle reads LNDg and plans, nothing else."""
    return Node(tmp_path, url, lndg_pass=SECRET, sleep_seconds=1, dry_run="true", **settings)


# Each fault, the words the operator reads in the alert.
FAULTS = [
    ("500", "answered HTTP 500 Internal Server Error 3 time(s)"),
    ("401", "rejected the credentials of user 'lndg-admin' (HTTP 401"),
    ("error_body", "answered with an error instead of data: database is locked"),
    ("garbage", "answered HTTP 200 with text/html, not JSON: not an LNDg API?"),
    ("slow", "did not answer within 0.5s (3 tries)"),
    ("fail_after_first_page", "answered HTTP 500"),
]


def test_each_lndg_fault_skips_the_cycle_alerts_once_and_recovers(
    tmp_path: Path, lndg: FakeLndg
) -> None:
    lndg.slow_seconds = 2.0
    lndg.max_limit = 4  # six channels: two pages, so a failing second page is reachable
    # Between list reads a cycle reads LNDg's forwards: a fault there has the list read at
    # once. A fault of the list's second page alone shows at the next list read.
    node = headless(tmp_path, lndg.url, lndg_timeout_seconds=0.5, channel_list_seconds=5)
    daemon = Daemon(node).start()
    try:
        daemon.wait_for_log("6 channels, ", timeout=30)
        for number, (fault, words) in enumerate(FAULTS, start=1):
            alert = f"alert: LNDg: .*{re.escape(words)}"
            skipped = f"cycle skipped: .*{re.escape(words)}"
            seen = [len(re.findall(pattern, daemon.output)) for pattern in (alert, skipped)]
            lndg.set_fault(fault)
            daemon.wait_for_log(alert, timeout=30, count=seen[0] + 1)
            # every cycle of the episode is skipped, and says why
            daemon.wait_for_log(skipped, timeout=30, count=seen[1] + 2)
            lndg.set_fault(None)
            daemon.wait_for_log("recovered: LNDg is reachable again", timeout=30, count=number)
        output = daemon.wait_for_log("6 channels, ", timeout=30, count=number + 1)
        # one alert per episode, however many cycles it lasted
        assert output.count("alert: LNDg:") == len(FAULTS)
        code, _ = daemon.stop()
    finally:
        daemon.kill()
    assert code == 0
    assert "Traceback" not in daemon.output
    assert SECRET not in daemon.output


def test_lndg_going_down_and_coming_back_on_the_same_port(tmp_path: Path) -> None:
    first = FakeLndg(channels=channels(), password=SECRET).start()
    port = first.port
    node = headless(tmp_path, first.url)
    daemon = Daemon(node).start()
    try:
        daemon.wait_for_log("6 channels, ", timeout=30)
        first.stop()  # LNDg restarts: keep-alive connections cut, then refused
        daemon.wait_for_log(r"alert: LNDg: cannot reach LNDg at http://127\.0\.0\.1:\d+/api/")
        daemon.wait_for_log("cycle skipped: cannot reach LNDg", count=2)
        with FakeLndg(channels=channels(), password=SECRET, port=port):
            daemon.wait_for_log("recovered: LNDg is reachable again", timeout=30)
            daemon.wait_for_log("6 channels, ", timeout=30, count=2)
            code, _ = daemon.stop()
    finally:
        daemon.kill()
        first.stop()
    assert code == 0
    assert "Traceback" not in daemon.output


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_nothing_listening_check_says_unreachable_and_the_daemon_waits(tmp_path: Path) -> None:
    node = headless(tmp_path, f"http://127.0.0.1:{free_port()}")
    result = run_cli(node, "check")
    lndg_line = next(line for line in result.stdout.splitlines() if " LNDg:" in line)
    assert result.returncode == 1
    assert lndg_line.startswith("FAIL LNDg: unreachable: cannot reach LNDg at http://127.0.0.1:")
    assert "check LNDG_BASE_URL and that LNDg is running" in lndg_line
    daemon = Daemon(node).start()
    try:
        daemon.wait_for_log("cycle skipped: cannot reach LNDg", count=2)
        code, _ = daemon.stop()
    finally:
        daemon.kill()
    assert code == 0
    assert daemon.output.count("alert: LNDg") == 1


def test_rows_with_missing_or_mistyped_fields_are_skipped_by_name(tmp_path: Path) -> None:
    rows = channels()
    rows[0]["capacity"] = "lots"  # wrong type
    rows[3]["auto_rebalance"] = "maybe"
    del rows[4]["ar_in_target"]  # missing
    with FakeLndg(channels=rows, password=SECRET) as lndg:
        node = headless(tmp_path, lndg.url)
        daemon = Daemon(node).start()
        try:
            output = daemon.wait_for_log("cycle finish", timeout=30)
            code, _ = daemon.stop()
        finally:
            daemon.kill()
    assert code == 0
    chan = [str(row["chan_id"]) for row in rows]
    assert f"LNDg channel {chan[0]} skipped: capacity: Input should be a valid integer" in output
    assert f"LNDg channel {chan[3]} skipped: auto_rebalance: Input should be a valid boolean" in (
        output
    )
    assert f"LNDg channel {chan[4]} skipped: ar_in_target: Field required" in output
    # the other three channels are used: Src2 and Src3 pair with Tgt3
    assert "3 channels, 2 pairs" in output
    assert "Traceback" not in output


def test_every_row_without_a_field_is_an_alert_not_a_quiet_idle(
    tmp_path: Path, lndg: FakeLndg
) -> None:
    lndg.set_fault("missing_fields")  # e.g. an LNDg upgrade renamed `capacity`
    node = headless(tmp_path, lndg.url)
    daemon = Daemon(node).start()
    try:
        output = daemon.wait_for_log("cycle finish", timeout=30)
        code, _ = daemon.stop()
    finally:
        daemon.kill()
    assert code == 0
    assert "skipped: capacity: Field required" in output  # each row, by name
    assert re.search(
        r"alert: LNDg: LNDg at http://127\.0\.0\.1:\d+/api/channels/ listed 6 channels and "
        r"none could be read \(channel \d+: capacity: Field required\): "
        r"is this LNDg version supported\?",
        output,
    )
    assert "cycle skipped: LNDg at" in output


# --- TLS with a self-signed certificate ---------------------------------------------------


def self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, made by the openssl CLI."""
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """LNDg's certificate, self-signed as a reverse proxy in front of LNDg often has it."""
    return self_signed(tmp_path_factory.mktemp("tls"), "lndg")


@pytest.fixture
def https_lndg(certificate: tuple[Path, Path]) -> Iterator[FakeLndg]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    with FakeLndg(channels=channels(), password=SECRET, tls=context) as fake:
        yield fake


def lndg_check_line(node: Node, **env: str) -> tuple[int, str]:
    result = run_cli(node, "check", env=env)
    assert "Traceback" not in result.stdout + result.stderr
    assert SECRET not in result.stdout + result.stderr
    line = next(line for line in result.stdout.splitlines() if " LNDg:" in line)
    return result.returncode, line


def test_self_signed_lndg_is_refused_until_its_certificate_is_trusted(
    tmp_path: Path, https_lndg: FakeLndg, certificate: tuple[Path, Path]
) -> None:
    assert https_lndg.url.startswith("https://")
    node = headless(tmp_path, https_lndg.url)
    _, refused = lndg_check_line(node)
    assert refused.startswith("FAIL LNDg: unreachable: cannot reach LNDg at https://127.0.0.1:")
    assert "CERTIFICATE_VERIFY_FAILED" in refused
    assert "TLS failed: set LNDG_CA_FILE to LNDg's certificate or LNDG_VERIFY_TLS=false" in refused
    _, trusted = lndg_check_line(node, LNDG_CA_FILE=str(certificate[0]))
    assert trusted.startswith("ok   LNDg: https://127.0.0.1:")
    assert "6 open active public channels" in trusted
    _, unverified = lndg_check_line(node, LNDG_VERIFY_TLS="false")
    assert unverified.startswith("ok   LNDg:")
    # Another self-signed certificate is no better than none.
    other, _ = self_signed(tmp_path, "other")
    _, wrong = lndg_check_line(node, LNDG_CA_FILE=str(other))
    assert wrong.startswith("FAIL LNDg: unreachable:")
    assert "CERTIFICATE_VERIFY_FAILED" in wrong


def test_daemon_over_tls_with_the_ca_file_runs_its_cycles(
    tmp_path: Path, https_lndg: FakeLndg, certificate: tuple[Path, Path]
) -> None:
    node = headless(tmp_path, https_lndg.url, lndg_ca_file=certificate[0])
    daemon = Daemon(node).start()
    try:
        daemon.wait_for_log("6 channels, 9 pairs", timeout=30)
        code, _ = daemon.stop()
    finally:
        daemon.kill()
    assert code == 0


@pytest.mark.parametrize("content", [None, "not a certificate\n"], ids=["missing", "not-a-cert"])
def test_unusable_ca_file_stops_start_up_with_one_line(
    tmp_path: Path, https_lndg: FakeLndg, content: str | None
) -> None:
    ca_file = tmp_path / "ca.pem"
    if content is not None:
        ca_file.write_text(content)
    node = headless(tmp_path, https_lndg.url, lndg_ca_file=ca_file)
    result = run_cli(node, "run", timeout=30)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"configuration error: LNDG_CA_FILE: {ca_file} cannot be used as a CA certificate: "
        + ("No such file or directory" if content is None else "no PEM certificate in it"),
    ]
