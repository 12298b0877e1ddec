"""Issue 12, in process: a pause wins over /run, a run that cannot start ends recorded,
impossible stat lines are refused, and day totals cannot overflow.

The runner here is the real RegolancerRunner with the regolancer stand-in as its child
process, except where a test says otherwise.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from pathlib import Path

import pytest

from core.daemon import STOP_GRACE_SECONDS, Services
from core.engine import START_ALERT, Engine
from core.events import AlertCleared, AlertRaised, Event, EventBus
from core.health import check_health
from core.lndg import LndgClient
from core.models import Channel, Outcome, StatLine
from core.regolancer_config import load_template
from core.report_delivery import Reporter
from core.runner import RegolancerRunner
from core.runtime import stop_services
from core.settings import load_settings
from core.state import StateStore
from core.statfile import MAX_AMOUNT_MSAT, StatLineError, parse_stat_line
from tests.daemon_process import FAKE_REGOLANCER, REPO
from tests.test_engine import Node, ScriptedRunner, make_engine, star_node

TEMPLATE = load_template(REPO / "config.template.json")


def real_runner(tmp_path: Path, log_dir: Path) -> RegolancerRunner:
    return RegolancerRunner(
        binary=str(FAKE_REGOLANCER),
        template=TEMPLATE,
        stat_path=tmp_path / "stat.csv",
        work_dir=tmp_path,
        log_dir=log_dir,
        timeout_seconds=20,
        stop_grace_seconds=(0.3, 0.3),
    )


class Clock:
    """Wall time plus a jump the test controls (to pass a backoff without waiting)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def engine_with(
    tmp_path: Path, runner: RegolancerRunner, clock: Clock
) -> tuple[Engine, list[Event]]:
    settings = load_settings(None, data_dir=tmp_path, max_workers=2)
    events: list[Event] = []
    bus = EventBus()
    bus.subscribe(events.append)
    store = StateStore(tmp_path / "state.sqlite3")
    engine = Engine(settings, store, Node(star_node()).fetch, runner, bus, clock=clock)
    return engine, events


# --- 1. /pause during /run ------------------------------------------------------------------


@pytest.mark.parametrize("paused_before", [False, True], ids=["running", "paused-before"])
async def test_pause_stops_a_manual_cycle_at_once(tmp_path: Path, paused_before: bool) -> None:
    runner = ScriptedRunner(delay=0.2)
    engine, _ = make_engine(tmp_path, Node(star_node()), runner, max_workers=1)
    if paused_before:
        engine.pause()  # /run overrides a pause that was already there ...
    cycle = asyncio.create_task(engine.cycle(ignore_pause=True))
    while not runner.started:
        await asyncio.sleep(0.01)
    engine.pause(time.time() + 3600)  # ... but not a /pause given after it started
    report = await asyncio.wait_for(cycle, 5)
    assert runner.started == [("3", "11")]  # the 3 other planned targets never started
    assert len(report.results) == 1
    assert engine.store.is_paused()


async def test_resume_after_pause_lets_the_next_cycle_run(tmp_path: Path) -> None:
    runner = ScriptedRunner()
    engine, _ = make_engine(tmp_path, Node(star_node()), runner, max_workers=1)
    engine.pause()
    assert (await engine.cycle()).skipped == "paused"
    engine.resume()
    assert len((await engine.cycle()).results) == 4


# --- 3. a run that cannot start ---------------------------------------------------------------


@pytest.mark.subprocess
async def test_a_run_that_cannot_start_is_recorded_backs_off_alerts_once_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the worker logs' directory should be")
    clock = Clock()
    engine, events = engine_with(tmp_path, real_runner(tmp_path, blocker / "logs"), clock)
    with caplog.at_level(logging.INFO):
        report = await asyncio.wait_for(engine.cycle(), 10)
    # Each started run ended with a recorded outcome; then nothing more was started.
    outcomes = [r.outcome for r in engine.store.runs()]
    assert outcomes
    assert set(outcomes) == {Outcome.START_FAILED}
    assert len(outcomes) <= 2  # the first batch of free workers, no retry storm
    assert [r.outcome for r in report.results] == outcomes
    assert "NotADirectoryError" in engine.store.runs()[0].last_line
    assert len(caplog.records) < 40  # was a tight loop: 12,000 lines in 5 s
    raised = [e for e in events if isinstance(e, AlertRaised)]
    assert [e.key for e in raised] == [START_ALERT]
    healthy, line = check_health(engine.store.path)
    assert not healthy
    assert "runs cannot be started" in line

    # Within the backoff a new cycle starts nothing and repeats no alert.
    await asyncio.wait_for(engine.cycle(), 10)
    assert len(engine.store.runs()) == len(outcomes)
    assert len([e for e in events if isinstance(e, AlertRaised)]) == 1

    # Fixed, and past the backoff: the same targets run (the planner was not wedged).
    blocker.unlink()
    clock.offset += 3600
    report = await asyncio.wait_for(engine.cycle(), 30)
    assert {r.outcome for r in report.results} == {Outcome.SUCCESS}
    assert len(report.results) == 4
    assert [e.key for e in events if isinstance(e, AlertCleared)] == [START_ALERT]
    assert check_health(engine.store.path)[0]
    await engine.stop()


@pytest.mark.subprocess
async def test_a_worker_log_on_a_full_disk_loses_log_lines_not_the_run(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    for worker in (1, 2):  # every write fails with ENOSPC, after the spawn too
        (logs / f"worker-{worker}.log").symlink_to("/dev/full")
    runner = real_runner(tmp_path, logs)
    engine, _ = engine_with(tmp_path, runner, Clock())
    report = await asyncio.wait_for(engine.cycle(), 30)
    assert [r.outcome for r in report.results] == [Outcome.SUCCESS] * 4
    assert runner.running == 0
    await asyncio.wait_for(runner.stop_all(), 5)  # was: waited for ever on a lost entry


async def test_no_file_descriptors_at_spawn_is_a_start_failure_not_a_route_verdict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def no_descriptors(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(asyncio, "create_subprocess_exec", no_descriptors)
    engine, events = engine_with(tmp_path, real_runner(tmp_path, tmp_path / "logs"), Clock())
    await asyncio.wait_for(engine.cycle(), 10)
    runs = engine.store.runs()
    assert runs
    assert {r.outcome for r in runs} == {Outcome.START_FAILED}
    assert not any(r.failed_on_route for r in runs)  # no pair is blamed or backed off
    assert [e.key for e in events if isinstance(e, AlertRaised)] == [START_ALERT]
    for run in runs:
        assert engine.planner.backoff((run.source, run.target), time.time()) is None


# --- 11. impossible stat lines and totals ---------------------------------------------------


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        pytest.param(
            f"1764021421,1,2,{MAX_AMOUNT_MSAT + 1},0", "more than 21 million BTC", id="21M"
        ),
        pytest.param(f"1764021421,1,2,{2**63 - 1},0", "more than 21 million BTC", id="2^63"),
        pytest.param("1764021421,1,2,5000,5001", "above amount_msat", id="fee>amount"),
        pytest.param("1893456000,1,2,5000,1", "not a plausible", id="2030"),
        pytest.param("1262304000,1,2,5000,1", "not a plausible", id="2010"),
    ],
)
def test_lines_no_payment_could_produce_are_refused(line: str, reason: str) -> None:
    with pytest.raises(StatLineError, match=reason):
        parse_stat_line(line, now=1_765_000_000)


def test_a_fresh_line_and_one_a_few_hours_ahead_are_accepted() -> None:
    now = 1_765_000_000
    assert parse_stat_line(f"{now},1,2,5000,1", now=now) is not None
    assert parse_stat_line(f"{now + 3 * 3600},1,2,5000,1", now=now) is not None


async def test_impossible_lines_are_warned_once_each_and_the_rest_recorded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine, _ = make_engine(tmp_path, Node(star_node()), ScriptedRunner())
    now = int(time.time())
    engine.settings.stat_path.write_text(
        f"{now},1,11,50000000,12000\n"
        f"{now},1,11,{2**63 - 1},0\n"
        f"{now},1,11,5000,9000\n"
        f"{now},2,12,40000000,8000\n"
    )
    with caplog.at_level(logging.WARNING):
        engine.poll_ledger()
        engine.poll_ledger()
    warnings = [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]
    assert len(warnings) == 2
    totals = engine.store.totals()
    assert (totals.count, totals.amount_sat) == (2, 90_000)


def test_day_totals_do_not_overflow_on_huge_rows(tmp_path: Path) -> None:
    # Rows an older version accepted (up to 2^63 - 1 msat each): /status must still work.
    with StateStore(tmp_path / "state.sqlite3") as store:
        huge = [(StatLine(1764021421, "1", "2", 2**63 - 1, 0), "", "") for _ in range(3)]
        store.record_stat_lines(huge, (1, 100))
        totals = store.totals()
    assert totals.count == 3
    assert totals.amount_sat > 2**63 // 1000


def test_ledger_sums_are_exact_for_real_amounts(tmp_path: Path) -> None:
    with StateStore(tmp_path / "state.sqlite3") as store:
        rows = [(StatLine(1764021421, "1", "2", 123_456_789, 1_001), "", "") for _ in range(7)]
        store.record_stat_lines(rows, (1, 100))
        totals = store.totals()
    assert totals.amount_sat == 7 * 123_456_789 // 1000
    assert totals.fee_sat == pytest.approx(7.007)


# --- 10. shutdown: a cycle stuck on something no abort reaches is cancelled ---------------------


async def test_stop_services_cancels_a_cycle_that_does_not_end_by_itself(tmp_path: Path) -> None:
    # LndgClient.abort() ends every wait on LNDg; this fetch waits on nothing it can reach,
    # so only the bounded wait and the cancel keep the shutdown from hanging.
    async def never() -> list[Channel]:
        await asyncio.Event().wait()
        return []

    settings = load_settings(None, data_dir=tmp_path)
    store = StateStore(tmp_path / "state.sqlite3")
    engine = Engine(settings, store, never, ScriptedRunner(), EventBus())
    lndg = LndgClient("http://127.0.0.1:9")
    services = Services(engine, Reporter.from_settings(settings, store, lndg), lndg)
    cycle = asyncio.create_task(engine.cycle())
    await asyncio.sleep(0.1)
    started = time.monotonic()
    await asyncio.wait_for(stop_services(services), 15)
    assert time.monotonic() - started < STOP_GRACE_SECONDS * 2 + 3
    assert cycle.cancelled()
    await lndg.aclose()
    store.close()
