"""systemd's notify protocol over a real unix datagram socket in a tmp directory."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.sd_notify import Notifier, socket_address, watchdog_interval


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[socket.socket]:
    """What systemd listens on: a unix datagram socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path / "notify"))
        sock.setblocking(False)
        yield sock


def received(sock: socket.socket) -> list[str]:
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except BlockingIOError:
            return messages


def test_ready_and_stopping_reach_the_socket(systemd: socket.socket) -> None:
    notifier = Notifier(systemd.getsockname())
    assert notifier.send("READY=1")
    notifier.stopping()
    assert received(systemd) == ["READY=1", "STOPPING=1"]


def test_an_abstract_socket_name() -> None:
    name = f"@regolancer-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name[1:])
        sock.setblocking(False)
        env = {"NOTIFY_SOCKET": name}
        assert Notifier.from_environment(env).send("READY=1")
        assert received(sock) == ["READY=1"]


def test_the_variables_are_taken_out_of_the_environment(systemd: socket.socket) -> None:
    env = {
        "NOTIFY_SOCKET": systemd.getsockname(),
        "WATCHDOG_USEC": "30000000",
        "WATCHDOG_PID": str(os.getpid()),
        "PATH": "/bin",
    }
    notifier = Notifier.from_environment(env)
    assert env == {"PATH": "/bin"}  # regolancer, our child, does not inherit them
    assert notifier.interval == 15.0


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = Notifier.from_environment({"WATCHDOG_USEC": "1000000"})
    assert notifier.address is None
    assert notifier.interval is None
    assert not notifier.send("READY=1")


@pytest.mark.parametrize(
    ("usec", "pid", "interval"),
    [
        ("60000000", None, 30.0),
        ("60000000", "OWN", 30.0),
        ("60000000", "1", None),  # meant for another process
        (None, None, None),
        ("", None, None),
        ("0", None, None),
        ("soon", None, None),
    ],
)
def test_watchdog_interval(usec: str | None, pid: str | None, interval: float | None) -> None:
    own = os.getpid()
    assert watchdog_interval(usec, str(own) if pid == "OWN" else pid, own) == interval


def test_socket_addresses() -> None:
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("@x") == "\0x"
    assert socket_address("@") is None
    assert socket_address("vsock:2:1234") is None


def test_a_gone_socket_is_a_warning_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier(str(tmp_path / "nobody-listens"))
    assert not notifier.send("WATCHDOG=1")
    assert not notifier.send("WATCHDOG=1")
    assert caplog.text.count("systemd not told WATCHDOG=1") == 1


def test_a_full_socket_drops_the_message_without_blocking(systemd: socket.socket) -> None:
    notifier = Notifier(systemd.getsockname())
    started = time.monotonic()
    sent = [notifier.send("WATCHDOG=1") for _ in range(2000)]  # nobody reads
    assert time.monotonic() - started < 5
    assert sent[0]
    assert not sent[-1]


async def test_pings_come_from_the_loop_and_stop_when_it_is_wedged(
    systemd: socket.socket,
) -> None:
    notifier = Notifier(systemd.getsockname(), interval=0.05)
    notifier.ready()
    await asyncio.sleep(0.3)
    pings = received(systemd)
    assert pings[0] == "READY=1"
    assert pings[1:].count("WATCHDOG=1") >= 3
    time.sleep(0.4)  # the event loop is blocked: nothing pings
    assert received(systemd) == []
    await asyncio.sleep(0.2)  # the loop runs again, and so do the pings
    assert "WATCHDOG=1" in received(systemd)
    await notifier.close()
    await asyncio.sleep(0.15)
    assert received(systemd) == []


async def test_no_pings_without_a_watchdog(systemd: socket.socket) -> None:
    notifier = Notifier(systemd.getsockname())
    notifier.ready()
    await asyncio.sleep(0.1)
    assert received(systemd) == ["READY=1"]
    await notifier.close()
