"""Run one regolancer process for one pair, and say how it ended.

Each run gets a private temporary JSON config, its own process group (so a wall-clock limit
or shutdown can stop everything it started), a per-worker log file of its output, and an
`Outcome` classified from exit code and stderr by `classify()`.

Stopping a run escalates SIGINT -> SIGTERM -> SIGKILL on the whole group. SIGINT comes first
because regolancer handles it (saves its node cache, exits 1); SIGKILL is the last resort
since a payment killed in flight can still settle in LND without a stat line.

Shutdown: `stop_all()` is the graceful path; every run in progress is stopped (short grace)
and its `run()` *returns* a RunResult with Outcome.STOPPED, and later runs are refused with
STOPPED. Cancelling the task running `run()` also stops the process group (same short grace),
then *re-raises* CancelledError: swallowing a cancellation would break asyncio.timeout(),
TaskGroup and the caller's own shutdown, so a cancelled caller gets no RunResult and records
STOPPED itself if it wants to.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
import shutil
import signal
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from core import earlier_runs
from core.models import Outcome, Pair, RunResult
from core.regolancer_config import build_config, write_config
from core.statfile import seal_partial_line

log = logging.getLogger(__name__)
echo_log = logging.getLogger("regolancer")

STDERR_TAIL_LINES = 50
DEFAULT_KILL_GRACE = (10.0, 5.0)
DEFAULT_STOP_GRACE = (2.0, 1.0)

_SECRET_ENV = frozenset({"TELEGRAM_TOKEN", "LNDG_PASS", "LNDG_USER"})
_SECRET_ENV_PARTS = ("TOKEN", "PASS", "SECRET")
_KILL_WAIT = 5.0  # after SIGKILL the kernel needs no grace; this only bounds a stuck exit
_DRAIN_WAIT = 2.0  # pipes can stay open in an escaped grandchild: never wait for ever
_POLL = 0.02
_EXIT_POLL = 0.25
_READ_CHUNK = 65536
_MAX_LINE = 8192
_LAST_LINE_MAX = 300

_LOG_PREFIX = re.compile(r"^\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)? ")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Go stack-trace noise: function frames like `main.main()` or `main.(*r).pay(0xc0, ...)`.
_GO_FRAME = re.compile(r"^[\w./*()\-\[\]]+\(.*\)$")

_NO_ROUTE_MARKER = "no routes"
# regolancer's answer when, by its own live balances, the pair no longer qualifies.
_NOT_QUALIFIED_MARKER = "no channelpairs available"
_ROUTE_TIMEOUT_MARKER = "timed out looking for a route"
_REBALANCE_TIMEOUT_MARKER = "rebalancing timed out"


def strip_prefix(line: str) -> str:
    """Drop colour codes and Go's `YYYY/MM/DD HH:MM:SS ` log prefix from one line."""
    return _LOG_PREFIX.sub("", _ANSI.sub("", line).rstrip("\r\n"), count=1)


def _is_noise(text: str) -> bool:
    if not text.strip() or text[:1] in ("\t", " "):
        return True
    lowered = text.lower()
    if lowered.startswith(("goroutine ", "created by ", "[signal ", "exit status ")):
        return True
    return bool(_GO_FRAME.match(text))


def last_meaningful_line(lines: Iterable[str]) -> str:
    """The line that best explains how a run ended: a Go panic line, else the last real line.

    Strips the log prefix and skips blank lines and stack-trace noise (goroutine headers,
    function frames, tab-indented file lines). Returns "" when nothing is left.
    """
    cleaned = [strip_prefix(line) for line in lines]
    panics = [text for text in cleaned if text.startswith("panic:")]
    if panics:
        return panics[-1][:_LAST_LINE_MAX]
    for text in reversed(cleaned):
        if not _is_noise(text):
            return text.strip()[:_LAST_LINE_MAX]
    return ""


def classify(
    exit_code: int | None,
    stderr_tail: Sequence[str],
    *,
    killed_at_limit: bool,
    stopped: bool,
) -> Outcome:
    """How a run ended, from its exit code and last stderr lines (see the contract).

    Our own interventions win: a run we stopped at shutdown is STOPPED, one we killed at the
    time limit is KILLED, whatever it printed on the way out.
    """
    if stopped:
        return Outcome.STOPPED
    if killed_at_limit:
        return Outcome.KILLED
    if exit_code == 0:
        return Outcome.SUCCESS
    texts = [strip_prefix(line).lower() for line in stderr_tail]
    if exit_code == 1:
        # The last marker wins: earlier lines may mention recovered problems.
        for text in reversed(texts):
            if _NOT_QUALIFIED_MARKER in text:
                return Outcome.NOT_QUALIFIED
            if _NO_ROUTE_MARKER in text:
                return Outcome.NO_ROUTE
            if _ROUTE_TIMEOUT_MARKER in text:
                return Outcome.ROUTE_TIMEOUT
        return Outcome.LND_ERROR
    if exit_code == 2:
        # Go panics also exit 2: only the regolancer message means its own deadline.
        if any(text.startswith("panic:") for text in texts):
            return Outcome.CRASHED
        if any(_REBALANCE_TIMEOUT_MARKER in text for text in texts):
            return Outcome.REBALANCE_TIMEOUT
    return Outcome.CRASHED


def find_binary(binary: str) -> str | None:
    """The executable regolancer path for a name (searched on PATH) or a path; else None."""
    if os.sep in binary or (os.altsep and os.altsep in binary):
        path = os.path.abspath(binary)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
        return None
    return shutil.which(binary)


def binary_problem(binary: str) -> tuple[str, str] | None:
    """Why regolancer cannot be started from `binary`, and the fix; None when it can."""
    if find_binary(binary) is not None:
        return None
    if os.path.isdir(binary):
        return f"{binary} is a directory", "set REGOLANCER_BIN to the binary itself"
    if os.path.exists(binary) and not os.access(binary, os.X_OK):
        return f"{binary} is not executable", f"chmod +x {binary}"
    return f"{binary} not found", "install regolancer or set REGOLANCER_BIN to its full path"


def child_environment(
    base: Mapping[str, str], extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """`base` without secrets (tokens, passwords), plus `extra`, plus NO_COLOR=1."""
    env = {
        name: value
        for name, value in base.items()
        if name.upper() not in _SECRET_ENV
        and not any(part in name.upper() for part in _SECRET_ENV_PARTS)
    }
    if extra:
        env.update(extra)
    env["NO_COLOR"] = "1"
    return env


def group_alive(pgid: int) -> bool:
    """Whether process group `pgid` still has a live (non-zombie) member.

    Zombies count as gone: an orphaned grandchild is reaped by init, not by us, sometimes
    late, and it can do nothing any more.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command name: state ppid pgrp ...
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            return True
    return False


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class _WorkerLog:
    """Append-only per-worker log, bounded: at `max_bytes` it moves to `.1` (one kept)."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle: IO[bytes] = path.open("ab")
        self._size = self._handle.tell()
        self._failed = False

    def write(self, text: str) -> None:
        """Append a line; a full disk loses log lines, never the run (warned once)."""
        data = (text.rstrip("\n") + "\n").encode("utf-8", "replace")
        if len(data) > self.max_bytes:
            data = data[: self.max_bytes - 1] + b"\n"
        try:
            if self._size + len(data) > self.max_bytes and self._size > 0:
                self._rotate()
            self._handle.write(data)
            self._handle.flush()
        except (OSError, ValueError) as exc:  # ValueError: closed after a failed rotation
            if not self._failed:
                self._failed = True
                log.warning("worker log %s cannot be written (%s); lines lost", self.path, exc)
            return
        self._size += len(data)

    def _rotate(self) -> None:
        self._handle.close()
        os.replace(self.path, self.path.with_name(self.path.name + ".1"))
        self._handle = self.path.open("ab")
        self._size = 0

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._handle.close()


@dataclass(eq=False)
class _Running:
    pgid: int
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)


class RegolancerRunner:
    """Runs regolancer for one pair at a time per call; many calls may run concurrently.

    Args:
        binary: regolancer's name on PATH or its path.
        template: the operator's checked template (see core.regolancer_config).
        stat_path: the stat CSV every run appends to.
        work_dir: where temporary configs live (created 0700).
        log_dir: where `worker-<n>.log` files go.
        timeout_seconds: hard wall-clock limit of one run, from spawn.
        log_max_bytes: size at which a worker log is rotated to `.1`.
        echo_output: also log every output line via the "regolancer" logger.
        kill_grace_seconds: waits after SIGINT and after SIGTERM at the time limit.
        stop_grace_seconds: the same, shorter, at shutdown or cancellation.
        extra_env: added to the child's environment (after secrets are removed).
    """

    def __init__(
        self,
        *,
        binary: str,
        template: Mapping[str, Any],
        stat_path: Path,
        work_dir: Path,
        log_dir: Path,
        timeout_seconds: float,
        log_max_bytes: int = 1_000_000,
        echo_output: bool = False,
        kill_grace_seconds: tuple[float, float] = DEFAULT_KILL_GRACE,
        stop_grace_seconds: tuple[float, float] = DEFAULT_STOP_GRACE,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.binary = binary
        self.template = dict(template)
        self.stat_path = stat_path
        self.work_dir = work_dir
        self.log_dir = log_dir
        self.timeout_seconds = timeout_seconds
        self.log_max_bytes = log_max_bytes
        self.echo_output = echo_output
        self.kill_grace_seconds = kill_grace_seconds
        self.stop_grace_seconds = stop_grace_seconds
        self.extra_env = dict(extra_env or {})
        self._running: set[_Running] = set()
        self._closed = False
        self._created = time.time()
        self._stale_removed = False
        self._earlier: earlier_runs.EarlierRuns | None = None

    @property
    def running(self) -> int:
        """How many regolancer processes are running now."""
        return len(self._running)

    async def stop_all(self) -> None:
        """Stop every running process group and refuse new runs (shutdown).

        Each affected `run()` returns Outcome.STOPPED. Returns once they have all finished
        (bounded by the stop grace plus the SIGKILL wait).
        """
        self._closed = True
        entries = list(self._running)
        for entry in entries:
            entry.stop.set()
        if entries:
            log.info("stopping %d regolancer run(s)", len(entries))
            await asyncio.gather(*(entry.done.wait() for entry in entries))

    async def run(self, pair: Pair, worker: int) -> RunResult:
        """Run regolancer once for `pair`, logging to worker `worker`'s log; never raises for
        anything regolancer does. Raises CancelledError (after stopping the process group)
        when cancelled, and OSError when our own work or log directory is unusable."""
        started = time.time()
        if self._closed:
            return self._result(pair, started, None, Outcome.STOPPED, "runner is shutting down")
        executable = find_binary(self.binary)
        if executable is None:
            return self._result(
                pair,
                started,
                None,
                Outcome.BINARY_MISSING,
                f"regolancer binary {self.binary!r} not found or not executable "
                "(set REGOLANCER_BIN)",
            )
        # regolancer creates the stat file but not its directory (it would only log an error).
        self.stat_path.parent.mkdir(parents=True, exist_ok=True)
        if not self._stale_removed:
            self._stale_removed = True
            self._remove_stale_configs()
        worker_log = _WorkerLog(self.log_dir / f"worker-{worker}.log", self.log_max_bytes)
        try:
            config = build_config(
                self.template,
                pair,
                self.stat_path,
                fee_limit_ppm=pair.fee_limit_ppm,
                amount=pair.amount,
            )
            config_path = write_config(config, self.work_dir)
            try:
                return await self._run_process(executable, config_path, pair, worker, worker_log)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    config_path.unlink()
                self._seal_stat_file()
        finally:
            worker_log.close()

    def earlier_busy(self) -> frozenset[str]:
        """Channels a regolancer of a killed daemon still holds (`core.earlier_runs`); the
        first call looks for them, before any leftover config is removed."""
        now = time.time()
        if self._earlier is None:
            left = earlier_runs.find(self.work_dir, self._created)
            self._earlier = earlier_runs.EarlierRuns(left, now)
        return self._earlier.busy(now)

    def _remove_stale_configs(self) -> None:
        """Delete configs a killed daemon left behind (they name the macaroon and TLS files)."""
        self.earlier_busy()  # what they name is read first
        stale = [
            path
            for path in self.work_dir.glob("regolancer-*.json")
            if path.stat().st_mtime < self._created
        ]
        for path in stale:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        if stale:
            log.info("removed %d regolancer config(s) left by an earlier run", len(stale))

    def _seal_stat_file(self) -> None:
        """Close a stat line the run left half written, so the next one is not lost with it."""
        try:
            fragment = seal_partial_line(self.stat_path)
        except OSError as exc:
            log.debug("stat file %s not checked for a partial line: %s", self.stat_path, exc)
            return
        if fragment is not None:
            log.warning(
                "stat CSV %s ended in an incomplete line %r left by a regolancer run that is "
                "gone; closed it so the next line stays intact",
                self.stat_path,
                fragment[:200],
            )

    async def _run_process(
        self,
        executable: str,
        config_path: Path,
        pair: Pair,
        worker: int,
        worker_log: _WorkerLog,
    ) -> RunResult:
        tag = f"[{pair.source.label} -> {pair.target.label}]"

        def emit(stream: str, line: str) -> None:
            worker_log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {tag} {stream}: {line}")

        started = time.time()
        try:
            # Never a shell; own session = own process group, so killpg reaches grandchildren.
            proc = await asyncio.create_subprocess_exec(
                executable,
                "-f",
                str(config_path),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
                env=child_environment(os.environ, self.extra_env),
            )
        except OSError as exc:
            unusable = isinstance(exc, FileNotFoundError | PermissionError) or (
                exc.errno == errno.ENOEXEC
            )
            # Anything else (no file descriptors, no memory) is this host's fault, not a route's.
            outcome = Outcome.BINARY_MISSING if unusable else Outcome.START_FAILED
            message = f"cannot start {executable}: {exc.strerror or exc}"
            emit("run", message)
            return self._result(pair, started, None, outcome, message)

        entry = _Running(pgid=proc.pid)
        self._running.add(entry)
        try:
            return await self._follow(proc, entry, pair, worker, emit, started)
        except Exception:
            # Our own failure while following it: the process must not outlive the run.
            await self._terminate(proc, entry, self.stop_grace_seconds)
            raise
        finally:
            self._running.discard(entry)
            entry.done.set()

    async def _follow(
        self,
        proc: asyncio.subprocess.Process,
        entry: _Running,
        pair: Pair,
        worker: int,
        emit: Callable[[str, str], None],
        started: float,
    ) -> RunResult:
        if self._closed:  # stop_all() ran while we were spawning
            entry.stop.set()
        emit("run", f"started pid {proc.pid}, limit {self.timeout_seconds:g} s")
        log.debug("worker %d: regolancer pid %d for %s", worker, proc.pid, pair.log_line())

        tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)

        def on_line(stream: str, line: str) -> None:
            emit(stream, line)
            if stream == "err":
                tail.append(line)
            if self.echo_output:
                echo_log.info("[worker %d] %s", worker, line)

        assert proc.stdout is not None
        assert proc.stderr is not None
        readers = [
            asyncio.create_task(_pump(proc.stdout, lambda line: on_line("out", line))),
            asyncio.create_task(_pump(proc.stderr, lambda line: on_line("err", line))),
        ]
        killed_at_limit = stopped = False
        try:
            exited = await self._wait_exit(proc, entry)
            if not exited:
                stopped = entry.stop.is_set()
                killed_at_limit = not stopped
                reason = "stopping (shutdown)" if stopped else "time limit reached, stopping"
                emit("run", reason)
                await self._terminate(proc, entry, self.kill_grace_seconds)
            elif group_alive(entry.pgid):
                # The leader exited but left processes behind in its group: none may survive.
                emit("run", "process group outlived regolancer, stopping it")
                await self._terminate(proc, entry, self.stop_grace_seconds)
            await _drain(readers)
        except asyncio.CancelledError:
            entry.stop.set()
            emit("run", "cancelled, stopping")
            cleanup = asyncio.ensure_future(self._terminate(proc, entry, self.stop_grace_seconds))
            try:
                # Shielded: a second cancel must not leave the group running.
                await asyncio.shield(cleanup)
            finally:
                for reader in readers:
                    reader.cancel()
            raise

        exit_code = proc.returncode
        outcome = classify(exit_code, tail, killed_at_limit=killed_at_limit, stopped=stopped)
        last_line = last_meaningful_line(tail)
        if not last_line and outcome in (Outcome.KILLED, Outcome.STOPPED):
            last_line = "no output before it was stopped"
        emit("run", f"ended: exit {exit_code}, {outcome.describe}")
        log.debug("worker %d: pid %d ended, exit %s, %s", worker, proc.pid, exit_code, outcome)
        return self._result(pair, started, exit_code, outcome, last_line)

    async def _wait_exit(self, proc: asyncio.subprocess.Process, entry: _Running) -> bool:
        """True when the process exited by itself; False at the limit or on stop()."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_seconds
        # Python 3.11's Process.wait() also waits for the pipes to close, which a leftover
        # grandchild can delay for ever: returncode is polled as well.
        waiter = asyncio.ensure_future(proc.wait())
        stopper = asyncio.ensure_future(entry.stop.wait())
        try:
            while proc.returncode is None and not entry.stop.is_set():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                await asyncio.wait(
                    {waiter, stopper},
                    timeout=min(remaining, _EXIT_POLL),
                    return_when=asyncio.FIRST_COMPLETED,
                )
        finally:
            waiter.cancel()
            stopper.cancel()
        return proc.returncode is not None

    async def _terminate(
        self, proc: asyncio.subprocess.Process, entry: _Running, grace: tuple[float, float]
    ) -> None:
        """SIGINT, SIGTERM, SIGKILL to the whole group, until no member is left."""
        steps = (
            (signal.SIGINT, grace[0], self.stop_grace_seconds[0]),
            (signal.SIGTERM, grace[1], self.stop_grace_seconds[1]),
            (signal.SIGKILL, _KILL_WAIT, _KILL_WAIT),
        )
        for sig, wait, stop_wait in steps:
            if proc.returncode is not None and not group_alive(entry.pgid):
                return
            log.debug("sending %s to process group %d", sig.name, entry.pgid)
            _signal_group(entry.pgid, sig)
            if await _wait_gone(proc, entry, wait, stop_wait):
                return
        log.warning("process group %d survived SIGKILL for %g s", entry.pgid, _KILL_WAIT)

    def _result(
        self,
        pair: Pair,
        started: float,
        exit_code: int | None,
        outcome: Outcome,
        last_line: str,
    ) -> RunResult:
        return RunResult(
            source=pair.source.chan_id,
            target=pair.target.chan_id,
            started_at=started,
            ended_at=time.time(),
            exit_code=exit_code,
            outcome=outcome,
            last_line=last_line,
        )


async def _wait_gone(
    proc: asyncio.subprocess.Process, entry: _Running, wait: float, stop_wait: float
) -> bool:
    """Poll until the leader exited and its group is empty; a stop request shortens `wait`."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while True:
        if proc.returncode is not None and not group_alive(entry.pgid):
            return True
        limit = min(wait, stop_wait) if entry.stop.is_set() else wait
        if loop.time() - start >= limit:
            return False
        await asyncio.sleep(_POLL)


async def _pump(stream: asyncio.StreamReader, sink: Callable[[str], None]) -> None:
    """Feed complete lines to `sink` (and a final partial one at EOF); cap line length."""
    buffer = b""
    while True:
        chunk = await stream.read(_READ_CHUNK)
        if not chunk:
            break
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for raw in lines:
            sink(_decode(raw))
        if len(buffer) > _MAX_LINE:
            sink(_decode(buffer[:_MAX_LINE]) + " [line truncated]")
            buffer = b""
    if buffer:
        sink(_decode(buffer))


async def _drain(readers: list[asyncio.Task[None]]) -> None:
    _, pending = await asyncio.wait(readers, timeout=_DRAIN_WAIT)
    for reader in pending:
        reader.cancel()


def _decode(raw: bytes) -> str:
    return _ANSI.sub("", raw.decode("utf-8", "replace").rstrip("\r"))
