"""Assembling the engine from settings, and the headless daemon that runs it on timers.

The bot (bot/app.py) builds the same services with `open_services` and schedules it on PTB's
JobQueue instead; headless mode schedules it here with APScheduler directly.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from core.engine import Engine, LoadHistory
from core.events import Event, EventBus, RebalancesRecorded
from core.history import Observation, from_lndg_failures, from_payments, from_runs
from core.lndg import LndgClient
from core.models import Channel
from core.regolancer_config import load_template, template_warnings
from core.report import DayReport, format_summary
from core.reporting import Reporter, ReportUnavailable
from core.runner import RegolancerRunner
from core.settings import Settings
from core.state import StateStore, ensure_data_dir

log = logging.getLogger("core.daemon")

LEDGER_POLL_SECONDS = 1.0
REPORT_CHECK_SECONDS = 60.0
REPORT_RETRY_SECONDS = 600
# Leaves room inside a 10 s stop timeout (systemd, docker) for the rest of the shutdown.
STOP_GRACE_SECONDS = 3.0


@dataclass(frozen=True, slots=True)
class Services:
    """What a running daemon is made of."""

    engine: Engine
    reporter: Reporter
    lndg: LndgClient


def history_loader(
    settings: Settings,
    store: StateStore,
    lndg: LndgClient,
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> LoadHistory | None:
    """Reads HISTORY_DAYS of past attempts: the node's rebalances in LNDg, our failed runs."""
    if settings.history_days <= 0:
        return None

    async def load(channels: Sequence[Channel]) -> list[Observation]:
        until = now()
        since = until - dt.timedelta(days=settings.history_days)
        ours = from_runs(store.runs(since=since.timestamp()))
        payments = await lndg.fetch_payments(since, until)
        attempts = await lndg.fetch_rebalances(since, status=None)
        return [*from_payments(payments), *from_lndg_failures(attempts, channels), *ours]

    return load


@asynccontextmanager
async def open_services(settings: Settings, *, notify: bool) -> AsyncIterator[Services]:
    """The engine and the reporter, with their state store and LNDg client, closed on exit."""
    ensure_data_dir(settings.data_dir)
    template = load_template(settings.regolancer_template)
    for warning in template_warnings(template, settings.stat_path, settings.run_timeout_seconds):
        log.warning("%s: %s", settings.regolancer_template, warning)
    store = StateStore(settings.database_path)
    try:
        async with LndgClient.from_settings(settings) as lndg:

            async def fetch() -> list[Channel]:
                return (await lndg.fetch_channels()).channels

            runner = RegolancerRunner(
                binary=settings.regolancer_bin,
                template=template,
                stat_path=settings.stat_path,
                work_dir=settings.data_dir,
                log_dir=settings.data_dir / "logs",
                timeout_seconds=settings.run_timeout_seconds,
                log_max_bytes=settings.worker_log_max_bytes,
                echo_output=settings.regolancer_echo_output,
                stop_grace_seconds=(STOP_GRACE_SECONDS, 1.0),
            )
            engine = Engine(
                settings,
                store,
                fetch,
                runner,
                EventBus(),
                notify=notify,
                history=history_loader(settings, store, lndg),
            )
            yield Services(engine, Reporter.from_settings(settings, store, lndg), lndg)
    finally:
        store.close()


SendReport = Callable[[DayReport, bytes], Awaitable[None]]


class DailyReports:
    """Delivers due daily reports; called every minute, cheap when nothing is due.

    LNDg unavailable: one alert, a retry every REPORT_RETRY_SECONDS, a recovery message; none
    while the engine's LNDg alert stands (one cause, one alert: the wait is only logged).
    A failed `send` (Telegram down) is retried the same way; a day is never sent twice.
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


async def log_report(report: DayReport, chart: bytes) -> None:
    """Headless delivery: the summary goes to the log; the PNG is already next to the CSV."""
    log.info("daily report: %s", " | ".join(format_summary(report).splitlines()))


def log_event(event: Event) -> None:
    """Headless mode: what the chat would show goes to the log instead."""
    if isinstance(event, RebalancesRecorded):
        for rebalance in event.rebalances:
            line = rebalance.line
            log.info(
                "rebalanced %d sat %s -> %s, fee %.3f sat (%d ppm)",
                line.amount_sat,
                rebalance.from_alias or line.from_channel,
                rebalance.to_alias or line.to_channel,
                line.fee_sat,
                line.ppm,
            )


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


def describe_mode(engine: Engine) -> str:
    mode = "DRY RUN" if engine.dry_run else "LIVE"
    if engine.store.is_paused():
        mode += ", PAUSED"
    return mode


async def run_headless(settings: Settings) -> int:
    """Run the engine on timers until SIGTERM or SIGINT; events go to the log."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    async with open_services(settings, notify=False) as services:
        engine = services.engine
        engine.events.subscribe(log_event)
        reports = DailyReports(services.reporter, engine, log_report)
        log.info(
            "regolancer-orchestrator started headless (%s), cycle every %ds, %d workers",
            describe_mode(engine),
            settings.sleep_seconds,
            settings.max_workers,
        )
        scheduler = AsyncIOScheduler(event_loop=loop)

        async def cycle_then_sleep() -> None:
            # A cycle, then the pause the engine asks for (SLEEP_SECONDS unless work is
            # waiting), so cycles never overlap.
            try:
                await engine.cycle()
            finally:
                if scheduler.running and not stopping.is_set():
                    scheduler.add_job(
                        cycle_then_sleep,
                        "date",
                        run_date=_in(engine.next_cycle_delay()),
                        id="cycle",
                        replace_existing=True,
                        # a busy event loop must delay the next cycle, never drop it
                        misfire_grace_time=None,
                    )

        scheduler.add_job(
            cycle_then_sleep, "date", run_date=_in(0), id="cycle", misfire_grace_time=None
        )
        scheduler.add_job(
            _poll,
            "interval",
            args=(engine,),
            seconds=LEDGER_POLL_SECONDS,
            max_instances=1,
            id="ledger",
        )
        scheduler.add_job(
            reports.tick,
            "interval",
            seconds=REPORT_CHECK_SECONDS,
            next_run_time=_in(5),
            max_instances=1,
            id="report",
        )
        scheduler.start()
        await stopping.wait()
        log.info("stopping: no new runs, stopping running regolancer processes")
        # The engine first: the running cycle then ends by itself and records its runs
        # as stopped, instead of being cancelled by the scheduler.
        await stop_services(services)
        scheduler.shutdown(wait=False)
    log.info("stopped")
    return 0


def _in(seconds: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)


async def _poll(engine: Engine) -> None:
    engine.poll_ledger()
