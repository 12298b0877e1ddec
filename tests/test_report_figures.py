"""The daily report's pure parts: days, attribution, matching, schedule, text.

Every expectation is computed by hand in the comments next to it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from core.models import Outcome, Rebalance, RunResult, StatLine
from core.node_records import LndgRebalance, Payment
from core.report_figures import (
    DayReport,
    RunStats,
    Share,
    combine,
    compute_day,
    day_bounds,
    due_days,
    format_summary,
    latest_due_day,
    next_report_at,
)
from sim.lndg import payment_row, rebalance_row

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
A, B, C, D = "879609302301671425", "879609302301671426", "879609302301671427", "879609302301671428"
DAY = date(2026, 11, 24)  # CET (UTC+1): 2026-11-23T23:00Z .. 2026-11-24T23:00Z


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def pay(
    name: str,
    when: str,
    value: float,
    fee: float,
    *,
    chan_out: str = A,
    rebal_chan: str | None = B,
    status: int = 2,
) -> Payment:
    row = payment_row(
        (name * 64)[:64],
        creation_date=utc(when),
        value=value,
        fee=fee,
        chan_out=chan_out,
        rebal_chan=rebal_chan,
        status=status,
    )
    return Payment.model_validate(row)


def lndg(name: str, when: str, status: int = 2) -> LndgRebalance:
    return LndgRebalance.model_validate(
        rebalance_row(payment_hash=(name * 64)[:64], stop=utc(when), status=status)
    )


def row(
    ledger_id: int, when: str, source: str, target: str, sats: int, fee_sat: float
) -> Rebalance:
    ts = int(utc(when).timestamp())
    return Rebalance(
        ledger_id, StatLine(ts, source, target, sats * 1000, round(fee_sat * 1000)), "", ""
    )


def run(when: str, outcome: Outcome) -> RunResult:
    start = utc(when).timestamp()
    return RunResult(A, B, start, start + 60, 0, outcome, "")


def share(report_share: Share) -> tuple[int, int, float, int]:
    return (report_share.count, report_share.sats, report_share.fee_sat, report_share.ppm)


# ---------------------------------------------------------------------------------------------
# Day bounds


@pytest.mark.parametrize(
    ("zone", "day", "start", "end", "hours"),
    [
        (BERLIN, date(2026, 11, 24), "2026-11-23T23:00", "2026-11-24T23:00", 24),
        (BERLIN, date(2026, 7, 1), "2026-06-30T22:00", "2026-07-01T22:00", 24),
        # Spring forward: 02:00 CET -> 03:00 CEST.
        (BERLIN, date(2026, 3, 29), "2026-03-28T23:00", "2026-03-29T22:00", 23),
        # Fall back: 03:00 CEST -> 02:00 CET.
        (BERLIN, date(2026, 10, 25), "2026-10-24T22:00", "2026-10-25T23:00", 25),
        (NEW_YORK, date(2026, 3, 8), "2026-03-08T05:00", "2026-03-09T04:00", 23),
        (NEW_YORK, date(2026, 11, 1), "2026-11-01T04:00", "2026-11-02T05:00", 25),
        (ZoneInfo("UTC"), date(2026, 11, 24), "2026-11-24T00:00", "2026-11-25T00:00", 24),
    ],
)
def test_day_bounds_in_utc(zone, day, start, end, hours) -> None:
    got_start, got_end = day_bounds(day, zone)
    assert (got_start, got_end) == (utc(start), utc(end))
    assert got_start.tzinfo is not None
    assert got_end - got_start == timedelta(hours=hours)
    # Consecutive days tile time: no gap, no overlap.
    assert day_bounds(day + timedelta(days=1), zone)[0] == got_end


# ---------------------------------------------------------------------------------------------
# Attribution


def test_attribution_across_three_shares() -> None:
    payments = [
        # LNDg's (hash in /api/rebalancer/ with status 2): 150,000 sats, 17.5 sats fees.
        pay("a", "2026-11-24T01:00:00", 100_000, 10.0, chan_out=C, rebal_chan=D),
        pay("b", "2026-11-24T02:00:00", 50_000, 7.5, chan_out=D, rebal_chan=B),
        # Ours: matched to ledger rows 1 and 2 (2 at exactly the 300 s window).
        pay("c", "2026-11-24T10:00:00", 200_000, 30.0, chan_out=A, rebal_chan=B),
        pay("d", "2026-11-24T12:00:00", 300_000, 60.0, chan_out=A, rebal_chan=C),
        # Other tools: no hash, no ledger row. The first is at the day's first instant.
        pay("e", "2026-11-24T14:00:00", 40_000, 2.0, chan_out=D, rebal_chan=B),
        pay("f", "2026-11-23T23:00:00", 10_000, 1.0, chan_out=C, rebal_chan=B),
        # Ignored: not a rebalance; failed; 1 s before the day (Berlin 23:59:59 on the 23rd);
        # at the day's end instant (belongs to the 25th).
        pay("g", "2026-11-24T15:00:00", 99_999, 9.0, rebal_chan=None),
        pay("h", "2026-11-24T16:00:00", 77_777, 7.0, status=3),
        pay("i", "2026-11-23T22:59:59", 11_111, 1.0, chan_out=C, rebal_chan=D),
        pay("j", "2026-11-24T23:00:00", 22_222, 2.0, chan_out=C, rebal_chan=D),
    ]
    rebalances = [
        lndg("a", "2026-11-24T01:01:00"),
        lndg("b", "2026-11-24T02:01:00"),
        lndg("z", "2026-11-24T03:00:00", status=3),  # failed: no effect
    ]
    ledger = [
        row(1, "2026-11-24T10:00:40", A, B, 200_000, 30.0),
        row(2, "2026-11-24T12:05:00", A, C, 300_000, 60.0),
        # No payment for it in LNDg: counted for us and flagged, 70,000 sats, 14 sats fees.
        row(3, "2026-11-24T15:00:00", A, B, 70_000, 14.0),
        # The day before in Berlin: not this day's.
        row(4, "2026-11-23T22:30:00", A, D, 5_000, 1.0),
    ]
    runs = [
        *(run(f"2026-11-24T0{n}:00:00", Outcome.SUCCESS) for n in range(3)),
        *(run(f"2026-11-24T1{n}:00:00", Outcome.NO_ROUTE) for n in range(4)),
        run("2026-11-24T20:00:00", Outcome.ROUTE_TIMEOUT),
        run("2026-11-24T21:00:00", Outcome.DRY_RUN),
        run("2026-11-24T22:00:00", Outcome.STOPPED),
        run("2026-11-24T22:10:00", Outcome.NOT_QUALIFIED),  # no route tried: not an attempt
        run("2026-11-23T22:00:00", Outcome.NO_ROUTE),  # the 23rd in Berlin
    ]

    report = compute_day(DAY, BERLIN, payments, rebalances, ledger, runs)

    # LNDg: 2, 150,000 sats, 17.5 fees, 17,500 msat * 1e6 // 150,000,000 msat = 116 ppm.
    assert share(report.lndg) == (2, 150_000, 17.5, 116)
    # Ours: c + d + row 3 = 3, 570,000 sats, 30 + 60 + 14 = 104 fees, 104e9 // 570e6 = 182 ppm.
    assert share(report.daemon) == (3, 570_000, 104.0, 182)
    assert share(report.unmatched) == (1, 70_000, 14.0, 200)
    assert report.unmatched_count == 1
    # Other tools: e + f = 2, 50,000 sats, 3 fees, 60 ppm.
    assert share(report.other) == (2, 50_000, 3.0, 60)
    # Node: 6 LNDg payments + the unmatched row = 7; 770,000 sats; 124.5 fees; 161 ppm.
    assert share(report.node) == (7, 770_000, 124.5, 161)
    assert report.node == report.lndg + report.daemon + report.other
    assert report.share_by_count == pytest.approx(300 / 7)  # 42.857 %
    assert report.share_by_sats == pytest.approx(57_000 / 770)  # 74.026 %
    # Runs: 3 successes + 4 no route + 1 route timeout = 8 attempts; dry and stopped aside.
    assert report.runs == RunStats(
        attempts=8,
        successes=3,
        failures={Outcome.NO_ROUTE: 4, Outcome.ROUTE_TIMEOUT: 1},
        stopped=1,
        dry_runs=1,
        not_qualified=1,
    )
    assert report.runs.success_rate == pytest.approx(37.5)
    assert report.runs.failed == 5
    assert (report.day, report.days, report.zone_name) == (DAY, 1, "Europe/Berlin")


def test_summary_text() -> None:
    report = DayReport(
        day=DAY,
        zone_name="Europe/Berlin",
        node=Share(7, 770_000_000, 124_500),
        lndg=Share(2, 150_000_000, 17_500),
        daemon=Share(3, 570_000_000, 104_000),
        other=Share(2, 50_000_000, 3_000),
        unmatched=Share(1, 70_000_000, 14_000),
        runs=RunStats(8, 3, {Outcome.NO_ROUTE: 4, Outcome.ROUTE_TIMEOUT: 1}, 1, 1, 2),
    )
    assert format_summary(report) == (
        "Rebalancing on Tue 2026-11-24 (Europe/Berlin)\n"
        "Node: 7 · 770,000 sat · 124.5 sat fees (161 ppm)\n"
        "This daemon: 3 · 570,000 sat · 104 sat fees (182 ppm)"
        " — share 42.9% of rebalances, 74.0% of sats\n"
        "  (1 of them not found in LNDg's payments; counted anyway)\n"
        "LNDg: 2 · 150,000 sat · 17.5 sat fees (116 ppm)\n"
        "Other tools: 2 · 50,000 sat · 3 sat fees (60 ppm)\n"
        "Runs: 8 attempts, 3 succeeded (37.5%); failed: no route 4, route search timed out 1"
        "; 2 no longer qualified; 1 dry run"
    )


def test_summary_of_an_empty_day() -> None:
    report = compute_day(DAY, BERLIN, [], [], [], [])
    assert report.node == Share()
    assert report.share_by_count is None
    assert format_summary(report) == (
        "Rebalancing on Tue 2026-11-24 (Europe/Berlin)\n"
        "Node: 0\nThis daemon: 0\nLNDg: 0\nOther tools: 0\nRuns: none"
    )


@pytest.mark.parametrize(
    ("ledger_time", "matched"),
    [
        ("2026-11-24T10:05:00", True),  # 300 s after: inside (inclusive)
        ("2026-11-24T09:55:00", True),  # 300 s before: inside
        ("2026-11-24T10:05:01", False),  # 301 s: outside
        ("2026-11-24T09:54:59", False),
    ],
)
def test_match_window_edges(ledger_time: str, matched: bool) -> None:
    payments = [pay("c", "2026-11-24T10:00:00", 200_000, 30.0)]
    ledger = [row(1, ledger_time, A, B, 200_000, 30.0)]
    report = compute_day(DAY, BERLIN, payments, [], ledger, [])
    if matched:
        assert (report.daemon.count, report.unmatched.count, report.other.count) == (1, 0, 0)
        assert report.node.count == 1
    else:
        # The payment is someone else's; our row is still counted, flagged.
        assert (report.daemon.count, report.unmatched.count, report.other.count) == (1, 1, 1)
        assert report.node.count == 2


def test_window_is_a_parameter() -> None:
    payments = [pay("c", "2026-11-24T10:00:00", 200_000, 30.0)]
    ledger = [row(1, "2026-11-24T10:01:00", A, B, 200_000, 30.0)]
    assert compute_day(DAY, BERLIN, payments, [], ledger, [], 60).unmatched.count == 0
    assert compute_day(DAY, BERLIN, payments, [], ledger, [], 59).unmatched.count == 1


@pytest.mark.parametrize(
    ("source", "target", "sats"),
    [(B, A, 200_000), (A, C, 200_000), (C, B, 200_000), (A, B, 200_001), (A, B, 199_999)],
)
def test_channels_and_amount_must_agree(source: str, target: str, sats: int) -> None:
    payments = [pay("c", "2026-11-24T10:00:00", 200_000, 30.0, chan_out=A, rebal_chan=B)]
    ledger = [row(1, "2026-11-24T10:00:05", source, target, sats, 30.0)]
    report = compute_day(DAY, BERLIN, payments, [], ledger, [])
    assert (report.other.count, report.unmatched.count) == (1, 1)


def test_amount_tolerates_float_noise_below_one_sat() -> None:
    # LNDg's value is value_msat / 1000: 200000.123 sats is 200,000,123 msat.
    payments = [pay("c", "2026-11-24T10:00:00", 200_000.123, 30.0)]
    ledger = [
        Rebalance(
            1,
            StatLine(int(utc("2026-11-24T10:00:05").timestamp()), A, B, 200_000_123, 30_000),
            "",
            "",
        )
    ]
    report = compute_day(DAY, BERLIN, payments, [], ledger, [])
    assert (report.daemon.count, report.unmatched.count, report.other.count) == (1, 0, 0)


def test_lndg_hash_wins_over_a_matching_ledger_row() -> None:
    # The payment fits our stat line perfectly, but LNDg's rebalancer has its hash.
    payments = [pay("a", "2026-11-24T10:00:00", 200_000, 30.0)]
    ledger = [row(1, "2026-11-24T10:00:05", A, B, 200_000, 30.0)]
    report = compute_day(DAY, BERLIN, payments, [lndg("a", "2026-11-24T10:00:06")], ledger, [])
    assert share(report.lndg) == (1, 200_000, 30.0, 150)
    assert (report.daemon.count, report.unmatched.count, report.other.count) == (1, 1, 0)
    assert report.node.count == 2


def test_one_to_one_closest_time_first() -> None:
    # Two identical payments, three identical stat lines: two match, one is left over.
    payments = [
        pay("p", "2026-11-24T10:00:00", 100_000, 10.0),
        pay("q", "2026-11-24T10:02:00", 100_000, 20.0),
    ]
    ledger = [
        row(1, "2026-11-24T10:02:10", A, B, 100_000, 20.0),  # 10 s from q
        row(2, "2026-11-24T10:00:20", A, B, 100_000, 10.0),  # 20 s from p
        row(3, "2026-11-24T10:01:00", A, B, 100_000, 5.0),  # 60 s from both: left over
    ]
    report = compute_day(DAY, BERLIN, payments, [], ledger, [])
    # Matched use the payments' figures (10 + 20); row 3 adds its own 5 sats.
    assert share(report.daemon) == (3, 300_000, 35.0, 116)
    assert share(report.unmatched) == (1, 100_000, 5.0, 50)
    assert report.other.count == 0
    assert report.node.count == 3


def test_matching_never_strands_a_row_greedy_alone_would() -> None:
    # Greedy by closest time pairs row 1 with q (60 s), leaving row 2 (only q within 300 s)
    # alone; re-pairing row 1 with p (240 s) matches both.
    payments = [
        pay("p", "2026-11-24T10:00:00", 100_000, 10.0),
        pay("q", "2026-11-24T10:05:00", 100_000, 10.0),
    ]
    ledger = [
        row(1, "2026-11-24T10:04:00", A, B, 100_000, 10.0),
        row(2, "2026-11-24T10:09:00", A, B, 100_000, 10.0),
    ]
    report = compute_day(DAY, BERLIN, payments, [], ledger, [])
    assert (report.daemon.count, report.unmatched.count, report.other.count) == (2, 0, 0)


def test_pair_across_midnight_counts_once_on_the_payments_day() -> None:
    # Berlin midnight is 23:00Z: the payment starts 10 s before it, the stat line comes 20 s after.
    payments = [pay("c", "2026-11-24T22:59:50", 200_000, 30.0)]
    ledger = [row(1, "2026-11-24T23:00:10", A, B, 200_000, 30.0)]
    first = compute_day(DAY, BERLIN, payments, [], ledger, [])
    second = compute_day(DAY + timedelta(days=1), BERLIN, payments, [], ledger, [])
    assert (first.daemon.count, first.unmatched.count, first.node.count) == (1, 0, 1)
    assert (second.daemon.count, second.unmatched.count, second.node.count) == (0, 0, 0)


def test_same_instants_fall_on_different_days_in_new_york() -> None:
    payments = [
        pay("a", "2026-11-24T03:00:00", 10_000, 1.0),  # New York: 22:00 on the 23rd
        pay("b", "2026-11-24T06:00:00", 20_000, 2.0),  # New York: 01:00 on the 24th
        pay("c", "2026-11-25T04:30:00", 40_000, 4.0),  # New York: 23:30 on the 24th
        pay("d", "2026-11-25T05:00:00", 80_000, 8.0),  # New York: 00:00 on the 25th
    ]
    in_new_york = compute_day(DAY, NEW_YORK, payments, [], [], [])
    in_berlin = compute_day(DAY, BERLIN, payments, [], [], [])
    assert share(in_new_york.node) == (2, 60_000, 6.0, 100)  # b + c
    assert share(in_berlin.node) == (2, 30_000, 3.0, 100)  # a + b


def test_dst_day_has_25_hours_of_payments() -> None:
    # Berlin 2026-10-25 runs from 22:00Z on the 24th to 23:00Z on the 25th.
    day = date(2026, 10, 25)
    payments = [
        pay("a", "2026-10-24T21:59:59", 1_000, 0.0),  # 23:59:59 CEST on the 24th
        pay("b", "2026-10-24T22:00:00", 2_000, 0.0),  # 00:00 CEST
        pay("c", "2026-10-25T22:30:00", 4_000, 0.0),  # 23:30 CET: hour 25
        pay("d", "2026-10-25T23:00:00", 8_000, 0.0),  # 00:00 CET on the 26th
    ]
    report = compute_day(day, BERLIN, payments, [], [], [])
    assert (report.node.count, report.node.sats) == (2, 6_000)


def test_combine_sums_days() -> None:
    first = compute_day(DAY, BERLIN, [pay("a", "2026-11-24T10:00:00", 100_000, 10.0)], [], [], [])
    second = compute_day(
        DAY + timedelta(days=1),
        BERLIN,
        [pay("b", "2026-11-25T10:00:00", 300_000, 50.0)],
        [],
        [row(1, "2026-11-25T10:00:30", A, B, 300_000, 50.0)],
        [run("2026-11-25T09:59:00", Outcome.SUCCESS), run("2026-11-25T08:00:00", Outcome.NO_ROUTE)],
    )
    total = combine([second, first])
    assert (total.first_day, total.day, total.days) == (DAY, DAY + timedelta(days=1), 2)
    assert share(total.node) == (2, 400_000, 60.0, 150)
    assert share(total.daemon) == (1, 300_000, 50.0, 166)
    assert share(total.other) == (1, 100_000, 10.0, 100)
    assert total.share_by_count == pytest.approx(50.0)
    assert total.share_by_sats == pytest.approx(75.0)
    assert (total.runs.attempts, total.runs.successes) == (2, 1)
    assert format_summary(total).splitlines()[0] == (
        "Rebalancing 2026-11-24 – 2026-11-25 (2 days, Europe/Berlin)"
    )


# ---------------------------------------------------------------------------------------------
# Schedule


REPORT_TIME = time(0, 5)


def berlin(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=BERLIN)


def days(*texts: str) -> list[date]:
    return [date.fromisoformat(text) for text in texts]


def test_due_after_report_time_is_the_day_that_ended() -> None:
    now = berlin("2026-11-25T00:05:00")
    assert due_days(now, BERLIN, REPORT_TIME, set(), earliest=DAY) == [DAY]
    assert due_days(now, BERLIN, REPORT_TIME, {"2026-11-24"}) == days(
        "2026-11-18", "2026-11-19", "2026-11-20", "2026-11-21", "2026-11-22", "2026-11-23"
    )


def test_before_report_time_the_day_before_is_newest() -> None:
    now = berlin("2026-11-25T00:04:59")
    assert latest_due_day(now, BERLIN, REPORT_TIME) == date(2026, 11, 23)
    assert (
        due_days(now, BERLIN, REPORT_TIME, {date(2026, 11, 23)}, earliest=date(2026, 11, 23)) == []
    )


def test_report_time_is_read_in_the_zone_not_in_utc() -> None:
    # 23:06Z on the 24th is 00:06 on the 25th in Berlin, 18:06 on the 24th in New York.
    now = utc("2026-11-24T23:06:00")
    assert latest_due_day(now, BERLIN, REPORT_TIME) == date(2026, 11, 24)
    assert latest_due_day(now, NEW_YORK, REPORT_TIME) == date(2026, 11, 23)
    assert latest_due_day(now, ZoneInfo("UTC"), REPORT_TIME) == date(2026, 11, 23)


def test_catch_up_after_three_days_down() -> None:
    # Last report went out for the 21st; the daemon comes back on the 25th at 09:00.
    sent = {f"2026-11-{day:02}" for day in range(1, 22)}
    now = berlin("2026-11-25T09:00:00")
    assert due_days(now, BERLIN, REPORT_TIME, sent) == days(
        "2026-11-22", "2026-11-23", "2026-11-24"
    )
    # Once those went out, nothing is due until the next REPORT_TIME...
    sent |= {"2026-11-22", "2026-11-23", "2026-11-24"}
    assert due_days(now, BERLIN, REPORT_TIME, sent) == []
    assert due_days(berlin("2026-11-26T00:04:00"), BERLIN, REPORT_TIME, sent) == []
    # ...which brings exactly one new day.
    assert due_days(berlin("2026-11-26T00:05:00"), BERLIN, REPORT_TIME, sent) == [
        date(2026, 11, 25)
    ]


def test_catch_up_is_bounded() -> None:
    now = berlin("2026-11-25T09:00:00")
    # Down for a month: only the last 7 days, oldest first.
    assert due_days(now, BERLIN, REPORT_TIME, {"2026-10-20"}) == days(
        "2026-11-18",
        "2026-11-19",
        "2026-11-20",
        "2026-11-21",
        "2026-11-22",
        "2026-11-23",
        "2026-11-24",
    )
    assert due_days(now, BERLIN, REPORT_TIME, set(), max_catch_up=2) == days(
        "2026-11-23", "2026-11-24"
    )
    assert due_days(now, BERLIN, REPORT_TIME, set(), earliest=date(2026, 11, 23)) == days(
        "2026-11-23", "2026-11-24"
    )


def test_sent_may_be_a_predicate() -> None:
    asked: list[str] = []

    def was_sent(day: str) -> bool:
        asked.append(day)
        return day != "2026-11-24"

    now = berlin("2026-11-25T09:00:00")
    assert due_days(now, BERLIN, REPORT_TIME, was_sent, max_catch_up=3) == [DAY]
    assert asked == ["2026-11-22", "2026-11-23", "2026-11-24"]


def test_report_time_on_a_dst_day() -> None:
    # 02:30 does not exist in Berlin on 2026-03-29 (02:00 CET -> 03:00 CEST): it is read with
    # the offset before the change, i.e. 01:30Z = 03:30 CEST.
    at = time(2, 30)
    assert latest_due_day(utc("2026-03-29T01:29:59"), BERLIN, at) == date(2026, 3, 27)
    assert latest_due_day(utc("2026-03-29T01:30:00"), BERLIN, at) == date(2026, 3, 28)
    assert next_report_at(utc("2026-03-29T00:00:00"), BERLIN, at) == utc("2026-03-29T01:30:00")


def test_next_report_at() -> None:
    assert next_report_at(berlin("2026-11-25T00:04:00"), BERLIN, REPORT_TIME) == berlin(
        "2026-11-25T00:05:00"
    )
    # Exactly at REPORT_TIME: the next one is tomorrow's.
    assert next_report_at(berlin("2026-11-25T00:05:00"), BERLIN, REPORT_TIME) == berlin(
        "2026-11-26T00:05:00"
    )


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        due_days(datetime(2026, 11, 25, 9), BERLIN, REPORT_TIME, set())
