"""Fetching 1,500 channels from the loopback LNDg, and fetch + plan.

The LNDg stand-in (`sim.lndg`) runs as its own process, as LNDg would, serving the
invented node; the daemon's real client (`core.lndg.LndgClient`, one large page, paginated
if LNDg says so) reads it and the planner plans a cycle from the result.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from core.lndg import LndgClient
from core.pairing import count_pairs
from core.planner import Planner
from core.settings import load_settings
from sim.nodes import node_rows

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class FetchFigures:
    channels: int
    fetch_ms: float  # median
    fetch_max_ms: float
    fetch_plan_ms: float  # median of fetch, then the cycle's plan and pair count
    fetch_plan_max_ms: float


@contextlib.contextmanager
def lndg_process(rows: list[dict[str, object]]) -> Iterator[str]:
    """The LNDg stand-in as a child process serving `rows`; yields its base URL."""
    with tempfile.TemporaryDirectory(prefix="bench-lndg-") as tmp:
        channels = Path(tmp, "channels.json")
        channels.write_text(json.dumps(rows))
        ready = Path(tmp, "ready")
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        command = [sys.executable, "-m", "sim.lndg", "--channels", str(channels)]
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [*command, "--ready-file", str(ready)],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while not ready.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the LNDg stand-in did not start")
                time.sleep(0.05)
            yield ready.read_text().strip()
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def _measure(url: str, repeats: int) -> tuple[list[float], list[float]]:
    settings = load_settings(None, lndg_base_url=url, lndg_pass="secret")  # noqa: S106 - the stand-in's login
    fetches: list[float] = []
    with_plan: list[float] = []
    async with LndgClient.from_settings(settings) as client:
        await client.fetch_channels()  # connection set up, as in a running daemon
        for _ in range(repeats):
            started = time.perf_counter()
            channels = (await client.fetch_channels()).channels
            fetched = time.perf_counter()
            Planner().plan(channels, time.time())
            count_pairs(channels)
            done = time.perf_counter()
            fetches.append((fetched - started) * 1000)
            with_plan.append((done - started) * 1000)
    return fetches, with_plan


def measure(size: int = 1500, repeats: int = 5) -> FetchFigures:
    with lndg_process(node_rows(size, seed=size)) as url:
        fetches, with_plan = asyncio.run(_measure(url, repeats))
    return FetchFigures(
        channels=size,
        fetch_ms=statistics.median(fetches),
        fetch_max_ms=max(fetches),
        fetch_plan_ms=statistics.median(with_plan),
        fetch_plan_max_ms=max(with_plan),
    )


def main() -> int:
    f = measure()
    print(
        f"{f.channels} channels: fetch {f.fetch_ms:.0f} ms (max {f.fetch_max_ms:.0f}), "
        f"fetch + plan {f.fetch_plan_ms:.0f} ms (max {f.fetch_plan_max_ms:.0f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
