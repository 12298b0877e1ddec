"""Spending by the node's own rules, end to end through the engine and the loopback LNDg.

Hand-computed figures: the engine reads channels, LNDg's settings, forwards, payments and
open rebalancer attempts over HTTP from the stand-in, and each run it starts carries its own
fee limit and amount (what `core.regolancer_config.build_config` writes for regolancer).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from core.engine import Engine
from core.events import AlertCleared, AlertRaised, Event, EventBus
from core.lndg import LndgClient
from core.models import Channel, Outcome, Pair, RunResult, StatLine
from core.settings import load_settings
from core.spend_guard import OPEN_ATTEMPTS_SECONDS, SpendGuard
from core.state import StateStore
from sim.lndg import FakeLndg, channel_row, forward_row, payment_row, rebalance_row

BERLIN = ZoneInfo("Europe/Berlin")
TEMPLATE: dict[str, Any] = {"fee_limit_ppm": 350, "amount": 50_000, "min_amount": 40_000}
SOURCE, CHEAP, TIGHT, LOOSE, SILENT = "101", "201", "202", "203", "204"


def target(chan_id: str, alias: str, **fields: Any) -> dict[str, Any]:
    return channel_row(
        chan_id,
        alias=alias,
        capacity=1_000_000,
        local_balance=10_000,
        auto_rebalance=True,
        ar_in_target=60,
        **fields,
    )


def node() -> list[dict[str, Any]]:
    source = channel_row(SOURCE, alias="Source", capacity=2_000_000, local_balance=1_900_000)
    return [
        {**source, "local_fee_rate": 50},
        # 200 x 50 % = 100 ppm: not above the peer's 100 ppm, as LNDg skips it
        target(CHEAP, "Cheap", local_fee_rate=200, ar_max_cost=50, remote_fee_rate=100),
        # 1,000 x 30 % = 300 ppm: LNDg's cap is tighter than the template's 350
        target(
            TIGHT,
            "Tight",
            local_fee_rate=1000,
            ar_max_cost=30,
            remote_fee_rate=10,
            ar_amt_target=75_000,
        ),
        # 2,000 x 50 % = 1,000, AR-MaxFeeRate 400: the template's 350 is tighter; no amount
        # of its own, so AR-Target% (3) of 1,000,000 = 30,000, floored at min_amount 40,000
        target(
            LOOSE,
            "Bitrefill",
            local_fee_rate=2000,
            ar_max_cost=50,
            remote_fee_rate=10,
            ar_amt_target=0,
        ),
        target(
            SILENT,
            "Silent",
            local_fee_rate=1000,
            ar_max_cost=50,
            remote_fee_rate=10,
            ar_amt_target=60_000,
        ),
    ]


class Recorder:
    """A runner that keeps each run's pair, limits included, and succeeds."""

    def __init__(self) -> None:
        self.pairs: list[Pair] = []

    async def run(self, pair: Pair, worker: int) -> RunResult:
        self.pairs.append(pair)
        return RunResult(*pair.key, 1.0, 2.0, 0, Outcome.SUCCESS, "")

    async def stop_all(self) -> None:
        return None

    def limits(self) -> dict[str, tuple[int | None, int | None]]:
        return {p.target.chan_id: (p.fee_limit_ppm, p.amount) for p in self.pairs}


@pytest.fixture
def lndg() -> Iterator[FakeLndg]:
    with FakeLndg(password="pw", channels=node(), payments=[], rebalancer=[], settings={}) as fake:
        fake.settings["AR-MaxFeeRate"] = "400"
        yield fake


@asynccontextmanager
async def engine_on(
    tmp_path: Path, fake: FakeLndg, clock: list[float], **settings: Any
) -> AsyncIterator[tuple[Engine, Recorder, list[Event]]]:
    config = load_settings(
        None,
        data_dir=tmp_path,
        lndg_base_url=fake.url,
        lndg_pass="pw",
        history_days=0,
        max_workers=4,
        **settings,
    )
    store = StateStore(tmp_path / "state.sqlite3")
    events: list[Event] = []
    bus = EventBus()
    bus.subscribe(events.append)
    runner = Recorder()
    try:
        async with LndgClient.from_settings(config) as client:

            async def fetch() -> Any:
                return (await client.fetch_channels()).channels

            guard = SpendGuard(config, store, client, TEMPLATE, clock=lambda: clock[0])
            engine = Engine(config, store, fetch, runner, bus, clock=lambda: clock[0], guard=guard)
            yield engine, runner, events
    finally:
        store.close()


def alerts(events: list[Event]) -> list[str]:
    return [e.message for e in events if isinstance(e, AlertRaised)]


async def test_each_run_gets_lndgs_cap_and_amount_and_uneconomic_targets_are_skipped(
    tmp_path: Path, lndg: FakeLndg
) -> None:
    clock = [dt.datetime(2026, 12, 7, 12, tzinfo=dt.UTC).timestamp()]
    async with engine_on(tmp_path, lndg, clock) as (engine, runner, _):
        await engine.cycle()
        assert runner.limits() == {
            TIGHT: (300, 75_000),
            LOOSE: (350, 40_000),
            SILENT: (350, 60_000),
        }
        assert engine.skipped[CHEAP].describe() == "cap 100 ppm <= peer's fee 100 ppm"
        # /pairs shows no pair into the skipped target
        _, view = await engine.pairs()
        assert CHEAP not in {p.target.chan_id for p in view}


async def test_template_policy_keeps_the_templates_keys_and_skips_nothing(
    tmp_path: Path, lndg: FakeLndg
) -> None:
    clock = [dt.datetime(2026, 12, 7, 12, tzinfo=dt.UTC).timestamp()]
    async with engine_on(tmp_path, lndg, clock, fee_policy="template") as (engine, runner, _):
        await engine.cycle()
    assert runner.limits() == {t: (None, None) for t in (CHEAP, TIGHT, LOOSE, SILENT)}
    assert not any(r.path.startswith("/api/settings") for r in lndg.requests)


async def test_a_target_lndg_is_working_on_is_left_alone_until_lndg_is_done(
    tmp_path: Path, lndg: FakeLndg
) -> None:
    peer = next(c["remote_pubkey"] for c in lndg.channels if c["chan_id"] == TIGHT)
    lndg.rebalancer.append(rebalance_row(7, status=1, last_hop_pubkey=peer))
    lndg.rebalancer.append(rebalance_row(8, status=2, last_hop_pubkey="02" + "33" * 32))
    clock = [dt.datetime(2026, 12, 7, 12, tzinfo=dt.UTC).timestamp()]
    async with engine_on(tmp_path, lndg, clock) as (engine, runner, _):
        await engine.cycle()
        assert TIGHT not in runner.limits()
        assert engine.skipped[TIGHT].describe() == "LNDg is rebalancing this peer"
        lndg.rebalancer[0]["status"] = 2  # LNDg's attempt ended
        clock[0] += OPEN_ATTEMPTS_SECONDS
        await engine.cycle()
        assert TIGHT in runner.limits()
        assert TIGHT not in engine.skipped


async def test_the_daily_fee_budget_stops_new_runs_until_local_midnight(
    tmp_path: Path, lndg: FakeLndg
) -> None:
    # 23:10 in Berlin on 7 Dec is 22:10 UTC; 00:30 on 8 Dec in Berlin is still 7 Dec in UTC
    paid = int(dt.datetime(2026, 12, 7, 23, 10, tzinfo=BERLIN).timestamp())
    clock = [dt.datetime(2026, 12, 7, 23, 50, tzinfo=BERLIN).timestamp()]
    async with engine_on(
        tmp_path, lndg, clock, timezone="Europe/Berlin", daily_fee_budget_sats=100
    ) as (engine, runner, events):
        line = StatLine(paid, SOURCE, TIGHT, 300_000_000, 100_000)  # 100 sat in fees
        engine.store.record_stat_lines([(line, "Source", "Tight")], (1, 100))
        await engine.cycle()
        await engine.cycle()
        assert runner.pairs == []
        assert alerts(events) == [
            "daily fee budget reached: 100 sat of 100 sat paid today, "
            "runs resume at 2026-12-08 00:00 Europe/Berlin"
        ]
        clock[0] = dt.datetime(2026, 12, 8, 0, 30, tzinfo=BERLIN).timestamp()
        await engine.cycle()
        assert runner.pairs != []
        cleared = [e.message for e in events if isinstance(e, AlertCleared)]
        assert cleared == ["a new day: the daily fee budget allows runs again"]


async def test_the_earnings_budget_pauses_a_target_that_cost_more_than_it_earned(
    tmp_path: Path, lndg: FakeLndg
) -> None:
    now = dt.datetime(2026, 12, 7, 12, tzinfo=dt.UTC)
    clock = [now.timestamp()]
    day = dt.timedelta(days=1)
    # Bitrefill earned 1,000.5 + 628.5 = 1,629 sat and cost 2,000 + 16 = 2,016 sat in 30 days
    # (a forward 31 days old does not count); Tight earned 100 sat and cost 50.
    lndg.forwards += [
        forward_row(chan_id_in=SOURCE, chan_id_out=LOOSE, fee=1000.5, forward_date=now - day),
        forward_row(chan_id_in=SOURCE, chan_id_out=LOOSE, fee=628.5, forward_date=now - 2 * day),
        forward_row(chan_id_in=SOURCE, chan_id_out=LOOSE, fee=9000, forward_date=now - 31 * day),
        forward_row(chan_id_in=SOURCE, chan_id_out=TIGHT, fee=100, forward_date=now - day),
    ]
    lndg.payments += [
        payment_row(rebal_chan=LOOSE, fee=2000, creation_date=now - 3 * day),
        payment_row(rebal_chan=LOOSE, fee=16, creation_date=now - 4 * day),
        payment_row(rebal_chan=TIGHT, fee=50, creation_date=now - 4 * day),
    ]
    async with engine_on(tmp_path, lndg, clock, earnings_budget_ratio=1) as (
        engine,
        runner,
        events,
    ):
        await engine.cycle()
        await engine.cycle()
    assert set(runner.limits()) == {TIGHT}
    # 50 sat left pays 300 ppm on 166,666 sat: the 75,000 sat run fits, but not rapid
    # rebalancing up to Tight's 990,000 sat of room
    assert runner.limits()[TIGHT] == (300, 75_000)
    assert {p.rapid for p in runner.pairs} == {False}
    assert engine.skipped[SILENT].describe() == "earned nothing in 30 d"
    assert sorted(alerts(events)) == [
        "Bitrefill: spent 2,016 sat, earned 1,629 sat in 30 d: paused",
        "Silent: earned nothing in 30 d: paused",
    ]


class FailingReads:
    """LNDg failing every read the guard makes (a Pi under load, a restart)."""

    async def fetch_settings(self) -> Any:
        raise RuntimeError("LNDg at http://127.0.0.1:9/ is unreachable")

    async def fetch_forwards(self, since: Any, until: Any = None) -> Any:
        raise RuntimeError("LNDg at http://127.0.0.1:9/ is unreachable")

    async def fetch_payments(self, start: Any, end: Any) -> Any:
        raise RuntimeError("LNDg at http://127.0.0.1:9/ is unreachable")

    async def fetch_open_rebalances(self) -> Any:
        raise RuntimeError("LNDg at http://127.0.0.1:9/ is unreachable")


async def test_reads_that_fail_keep_the_last_figures_and_say_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = load_settings(None, data_dir=tmp_path, earnings_budget_ratio=2)
    with StateStore(tmp_path / "state.sqlite3") as store:
        guard = SpendGuard(config, store, FailingReads(), TEMPLATE)
        guard.lndg_peers = frozenset({"02" + "44" * 32})
        await guard.refresh()
        # never read: nothing is spent on unknown earnings, and the reason says so
        skipped = guard.skips([Channel.model_validate(node()[3])])
    assert skipped[LOOSE].describe() == (
        "earnings not read from LNDg yet (EARNINGS_BUDGET_RATIO is on)"
    )
    assert guard.ar.max_fee_rate_ppm == 500  # LNDg's code default until a read works
    assert guard.lndg_peers == frozenset({"02" + "44" * 32})
    assert guard.earnings.ratio == 2
    assert caplog.text.count("not read, keeping the last figures") == 3


async def test_our_own_fees_count_against_the_earnings_budget_before_lndg_shows_them(
    tmp_path: Path, lndg: FakeLndg
) -> None:
    now = dt.datetime(2026, 12, 7, 12, tzinfo=dt.UTC)
    clock = [now.timestamp()]
    day = dt.timedelta(days=1)
    # Tight earned 100 sat and cost 50 in LNDg's figures: within a budget of 1 x earned
    lndg.forwards.append(
        forward_row(chan_id_in=SOURCE, chan_id_out=TIGHT, fee=100, forward_date=now - day)
    )
    lndg.payments.append(payment_row(rebal_chan=TIGHT, fee=50, creation_date=now - 4 * day))
    async with engine_on(tmp_path, lndg, clock, earnings_budget_ratio=1) as (engine, runner, ev):
        await engine.cycle()
        assert TIGHT in runner.limits()
        assert TIGHT not in engine.skipped
        # two minutes later a run of ours paid 51 sat into Tight; LNDg's figures are cached
        # for 10 minutes and would not show it yet: 50 + 51 = 101 sat > 100 sat earned
        clock[0] += 120
        line = StatLine(int(clock[0]), SOURCE, TIGHT, 50_000_000, 51_000)
        read_from = engine.store.stat_position()
        engine.store.record_stat_lines([(line, "Source", "Tight")], (1, 100), read_from=read_from)
        await engine.channels()
        assert engine.skipped[TIGHT].describe() == "spent 101 sat, earned 100 sat in 30 d"
        assert "Tight: spent 101 sat, earned 100 sat in 30 d: paused" in alerts(ev)


async def test_a_target_whose_budget_left_pays_no_run_is_not_started(
    tmp_path: Path, lndg: FakeLndg
) -> None:
    now = dt.datetime(2026, 12, 7, 12, tzinfo=dt.UTC)
    clock = [now.timestamp()]
    day = dt.timedelta(days=1)
    # Tight: earned 100 sat, cost 99: 1 sat left pays 300 ppm on 3,333 sat, below the
    # template's min_amount of 40,000 sat
    lndg.forwards.append(
        forward_row(chan_id_in=SOURCE, chan_id_out=TIGHT, fee=100, forward_date=now - day)
    )
    lndg.payments.append(payment_row(rebal_chan=TIGHT, fee=99, creation_date=now - 4 * day))
    async with engine_on(tmp_path, lndg, clock, earnings_budget_ratio=1) as (engine, runner, _):
        await engine.cycle()
        assert TIGHT not in runner.limits()
        assert engine.guard is not None
        planned = engine.plan(await engine.channels())
        skip = engine.guard.for_run(next(p for p in planned if p.target.chan_id == TIGHT))
    assert not isinstance(skip, Pair)
    assert (
        skip.describe() == "1 sat left of its earnings budget: not the fee of 40,000 sat at 300 ppm"
    )
