"""systemd's notify protocol (`Type=notify`, `WatchdogSec=`), in the few lines it takes.

A datagram to the unix socket named by NOTIFY_SOCKET (a leading `@` names an abstract
socket): READY=1 once the daemon runs, WATCHDOG=1 every half WATCHDOG_USEC from the event
loop, STOPPING=1 when shutdown begins. The pings come from an asyncio task, so a wedged loop
stops them and systemd restarts the service. Without NOTIFY_SOCKET every call does nothing.

The variables are taken out of the environment at start, as sd_notify(3) offers: regolancer,
our child, must not inherit them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import MutableMapping

log = logging.getLogger("core.sd_notify")

VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def socket_address(name: str) -> str | None:
    """The address to send to: a path, or an abstract name (`@x` -> `\\0x`); None otherwise."""
    if name.startswith("@") and len(name) > 1:
        return "\0" + name[1:]
    if name.startswith("/"):
        return name
    return None  # e.g. systemd's newer vsock: addresses, which this daemon does not speak


def watchdog_interval(usec: str | None, pid: str | None, own_pid: int) -> float | None:
    """Seconds between pings (half of WATCHDOG_USEC), or None when there is no watchdog for us."""
    if not usec:
        return None
    if pid and pid.strip() != str(own_pid):
        return None  # the watchdog is meant for another process (we were forked or exec'd)
    try:
        micro = int(usec)
    except ValueError:
        log.warning("WATCHDOG_USEC=%r is not a number of microseconds; no watchdog pings", usec)
        return None
    return micro / 2_000_000 if micro > 0 else None


class Notifier:
    """Tells systemd how the daemon is; does nothing when it was not started by systemd."""

    def __init__(self, address: str | None, interval: float | None = None) -> None:
        self.address = address
        self.interval = interval if address is not None else None
        self._watchdog: asyncio.Task[None] | None = None
        self._failing = False  # a failed send is logged once per episode

    @classmethod
    def from_environment(cls, environ: MutableMapping[str, str] | None = None) -> Notifier:
        """Read (and remove) NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID."""
        env = os.environ if environ is None else environ
        name, usec, pid = (env.pop(variable, None) for variable in VARIABLES)
        address = socket_address(name) if name else None
        if name and address is None:
            log.warning("NOTIFY_SOCKET=%r is not a unix socket; systemd is not told", name)
        return cls(address, watchdog_interval(usec, pid, os.getpid()))

    def send(self, state: str) -> bool:
        """One datagram; never blocks (a full socket drops it) and never raises."""
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)
                sock.connect(self.address)
                sock.send(state.encode())
        except OSError as exc:
            if not self._failing:
                log.warning("systemd not told %s: %s", state, exc.strerror or exc)
            self._failing = True
            return False
        self._failing = False
        return True

    def ready(self) -> None:
        """READY=1, and the watchdog pings from now on (when systemd asked for them)."""
        self.send("READY=1")
        if self.interval is not None and self._watchdog is None:
            log.info("systemd watchdog: a ping every %.1fs", self.interval)
            self._watchdog = asyncio.create_task(self._ping(self.interval), name="watchdog")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    async def close(self) -> None:
        """Stop the pings (the process is about to exit)."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.gather(self._watchdog, return_exceptions=True)
            self._watchdog = None

    async def _ping(self, interval: float) -> None:
        while True:
            self.send("WATCHDOG=1")
            await asyncio.sleep(interval)
