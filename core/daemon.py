"""Assembling the daemon's services from settings: the engine, the reporter, LNDg's client.

`core.runtime` runs them on timers; the CLI's `cycle` uses them for one cycle.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from core.engine import Engine, LoadHistory
from core.events import EventBus
from core.history import Observation, from_lndg_failures, from_payments, from_runs
from core.lndg import LndgClient
from core.models import Channel
from core.regolancer_config import load_template, template_warnings
from core.report_delivery import Reporter
from core.runner import RegolancerRunner
from core.settings import Settings
from core.spend_guard import SpendGuard
from core.state import StateStore, ensure_data_dir

log = logging.getLogger("core.daemon")

# Runs stopped at shutdown get this long before they are killed: room inside a 10 s stop
# timeout (systemd, docker) for the rest of the shutdown (see core.runtime).
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
async def open_services(settings: Settings) -> AsyncIterator[Services]:
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
                history=history_loader(settings, store, lndg),
                guard=SpendGuard(settings, store, lndg, template),
                # The list at most every CHANNEL_LIST_SECONDS; a run's channels read fresh.
                fetch_channel=lndg.fetch_channel,
                fetch_forwards=lndg.fetch_forwards,
            )
            yield Services(engine, Reporter.from_settings(settings, store, lndg), lndg)
    finally:
        store.close()
