"""The daily report job: one alert per LNDg outage, a retry later, a recovery message."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from core.events import AlertCleared, AlertRaised
from core.lndg import LndgUnreachable
from core.report_delivery import ReportUnavailable
from core.runtime import DailyReports
from tests.test_engine import Node, ScriptedRunner, make_engine


class FlakyReporter:
    def __init__(self) -> None:
        self.down = True
        self.calls = 0

    async def deliver_due(self, now: dt.datetime, send: Any) -> list[dt.date]:
        self.calls += 1
        if self.down:
            raise ReportUnavailable(dt.date(2026, 11, 23), LndgUnreachable("LNDg is down"))
        return [dt.date(2026, 11, 23)]


async def _nothing(report: Any, chart: bytes) -> None:
    return None


async def test_outage_alerts_once_waits_and_recovers(tmp_path: Path) -> None:
    engine, events = make_engine(tmp_path, Node([]), ScriptedRunner())
    reporter = FlakyReporter()
    job = DailyReports(reporter, engine, _nothing)  # type: ignore[arg-type]
    assert await job.tick() == []
    assert await job.tick() == []  # within the retry delay: LNDg is not asked again
    assert reporter.calls == 1
    alerts = [e for e in events if isinstance(e, AlertRaised)]
    assert [a.key for a in alerts] == ["report"]
    assert "2026-11-23" in alerts[0].message
    assert "LNDg is down" in alerts[0].message
    reporter.down = False
    job._retry_at = 0.0  # the retry delay has passed
    assert await job.tick() == [dt.date(2026, 11, 23)]
    assert [e.key for e in events if isinstance(e, AlertCleared)] == ["report"]
