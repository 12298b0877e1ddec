"""Latency from a stat line appended to regolancer's stat CSV to the chat message.

The real daemon runs as a child process (`bench.daemon`); lines are appended at irregular
moments, as regolancer would, and the time until the loopback Bot API receives the
sendMessage naming that rebalance is measured on the same clock (both sides are local).
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.daemon import Daemon, running_daemon
from sim.nodes import node_rows
from sim.telegram import Call

HEADER = "timestamp,from_channel,to_channel,amount_msat,fees_msat\n"


@dataclass(frozen=True)
class LatencyFigures:
    lines: int
    p50_s: float
    p95_s: float
    max_s: float


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile (share in 0..1)."""
    ordered = sorted(values)
    rank = max(1, -(-int(share * 100) * len(ordered) // 100))
    return ordered[rank - 1]


def _names(text: str) -> Callable[[Call], bool]:
    """A Bot API call that delivered a chat message containing `text`."""

    def match(call: Call) -> bool:
        return call.method == "sendMessage" and call.ok and text in str(call.params.get("text"))

    return match


def measure_on(daemon: Daemon, lines: int) -> LatencyFigures:
    """Append `lines` stat lines to the running daemon's stat CSV; time each to the chat."""
    source, target = (str(row["chan_id"]) for row in daemon.lndg.channels[:2])
    rng = random.Random(11)
    latencies: list[float] = []
    stat = daemon.data / "stat.csv"
    if not stat.exists():
        stat.write_text(HEADER)
    for index in range(lines):
        time.sleep(rng.uniform(0.4, 1.6))  # out of step with the daemon's timers
        amount = 100_000 + index * 1_000
        since = daemon.telegram.mark()
        with stat.open("a") as f:
            f.write(f"{int(time.time())},{source},{target},{amount * 1000},25000\n")
        appended = time.time()
        call = daemon.telegram.wait_for(_names(f"{amount:,} sat"), timeout=30, since=since)
        latencies.append(call.time - appended)
    return LatencyFigures(
        lines=len(latencies),
        p50_s=statistics.median(latencies),
        p95_s=percentile(latencies, 0.95),
        max_s=max(latencies),
    )


def measure(lines: int = 40) -> LatencyFigures:
    """Start a daemon on a node with nothing to rebalance and measure `lines` lines."""
    rows = node_rows(20, seed=3, balanced=True)  # nothing to rebalance: only our lines
    with (
        tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp,
        running_daemon(Path(tmp), rows) as daemon,
    ):
        daemon.wait_for_log("cycle finish")
        return measure_on(daemon, lines)


def main() -> int:
    f = measure()
    print(f"{f.lines} lines: p50 {f.p50_s:.2f} s, p95 {f.p95_s:.2f} s, max {f.max_s:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
