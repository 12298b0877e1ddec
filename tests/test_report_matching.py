"""The indexed matcher and the once-per-period day split against the code they replaced.

The reference below is the matcher and the per-day cut as they were before the index (every
payment of a pair scanned per ledger row, one attribution per day): on random inputs, seeded
so every run sees the same cases, the new code must give exactly the same pairs and figures.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

import pytest

from core.models import Outcome, Rebalance, RunResult, StatLine
from core.node_records import PAYMENT_SUCCEEDED, LndgRebalance, Payment
from core.report_figures import (
    DayReport,
    Share,
    compute_day,
    compute_days,
    day_bounds,
    match_ledger,
    run_stats,
    zone_name,
)
from sim.lndg import payment_row, rebalance_row

CHANNELS = ("100", "200", "300")
BERLIN = ZoneInfo("Europe/Berlin")
# 2026-03-29 is the spring-forward day in Berlin (23 hours): the cut must hold there too.
FIRST = date(2026, 3, 27)
DAYS = [FIRST + timedelta(days=n) for n in range(4)]
START = day_bounds(FIRST, BERLIN)[0].timestamp()
SPAN = 4 * 86_400


# ---------------------------------------------------------------------------------------------
# The reference: the code before the index, verbatim but for names


def reference_match(
    ledger_rows: Sequence[Rebalance], payments: Sequence[Payment], window: float
) -> dict[int, int]:
    by_key: dict[tuple[str, str], list[int]] = {}
    for index, payment in enumerate(payments):
        if payment.chan_out is not None and payment.rebal_chan is not None:
            by_key.setdefault((payment.chan_out, payment.rebal_chan), []).append(index)
    options: dict[int, list[int]] = {}
    candidates: list[tuple[float, int, int, int]] = []
    for row_index, row in enumerate(ledger_rows):
        line = row.line
        scored: list[tuple[float, int]] = []
        for pay_index in by_key.get((line.from_channel, line.to_channel), ()):
            payment = payments[pay_index]
            amount_msat = round(payment.value * 1000)
            if abs(amount_msat - line.amount_msat) >= 1000:
                continue
            gap = abs(line.timestamp - payment.creation_date.timestamp())
            if gap <= window:
                scored.append((gap, pay_index))
                candidates.append((gap, row.id, pay_index, row_index))
        if scored:
            options[row_index] = [pay_index for _gap, pay_index in sorted(scored)]
    candidates.sort()
    matched: dict[int, int] = {}
    owner: dict[int, int] = {}
    for _gap, _id, pay_index, row_index in candidates:
        if row_index not in matched and pay_index not in owner:
            matched[row_index], owner[pay_index] = pay_index, row_index

    def augment(row_index: int, seen: set[int]) -> bool:
        for pay_index in options[row_index]:
            if pay_index in seen:
                continue
            seen.add(pay_index)
            if pay_index not in owner or augment(owner[pay_index], seen):
                matched[row_index], owner[pay_index] = pay_index, row_index
                return True
        return False

    for row_index in sorted(options):
        if row_index not in matched:
            augment(row_index, set())
    return matched


def reference_day(
    day: date,
    zone: tzinfo,
    payments: Sequence[Payment],
    lndg_rebalances: Sequence[LndgRebalance],
    ledger_rows: Sequence[Rebalance],
    runs: Sequence[RunResult],
    window: float,
) -> DayReport:
    """The old compute_day: its own attribution, then the day's cut by comparing bounds."""
    hashes = {r.payment_hash for r in lndg_rebalances if r.succeeded and r.payment_hash}
    rebalances = sorted(
        (p for p in payments if p.status == PAYMENT_SUCCEEDED and p.rebal_chan is not None),
        key=lambda p: (p.creation_date, p.payment_hash),
    )
    matchable = [p for p in rebalances if p.payment_hash not in hashes]
    rows = sorted(ledger_rows, key=lambda r: r.id)
    matched = reference_match(rows, matchable, window)
    ours = {matchable[i].payment_hash for i in matched.values()}
    start, end = day_bounds(day, zone)
    node = lndg = daemon = unmatched = Share()
    for payment in rebalances:
        if not start <= payment.creation_date < end:
            continue
        one = Share(1, round(payment.value * 1000), round(payment.fee * 1000))
        node += one
        if payment.payment_hash in hashes:
            lndg += one
        elif payment.payment_hash in ours:
            daemon += one
    for index, row in enumerate(rows):
        if index not in matched and start.timestamp() <= row.line.timestamp < end.timestamp():
            unmatched += Share(1, row.line.amount_msat, row.line.fees_msat)
    day_runs = [r for r in runs if start.timestamp() <= r.started_at < end.timestamp()]
    return DayReport(
        day=day,
        zone_name=zone_name(zone),
        node=node + unmatched,
        lndg=lndg,
        daemon=daemon + unmatched,
        other=node - lndg - daemon,
        unmatched=unmatched,
        runs=run_stats(day_runs),
    )


# ---------------------------------------------------------------------------------------------
# Random inputs: few channels, few amounts and times packed close, so rows compete for
# payments and the augmenting paths get work


def random_inputs(
    rng: random.Random, rows: int, payments: int, spread: float
) -> tuple[list[Payment], list[LndgRebalance], list[Rebalance], list[RunResult]]:
    amounts = [rng.choice((10_000, 50_000, 100_000)) for _ in range(4)]

    def moment() -> float:
        return START + rng.uniform(0, spread)

    found: list[Payment] = []
    for n in range(payments):
        sats = rng.choice(amounts) + rng.choice((0, 0, 0, 0.4, -0.6, 1.5))
        found.append(
            Payment.model_validate(
                payment_row(
                    f"{n:064x}",
                    creation_date=datetime.fromtimestamp(round(moment(), 3), UTC),
                    value=sats,
                    fee=round(rng.uniform(0, 50), 3),
                    chan_out=rng.choice((*CHANNELS, None)),
                    rebal_chan=rng.choice(CHANNELS),
                    status=rng.choice((2, 2, 2, 2, 3)),
                )
            )
        )
    hashes = [p.payment_hash for p in found]
    lndg = [
        LndgRebalance.model_validate(
            rebalance_row(
                payment_hash=rng.choice(hashes),
                stop=datetime.fromtimestamp(START, UTC),
                status=rng.choice((2, 4)),
            )
        )
        for _ in range(payments // 10)
    ]
    ledger = [
        Rebalance(
            rng.randrange(1, 10 * rows + 1) if rng.random() < 0.1 else n + 1,  # a few shared ids
            StatLine(
                int(moment()),
                rng.choice(CHANNELS),
                rng.choice(CHANNELS),
                rng.choice(amounts) * 1000 + rng.choice((0, 0, 300, -999, 1000)),
                rng.randrange(0, 50_000),
            ),
            "",
            "",
        )
        for n in range(rows)
    ]
    outcomes = list(Outcome)
    runs = [
        RunResult("100", "200", moment(), moment(), 0, rng.choice(outcomes), "")
        for _ in range(rows // 5)
    ]
    return found, lndg, ledger, runs


@pytest.mark.parametrize("seed", range(40))
def test_indexed_matcher_gives_the_reference_pairs(seed: int) -> None:
    rng = random.Random(seed)
    payments, _lndg, ledger, _runs = random_inputs(
        rng, rows=rng.randrange(0, 120), payments=rng.randrange(0, 120), spread=3_000
    )
    payments.sort(key=lambda p: (p.creation_date, p.payment_hash))
    ledger.sort(key=lambda r: r.id)
    for window in (0, 1, 60, 300, 1_000):
        assert match_ledger(ledger, payments, window) == reference_match(ledger, payments, window)


@pytest.mark.parametrize("seed", range(15))
def test_days_from_one_attribution_equal_the_old_day_by_day(seed: int) -> None:
    rng = random.Random(1_000 + seed)
    payments, lndg, ledger, runs = random_inputs(rng, rows=300, payments=300, spread=SPAN)
    rng.shuffle(payments)  # callers need not sort
    window = rng.choice((60.0, 300.0))
    expected = [reference_day(d, BERLIN, payments, lndg, ledger, runs, window) for d in DAYS]
    assert compute_days(DAYS, BERLIN, payments, lndg, ledger, runs, window) == expected
    assert [compute_day(d, BERLIN, payments, lndg, ledger, runs, window) for d in DAYS] == expected
    assert sum(r.node.count for r in expected) > 0  # the inputs did reach the days


def test_a_long_augmenting_chain_is_matched_in_full() -> None:
    """Greedy gives each row the next payment and strands the last row; the augmenting path
    re-pairs all 3,000 rows (the recursive search overflowed Python's stack here)."""
    count = 3_000

    def payment(n: int) -> Payment:
        when = datetime.fromtimestamp(START + 250 * n, UTC)
        return Payment.model_validate(
            payment_row(
                f"{n:064x}",
                creation_date=when,
                value=1_000,
                fee=1,
                chan_out="100",
                rebal_chan="200",
            )
        )

    payments = [payment(n) for n in range(count + 1)]
    # Row n sits 126 s after payment n and 124 s before payment n + 1: greedy takes n + 1.
    rows = [
        Rebalance(n + 1, StatLine(int(START) + 250 * n + 126, "100", "200", 1_000_000, 0), "", "")
        for n in range(count)
    ]
    # The last row reaches only the last payment, 200 s away: row count - 1 got it first.
    last = StatLine(int(START) + 250 * count + 200, "100", "200", 1_000_000, 0)
    rows.append(Rebalance(count + 1, last, "", ""))
    matched = match_ledger(rows, payments, 300)
    assert matched == {n: n for n in range(count + 1)}


def test_instants_on_the_day_boundaries_fall_as_before() -> None:
    """A payment, a ledger row and a run at each local midnight of the period (and one at
    the end of the last day, which belongs to no day in it) land where the old cut put them."""
    edges = [day_bounds(d, BERLIN)[0] for d in DAYS] + [day_bounds(DAYS[-1], BERLIN)[1]]
    payments = [
        Payment.model_validate(
            payment_row(
                f"{n:064x}", creation_date=at, value=1_000, chan_out="300", rebal_chan="100"
            )
        )
        for n, at in enumerate(edges)
    ]
    ledger = [
        Rebalance(n + 1, StatLine(int(at.timestamp()), "100", "200", 5_000, 1), "", "")
        for n, at in enumerate(edges)
    ]
    runs = [
        RunResult("100", "200", at.timestamp(), at.timestamp(), 0, Outcome.SUCCESS, "")
        for at in edges
    ]
    expected = [reference_day(d, BERLIN, payments, [], ledger, runs, 300) for d in DAYS]
    assert compute_days(DAYS, BERLIN, payments, [], ledger, runs, 300) == expected
    assert [r.node.count for r in expected] == [2, 2, 2, 2]
    assert [r.runs.attempts for r in expected] == [1, 1, 1, 1]
