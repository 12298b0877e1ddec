"""Light on LNDg: the whole channel list at most every CHANNEL_LIST_SECONDS, a run's two
channels read fresh before it starts, forwards moving the estimate in between.

The engine and LndgClient against the fake LNDg over a real loopback socket; the fake's
request log says what LNDg was asked.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from bench.simulate import SimConfig, SimNode
from core.channel_book import ChannelBook
from core.engine import Engine, Pacing
from core.fresh_pair import requalify
from core.lndg import LndgClient
from core.models import Channel
from core.node_records import Forward
from core.settings import Settings, load_settings
from core.state import StateStore
from sim.lndg import FakeLndg, _Reply, channel_row, forward_row
from sim.nodes import node_channels
from tests.test_engine import ScriptedRunner
from tests.test_lndg_client import PASSWORD, client_for
from tests.test_pairing import channel

LIST_SECONDS = 1800
PACING = Pacing(refresh_seconds=0.1, detail_seconds=0.3, max_snapshot_age=60)


def rows() -> list[dict[str, Any]]:
    """A source full of outbound, a depleted AR target, and an AR channel just in its band
    (local 25 %, refilled below 20 %)."""
    return [
        channel_row("800000x1x0", capacity=1_000_000, local_balance=990_000, remote_balance=0),
        channel_row(
            "800000x11x0",
            capacity=1_000_000,
            local_balance=50_000,
            remote_balance=940_000,
            auto_rebalance=True,
            ar_in_target=80,
        ),
        channel_row(
            "800000x12x0",
            capacity=1_000_000,
            local_balance=250_000,
            remote_balance=740_000,
            auto_rebalance=True,
            ar_in_target=80,
        ),
    ]


class SlowDetailLndg(FakeLndg):
    """An LNDg whose channel detail answers take `slow_details` seconds (the rest is quick)."""

    slow_details = 0.0
    blocked_details = False  # a proxy in front of LNDg answering 404 for channel details

    def _detail(self, kind: str, key: str, *args: Any) -> _Reply:
        if kind == "channels" and self.slow_details:
            time.sleep(self.slow_details)
        if kind == "channels" and self.blocked_details:
            return super()._detail(kind, "no-such-channel", *args)
        return super()._detail(kind, key, *args)


@pytest.fixture
def fake() -> Iterator[SlowDetailLndg]:
    with SlowDetailLndg(channels=rows(), password=PASSWORD) as server:
        yield server


def ids(fake: FakeLndg) -> tuple[str, str, str]:
    """The source, the depleted target, the channel in its band."""
    a, b, c = (str(r["chan_id"]) for r in fake.channels)
    return a, b, c


def is_list(path: str) -> bool:
    return path.split("?")[0] == "/api/channels/"


def is_detail(path: str) -> bool:
    return path.startswith("/api/channels/") and not is_list(path)


def is_forwards(path: str) -> bool:
    return path.startswith("/api/forwards/")


def set_row(fake: FakeLndg, chan_id: str, **fields: Any) -> None:
    with fake.lock:
        for row in fake.channels:
            if row["chan_id"] == chan_id:
                row.update(fields)


@dataclass
class Setup:
    engine: Engine
    runner: ScriptedRunner
    client: LndgClient
    offset: list[float]  # seconds added to the engine's clock

    def later(self, seconds: float) -> None:
        self.offset[0] += seconds


def light_engine(
    settings: Settings,
    store: StateStore,
    client: LndgClient,
    runner: ScriptedRunner,
    pacing: Pacing,
    clock: Callable[[], float] = time.time,
) -> Engine:
    """The engine as the daemon wires it: the list, channel details and forwards from LNDg."""

    async def fetch() -> list[Channel]:
        return (await client.fetch_channels()).channels

    return Engine(
        settings,
        store,
        fetch,
        runner,
        pacing=pacing,
        clock=clock,
        fetch_channel=client.fetch_channel,
        fetch_forwards=client.fetch_forwards,
    )


@pytest.fixture
async def setup(tmp_path: Path, fake: FakeLndg) -> AsyncIterator[Setup]:
    offset = [0.0]
    runner = ScriptedRunner(delay=0.02)
    settings = load_settings(
        None, data_dir=tmp_path, max_workers=2, channel_list_seconds=LIST_SECONDS
    )
    store = StateStore(tmp_path / "state.sqlite3")
    async with client_for(fake, timeout=0.3, attempts=1) as client:
        clock = lambda: time.time() + offset[0]  # noqa: E731 - the test moves it on
        engine = light_engine(settings, store, client, runner, PACING, clock)
        yield Setup(engine, runner, client, offset)
    store.close()


async def planned_once(setup: Setup) -> None:
    """A first cycle reads the list and plans, starting nothing (a dry run)."""
    await asyncio.wait_for(setup.engine.cycle(dry_run=True), 10)
    setup.later(60)  # then the list is a minute old: fresh reads are needed before a run


async def test_a_target_refilled_meanwhile_starts_no_run(fake: FakeLndg, setup: Setup) -> None:
    source, target, _ = ids(fake)
    await planned_once(setup)
    set_row(fake, target, local_balance=600_000, remote_balance=390_000)  # LNDg's own AR did it
    report = await asyncio.wait_for(setup.engine.cycle(), 10)
    assert setup.runner.started == []
    assert report.results == ()
    assert setup.engine.status.last_cycle_stale == 1
    assert fake.traffic(is_list)[0] == 1  # the estimate was used, and corrected by details
    assert fake.traffic(lambda p: p == f"/api/channels/{target}/")[0] == 1
    assert fake.traffic(lambda p: p == f"/api/channels/{source}/")[0] == 0  # target first


async def test_a_target_whose_ar_was_switched_off_in_lndg_is_not_used(
    fake: SlowDetailLndg, setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    _, target, _ = ids(fake)
    await planned_once(setup)
    set_row(fake, target, auto_rebalance=False)
    caplog.set_level(logging.DEBUG, logger="core.engine")
    await asyncio.wait_for(setup.engine.cycle(), 10)
    assert setup.runner.started == []
    line = next(r for r in caplog.records if "read fresh" in r.getMessage())
    assert line.levelno == logging.DEBUG
    assert "is no target now (AR off" in line.getMessage()


async def test_fresh_rows_start_the_run_with_them(fake: FakeLndg, setup: Setup) -> None:
    source, target, _ = ids(fake)
    await planned_once(setup)
    set_row(fake, target, local_balance=100_000, remote_balance=890_000)  # still a target
    await asyncio.wait_for(setup.engine.cycle(), 10)
    assert setup.runner.started[0] == (source, target)
    assert fake.traffic(is_detail)[0] >= 2
    assert fake.traffic(is_list)[0] == 1


async def test_a_drained_source_gives_way_to_another_in_the_same_step(
    fake: FakeLndg, setup: Setup
) -> None:
    first, target, _ = ids(fake)
    second = channel_row("800000x2x0", capacity=1_000_000, local_balance=900_000, remote_balance=0)
    fake.channels.append(second)
    await planned_once(setup)  # the plan: the fuller source first
    set_row(fake, first, local_balance=0, remote_balance=990_000)  # drained meanwhile
    await asyncio.wait_for(setup.engine.cycle(), 10)
    assert setup.runner.started[0] == (str(second["chan_id"]), target)
    assert setup.engine.status.last_cycle_stale == 1
    assert fake.traffic(is_list)[0] == 1


async def test_a_channel_gone_from_lndg_is_dropped_and_the_list_read_next_cycle(
    fake: FakeLndg, setup: Setup
) -> None:
    _, target, _ = ids(fake)
    await planned_once(setup)
    with fake.lock:
        fake.channels[:] = [r for r in fake.channels if r["chan_id"] != target]
    await asyncio.wait_for(setup.engine.cycle(), 10)
    assert setup.runner.started == []
    assert setup.engine.book.get(target) is None
    assert fake.traffic(is_list)[0] == 1
    await asyncio.wait_for(setup.engine.cycle(), 10)
    assert fake.traffic(is_list)[0] == 2  # forced, though CHANNEL_LIST_SECONDS did not pass


async def test_a_detail_404_for_a_channel_the_list_shows_is_an_alert_not_silence(
    fake: SlowDetailLndg, setup: Setup
) -> None:
    await planned_once(setup)
    fake.blocked_details = True
    await asyncio.wait_for(setup.engine.cycle(), 10)
    assert setup.runner.started == []  # the target not read fresh: nothing spends
    assert not setup.engine.alert_standing("lndg-detail")  # 404 alone: the channel may be gone
    await asyncio.wait_for(setup.engine.cycle(), 10)  # the list read again still shows it
    assert setup.engine.alert_standing("lndg-detail")
    fake.blocked_details = False
    setup.later(60)  # the list's rows are old again: the next run reads its channels
    await asyncio.wait_for(setup.engine.cycle(), 10)
    assert not setup.engine.alert_standing("lndg-detail")  # a detail read answered


@pytest.mark.parametrize("switch", ["pause", "dry run", "exclude source", "exclude target"])
async def test_a_pause_or_exclusion_while_the_fresh_rows_are_read_starts_nothing(
    fake: SlowDetailLndg, setup: Setup, switch: str
) -> None:
    source, target, _ = ids(fake)
    await planned_once(setup)
    fake.slow_details = 0.1  # each detail read takes a while (the client waits 0.3 s)
    engine = setup.engine
    cycle = asyncio.create_task(engine.cycle())
    while not any(is_detail(r.path) for r in fake.requests):
        await asyncio.sleep(0.005)
    if switch == "pause":  # the operator's /pause arrives while LNDg answers
        engine.pause()
    elif switch == "dry run":
        engine.store.dry_run = True
    else:
        engine.store.exclude(source if switch == "exclude source" else target)
    await asyncio.wait_for(cycle, 10)
    assert setup.runner.started == []


async def test_a_detail_timeout_skips_the_pair_and_warns_once(
    fake: SlowDetailLndg, setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    source, target, _ = ids(fake)
    await planned_once(setup)
    fake.slow_details = 1.0
    caplog.set_level(logging.DEBUG, logger="core.engine")
    for _ in range(2):  # two cycles while LNDg does not answer channel details
        report = await asyncio.wait_for(setup.engine.cycle(), 10)
        assert report.results == ()
        assert report.skipped is None  # the list and forwards answer: the cycle runs
    warned = [r for r in caplog.records if "no run starts on channels not read" in r.getMessage()]
    assert [r.levelno for r in warned] == [logging.WARNING, logging.DEBUG]
    assert warned[0].getMessage().startswith(f"channel {target} not read from LNDg's channel")
    assert "did not answer within 0.3s" in warned[0].getMessage()
    asked = [r.path for r in fake.requests if is_detail(r.path)]
    assert asked == [f"/api/channels/{target}/"] * 2  # one per cycle: then the pair is skipped
    assert fake.traffic(is_list)[0] == 1
    assert setup.runner.started == []
    fake.slow_details = 0.0
    await asyncio.wait_for(setup.engine.cycle(), 10)
    assert setup.runner.started[0] == (source, target)  # back to work once LNDg answers


async def test_lndg_down_between_list_reads_is_said_as_before(
    fake: SlowDetailLndg, setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    await planned_once(setup)
    fake.slow_seconds = 1.0
    fake.set_fault("slow")
    caplog.set_level(logging.INFO, logger="core.engine")
    report = await asyncio.wait_for(setup.engine.cycle(), 10)
    assert report.skipped is not None
    assert "did not answer within" in report.skipped
    assert setup.engine.alert_standing("lndg")
    assert setup.runner.started == []
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("forwards since the last channel list not read (") for line in lines)
    fake.set_fault(None)
    await asyncio.wait_for(setup.engine.cycle(), 10)
    assert not setup.engine.alert_standing("lndg")


async def test_a_failing_list_read_mid_cycle_warns_once(
    fake: SlowDetailLndg, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = load_settings(None, data_dir=tmp_path, max_workers=2, channel_list_seconds=1)
    runner = ScriptedRunner(delay=2.0)  # one run holds the cycle open; the other worker re-plans
    with StateStore(tmp_path / "state.sqlite3") as store:
        async with client_for(fake, timeout=0.3, attempts=1) as client:
            pacing = replace(PACING, replan_seconds=0.2)
            engine = light_engine(settings, store, client, runner, pacing)
            caplog.set_level(logging.DEBUG, logger="core.engine")
            cycle = asyncio.create_task(engine.cycle())
            while not runner.started:
                await asyncio.sleep(0.01)
            fake.slow_seconds = 1.0
            fake.set_fault("slow")  # every list read from now on times out
            await asyncio.wait_for(cycle, 10)
    failed = [r for r in caplog.records if r.getMessage().startswith("channel list not read")]
    assert len(failed) >= 2  # re-planned while LNDg was down
    assert [r.levelno for r in failed][:2] == [logging.WARNING, logging.DEBUG]
    assert sum(r.levelno == logging.WARNING for r in failed) == 1


async def test_forwards_move_the_estimate_without_a_list_read(fake: FakeLndg, setup: Setup) -> None:
    source, target, routed = ids(fake)
    await planned_once(setup)
    # The channel in its band routed 100k out (and LNDg's row shows it): 15 %, a target now.
    fake.forwards.append(
        forward_row(chan_id_in=target, chan_id_out=routed, amt_out_msat=100_000_000, fee=10.0)
    )
    set_row(fake, routed, local_balance=150_000, remote_balance=840_000)
    set_row(fake, target, local_balance=900_000, remote_balance=90_000)  # refilled meanwhile
    await asyncio.wait_for(setup.engine.cycle(), 10)
    assert (source, routed) in setup.runner.started
    assert fake.traffic(is_list)[0] == 1
    assert fake.traffic(is_forwards)[0] == 1  # one incremental read at the cycle's start


async def test_the_list_is_read_at_most_once_per_channel_list_seconds(
    fake: FakeLndg, setup: Setup
) -> None:
    source, target, _ = ids(fake)
    for _ in range(4):  # cycles every 5 minutes, each with runs: 20 minutes
        await asyncio.wait_for(setup.engine.cycle(), 10)
        setup.later(300)
        set_row(fake, target, local_balance=50_000, remote_balance=940_000)  # depleted again
    assert len(setup.runner.started) >= 4
    assert fake.traffic(is_list)[0] == 1
    setup.later(LIST_SECONDS - 4 * 300)
    await asyncio.wait_for(setup.engine.cycle(), 10)
    assert fake.traffic(is_list)[0] == 2
    assert setup.runner.started[-1] == (source, target)


async def test_pairs_and_manual_cycles_read_the_list_fresh(fake: FakeLndg, setup: Setup) -> None:
    _, target, _ = ids(fake)
    await planned_once(setup)
    set_row(fake, target, alias="renamed", local_balance=60_000, remote_balance=930_000)
    channels, pairs = await setup.engine.pairs()
    assert {c.chan_id: c.alias for c in channels}[target] == "renamed"
    assert fake.traffic(is_list)[0] == 2
    assert len(pairs) == 1
    await asyncio.wait_for(setup.engine.cycle(ignore_pause=True, dry_run=True), 10)
    assert fake.traffic(is_list)[0] == 3  # /run and `cycle` read it too


# -- the pure parts ----------------------------------------------------------------------------


def forward(number: int, at: float, out: str, into: str, sats: int) -> Forward:
    return Forward(
        id=number,
        forward_date=dt.datetime.fromtimestamp(at, dt.UTC),
        chan_id_in=into,
        chan_id_out=out,
        amt_in_msat=sats * 1000 + 1000,
        amt_out_msat=sats * 1000,
        fee_sat=1.0,
    )


def test_the_book_moves_rows_by_new_forwards_only_after_each_rows_read() -> None:
    a = channel(1, local_balance=500_000)
    b = channel(2, local_balance=100_000)
    book = ChannelBook(list_seconds=1800)
    assert book.due(0)
    book.reset([a, b], 1000.0)
    assert not book.due(2799)
    assert book.due(2800)
    assert book.forwards_since() == 1000.0
    moved = book.apply_forwards(
        [
            forward(7, 999.0, a.chan_id, b.chan_id, 10_000),  # in the list already
            forward(8, 1010.0, a.chan_id, b.chan_id, 20_000),
            forward(8, 1010.0, a.chan_id, b.chan_id, 20_000),  # listed twice: once
        ]
    )
    assert moved == 2
    now = {c.chan_id: c for c in book.channels()}
    assert now[a.chan_id].local_balance == 480_000
    assert now[a.chan_id].remote_balance == a.remote_balance + 20_000
    assert now[b.chan_id].local_balance == 120_001
    assert book.forwards_since() == 1000.0  # from the list's read, with LNDg's lag
    book.apply_forwards([forward(10, 1100.0, a.chan_id, b.chan_id, 0)])
    assert book.forwards_since() == 1100.0 - 60
    fresh_a = channel(1, local_balance=470_000)
    book.patch(fresh_a, 1020.0)  # the row read alone replaces the estimate
    book.apply_forwards([forward(11, 1015.0, a.chan_id, b.chan_id, 5_000)])  # before that read
    assert book.get(a.chan_id) == fresh_a
    assert book.get(b.chan_id).local_balance == 125_003  # type: ignore[union-attr]
    book.drop(b.chan_id)
    assert book.get(b.chan_id) is None
    assert book.due(1021)


def test_the_book_never_moves_a_balance_beyond_the_channel() -> None:
    a = channel(1, local_balance=10_000)
    book = ChannelBook(list_seconds=1800)
    book.reset([a], 0.0)
    book.apply_forwards([forward(1, 5.0, a.chan_id, "9", 50_000)])
    row = book.get(a.chan_id)
    assert row is not None
    assert row.local_balance == 0
    assert row.remote_balance <= row.capacity


def test_requalify_says_why_a_pair_no_longer_holds() -> None:
    source = channel(1, local_balance=900_000)
    target = channel(11, local_balance=10_000, auto_rebalance=True)
    assert requalify(source, target).target == target  # type: ignore[union-attr]
    full = target.model_copy(update={"local_balance": 950_000})
    assert "is no target now" in str(requalify(source, full))
    drained = source.model_copy(update={"local_balance": 0})
    assert "is no source now" in str(requalify(drained, target))
    assert "closed, inactive" in str(requalify(source, target, excluded={target.chan_id}))


def test_a_row_lndg_has_not_synced_since_keeps_the_forwards_counted_on_it() -> None:
    a = channel(1, local_balance=500_000)
    book = ChannelBook(list_seconds=1800)
    book.reset([a], 0.0)
    book.apply_forwards([forward(1, 5.0, a.chan_id, "9", 20_000)])
    book.patch(a.model_copy(update={"alias": "same balances"}), 10.0)  # LNDg not synced yet
    row = book.get(a.chan_id)
    assert row is not None
    assert row.local_balance == 480_000  # what the planner saw stays: no false "moved"
    assert row.alias == "same balances"
    synced = a.model_copy(update={"local_balance": 481_000, "remote_balance": 519_000})
    book.patch(synced, 20.0)
    assert book.get(a.chan_id) == synced
    book.patch(synced.model_copy(update={"is_active": False}), 30.0)
    assert book.get(a.chan_id) is None


async def test_the_benchmarks_detail_read_is_the_row_its_list_shows() -> None:
    config = replace(SimConfig(), channels=40, seed=3)
    node = SimNode(node_channels(40, 3), config)
    node.local[next(iter(node.local))] -= 1  # a move LNDg has not synced: not shown yet
    listed_rows = await node.fetch()
    for row in listed_rows:
        assert await node.fetch_channel(row.chan_id) == row
