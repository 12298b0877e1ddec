"""Learning from the past: LNDg's rows and our run records become planner observations."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.daemon import history_loader
from core.engine import Engine
from core.history import Observation, from_lndg_failures, from_payments, from_runs
from core.lndg import LndgClient, LndgUnreachable
from core.models import Channel, Outcome, RunResult
from core.node_records import LndgRebalance, Payment
from core.settings import load_settings
from core.state import StateStore
from sim.lndg import FakeLndg, payment_row, rebalance_row
from tests.test_engine import Node, ScriptedRunner, star_node
from tests.test_pairing import channel

SOURCE, TARGET = "879609302301671425", "879609302301671426"  # SourceA, TargetB in the samples
TARGET_PEER = "02" + "22" * 32


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_payments_give_the_routes_that_worked_whatever_tool_paid_them() -> None:
    rows = [
        payment_row("aa" * 32, chan_out="1", rebal_chan="11", creation_date="2026-11-20T10:00:00"),
        payment_row("bb" * 32, chan_out="1", rebal_chan=None),  # an ordinary payment
        payment_row("cc" * 32, chan_out="MPP", rebal_chan="12"),  # first hop unknown
    ]
    payments = [Payment.model_validate(row) for row in rows]
    assert from_payments(payments) == [Observation(at("2026-11-20T10:00:00"), "11", "1", True)]


def test_lndg_failures_name_the_target_by_its_peer_and_the_source_when_alone() -> None:
    channels = [
        channel(1, remote_pubkey="02" + "01" * 32),
        channel(11, remote_pubkey="02" + "11" * 32, auto_rebalance=True),
        channel(12, remote_pubkey="02" + "12" * 32, auto_rebalance=True),
        channel(13, remote_pubkey="02" + "12" * 32, auto_rebalance=True),  # same peer as 12
    ]
    rows = [
        rebalance_row(1, status=4, outgoing_chan_ids=["1"], last_hop_pubkey="02" + "11" * 32),
        rebalance_row(2, status=3, outgoing_chan_ids=["1", "2"], last_hop_pubkey="02" + "11" * 32),
        rebalance_row(3, status=2, outgoing_chan_ids=["1"], last_hop_pubkey="02" + "11" * 32),
        rebalance_row(4, status=499, outgoing_chan_ids=["1"], last_hop_pubkey="02" + "11" * 32),
        rebalance_row(5, status=408, outgoing_chan_ids=["1"], last_hop_pubkey="02" + "11" * 32),
        rebalance_row(6, status=4, outgoing_chan_ids=["1"], last_hop_pubkey="02" + "12" * 32),
        rebalance_row(7, status=4, outgoing_chan_ids=["1"], last_hop_pubkey="02" + "99" * 32),
    ]
    attempts = [LndgRebalance.model_validate(row) for row in rows]
    seen = from_lndg_failures(attempts, channels)
    # 1: a pair failure; 2: several outgoing channels, only the target learns; 3 succeeded
    # (counted from payments); 4, 5: cancelled or LNDg's own failure; 6: two channels to that
    # peer; 7: a peer we have no channel with
    assert [(o.target, o.source, o.won) for o in seen] == [("11", "1", False), ("11", None, False)]
    assert seen[0].at == attempts[0].stop.timestamp()  # type: ignore[union-attr]


def test_our_runs_count_route_failures_only_as_the_planner_does() -> None:
    def run(outcome: Outcome, line: str = "", started: float = 5.0) -> RunResult:
        return RunResult("1", "11", started, started + 60, 1, outcome, line)

    runs = [
        run(Outcome.NO_ROUTE, "Error during picking channel: no routes", 1.0),
        run(Outcome.REBALANCE_TIMEOUT, "Rebalancing timed out", 2.0),
        run(Outcome.KILLED, "", 3.0),
        run(Outcome.CRASHED, "panic: runtime error", 4.0),
        run(Outcome.NOT_QUALIFIED, "no channelpairs available"),  # stale balances: no route tried
        run(Outcome.SUCCESS),  # counted from LNDg's payments
        run(Outcome.STOPPED),
        run(Outcome.DRY_RUN),
        run(Outcome.LND_ERROR, "rpc error"),
        run(Outcome.BINARY_MISSING),
    ]
    assert from_runs(runs) == [Observation(t, "11", "1", False) for t in (1.0, 2.0, 3.0, 4.0)]


async def test_the_daemon_reads_lndg_and_its_own_runs_over_the_loopback(tmp_path: Path) -> None:
    with FakeLndg(password="pw") as fake:
        settings = load_settings(
            None, data_dir=tmp_path, lndg_base_url=fake.url, lndg_pass="pw", history_days=7
        )
        store = StateStore(tmp_path / "state.sqlite3")
        ours = at("2026-11-23T08:00:00")
        store.record_run(RunResult(SOURCE, TARGET, ours, ours + 480, 1, Outcome.NO_ROUTE, ""))
        store.record_run(RunResult(SOURCE, TARGET, ours, ours + 1, None, Outcome.STOPPED, ""))
        old = at("2026-11-10T08:00:00")  # before the 7 days
        store.record_run(RunResult(SOURCE, TARGET, old, old + 480, 1, Outcome.NO_ROUTE, ""))
        async with LndgClient.from_settings(settings) as lndg:
            channels = (await lndg.fetch_channels()).channels
            load = history_loader(
                settings, store, lndg, now=lambda: datetime(2026, 11, 25, tzinfo=UTC)
            )
            assert load is not None
            seen = await load(channels)
        store.close()
        paths = [request.path for request in fake.requests]
    # the samples: SourceA -> TargetB paid (a payment with rebal_chan); LNDg's attempt from
    # SourceA alone to TargetB's peer failed (status 3); its success is the same payment
    assert sorted(seen, key=lambda o: o.at) == [
        Observation(ours, TARGET, SOURCE, False),
        Observation(at("2026-11-24T21:27:02.901837"), TARGET, SOURCE, True),
        Observation(at("2026-11-24T21:33:02.901837"), TARGET, SOURCE, False),
    ]
    rebalancer = next(p for p in paths if p.startswith("/api/rebalancer/"))
    assert "stop__gt=2026-11-18T00%3A00%3A00" in rebalancer
    assert "status" not in rebalancer  # failures too
    assert history_loader(settings.model_copy(update={"history_days": 0}), store, lndg) is None


class Recorder:
    def __init__(self, observations: list[Observation], error: Exception | None = None) -> None:
        self.observations = observations
        self.error = error
        self.calls: list[list[str]] = []

    async def __call__(self, channels: Sequence[Channel]) -> list[Observation]:
        self.calls.append([c.chan_id for c in channels])
        await asyncio.sleep(0)
        if self.error is not None:
            raise self.error
        return self.observations


def engine_with(tmp_path: Path, runner: ScriptedRunner, history: Recorder) -> Engine:
    settings = load_settings(None, data_dir=tmp_path, max_workers=1)
    store = StateStore(tmp_path / "state.sqlite3")
    return Engine(settings, store, Node(star_node()).fetch, runner, history=history)


async def test_the_first_cycle_starts_from_the_routes_history_knows(tmp_path: Path) -> None:
    runner = ScriptedRunner()
    history = Recorder([Observation(1.0, "11", "1", won=True)])
    engine = engine_with(tmp_path, runner, history)
    await engine.cycle()
    await engine.cycle()
    # without history 11 (most depleted) would take 3 (most surplus) first
    assert runner.started[0] == ("1", "11")
    assert len(history.calls) == 1  # once per start, with the channels LNDg listed
    assert history.calls[0] == [c.chan_id for c in star_node()]
    engine.store.close()


async def test_history_that_cannot_be_read_is_a_warning_not_a_stop(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    runner = ScriptedRunner()
    history = Recorder([], LndgUnreachable("LNDg at http://127.0.0.1:9/ is unreachable"))
    engine = engine_with(tmp_path, runner, history)
    with caplog.at_level(logging.WARNING, logger="core.engine"):
        await engine.cycle()
    assert "history not read, starting without it: LNDg at http://127.0.0.1:9/" in caplog.text
    assert runner.started[0] == ("3", "11")  # planned as without history
    engine.store.close()
