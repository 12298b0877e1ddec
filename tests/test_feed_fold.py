"""A quieter feed: a run's payments are one message; NOTIFY_DIGEST_MINUTES digests.

Figures by hand: 44,000 + 88,000 sat = 132,000 sat; fees 10 + 25 = 35 sat;
35 / 132,000 = 265.15 ppm -> 265 ppm. With a 50,000 sat payment at 12.5 sat (250 ppm) on
another pair: 182,000 sat in 3 payments, fee 47.5 sat, 47.5 / 182,000 = 260.99 -> 260 ppm.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from bot import render
from bot.outbox import notice_text
from core.engine import Engine
from core.events import (
    AlertRaised,
    DaemonStarted,
    Digest,
    Event,
    EventBus,
    Mode,
    Notice,
    RebalanceLanded,
    RunFinished,
)
from core.feed import ActiveRun, DeliveryHeld, Feed, FeedPump, LogSink, decode
from core.fold import window_start
from core.models import Channel, Outcome, Pair, Rebalance, RunResult, StatLine
from core.settings import load_settings
from core.state import StateStore
from tests.test_pairing import channel

HOUR = 3600
T = 1_764_000_000  # 2025-11-24 16:00:00 UTC, on the hour
A_B = ("11", "22")
C_D = ("33", "44")
ALIASES = {"11": "A", "22": "B", "33": "C", "44": "D"}


class Recorder:
    """A sink that keeps what it is given; holds once when told to."""

    def __init__(self) -> None:
        self.batches: list[list[Notice]] = []
        self.hold = False

    async def deliver(self, notices: Sequence[Notice]) -> None:
        if self.hold:
            self.hold = False
            raise DeliveryHeld(0)
        self.batches.append(list(notices))


def pay(
    store: StateStore, pair: tuple[str, str], ts: int, sat: int, fee_msat: int
) -> list[Rebalance]:
    """One stat line of `pair` becomes a ledger row and its feed row."""
    line = StatLine(ts, pair[0], pair[1], sat * 1000, fee_msat)
    position = store.stat_position() or (1, 0)
    return store.record_stat_lines(
        [(line, ALIASES[pair[0]], ALIASES[pair[1]])],
        (position[0], position[1] + 100),
        read_from=store.stat_position(),
    )


def run(pair: tuple[str, str], start: float, end: float, outcome: Outcome) -> RunResult:
    return RunResult(
        pair[0], pair[1], start, end, 0 if outcome is Outcome.SUCCESS else 2, outcome, ""
    )


def text(batches: list[list[Notice]], min_sats: int = 0) -> list[str | None]:
    return [notice_text(b, min_sats, T, dt.UTC) for b in batches]


async def test_two_payments_of_one_run_are_one_message_when_the_run_ends(tmp_path: Path) -> None:
    going: list[ActiveRun] = [(*A_B, T - 5.5)]
    with StateStore(tmp_path / "state.sqlite3") as store:
        sink = Recorder()
        pump = FeedPump(store, sink, running=lambda: going)
        first = pay(store, A_B, T, 44_000, 10_000)
        assert await pump.flush() == 0  # the run goes on: its message waits
        second = pay(store, A_B, T + 1, 88_000, 25_000)
        Feed(store).put(AlertRaised("lndg", "LNDg: down"))
        assert await pump.flush() == 1  # other notices do not wait for the run
        going.clear()
        store.record_run(run(A_B, T - 5.5, T + 2.1, Outcome.SUCCESS))
        assert await pump.flush() == 2
        assert await pump.flush() == 0
        assert store.pending_messages() == []
    assert sink.batches == [
        [AlertRaised("lndg", "LNDg: down")],
        [RebalanceLanded((*first, *second))],
    ]
    assert text(sink.batches)[1] == (
        "✅ Rebalanced 132,000 sat A → B in 2 payments, fee 35 sat (265 ppm)"
    )


async def test_a_run_cut_short_after_its_first_payment_gets_its_message(tmp_path: Path) -> None:
    with StateStore(tmp_path / "state.sqlite3") as store:
        pay(store, A_B, T, 44_000, 10_000)
        pay(store, A_B, T + 1, 88_000, 25_000)
        # regolancer's own deadline after two steps (exit 2), and one stopped after one
        store.record_run(run(A_B, T - 1, T + 9, Outcome.REBALANCE_TIMEOUT))
        pay(store, C_D, T + 30, 50_000, 12_500)
        store.record_run(run(C_D, T + 20, T + 31, Outcome.STOPPED))
        sink = Recorder()
        assert await FeedPump(store, sink).flush() == 3
    assert text(sink.batches) == [
        "✅ <b>2 rebalances</b>, 182,000 sat, fee 47.5 sat\n"
        "• 132,000 sat A → B in 2 payments, fee 35 sat (265 ppm)\n"
        "• 50,000 sat C → D, fee 12.5 sat (250 ppm)"
    ]


async def test_lines_no_run_explains_go_one_per_line(tmp_path: Path) -> None:
    with StateStore(tmp_path / "state.sqlite3") as store:
        # another tool on A -> B before our run started, and after it ended
        before = pay(store, A_B, T - 60, 20_000, 5_000)
        ours = pay(store, A_B, T, 44_000, 10_000) + pay(store, A_B, T + 1, 88_000, 25_000)
        store.record_run(run(A_B, T - 0.5, T + 2, Outcome.SUCCESS))
        after = pay(store, A_B, T + 3, 30_000, 6_000)
        other = pay(store, C_D, T + 1, 10_000, 1_000) + pay(store, C_D, T + 2, 10_001, 1_000)
        sink = Recorder()
        assert await FeedPump(store, sink).flush() == 6
    assert sink.batches == [
        [
            RebalanceLanded(tuple(before)),
            RebalanceLanded(tuple(ours)),
            RebalanceLanded(tuple(after)),
            RebalanceLanded(tuple(other[:1])),
            RebalanceLanded(tuple(other[1:])),
        ]
    ]


async def test_a_crash_between_the_payments_and_the_runs_end_loses_and_repeats_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.sqlite3"
    with StateStore(path) as store:
        pump = FeedPump(store, Recorder(), running=lambda: [(*A_B, T - 1.0)])
        rows = pay(store, A_B, T, 44_000, 10_000) + pay(store, A_B, T + 1, 88_000, 25_000)
        assert await pump.flush() == 0
    # The daemon died with the run: no record of it; the next one has no run going.
    sink = Recorder()
    with StateStore(path) as store:
        pump = FeedPump(store, sink)
        assert await pump.flush() == 2
        assert await pump.flush() == 0
    assert sink.batches == [[RebalanceLanded(tuple(rows[:1])), RebalanceLanded(tuple(rows[1:]))]]
    # A run recorded just before the crash, its message not yet sent: folded after it.
    with StateStore(tmp_path / "second.sqlite3") as store:
        rows = pay(store, A_B, T, 44_000, 10_000) + pay(store, A_B, T + 1, 88_000, 25_000)
        store.record_run(run(A_B, T - 1, T + 2, Outcome.SUCCESS))
    sink = Recorder()
    with StateStore(tmp_path / "second.sqlite3") as store:
        assert await FeedPump(store, sink).flush() == 2
    assert sink.batches == [[RebalanceLanded(tuple(rows))]]


async def test_notify_min_sats_weighs_the_whole_run(tmp_path: Path) -> None:
    with StateStore(tmp_path / "state.sqlite3") as store:
        pay(store, A_B, T, 3_000, 1_000)
        pay(store, A_B, T + 1, 6_000, 2_000)
        store.record_run(run(A_B, T - 1, T + 2, Outcome.SUCCESS))
        pay(store, C_D, T + 5, 4_000, 1_000)  # alone, below the threshold
        sink = Recorder()
        assert await FeedPump(store, sink).flush() == 3
    assert text(sink.batches, min_sats=5_000) == [
        "✅ Rebalanced 9,000 sat A → B in 2 payments, fee 3 sat (333 ppm)"
    ]
    assert text(sink.batches, min_sats=9_001) == [None]


def test_the_digest_lists_each_pair_and_the_total() -> None:
    landed = [
        RebalanceLanded(
            (
                Rebalance(1, StatLine(T, *A_B, 44_000_000, 10_000), "A", "B"),
                Rebalance(2, StatLine(T + 1, *A_B, 88_000_000, 25_000), "A", "B"),
            )
        ),
        RebalanceLanded((Rebalance(3, StatLine(T + 9, *C_D, 50_000_000, 12_500), "", "D"),)),
    ]
    assert render.digest(T, T + HOUR, landed, dt.UTC) == (
        "🧾 <b>Rebalances 2025-11-24 16:00–17:00</b>\n"
        "<b>Total</b>: 182,000 sat in 3 payments, fee 47.5 sat (260 ppm)\n"
        "• A → B: 132,000 sat in 2 payments, fee 35 sat (265 ppm)\n"
        "• <code>33</code> → D: 50,000 sat in 1 payment, fee 12.5 sat (250 ppm)"
    )
    assert notice_text([Digest(T, T + HOUR, tuple(landed))], 100_000, T, dt.UTC) == (
        "🧾 <b>Rebalances 2025-11-24 16:00–17:00</b>\n"
        "<b>Total</b>: 132,000 sat in 2 payments, fee 35 sat (265 ppm)\n"
        "• A → B: 132,000 sat in 2 payments, fee 35 sat (265 ppm)"
    )
    assert notice_text([Digest(T, T + HOUR, tuple(landed))], 200_000, T, dt.UTC) is None


class Clock:
    """The pump's wall clock, moved by the test; rows keep the real time they were made."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def next_window(self, minutes: int) -> None:
        self.now = window_start(self.now, minutes) + minutes * 60 + 1


async def test_digest_of_a_window_with_two_pairs_and_nothing_for_an_empty_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    clock = Clock()
    opened = window_start(clock.now, 60)
    with StateStore(tmp_path / "state.sqlite3") as store:
        sink = Recorder()
        pump = FeedPump(store, sink, digest_minutes=60, clock=clock)
        now = int(clock.now)
        ours = pay(store, A_B, now, 44_000, 10_000) + pay(store, A_B, now + 1, 88_000, 25_000)
        store.record_run(run(A_B, now - 1, now + 2, Outcome.SUCCESS))
        theirs = pay(store, C_D, now, 50_000, 12_500)
        Feed(store).put(AlertRaised("lndg", "LNDg: down"))
        assert await pump.flush() == 1  # the window is open: only the alert
        clock.next_window(60)
        assert await pump.flush() == 3
        clock.next_window(60)
        assert await pump.flush() == 0  # an empty window sends nothing
        assert store.pending_messages() == []
        assert await FeedPump(store, LogSink(), digest_minutes=60, clock=clock).flush() == 0
    assert sink.batches == [
        [AlertRaised("lndg", "LNDg: down")],
        [
            Digest(
                opened,
                opened + HOUR,
                (RebalanceLanded(tuple(ours)), RebalanceLanded(tuple(theirs))),
            )
        ],
    ]
    # headless, the same digest in one log line
    with StateStore(tmp_path / "headless.sqlite3") as store:
        pay(store, A_B, now, 44_000, 10_000)
        pay(store, A_B, now + 1, 88_000, 25_000)
        store.record_run(run(A_B, now - 1, now + 2, Outcome.SUCCESS))
        assert await FeedPump(store, LogSink(), digest_minutes=60, clock=clock).flush() == 2
    assert (
        "-"
        + dt.datetime.fromtimestamp(window_start(clock.now, 60), dt.UTC).strftime("%H:%M")
        + ": 132,000 sat A -> B in 2 payments, fee 35 sat (265 ppm) | "
        "total 132,000 sat in 2 payments, fee 35 sat (265 ppm)" in caplog.text
    )


async def test_digest_minutes_0_sends_each_run_at_once(tmp_path: Path) -> None:
    with StateStore(tmp_path / "state.sqlite3") as store:
        rows = pay(store, A_B, T, 44_000, 10_000)
        store.record_run(run(A_B, T - 1, T + 2, Outcome.SUCCESS))
        sink = Recorder()
        assert await FeedPump(store, sink, digest_minutes=0, clock=Clock()).flush() == 1
    assert sink.batches == [[RebalanceLanded(tuple(rows))]]


async def test_a_restart_mid_window_loses_nothing_and_repeats_nothing(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    clock = Clock()
    now = int(clock.now)
    sink = Recorder()
    with StateStore(path) as store:
        early = pay(store, A_B, now, 44_000, 10_000)
        assert await FeedPump(store, sink, digest_minutes=15, clock=clock).flush() == 0
    with StateStore(path) as store:  # restarted in the same window
        late = pay(store, C_D, now + 1, 50_000, 12_500)
        pump = FeedPump(store, sink, digest_minutes=15, clock=clock)
        assert await pump.flush() == 0
        clock.next_window(15)
        sink.hold = True  # Telegram is down as the window closes: nothing is marked
        assert await pump.flush() == 0
    with StateStore(path) as store:  # restarted again after the window closed
        pump = FeedPump(store, sink, digest_minutes=15, clock=clock)
        assert await pump.flush() == 2
        assert await pump.flush() == 0
    opened = window_start(now, 15)
    assert sink.batches == [
        [
            Digest(
                opened, opened + 900, (RebalanceLanded(tuple(early)), RebalanceLanded(tuple(late)))
            )
        ]
    ]


def test_the_demo_says_simulation_never_live(tmp_path: Path) -> None:
    assert Mode(dry_run=False, simulated=True).headline(T) == "SIMULATION"
    assert Mode(dry_run=True, simulated=True).headline(T) == "SIMULATION, DRY RUN"
    assert Mode(False, float("inf"), simulated=True).headline(T) == "SIMULATION, PAUSED"
    assert Mode(dry_run=False).headline(T) == "LIVE"
    started = DaemonStarted(Mode(dry_run=False, simulated=True), 5, 4)
    with StateStore(tmp_path / "state.sqlite3") as store:
        Feed(store).put(started)
        (row,) = store.pending_messages()
        assert decode(row, store) == started  # the flag survives the outbox
    assert render.started(started, T, dt.UTC).startswith(
        "🚀 regolancer-orchestrator started: <b>SIMULATION</b>\n"
    )


class SteppingRunner:
    """Pays two rapid-rebalance steps into the stat CSV, then hits its deadline (exit 2)."""

    def __init__(self, stat: Path) -> None:
        self.stat = stat

    async def run(self, pair: Pair, worker: int) -> RunResult:
        started = time.time()
        with self.stat.open("a") as csv:
            csv.write("timestamp,from_channel,to_channel,amount_msat,fees_msat\n")
            for sat, fee_msat in ((44_000, 10_000), (88_000, 25_000)):
                csv.write(f"{int(time.time())},{pair.source.chan_id},{pair.target.chan_id},")
                csv.write(f"{sat * 1000},{fee_msat}\n")
                csv.flush()
                await asyncio.sleep(0.01)
        return RunResult(*pair.key, started, time.time(), 2, Outcome.REBALANCE_TIMEOUT, "")

    async def stop_all(self) -> None:
        return None


async def test_the_engine_records_a_runs_lines_before_the_run_so_the_feed_folds_them(
    tmp_path: Path,
) -> None:
    source = channel(1, local_balance=900_000, alias="Src")
    target = channel(11, local_balance=10_000, auto_rebalance=True, alias="Tgt")
    settings = load_settings(None, data_dir=tmp_path, max_workers=1)
    seen: list[int] = []
    with StateStore(tmp_path / "state.sqlite3") as store:
        bus = EventBus()
        # What the feed can see the moment the run is recorded: all of its lines.

        def on_event(event: Event) -> None:
            if isinstance(event, RunFinished):
                seen.append(len(store.ledger()))

        bus.subscribe(on_event)

        async def fetch() -> list[Channel]:
            return [source, target]

        engine = Engine(settings, store, fetch, SteppingRunner(settings.stat_path), bus)
        sink = Recorder()
        await engine.cycle()
        assert await FeedPump(store, sink, running=engine.running).flush() == 2
    assert seen == [2]
    assert text(sink.batches) == [
        "✅ Rebalanced 132,000 sat Src → Tgt in 2 payments, fee 35 sat (265 ppm)"
    ]
