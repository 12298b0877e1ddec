"""An asyncio event loop on a virtual clock: sleeping takes no real time.

When nothing is ready to run, the loop jumps its clock straight to the next timer instead of
waiting for it, so hours of simulated regolancer runs pass in seconds while the engine's own
code (asyncio.wait with timeouts, sleeps, its `clock`) runs unchanged. Only for code that
does no real I/O: a loop waiting on nothing but a socket would be a simulation bug, reported
as such.
"""

from __future__ import annotations

import asyncio
import selectors
from typing import Any

# Wall-clock time at virtual 0 (2026-01-01 UTC), for timestamps that look plausible. The loop
# itself counts from 0: near 1.7e9 a float cannot hold asyncio's 1 ns clock resolution.
EPOCH = 1_767_225_600.0


class _JumpSelector(selectors.DefaultSelector):
    """A selector that never blocks: a wait of `timeout` seconds advances the clock instead."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:
            raise RuntimeError("simulation stalled: nothing scheduled and nothing ready")
        self.now += timeout
        return []


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose `time()` is the virtual clock."""

    def __init__(self) -> None:
        self._jump = _JumpSelector()
        super().__init__(self._jump)

    def time(self) -> float:
        return self._jump.now

    def wall(self) -> float:
        """The virtual time as a Unix timestamp (an engine's `clock`)."""
        return EPOCH + self._jump.now


def run_virtual(main: Any) -> Any:
    """Run coroutine `main` to completion on a fresh virtual-clock loop."""
    loop = VirtualClockLoop()
    try:
        return loop.run_until_complete(main)
    finally:
        loop.close()
