"""The daemon's resident memory and CPU, idle and under load (from /proc/<pid>).

Idle: a 1,500-channel node with nothing to rebalance, the daemon between cycles with its
chat connected. Load: a 1,500-channel node with hundreds of targets, MAX_WORKERS runs of the
regolancer stand-in back to back, every success tailed from the stat CSV and sent to the chat.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.daemon import Daemon, running_daemon
from sim.nodes import node_rows

SIZE = 1500


@dataclass(frozen=True)
class Usage:
    seconds: float
    rss_mb: float  # at the end of the window
    rss_max_mb: float
    cpu_pct: float  # of one core, averaged over the window
    runs: int = 0  # regolancer runs recorded during the window


def measure_window(daemon: Daemon, seconds: float) -> Usage:
    """RSS (peak and last) and CPU share of the daemon over the next `seconds`."""
    cpu_before, started = daemon.cpu_seconds(), time.monotonic()
    peak = 0
    runs_before = _runs(daemon)
    while time.monotonic() - started < seconds:
        peak = max(peak, daemon.rss_bytes())
        time.sleep(0.25)
    elapsed = time.monotonic() - started
    cpu = daemon.cpu_seconds() - cpu_before
    rss = daemon.rss_bytes()
    return Usage(
        seconds=elapsed,
        rss_mb=rss / 2**20,
        rss_max_mb=max(peak, rss) / 2**20,
        cpu_pct=cpu / elapsed * 100,
        runs=_runs(daemon) - runs_before,
    )


def _runs(daemon: Daemon) -> int:
    return daemon.output.count(": started SRC ")


def idle(seconds: float = 20.0, size: int = SIZE) -> Usage:
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp:
        rows = node_rows(size, seed=2, balanced=True)
        with running_daemon(Path(tmp), rows) as daemon:
            daemon.wait_for_log("cycle finish")
            # The first start sends the day that ended, with its chart: let that pass.
            daemon.telegram.wait_for("sendPhoto", timeout=60)
            time.sleep(2)
            return measure_window(daemon, seconds)


def load(seconds: float = 20.0, size: int = SIZE) -> Usage:
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        rows = node_rows(size, seed=2)
        env = {"MAX_WORKERS": "4", "SLEEP_SECONDS": "5"}
        scenario = {"outcome": "success", "amount_sat": 50_000, "fee_sat": 12, "delay": 0.2}
        with running_daemon(Path(tmp), rows, env=env, scenario=scenario) as daemon:
            daemon.wait_for_log("worker 4: started SRC")
            return measure_window(daemon, seconds)


def main() -> int:
    for name, usage in (("idle", idle()), ("load", load())):
        print(
            f"{name}: RSS {usage.rss_mb:.0f} MB (max {usage.rss_max_mb:.0f}), "
            f"CPU {usage.cpu_pct:.2f} % of one core over {usage.seconds:.0f} s, runs {usage.runs}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
