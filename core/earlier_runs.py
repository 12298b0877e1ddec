"""regolancer runs a killed daemon left behind, and the channels they hold.

A daemon killed by SIGKILL (OOM killer, power cut of the service, `kill -9`) cannot stop its
regolancer children: each goes on paying until its next write to the dead pipe, which may be
minutes away while it waits on LND. The configs those runs were started with stay in the work
directory (the daemon removes a run's config when the run ends), so the next daemon knows
which channels they use. Until such a process is gone, and one second more, its channels
count as busy: no second run goes through them, and a stat line it writes (whole seconds) can
never fall inside a new run of the same pair, so the feed never folds it into that run.

Linux only (`/proc`); elsewhere no process is found and the channels are held one second.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

CONFIG_GLOB = "regolancer-*.json"
HOLD_AFTER_SECONDS = 1.0  # stat lines carry whole seconds


@dataclass
class EarlierRun:
    """One leftover config: its channels, the regolancer process still using it (if any)."""

    config: str
    channels: frozenset[str]
    pid: int | None
    gone_at: float | None = None  # when the process was first seen gone


def _channels(path: Path) -> frozenset[str]:
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return frozenset()
    if not isinstance(config, dict):
        return frozenset()
    ids: set[str] = set()
    for key in ("from", "to"):
        value = config.get(key)
        if isinstance(value, list):
            ids.update(str(item) for item in value)
    return frozenset(ids)


def _users(paths: Iterable[str], proc: Path) -> dict[str, int]:
    """Which of `paths` a live process has on its command line (`-f <path>`), by pid."""
    wanted = set(paths)
    found: dict[str, int] = {}
    try:
        entries = list(proc.iterdir())
    except OSError:
        return found
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            args = entry.joinpath("cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # gone meanwhile, or not ours to read
        for arg in args:
            text = arg.decode(errors="replace")
            if text in wanted:
                found[text] = int(entry.name)
    return found


def find(work_dir: Path, before: float, proc: Path = Path("/proc")) -> list[EarlierRun]:
    """The configs in `work_dir` written before `before` (by an earlier daemon), each with
    the channels it names and the pid of a regolancer still using it."""
    try:
        stale = [p for p in work_dir.glob(CONFIG_GLOB) if p.stat().st_mtime < before]
    except OSError:
        return []
    users = _users((str(p) for p in stale), proc)
    return [EarlierRun(str(p), _channels(p), users.get(str(p))) for p in stale]


def _alive(pid: int, proc: Path) -> bool:
    status = proc / str(pid) / "stat"
    try:
        # A zombie (state Z) has ended; init reaps it, not us.
        return status.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class EarlierRuns:
    """The channels held by runs of an earlier daemon, until each has ended (+1 s)."""

    def __init__(self, runs: list[EarlierRun], now: float, proc: Path = Path("/proc")) -> None:
        self.proc = proc
        self._runs = runs
        for run in runs:
            if run.pid is None:
                run.gone_at = now
            else:
                log.warning(
                    "regolancer started by an earlier daemon still runs (pid %d); its channels "
                    "%s wait until it ends",
                    run.pid,
                    ", ".join(sorted(run.channels)),
                )

    def busy(self, now: float) -> frozenset[str]:
        """The channels no run may use at `now`."""
        held: set[str] = set()
        still: list[EarlierRun] = []
        for run in self._runs:
            if run.gone_at is None and (run.pid is None or not _alive(run.pid, self.proc)):
                run.gone_at = now
                log.info("regolancer of an earlier daemon (pid %s) ended", run.pid)
            if run.gone_at is not None and now >= run.gone_at + HOLD_AFTER_SECONDS:
                continue
            held |= run.channels
            still.append(run)
        self._runs = still
        return frozenset(held)

    def __bool__(self) -> bool:
        return bool(self._runs)
