"""The daily report when the state database refuses its sent-mark, and one alert per cause.

The reporter reads the LNDg stand-in over a real socket and writes a real SQLite store; the
last test runs the daemon as a child process against the LNDg and Bot API stand-ins.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from core.events import AlertRaised
from core.lndg import LndgClient, LndgUnreachable
from core.report_delivery import FIRST_DAY_KEY, Reporter, ReportUnavailable
from core.runtime import DailyReports
from sim.lndg import FakeLndg
from sim.telegram import FakeTelegram
from tests.daemon_process import bot_node, running
from tests.fakes.state import RefusingStore
from tests.test_engine import Node as Channels
from tests.test_engine import ScriptedRunner, make_engine
from tests.test_report_delivery import BERLIN, DAY, Outbox, add_days, berlin

CHAT = 4242
TOKEN = "123456:trust-reports-token"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RefusingStore]:
    refusing = RefusingStore(tmp_path / "state.sqlite3")
    try:
        yield refusing
    finally:
        refusing.close()


@pytest.fixture
def fake() -> Iterator[FakeLndg]:
    with FakeLndg(payments=[], rebalancer=[]) as server:
        yield server


@pytest.fixture
async def reporter(fake: FakeLndg, store: RefusingStore, tmp_path: Path) -> AsyncIterator[Reporter]:
    async with LndgClient(fake.url, password="secret", backoff=0.01, attempts=2) as client:
        yield Reporter(tmp_path / "data", BERLIN, dt.time(0, 5), store, client)


async def test_a_report_the_chat_accepted_is_not_sent_again_while_its_mark_fails(
    fake: FakeLndg,
    store: RefusingStore,
    reporter: Reporter,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    add_days(fake, store, [DAY, DAY - dt.timedelta(days=1)])
    store.put_value(FIRST_DAY_KEY, "2026-11-23")
    outbox = Outbox()
    now = berlin("2026-11-25T09:00:00")
    store.refusing = True
    # The first day goes out; its mark fails: the round stops there.
    assert await reporter.deliver_due(now, outbox) == [dt.date(2026, 11, 23)]
    for _ in range(5):  # the report job again and again while the database refuses
        assert await reporter.deliver_due(now, outbox) == []
    assert outbox.days == [dt.date(2026, 11, 23)]
    assert not store.report_sent("2026-11-23")
    refusals = [r for r in caplog.records if "refuses to record it" in r.getMessage()]
    assert len(refusals) == 1
    store.refusing = False
    # Writable again: the held mark is written first, then the next day goes out.
    assert await reporter.deliver_due(now, outbox) == [DAY]
    assert outbox.days == [dt.date(2026, 11, 23), DAY]
    assert store.report_sent("2026-11-23")
    assert store.report_sent(DAY.isoformat())
    assert "takes writes again" in caplog.text
    assert await reporter.deliver_due(now, outbox) == []


class DownReporter:
    """LNDg cannot be read for the report."""

    async def deliver_due(self, now: dt.datetime, send: Any) -> list[dt.date]:
        raise ReportUnavailable(DAY, LndgUnreachable("cannot reach LNDg"))


async def _nothing(report: Any, chart: bytes) -> None:
    return None


async def test_the_report_waiting_on_lndg_repeats_no_standing_lndg_alert(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    engine, events = make_engine(tmp_path, Channels([]), ScriptedRunner())
    engine.alert("lndg", "LNDg: cannot reach LNDg")  # the cycle said it already
    job = DailyReports(DownReporter(), engine, _nothing)  # type: ignore[arg-type]
    assert await job.tick() == []
    assert [e.key for e in events if isinstance(e, AlertRaised)] == ["lndg"]
    assert "is waiting for LNDg" in caplog.text  # the wait is in the log only
    # LNDg's own alert gone but the report still waiting (another cause): it is said.
    engine.clear("lndg", "LNDg is reachable again")
    job._retry_at = 0.0
    await job.tick()
    assert [e.key for e in events if isinstance(e, AlertRaised)] == ["lndg", "report"]


@pytest.mark.subprocess
def test_lndg_rejecting_the_credentials_at_start_is_one_alert_in_the_chat(
    tmp_path: Path,
) -> None:
    with FakeLndg() as lndg, FakeTelegram(token=TOKEN) as telegram:
        lndg.set_fault("401")
        node = bot_node(
            tmp_path, lndg.url, telegram.url, token=TOKEN, chat_id=CHAT, sleep_seconds=1
        )
        with running(node) as daemon:
            telegram.wait_for_message(CHAT, text="⚠️ LNDg", timeout=30)
            # the report job's first round (5 s after start) meets the same refusal
            daemon.wait_for_log(r"daily report for \S+ is waiting for LNDg", timeout=30)
            time.sleep(2)  # an alert it raised would be on its way to the chat by now
            code, _ = daemon.stop()
        alerts = [
            str(c.params["text"])
            for c in telegram.calls_to("sendMessage")
            if c.ok and str(c.params["text"]).startswith("⚠️")
        ]
    assert code == 0
    assert len(alerts) == 1, alerts
    assert "rejected the credentials" in alerts[0]
