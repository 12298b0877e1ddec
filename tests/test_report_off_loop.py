"""`/report 30d` over 100,000 ledger rows leaves the chat answering: `/status`, sent while
the report is being built, is answered before the report.

In process: the real command handlers and python-telegram-bot against the Bot API stand-in
over a socket, a real SQLite store seeded by bench/reports.py, LNDg's rows in memory (a
fetch of 100,000 payments over HTTP is the client's business, measured in bench/). Timing is
printed, not asserted (the bench reports it): the test asserts the order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from telegram import Update

from bench.reports import MemoryLndg, seed_node
from bot.app import build_application
from bot.handlers import Commands, Confirmations
from core.control import Control
from core.engine import Engine
from core.node_records import Payment
from core.report_delivery import Reporter
from core.settings import load_settings
from core.state import StateStore
from sim.telegram import FakeTelegram
from tests.test_engine import ScriptedRunner

CHAT = OPERATOR = 4242
TOKEN = "123456:off-loop-token"
STATUS = "<b>Mode</b>: "  # the first line of /status


class Announcing(MemoryLndg):
    """Says when the report started reading LNDg."""

    started: asyncio.Event

    async def fetch_payments(self, start: datetime, end: datetime) -> Sequence[Payment]:
        self.started.set()
        return await super().fetch_payments(start, end)


@pytest.mark.soak  # 100,000 ledger rows: the slow lane (`make test`)
async def test_status_is_answered_while_report_30d_runs(tmp_path: Path) -> None:
    settings = load_settings(
        None,
        data_dir=tmp_path,
        timezone="Europe/Berlin",
        telegram_token=TOKEN,
        telegram_chat_id=CHAT,
    )
    path = tmp_path / "state.sqlite3"
    today = datetime.now(settings.zone).date()
    with StateStore(path) as store, FakeTelegram(token=TOKEN) as telegram:
        memory = seed_node(store, path, rows=100_000, last_day=today, zone=settings.zone)
        lndg = Announcing(memory.payments, memory.rebalances, memory.forwards)
        lndg.started = asyncio.Event()

        async def no_channels() -> list[object]:
            return []

        engine = Engine(settings, store, no_channels, ScriptedRunner())  # type: ignore[arg-type]
        reporter = Reporter(tmp_path, settings.zone, settings.report_time, store, lndg)
        # When the attribution (in its worker thread) is done.
        attribute = reporter.figures._attribute
        attributed: list[float] = []

        def timed(inputs: Any) -> Any:
            result = attribute(inputs)
            attributed.append(time.perf_counter())
            return result

        reporter.figures._attribute = timed  # type: ignore[method-assign]
        face = settings.model_copy(update={"telegram_api_base_url": telegram.url})
        app = build_application(face)
        Commands(Control(engine), reporter, face, confirmations=Confirmations()).register(app)
        await app.initialize()
        try:

            async def say(text: str) -> float:
                update = Update.de_json(
                    telegram.update(telegram.inject_message(CHAT, OPERATOR, text)), app.bot
                )
                await app.process_update(update)
                return time.perf_counter()

            began = time.perf_counter()
            report = asyncio.create_task(say("/report 30d"))
            # The event wakes this task at the report's first pause: the attribution now runs
            # in a worker thread (with the attribution on the loop, only once it is done).
            await lndg.started.wait()
            answered = await say("/status")
            report_done = await report
        finally:
            await app.shutdown()
    texts = [str(c.params.get("text", "")) for c in telegram.calls if c.method == "sendMessage"]
    status = next(n for n, t in enumerate(texts) if t.startswith(STATUS))
    summary = next(n for n, t in enumerate(texts) if "30 days" in t)
    attributed_at = attributed[0]
    print(
        f"/status answered {answered - began:.3f} s after /report 30d was sent; "
        f"attribution done at {attributed_at - began:.3f} s, report at "
        f"{report_done - began:.3f} s"
    )
    assert "This daemon: " in texts[summary]
    assert status < summary  # /status did not wait for the report
    assert answered < attributed_at  # answered while the attribution was running
    assert answered < report_done
