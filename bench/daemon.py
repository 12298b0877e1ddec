"""The real daemon (`python -m bot run`) as a child process, against loopback stand-ins.

LNDg (`sim.lndg.FakeLndg`) and the Telegram Bot API (`sim.telegram.FakeTelegram`) run in this
process; regolancer is the stand-in `sim/regolancer.py`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sim.lndg import FakeLndg
from sim.telegram import FakeTelegram

REPO = Path(__file__).resolve().parents[1]
CHAT = 4242
TOKEN = "123456:bench-token-for-the-loopback-bot-api"  # noqa: S105 - a stand-in's token
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Daemon:
    """A running daemon child and what it talks to."""

    proc: subprocess.Popen[bytes]
    data: Path
    log: Path
    lndg: FakeLndg
    telegram: FakeTelegram

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode}:\n{self.output[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {text!r} in the daemon's log:\n{self.output[-2000:]}")
            time.sleep(0.05)

    def rss_bytes(self) -> int:
        """Resident memory (VmRSS) of the daemon process."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS in /proc status")

    def cpu_seconds(self) -> float:
        """User + system CPU time the daemon process used so far."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat[stat.rfind(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@contextmanager
def running_daemon(
    root: Path,
    channels: list[dict[str, Any]],
    *,
    env: dict[str, str] | None = None,
    scenario: dict[str, Any] | None = None,
) -> Iterator[Daemon]:
    """Start the daemon with its chat (FakeTelegram) and LNDg (FakeLndg); stop it after."""
    data = root / "data"
    tmp = root / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    scenario_file = root / "scenario.json"
    default = scenario or {"outcome": "success", "amount_sat": 50_000, "fee_sat": 12}
    scenario_file.write_text(json.dumps({"default": default, "pairs": {}}))
    log = root / "daemon.log"
    with (
        FakeLndg(channels=channels, payments=[], rebalancer=[]) as lndg,
        FakeTelegram(token=TOKEN) as telegram,
    ):
        child_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(root),
            "TMPDIR": str(tmp),
            "PYTHONPATH": str(REPO),
            "LNDG_BASE_URL": lndg.url,
            "LNDG_USER": "lndg-admin",
            "LNDG_PASS": "secret",
            "REGOLANCER_BIN": str(REPO / "sim" / "regolancer.py"),
            "REGOLANCER_TEMPLATE": str(REPO / "config.template.json"),
            "FAKE_REGOLANCER_SCENARIO": str(scenario_file),
            "DATA_DIR": str(data),
            "TELEGRAM_TOKEN": TOKEN,
            "TELEGRAM_CHAT_ID": str(CHAT),
            "TELEGRAM_API_BASE_URL": telegram.url,
            "SLEEP_SECONDS": "3600",
            "FAILURE_COOLDOWN_SECONDS": "0",
            **(env or {}),
        }
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "bot", "run"],
                cwd=root,
                env=child_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        daemon = Daemon(proc, data, log, lndg, telegram)
        try:
            telegram.wait_for_message(CHAT, text="regolancer-orchestrator started", timeout=60)
            yield daemon
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
