"""The planner: per target, most depleted first, best free source, guards and memory."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

import core.planner
from core.history import Observation
from core.models import Channel, Outcome, Pair, RunResult
from core.pairing import PairView, build_pairs, count_pairs, make_pair
from core.planner import Planner, PlannerConfig, PolicySwitches
from tests.test_pairing import channel


def star() -> list[Channel]:
    """3 sources (ids 1-3, 3 has the most surplus) and 4 targets (11 most depleted)."""
    sources = [channel(i, local_balance=900_000 + i) for i in (1, 2, 3)]
    targets = [channel(10 + i, local_balance=10_000 * i, auto_rebalance=True) for i in (1, 2, 3, 4)]
    return sources + targets


def result(pair: Pair, outcome: Outcome, last_line: str = "") -> RunResult:
    return RunResult(pair.source.chan_id, pair.target.chan_id, 0.0, 1.0, 1, outcome, last_line)


def keys(pairs: list[Pair]) -> list[tuple[str, str]]:
    return [p.key for p in pairs]


def by_id(channels: list[Channel], chan_id: int) -> Channel:
    return next(c for c in channels if c.chan_id == str(chan_id))


def pair_of(channels: list[Channel], source: int, target: int) -> Pair:
    pair = make_pair(by_id(channels, source), by_id(channels, target))
    assert pair is not None
    return pair


def test_plan_gives_each_target_its_best_source_preferring_unused_ones() -> None:
    assert keys(Planner().plan(star(), 0.0)) == [("3", "11"), ("2", "12"), ("1", "13"), ("3", "14")]


def test_next_pairs_are_disjoint_skip_busy_channels_and_respect_free_workers() -> None:
    planner = Planner(switches=PolicySwitches(follow_plan=False))
    assert keys(planner.next_pairs(star(), set(), 4, 0.0)) == [
        ("3", "11"),
        ("2", "12"),
        ("1", "13"),
    ]
    assert keys(planner.next_pairs(star(), {"3", "12"}, 4, 0.0)) == [("2", "11"), ("1", "13")]
    assert keys(planner.next_pairs(star(), set(), 1, 0.0)) == [("3", "11")]
    assert planner.next_pairs(star(), set(), 0, 0.0) == []


def test_next_pairs_never_enumerates_the_cross_product(monkeypatch: pytest.MonkeyPatch) -> None:
    sources = [channel(i, local_balance=800_000 + i) for i in range(1, 301)]
    targets = [channel(1000 + i, local_balance=i, auto_rebalance=True) for i in range(1, 301)]
    made: list[int] = []
    real = make_pair

    def counting(source: Channel, target: Channel) -> Pair | None:
        made.append(1)
        return real(source, target)

    monkeypatch.setattr(core.planner, "make_pair", counting)
    picked = Planner().next_pairs(sources + targets, set(), 8, 0.0)
    assert len(picked) == 8
    assert len(made) == 8  # 90,000 pairs exist; eight were built
    made.clear()
    assert len(Planner().plan(sources + targets, 0.0)) == 300
    assert len(made) == 300


def test_a_failing_pair_backs_off_exponentially_and_a_success_resets_it() -> None:
    channels = star()
    pair = pair_of(channels, 3, 11)
    config = PlannerConfig(backoff_seconds=100, backoff_max_seconds=350)
    planner = Planner(config, PolicySwitches(demote_targets=False))
    waits = []
    for now in (0.0, 1000.0, 2000.0, 3000.0):
        planner.finished(pair, result(pair, Outcome.NO_ROUTE), now)
        backoff = planner.backoff(pair.key, now)
        assert backoff is not None
        waits.append(backoff.until - now)
    assert waits == [100, 200, 350, 350]  # doubles, capped
    planner.begin_round()
    assert keys(planner.plan(channels, 3001.0))[0] == ("2", "11")  # the next source meanwhile
    assert keys(planner.plan(channels, 3351.0))[0] == ("3", "11")  # waited long enough
    planner.finished(pair, result(pair, Outcome.SUCCESS), 3400.0)
    planner.finished(pair, result(pair, Outcome.ROUTE_TIMEOUT), 3500.0)
    backoff = planner.backoff(pair.key, 3500.0)
    assert backoff is not None
    assert backoff.until == 3600.0  # back to the first step


@pytest.mark.parametrize(
    ("outcome", "last_line"),
    [
        (Outcome.STOPPED, ""),
        (Outcome.LND_ERROR, "connection refused"),
        (Outcome.BINARY_MISSING, ""),
        (Outcome.NOT_QUALIFIED, "no channelpairs available"),
    ],
)
def test_outcomes_that_do_not_blame_the_route_do_not_back_off(
    outcome: Outcome, last_line: str
) -> None:
    pair = pair_of(star(), 3, 11)
    planner = Planner()
    planner.finished(pair, result(pair, outcome, last_line), 0.0)
    assert planner.backoff(pair.key, 0.0) is None


def test_ping_pong_guard_keeps_a_recent_target_from_being_a_source() -> None:
    channels = star()
    planner = Planner(PlannerConfig(ping_pong_seconds=600))
    planner.started(pair_of(channels, 3, 11), 0.0)
    # the operator turns auto-rebalance off on 11 and it fills up: now it would be a source
    flipped = channel(11, local_balance=950_000)
    others = [c for c in channels if c.chan_id != "11"]
    sources, _ = planner.candidates([*others, flipped], 300.0)
    assert "11" not in {s.chan_id for s in sources}
    sources, _ = planner.candidates([*others, flipped], 601.0)
    assert "11" in {s.chan_id for s in sources}
    # and the reverse: the source 3 turned into a target is no target yet
    drained = channel(3, local_balance=0, auto_rebalance=True)
    _, targets = planner.candidates([*[c for c in channels if c.chan_id != "3"], drained], 10.0)
    assert "3" not in {t.chan_id for t in targets}


def test_channels_with_many_pending_htlcs_are_skipped() -> None:
    channels = [*star()]
    channels[2] = channels[2].model_copy(update={"htlc_count": 11})  # source 3
    channels[3] = channels[3].model_copy(update={"htlc_count": 50})  # target 11
    planner = Planner(PlannerConfig(max_pending_htlcs=10))
    assert keys(planner.plan(channels, 0.0)) == [("2", "12"), ("1", "13"), ("2", "14")]


def test_a_served_target_waits_until_the_snapshot_shows_its_balance_moved() -> None:
    channels = star()
    planner = Planner(switches=PolicySwitches(follow_plan=False))
    planner.begin_round()
    first = planner.next_pairs(channels, set(), 1, 0.0)
    assert keys(first) == [("3", "11")]
    planner.started(first[0], 0.0)
    planner.finished(first[0], result(first[0], Outcome.SUCCESS), 30.0)
    assert planner.awaiting_confirmation(31.0)
    assert not planner.awaiting_confirmation(500.0)  # gave up waiting for LNDg
    # LNDg still shows the old balance: 11 is skipped, the next target gets source 3
    assert keys(planner.next_pairs(channels, set(), 1, 31.0)) == [("3", "12")]
    moved = [
        c.model_copy(update={"local_balance": 15_000}) if c.chan_id == "11" else c for c in channels
    ]
    assert keys(planner.next_pairs(moved, set(), 1, 40.0)) == [("3", "11")]
    assert not planner.awaiting_confirmation(40.0)


def test_a_failing_target_tries_each_source_once_per_round_yielding_after_failures() -> None:
    channels = star()[:5]  # sources 1-3, targets 11 and 12
    config = PlannerConfig(failures_per_round=2, retry_when_idle=False)
    switches = PolicySwitches(follow_plan=False, demote_targets=False)
    planner = Planner(config, switches)
    planner.begin_round()

    def run(now: float, busy: set[str], outcome: Outcome | None) -> tuple[str, str] | None:
        picked = planner.next_pairs(channels, busy, 1, now)
        if not picked:
            return None
        planner.started(picked[0], now)
        if outcome is not None:
            planner.finished(picked[0], result(picked[0], outcome), now + 5)
        return picked[0].key

    assert run(0.0, set(), Outcome.NO_ROUTE) == ("3", "11")
    assert run(10.0, set(), Outcome.NO_ROUTE) == ("2", "11")
    # two failures: 11 yields to 12 ...
    assert run(20.0, set(), None) == ("3", "12")
    # ... and goes on with its last untried source while a worker is free
    assert run(25.0, {"3", "12"}, Outcome.NO_ROUTE) == ("1", "11")
    assert planner.next_pairs(channels, {"3", "12"}, 1, 40.0) == []  # every source tried
    planner.begin_round()  # a new round: the pairs still back off
    assert keys(planner.plan(channels, 50.0)) == [("3", "12")]


def test_an_idle_worker_retries_the_waiting_pair_whose_backoff_ends_first() -> None:
    channels = [channel(1, local_balance=900_001), channel(2, local_balance=900_002)]
    channels.append(channel(11, local_balance=10_000, auto_rebalance=True))
    config = PlannerConfig(backoff_seconds=100, retry_after_seconds=5)
    switches = PolicySwitches(follow_plan=False)
    strict = Planner(replace(config, retry_when_idle=False), switches)
    planner = Planner(config, switches)
    for each in (strict, planner):
        for source, at in ((2, 0.0), (1, 10.0)):  # both pairs fail: backoffs end at 100, 110
            pair = pair_of(channels, source, 11)
            each.started(pair, at)
            each.finished(pair, result(pair, Outcome.NO_ROUTE), at)
    assert strict.next_pairs(channels, set(), 2, 20.0) == []  # strict: the workers idle
    # one target, so one run: the pair whose backoff ends first; never a busy channel
    assert keys(planner.next_pairs(channels, set(), 2, 20.0)) == [("2", "11")]
    assert keys(planner.next_pairs(channels, {"2"}, 2, 20.0)) == [("1", "11")]
    assert planner.next_pairs(channels, {"11"}, 2, 20.0) == []
    # the retry fails too: its backoff doubles (ends at 230), so 1 (ends at 110) is next
    retried = pair_of(channels, 2, 11)
    planner.started(retried, 30.0)
    planner.finished(retried, result(retried, Outcome.NO_ROUTE), 30.0)
    assert keys(planner.next_pairs(channels, set(), 1, 40.0)) == [("1", "11")]
    # never sooner than retry_after_seconds after a pair's last failure (no tight loop)
    assert planner.next_pairs(channels, {"1"}, 1, 34.0) == []
    assert keys(planner.next_pairs(channels, {"1"}, 1, 35.0)) == [("2", "11")]
    # backoffs that ended are ordinary candidates again
    assert keys(planner.next_pairs(channels, set(), 1, 120.0)) == [("1", "11")]


def test_history_seeds_known_routes_and_records() -> None:
    channels = star()
    observations = [
        Observation(1.0, "11", "1", won=True),  # a route that worked: 11 takes 1 first
        Observation(2.0, "12", "3", won=False),
        Observation(3.0, "13", "3", won=False),  # 3 fails: sources still go by surplus
        *(Observation(4.0 + i, "14", None, won=False) for i in range(3)),  # 14 hardly fills
    ]
    assert keys(Planner().plan(channels, 10.0)) == [
        ("3", "11"),
        ("2", "12"),
        ("1", "13"),
        ("3", "14"),
    ]
    planner = Planner()
    assert planner.learn(reversed(observations)) == 6  # applied oldest first
    assert keys(planner.plan(channels, 10.0)) == [
        ("1", "11"),
        ("3", "12"),
        ("2", "13"),
        ("3", "14"),  # no source left unused: the fullest
    ]
    assert planner.record("14").score < PlannerConfig().poor_record  # 14 waits at the back
    _, targets = planner.candidates(channels, 10.0)
    assert [t.chan_id for t in targets][-1] == "14"
    # a later failure of the known route forgets it
    planner.learn([Observation(20.0, "11", "1", won=False)])
    assert planner.plan(channels, 30.0)[0].key == ("3", "11")


def test_a_first_run_waits_for_its_planned_source() -> None:
    channels = star()
    planner = Planner()
    planner.begin_round(planner.plan(channels, 0.0))
    # 3 is busy with 11; 14's planned source is 3: it waits instead of taking another
    picked = planner.next_pairs(channels, {"3", "11"}, 4, 0.0)
    assert keys(picked) == [("2", "12"), ("1", "13")]
    assert keys(planner.next_pairs(channels, {"2", "12", "1", "13"}, 4, 0.0)) == [("3", "11")]


def random_node(rng: random.Random, size: int) -> list[Channel]:
    peers = [f"02{rng.randrange(1 << 60):064x}" for _ in range(size // 2 + 1)]
    channels = []
    for i in range(1, size + 1):
        auto = rng.random() < 0.4
        channels.append(
            channel(
                i,
                remote_pubkey=rng.choice(peers),  # some peers have several channels
                local_balance=rng.randrange(0, 1_000_000),
                auto_rebalance=auto,
                ar_out_target=rng.choice((50, 60, 75)),
                ar_in_target=rng.choice((60, 80, 90)),
            )
        )
    return channels


@pytest.mark.parametrize("seed", range(5))
def test_pair_view_is_build_pairs_made_lazily(seed: int) -> None:
    rng = random.Random(seed)
    channels = random_node(rng, 40)
    excluded = {str(rng.randrange(1, 41))}
    expected = build_pairs(channels, excluded)
    view = PairView(channels, excluded)
    assert len(view) == len(expected)
    assert list(view) == expected
    assert [view[i] for i in range(len(view))] == expected
    assert view[5:17] == expected[5:17]
    assert view[-1] == expected[-1]
    with pytest.raises(IndexError):
        view[len(view)]


def test_planner_config_reads_the_settings() -> None:
    from core.settings import load_settings

    settings = load_settings(
        None,
        failure_cooldown_seconds=60,
        failure_cooldown_max_seconds=600,
        ping_pong_guard_seconds=120,
        max_pending_htlcs=3,
    )
    config = PlannerConfig.from_settings(settings)
    assert (config.backoff_seconds, config.backoff_max_seconds) == (60, 600)
    assert (config.ping_pong_seconds, config.max_pending_htlcs) == (120, 3)


def test_a_targets_last_successful_source_comes_first() -> None:
    channels = star()
    planner = Planner()
    pair = pair_of(channels, 1, 12)  # source 1 has the least surplus
    planner.finished(pair, result(pair, Outcome.SUCCESS), 0.0)
    plan = keys(planner.plan(channels, 10.0))
    assert ("1", "12") in plan
    assert plan[0] == ("3", "11")
    # a failure of that pair ends its preference (and backs it off)
    planner.finished(pair, result(pair, Outcome.NO_ROUTE), 20.0)
    assert ("1", "12") not in keys(planner.plan(channels, 30.0))


def test_sources_go_by_surplus_whatever_their_record() -> None:
    channels = star()
    planner = Planner(PlannerConfig(backoff_seconds=0))
    failing = pair_of(channels, 3, 11)
    for now in (0.0, 1.0, 2.0):  # source 3 keeps failing, source 1 succeeds
        planner.finished(failing, result(failing, Outcome.NO_ROUTE), now)
    winning = pair_of(channels, 1, 13)
    planner.finished(winning, result(winning, Outcome.SUCCESS), 3.0)
    assert planner.record("3").score < PlannerConfig().poor_record < planner.record("1").score
    sources, _ = planner.candidates(channels, 4.0)
    assert [s.chan_id for s in sources] == ["3", "2", "1"]  # the fullest first


def test_a_target_that_keeps_failing_waits_at_the_back() -> None:
    channels = star()
    planner = Planner(PlannerConfig(backoff_seconds=0))
    for source in (1, 2, 3):
        pair = pair_of(channels, source, 11)
        planner.finished(pair, result(pair, Outcome.ROUTE_TIMEOUT), float(source))
    _, targets = planner.candidates(channels, 10.0)
    assert [t.chan_id for t in targets] == ["12", "13", "14", "11"]
    # it still gets a run when a worker has nothing better to do
    picked = planner.next_pairs(channels, {"12", "13", "14"}, 1, 10.0)
    assert keys(picked) == [("3", "11")]


def test_records_decay_so_old_failures_fade() -> None:
    channels = star()
    planner = Planner(PlannerConfig(record_decay=0.5))
    pair = pair_of(channels, 3, 11)
    for now in range(3):
        planner.finished(pair, result(pair, Outcome.NO_ROUTE), float(now))
    low = planner.record("3").score
    planner.finished(pair, result(pair, Outcome.SUCCESS), 5.0)
    assert planner.record("3").score > 0.5 > low


@pytest.mark.parametrize("seed", range(5))
def test_count_pairs_is_the_number_build_pairs_gives(seed: int) -> None:
    channels = random_node(random.Random(seed), 60)
    excluded = {"7", "12"}
    assert count_pairs(channels, excluded) == len(build_pairs(channels, excluded))
