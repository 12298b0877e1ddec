"""Starting the real entry point as a child process, against the loopback stand-ins."""

from __future__ import annotations

import ctypes
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
FAKE_REGOLANCER = REPO / "sim" / "regolancer.py"
TEMPLATE = REPO / "config.template.json"


# prctl(PR_CAPBSET_DROP) and the capabilities that let root ignore file modes.
_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE = 1
_CAP_DAC_READ_SEARCH = 2


def honour_file_modes() -> None:
    """preexec_fn: make the child obey file modes even when the tests run as root (CI does).

    Root keeps its uid but loses the two capabilities that override read/write permission
    checks, so `chmod 000` or a 0500 directory means to it what it means to a service user.
    """
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `condition` until it returns something truthy; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def processes_mentioning(text: str) -> list[str]:
    """Live (non-zombie) processes whose command line contains `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().split(") ", 1)[1][0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append(f"{entry.name}: {cmdline.strip()}")
    return found


class Node:
    """Paths and environment of one simulated deployment in a test's tmp_path."""

    def __init__(self, root: Path, lndg_url: str, **settings: Any) -> None:
        self.root = root
        self.data = root / "data"
        self.scenario = root / "scenario.json"
        self.record = root / "record.jsonl"
        self.stat = self.data / "stat.csv"
        self.tmp = root / "tmp"
        self.tmp.mkdir(exist_ok=True)
        self.set_scenario({"outcome": "success", "amount_sat": 50_000, "fee_sat": 12, "delay": 0.2})
        self.template = self.write_template()
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(root),
            "TMPDIR": str(self.tmp),
            "LNDG_BASE_URL": lndg_url,
            "LNDG_USER": "lndg-admin",
            "LNDG_PASS": "secret",
            "REGOLANCER_BIN": str(FAKE_REGOLANCER),
            "REGOLANCER_TEMPLATE": str(self.template),
            "DATA_DIR": str(self.data),
            "SLEEP_SECONDS": "2",
            "MAX_WORKERS": "3",
            "FAILURE_COOLDOWN_SECONDS": "0",
            "FAKE_REGOLANCER_SCENARIO": str(self.scenario),
            "FAKE_REGOLANCER_RECORD": str(self.record),
            "PYTHONPATH": str(REPO),
        }
        self.env.update({k.upper(): str(v) for k, v in settings.items()})

    def write_template(self) -> Path:
        """The shipped template, its LND files (tls.cert, admin.macaroon) made real here."""
        lnd = self.root / "lnd"
        (lnd / "macaroons").mkdir(parents=True, exist_ok=True)
        (lnd / "tls.cert").write_text("-----BEGIN CERTIFICATE-----\n")
        (lnd / "macaroons" / "admin.macaroon").write_bytes(b"\x02\x01macaroon")
        template = json.loads(TEMPLATE.read_text())
        template.update(tlscert=str(lnd / "tls.cert"), macaroon_dir=str(lnd / "macaroons"))
        path = self.root / "node-template.json"
        path.write_text(json.dumps(template, indent=2))
        return path

    def set_scenario(self, default: dict[str, Any], pairs: dict[str, Any] | None = None) -> None:
        self.scenario.write_text(json.dumps({"default": default, "pairs": pairs or {}}))

    def runs_recorded(self) -> list[dict[str, Any]]:
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines() if line]

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        database = self.data / "state.sqlite3"
        if not database.exists():
            return []
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as db:
            try:
                return db.execute(sql).fetchall()
            except sqlite3.OperationalError:
                return []

    def stat_lines(self, *paths: Path) -> list[tuple[int, str, str, int, int]]:
        lines = []
        for path in paths or (self.stat,):
            for text in path.read_text().splitlines():
                if text and not text.startswith("timestamp"):
                    ts, src, tgt, amount, fee = text.split(",")
                    lines.append((int(ts), src, tgt, int(amount), int(fee)))
        return lines

    def ledger(self) -> list[tuple[int, str, str, int, int]]:
        return self.query(
            "SELECT ts, from_channel, to_channel, amount_msat, fees_msat FROM ledger ORDER BY id"
        )

    def leftover_processes(self) -> list[str]:
        """Processes (other than the daemon) whose command line mentions this node's files."""
        return processes_mentioning(str(self.root))


def bot_node(
    root: Path, lndg_url: str, telegram_url: str, *, token: str, chat_id: int, **settings: Any
) -> Node:
    """A deployment whose daemon is the bot of `token` in chat `chat_id` on a loopback Bot API."""
    return Node(
        root,
        lndg_url,
        telegram_token=token,
        telegram_chat_id=chat_id,
        telegram_api_base_url=telegram_url,
        **settings,
    )


class Daemon:
    """`python -m bot ARGS` as a child process, its output in a file."""

    def __init__(
        self,
        node: Node,
        *args: str,
        env: dict[str, str] | None = None,
        file_modes: bool = False,
    ) -> None:
        self.node = node
        self.args = args or ("run",)
        self.env = {**node.env, **(env or {})}
        # True: the daemon obeys file modes even as root (see honour_file_modes).
        self.file_modes = file_modes
        self.started_at = 0.0
        self.log_path = node.root / f"daemon-{time.monotonic_ns()}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Daemon:
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot", *self.args],
            cwd=self.node.root,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=honour_file_modes if self.file_modes else None,
        )
        self.started_at = time.time()
        log.close()
        return self

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, pattern: str, timeout: float = 20, count: int = 1) -> str:
        regex = re.compile(pattern)

        def found() -> str | None:
            assert self.proc is not None
            matches = regex.findall(self.output)
            if len(matches) >= count:
                return self.output
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"daemon exited {self.proc.returncode}:\n{self.output[-3000:]}"
                )
            return None

        return str(wait_until(found, timeout, f"log {pattern!r} x{count}\n{self.output[-3000:]}"))

    def wait(self, timeout: float = 30) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 15) -> tuple[int, float]:
        """Signal the daemon; (exit code, seconds it took to exit)."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signum)
        code = self.proc.wait(timeout)
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@contextmanager
def running(node: Node, *args: str, env: dict[str, str] | None = None) -> Iterator[Daemon]:
    """A started daemon, killed at the end of the block if the test did not stop it."""
    daemon = Daemon(node, *args, env=env).start()
    try:
        yield daemon
    finally:
        daemon.kill()


def run_cli(
    node: Node,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    file_modes: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run a one-shot subcommand to completion (`file_modes`: see honour_file_modes)."""
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=node.root,
        env={**node.env, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        preexec_fn=honour_file_modes if file_modes else None,
    )


def busy_overlaps(runs: list[dict[str, Any]]) -> list[tuple[Any, Any]]:
    """Pairs of recorded runs that overlapped in time and shared a channel."""
    overlaps = []
    for i, a in enumerate(runs):
        for b in runs[i + 1 :]:
            channels_a = set(a["config"]["from"]) | set(a["config"]["to"])
            channels_b = set(b["config"]["from"]) | set(b["config"]["to"])
            if a["start"] < b["end"] and b["start"] < a["end"] and channels_a & channels_b:
                overlaps.append((a["config"], b["config"]))
    return overlaps
