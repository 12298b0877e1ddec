"""The feed: typed notices in the state store, handed to one sink in order, each once."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from pathlib import Path

import pytest

from core.events import (
    AlertCleared,
    AlertRaised,
    DaemonStarted,
    DaemonStopping,
    Mode,
    Notice,
    RebalanceLanded,
    ReportReady,
    Text,
)
from core.feed import DeliveryHeld, Feed, FeedPump, LogSink
from core.models import StatLine
from core.state import StateStore


class Recorder:
    """A sink that takes what it is given, or holds once when told to."""

    def __init__(self) -> None:
        self.batches: list[list[Notice]] = []
        self.hold = False

    async def deliver(self, notices: Sequence[Notice]) -> None:
        if self.hold:
            self.hold = False
            raise DeliveryHeld(0)
        self.batches.append(list(notices))


async def test_every_kind_of_notice_comes_back_as_it_went_in_and_in_order(
    tmp_path: Path,
) -> None:
    with StateStore(tmp_path / "state.sqlite3") as store:
        feed = Feed(store)
        started = DaemonStarted(Mode(dry_run=True, paused_until=float("inf")), 60, 3)
        feed.listen(started)
        lines = [StatLine(1764021421, "3", "11", 50_000_000, 12_500)] * 2
        landed = store.record_stat_lines([(line, "Src", "Tgt") for line in lines], (1, 100))
        report = ReportReady(dt.date(2026, 11, 24), "Rebalancing on Tue 2026-11-24", b"\x89PNG")
        feed.put(report)
        for notice in (AlertRaised("lndg", "LNDg: down"), AlertCleared("lndg", "back")):
            feed.listen(notice)
        feed.put(Text("<b>banner</b>"))
        feed.listen(DaemonStopping(Mode(dry_run=False)))
        sink = Recorder()
        pump = FeedPump(store, sink)
        sink.hold = True
        assert await pump.flush() == 0  # held (an outage): nothing marked
        assert sink.batches == []
        assert await pump.flush() == 8
        assert await pump.flush() == 0  # nothing twice
    assert sink.batches == [
        [started],
        [RebalanceLanded((r,)) for r in landed],  # rows that landed together leave together
        [report],
        [AlertRaised("lndg", "LNDg: down")],
        [AlertCleared("lndg", "back")],
        [Text("<b>banner</b>")],
        [DaemonStopping(Mode(dry_run=False))],
    ]


async def test_an_unreadable_row_is_dropped_with_a_line_and_the_rest_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with StateStore(tmp_path / "state.sqlite3") as store:
        store.enqueue("alert", {"message": "no key"})
        store.enqueue("gossip", {})
        Feed(store).put(AlertRaised("stat", "stat CSV: unreadable"))
        sink = Recorder()
        assert await FeedPump(store, sink).flush() == 3
        assert store.pending_messages() == []
    assert sink.batches == [[AlertRaised("stat", "stat CSV: unreadable")]]
    assert "feed row 1 (alert) is unreadable" in caplog.text
    assert "feed row 2 has an unknown kind 'gossip'; dropped" in caplog.text


async def test_headless_the_log_gets_rebalances_and_reports_in_the_one_number_format(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with StateStore(tmp_path / "state.sqlite3") as store:
        line = StatLine(1764021421, "3", "11", 69_000_000, 12_500)
        store.record_stat_lines([(line, "Src", "")], (1, 100))
        Feed(store).put(ReportReady(dt.date(2026, 11, 24), "Node: 1\nRuns: none", b""))
        assert await FeedPump(store, LogSink()).flush() == 2
    assert "rebalanced 69,000 sat Src -> 11, fee 12.5 sat (181 ppm)" in caplog.text
    assert "daily report: Node: 1 | Runs: none" in caplog.text
