"""A compressed soak: the real daemon (with its Telegram face) runs regolancer over and over
with random outcomes while LNDg and the Bot API fail now and then; its memory, file
descriptors, threads and child processes must stay within a stated bound.

Figures are printed (`pytest -s`) and written to `figures.json` in the test's tmp dir.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import pytest

from sim.lndg import FakeLndg, channel_row
from sim.telegram import FakeTelegram
from tests.daemon_process import Daemon, Node

pytestmark = [pytest.mark.soak, pytest.mark.subprocess]

TOKEN = "123456:soak-token"
CHAT = 4242
WORKERS = 3
SOAK_SECONDS = 60.0
WARM_UP_SECONDS = 10.0
# Growth is read between two windows of this length: the first after warm-up, the last.
WINDOW_SECONDS = 15.0
# Bounds on growth between the first window and the last.
RSS_GROWTH_KIB = 12 * 1024
FD_GROWTH = 4
THREAD_GROWTH = 2
OUTCOMES = [
    {"outcome": "success", "steps": 2, "delay": 0},
    {"outcome": "no_route"},
    {"outcome": "route_timeout"},
    {"outcome": "lnd_error"},
    {"outcome": "crash"},
    {"outcome": "rebalance_timeout", "delay": 0},
    {"outcome": "half_line"},
    {"outcome": "spawn_grandchild", "exit_after": 0},
]


def usage(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    children = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            _state, ppid = stat.rsplit(")", 1)[1].split()[:2]
            children += int(ppid) == pid
    return {
        "rss_kib": int(fields["VmRSS"].split()[0]),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "threads": int(fields["Threads"]),
        "children": children,
    }


def channels() -> list[dict[str, object]]:
    rows = [
        channel_row(f"800000x{i}x0", alias=f"S{i}", local_balance=900_000, ar_out_target=60)
        for i in range(1, 5)
    ]
    rows += [
        channel_row(
            f"800000x{100 + i}x0",
            alias=f"T{i}",
            local_balance=20_000,
            auto_rebalance=True,
            ar_in_target=80,
        )
        for i in range(1, 5)
    ]
    return rows


@pytest.mark.timeout(300)
def test_soak_keeps_memory_fds_threads_and_children_bounded(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("SOAK_SEED", "7")))
    with FakeLndg(channels=channels()) as lndg, FakeTelegram(token=TOKEN) as telegram:
        node = Node(
            tmp_path,
            lndg.url,
            telegram_token=TOKEN,
            telegram_chat_id=CHAT,
            telegram_api_base_url=telegram.url,
            sleep_seconds=1,
            max_workers=WORKERS,
            lndg_timeout_seconds=0.5,
            worker_log_max_bytes=20_000,
        )
        node.set_scenario({"random": OUTCOMES})
        daemon = Daemon(node).start()
        assert daemon.proc is not None
        samples: list[tuple[float, dict[str, int]]] = []
        faults = {"lndg": 0, "telegram": 0}
        try:
            telegram.wait_for_message(CHAT, text="started", timeout=30)
            started = time.monotonic()
            while (elapsed := time.monotonic() - started) < SOAK_SECONDS:
                time.sleep(0.25)
                sample = usage(daemon.proc.pid)
                samples.append((elapsed, sample))
                assert sample["children"] <= WORKERS, sample
                roll = rng.random()
                if roll < 0.02:
                    lndg.set_fault(rng.choice(["500", "garbage", "slow", "401"]), count=3)
                    faults["lndg"] += 1
                elif roll < 0.04:
                    telegram.clear_faults()
                    telegram.fail_next(2, 502, method="sendMessage")
                    faults["telegram"] += 1
            assert daemon.proc.poll() is None, daemon.output[-3000:]
            code, _ = daemon.stop()
        finally:
            daemon.kill()
    assert code == 0
    runs = node.runs_recorded()
    cycles = daemon.output.count("cycle finish")

    def floor(start: float, end: float) -> dict[str, int]:
        # A run in flight holds its pipes, worker log and child for a moment (and an escaped
        # grandchild holds the pipes up to the runner's drain wait), so a single sample or a
        # median says how busy the workers were. What leaks stays open at the quiet moments
        # too: the least of each figure over a window is the daemon's own baseline.
        window = [s for t, s in samples if start <= t < end]
        return {key: min(s[key] for s in window) for key in window[0]}

    before = floor(WARM_UP_SECONDS, WARM_UP_SECONDS + WINDOW_SECONDS)
    after = floor(SOAK_SECONDS - WINDOW_SECONDS, SOAK_SECONDS)
    figures = {
        "seconds": SOAK_SECONDS,
        "cycles": cycles,
        "runs": len(runs),
        "outcomes": {o: sum(r["outcome"] == o for r in runs) for o in {r["outcome"] for r in runs}},
        "ledger_rows": len(node.ledger()),
        "faults_injected": faults,
        "after_warm_up": before,
        "at_end": after,
        "peak_children": max(s["children"] for _, s in samples),
        "bounds": {
            "rss_growth_kib": RSS_GROWTH_KIB,
            "fd_growth": FD_GROWTH,
            "thread_growth": THREAD_GROWTH,
            "children": WORKERS,
        },
    }
    (tmp_path / "figures.json").write_text(json.dumps(figures, indent=2))
    print("\nsoak:", json.dumps(figures))
    # enough runs to show a trend; the engine's pacing and the machine's load set the rate
    assert len(runs) >= 40
    assert after["rss_kib"] - before["rss_kib"] <= RSS_GROWTH_KIB
    assert after["fds"] - before["fds"] <= FD_GROWTH
    assert after["threads"] - before["threads"] <= THREAD_GROWTH
    assert node.leftover_processes() == []
