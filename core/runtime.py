"""The runtime: the one place that runs the daemon on timers, with or without a face.

It owns the jobs (a cycle then the engine's pause, the ledger poll, the daily report tick,
the feed's delivery), signal handling and the shutdown order. A face (the Telegram bot) only
adds what it shows: a sink for the feed, and listeners it starts in the background. The
engine never waits for the face: with the Bot API unreachable, runs start all the same, and
the feed holds what the chat should hear until it answers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from core.control import Control, Schedule
from core.daemon import STOP_GRACE_SECONDS, Services, open_services
from core.engine import Engine
from core.events import DaemonStarted, DaemonStopping, Mode, ReportReady
from core.feed import Episodes, Feed, FeedPump, LogSink, Sink
from core.lndg_pace import sleep_warning
from core.metrics import DaemonCollector, daemon_registry
from core.metrics_server import MetricsServer
from core.report_delivery import Reporter, ReportUnavailable
from core.report_figures import DayReport, format_summary
from core.sd_notify import Notifier
from core.settings import Settings
from core.state import StateStore

log = logging.getLogger("core.runtime")

LEDGER_POLL_SECONDS = 1.0
FEED_FLUSH_SECONDS = 1.0
REPORT_CHECK_SECONDS = 60.0
PRUNE_SECONDS = 86_400.0  # run records are pruned once a day (and a minute after start)
REPORT_RETRY_SECONDS = 600
# The shutdown notice gets this long to leave before the process exits.
FAREWELL_SECONDS = 2.0


class Face(Protocol):
    """What the operator sees and steers the daemon through (the Telegram bot)."""

    @property
    def name(self) -> str:
        """How the start-up line in the log names it: `with Telegram`."""

    @property
    def sink(self) -> Sink:
        """Where the feed's notices go."""

    @property
    def episodes(self) -> Episodes:
        """Problems said once per episode, shared with the feed."""

    def start(self, control: Control, reporter: Reporter, stop: Callable[[int], None]) -> None:
        """Begin connecting in the background; never blocks. `stop(code)` ends the daemon."""

    async def stop(self) -> None:
        """Stop listening (after the farewell notice had its chance to leave)."""


SendReport = Callable[[DayReport, bytes], Awaitable[None]]


class DailyReports:
    """Delivers due daily reports; called every minute, cheap when nothing is due.

    LNDg unavailable: one alert, a retry every REPORT_RETRY_SECONDS, a recovery message; none
    while the engine's LNDg alert stands (one cause, one alert: the wait is only logged).
    A failed `send` (the feed refuses the write) is retried the same way; a day is never
    sent twice.
    """

    def __init__(self, reporter: Reporter, engine: Engine, send: SendReport) -> None:
        self.reporter = reporter
        self.engine = engine
        self.send = send
        self._retry_at = 0.0

    async def tick(self) -> list[dt.date]:
        if time.monotonic() < self._retry_at:
            return []
        try:
            delivered = await self.reporter.deliver_due(dt.datetime.now(dt.UTC), self.send)
        except ReportUnavailable as exc:
            self._retry_at = time.monotonic() + REPORT_RETRY_SECONDS
            if self.engine.stopping:  # LNDg was abandoned at shutdown: nothing to tell
                return list(exc.delivered)
            waiting = f"{exc}; retrying every {REPORT_RETRY_SECONDS // 60} min"
            if self.engine.alert_standing("lndg"):
                log.info("%s", waiting)  # the chat has the LNDg alert already
            else:
                self.engine.alert("report", waiting)
            return list(exc.delivered)
        except Exception as exc:
            self._retry_at = time.monotonic() + REPORT_RETRY_SECONDS
            log.warning("daily report not delivered (%s); retrying later", exc)
            return []
        if delivered:
            self.engine.clear("report", "daily report delivered")
        return delivered


def report_to(feed: Feed) -> SendReport:
    """Daily reports join the feed (the report store makes each day at most once)."""

    async def send(report: DayReport, chart: bytes) -> None:
        feed.put(ReportReady(report.day, format_summary(report), chart))

    return send


async def stop_services(services: Services) -> None:
    """Stop running regolancer processes, abandon what waits on LNDg, let the cycle end."""
    engine = services.engine
    await engine.stop()
    # A cycle, a report or a command waiting on a slow LNDg must not hold up the exit.
    services.lndg.abort()
    # The cycle ends by itself once its runs are stopped; bounded in case one does not
    # (a cycle waiting on a slow LNDg): then it is cancelled, never waited for.
    try:
        async with asyncio.timeout(STOP_GRACE_SECONDS * 2):
            await engine.wait_idle()
    except TimeoutError:
        await engine.cancel_cycle()
    try:
        engine.poll_ledger()
    except Exception as exc:  # the lines stay in the CSV; the next start records them
        log.error("ledger not read at shutdown: %s", exc)


class Cycles:
    """A cycle, then the pause the engine asks for (SLEEP_SECONDS unless work is waiting).

    So cycles never overlap, and a busy event loop delays the next one, never drops it.
    `sleep` is injected: the simulation (bench/) runs the same loop on a virtual clock.
    """

    def __init__(
        self,
        engine: Engine,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.sleep = sleep
        self.clock = clock
        self._next_at: float | None = None

    def next_at(self) -> float | None:
        """When the next cycle starts (a Unix time); None while one runs."""
        return self._next_at

    async def run(self) -> None:
        while not self.engine.stopping:
            try:
                await self.engine.cycle()
            except Exception as exc:  # a bug must not end the cycles: logged, tried again
                log.error("cycle raised an exception: %s: %s", type(exc).__name__, exc)
            delay = self.engine.next_cycle_delay()
            self._next_at = self.clock() + delay
            try:
                await self.sleep(delay)
            finally:
                self._next_at = None


class Runtime:
    """Runs one daemon until SIGTERM or SIGINT; returns its exit code."""

    def __init__(
        self, settings: Settings, face: Face | None = None, *, simulated: bool = False
    ) -> None:
        self.settings = settings
        self.face = face
        # The demo: its start and stop say SIMULATION, never LIVE.
        self.simulated = simulated
        self._stopping = asyncio.Event()
        self._code = 0
        self._manual: set[asyncio.Task[object]] = set()

    def stop(self, code: int = 0) -> None:
        """End the daemon (as a signal does) with exit code `code`."""
        self._code = self._code or code
        self._stopping.set()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop)
        systemd = Notifier.from_environment()
        # Bound before anything starts: a taken port is a configuration error (MetricsError).
        listen = self.settings.metrics_listen
        metrics = await MetricsServer.open(listen) if listen else None
        try:
            async with open_services(self.settings) as services:
                await self._serve(services, metrics, systemd)
        finally:
            if metrics is not None:
                await metrics.close()
            await systemd.close()
        log.info("stopped")
        return self._code

    async def _serve(
        self, services: Services, metrics: MetricsServer | None, systemd: Notifier
    ) -> None:
        engine, settings, face = services.engine, self.settings, self.face
        feed = Feed(engine.store)
        engine.events.subscribe(feed.listen)
        sink: Sink = face.sink if face is not None else LogSink(log, settings.zone)
        pump = FeedPump(
            engine.store,
            sink,
            face.episodes if face is not None else None,
            running=engine.running,
            digest_minutes=settings.notify_digest_minutes,
        )
        reports = DailyReports(services.reporter, engine, report_to(feed))
        scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop())

        cycles = Cycles(engine)
        control = Control(
            engine, Schedule(cycles.next_at, self._start_manual(engine)), node=services.lndg
        )
        if metrics is not None:
            collector = DaemonCollector(control, time.time())
            metrics.attach(daemon_registry(collector), collector)
        _every(scheduler, "ledger", LEDGER_POLL_SECONDS, _guarded("ledger", engine.poll_ledger))
        _every(scheduler, "feed", FEED_FLUSH_SECONDS, _guarded("feed", pump.flush), first=0.5)
        _every(scheduler, "report", REPORT_CHECK_SECONDS, _guarded("report", reports.tick), 5)
        prune = _guarded("prune", lambda: prune_runs(engine.store, settings.run_retention_days))
        _every(scheduler, "prune", PRUNE_SECONDS, prune, first=60)
        services.reporter.begin(dt.datetime.now(dt.UTC))
        mode = self._mode(control)
        engine.events.emit(DaemonStarted(mode, settings.sleep_seconds, settings.max_workers))
        scheduler.start()
        log.info(
            "regolancer-orchestrator started %s (%s), cycle every %ds, %d workers",
            face.name if face is not None else "headless",
            mode.headline(time.time()),
            settings.sleep_seconds,
            settings.max_workers,
        )
        if (pace := sleep_warning(settings.sleep_seconds)) is not None:
            log.warning("%s", pace)
        cycling = asyncio.create_task(cycles.run(), name="cycles")
        if face is not None:
            face.start(control, services.reporter, self.stop)
        systemd.ready()
        await self._stopping.wait()
        systemd.stopping()

        log.info("stopping: no new runs, stopping running regolancer processes")
        # The engine first: the running cycle then ends by itself and records its runs
        # as stopped, instead of being cancelled by the scheduler.
        await stop_services(services)
        cycling.cancel()  # the cycle has ended; this ends the sleep after it
        await asyncio.gather(cycling, return_exceptions=True)
        engine.events.emit(DaemonStopping(self._mode(control)))
        try:
            await asyncio.wait_for(pump.flush(), FAREWELL_SECONDS)
        except TimeoutError:
            log.warning("shutdown message not delivered in time; it stays in the outbox")
        except Exception as exc:
            log.warning("shutdown message not delivered (%s); it stays in the outbox", exc)
        if face is not None:
            await face.stop()
        scheduler.shutdown(wait=False)

    def _mode(self, control: Control) -> Mode:
        return dataclasses.replace(control.mode(), simulated=self.simulated)

    def _start_manual(self, engine: Engine) -> Callable[[], asyncio.Task[object]]:
        def start() -> asyncio.Task[object]:
            task: asyncio.Task[object] = asyncio.create_task(
                engine.cycle(ignore_pause=True), name="manual cycle"
            )
            self._manual.add(task)  # a reference, so the task is not collected mid-cycle
            task.add_done_callback(self._manual.discard)
            return task

        return start


def prune_runs(store: StateStore, retention_days: int, now: float | None = None) -> int:
    """Delete run records older than RUN_RETENTION_DAYS (the ledger stays); logs how many."""
    before = (time.time() if now is None else now) - retention_days * 86_400
    deleted = store.prune_runs(before)
    if deleted:
        log.info("pruned %d run records older than %d days", deleted, retention_days)
    return deleted


def _in(seconds: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)


def _every(
    scheduler: AsyncIOScheduler,
    name: str,
    seconds: float,
    job: Callable[[], Awaitable[None]],
    first: float | None = None,
) -> None:
    scheduler.add_job(
        job,
        "interval",
        seconds=seconds,
        next_run_time=_in(seconds if first is None else first),
        max_instances=1,
        coalesce=True,
        id=name,
    )


def _guarded(name: str, call: Callable[[], object]) -> Callable[[], Awaitable[None]]:
    """A job that logs its failure in one line (the next tick tries again) and goes on."""

    async def job() -> None:
        try:
            result = call()
            if asyncio.iscoroutine(result):
                await result
        except Exception as exc:
            log.error("%s job raised an exception: %s: %s", name, type(exc).__name__, exc)

    return job
