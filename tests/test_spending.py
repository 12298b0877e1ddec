"""What a run may spend: LNDg's cap, the template's limit, the amount and both budgets.

Figures are worked by hand at their boundaries; the sources of each rule are in
core/spending.py's docstring (LNDg's rebalancer.py, regolancer's routes.go and main.go).
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.models import Channel, Pair, Rebalance, StatLine
from core.node_records import ArSettings, Forward, LndgRebalance, Payment
from core.regolancer_config import build_config
from core.spending import (
    DailyBudget,
    DailyBudgetReached,
    EarningsBudget,
    FeePolicy,
    LndgWorking,
    OverEarningsBudget,
    RunLimits,
    SkipReason,
    TemplateLimit,
    Uneconomic,
    lndg_cap_ppm,
    lndg_default_amount,
    lndg_working_peers,
    pair_skip,
    run_amount,
    run_fee_limit_ppm,
    run_limits,
    skip_json,
    target_skip,
    target_skips,
    template_cap_ppm,
    within_headroom,
)
from sim.lndg import channel_row
from tests.test_pairing import channel as node_channel

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
SHIPPED = {"amount": 50000, "min_amount": 10000, "econ_ratio": 0.9, "econ_ratio_max_ppm": 1500}
TARGET_ID = "879609302301671426"
OTHER_ID = "879609302301671427"


def target(**fields: Any) -> Channel:
    row: dict[str, Any] = {
        "auto_rebalance": True,
        "local_fee_rate": 1000,
        "remote_fee_rate": 0,
        "ar_amt_target": 80_000,
        "ar_max_cost": 65,
    }
    row.update(fields)
    return node_channel(int(TARGET_ID), **row)


def source(local_fee_rate: int = 0) -> Channel:
    return node_channel(879609302301671425, local_fee_rate=local_fee_rate)


# --- LNDg's cap ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("local_fee_rate", "ar_max_cost", "cap"),
    [
        (777, 33, 256),  # 777 * 0.33 = 256.41, truncated
        (1000, 65, 500),  # 650, then AR-MaxFeeRate 500
        (769, 65, 499),  # 499.85 -> 499, below 500
        (120, 65, 78),
        (100, 29, 28),  # LNDg's float: 100 * 0.29 = 28.999...; exact arithmetic says 29
        (10, -5, 0),  # int(-0.5) truncates to 0; `// 100` would floor to -1
        (1000, 0, 0),
        (1, 65, 0),
    ],
)
def test_lndg_cap_follows_lndg_arithmetic(local_fee_rate, ar_max_cost, cap):
    channel = target(local_fee_rate=local_fee_rate, ar_max_cost=ar_max_cost)
    assert lndg_cap_ppm(channel, ArSettings()) == cap


def test_lndg_cap_missing_settings_take_lndg_defaults():
    channel = target(local_fee_rate=2000, ar_max_cost=65)  # 1300 ppm of its own
    assert lndg_cap_ppm(channel, ArSettings.from_rows([])) == 500
    rows = [{"key": "AR-MaxFeeRate", "value": "250"}]
    assert lndg_cap_ppm(channel, ArSettings.from_rows(rows)) == 250
    rows = [{"key": "AR-MaxFeeRate", "value": "5000"}]
    assert lndg_cap_ppm(channel, ArSettings.from_rows(rows)) == 1300


# --- the template's own limit, as regolancer computes it ---------------------------------------


@pytest.mark.parametrize(
    ("template", "source_fee", "target_fee", "limit"),
    [
        (SHIPPED, 0, 1000, 900),  # 0.9 x 1000, under econ_ratio_max_ppm 1500
        (SHIPPED, 0, 2000, 1500),  # 1800 capped at econ_ratio_max_ppm
        ({"econ_ratio": 0.9, "econ_ratio_max_ppm": 800}, 0, 1000, 800),
        ({}, 0, 777, 777),  # econ_ratio absent: 1
        ({"econ_ratio": 0}, 0, 777, 777),  # 0 means regolancer's default, 1
        ({"econ_ratio": 0.29}, 0, 100, 29),  # the decimal written, not 28.999...
        ({"econ_ratio": 0.5}, 0, 333, 166),  # 166.5 rounded down
        ({"econ_ratio": 2}, 0, 100, 200),
        ({"fee_limit_ppm": 300}, 0, 1000, 300),  # absolute: the target's fee plays no part
        ({"fee_limit_ppm": 300, "econ_ratio": 5}, 0, 10, 300),
        # lost_profit: the source's fee comes off before econ_ratio_max_ppm caps
        ({"econ_ratio": 0.9, "lost_profit": True}, 300, 1000, 600),
        ({"econ_ratio": 0.9, "lost_profit": True, "econ_ratio_max_ppm": 500}, 300, 1000, 500),
        ({"econ_ratio": 0.9, "lost_profit": True, "econ_ratio_max_ppm": 700}, 300, 1000, 600),
        ({"lost_profit": True}, 300, 100, -200),  # regolancer: "max fee less than zero"
        ({"lost_profit": False}, 300, 100, 100),
        # regolancer ignores lost_profit (and econ_ratio) once fee_limit_ppm is set
        ({"fee_limit_ppm": 300, "lost_profit": True}, 250, 1000, 300),
        # a negative fee_limit_ppm is not > 0, and leaves econ_ratio at 0 (main.go)
        ({"fee_limit_ppm": -1}, 0, 1000, 0),
    ],
)
def test_template_cap_as_regolancer(template, source_fee, target_fee, limit):
    assert template_cap_ppm(template, source(source_fee), target(local_fee_rate=target_fee)) == (
        limit
    )


def test_run_limit_is_the_smaller_of_lndg_and_template():
    looser_template = target(local_fee_rate=777, ar_max_cost=33)  # LNDg 256, template 699
    assert run_fee_limit_ppm(SHIPPED, source(), looser_template, ArSettings()) == 256
    tighter_template = target(local_fee_rate=1000, ar_max_cost=65)  # LNDg 500, template 300
    assert run_fee_limit_ppm({"fee_limit_ppm": 300}, source(), tighter_template, ArSettings()) == (
        300
    )
    # lost_profit makes the template the tighter one: 0.9 x 1000 - 450 = 450 < 500
    lost = {"econ_ratio": 0.9, "lost_profit": True}
    assert run_fee_limit_ppm(lost, source(450), tighter_template, ArSettings()) == 450


# --- amount ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "template", "amount"),
    [
        ({"ar_amt_target": 80_000}, SHIPPED, 80_000),
        ({"ar_amt_target": 5_000}, SHIPPED, 10_000),  # floored at min_amount
        ({"ar_amt_target": 10_000}, SHIPPED, 10_000),
        ({"ar_amt_target": 5_000}, {"rel_amount_to": 0.2}, 5_000),  # no min_amount
        ({"ar_amt_target": 0, "capacity": 1_000_000}, {}, 30_000),  # AR-Target% 3
        ({"ar_amt_target": 0, "capacity": 1_234_550}, {}, 37_037),  # 37,036.5 rounds up
        ({"ar_amt_target": 0, "capacity": 100_000}, SHIPPED, 10_000),  # 3,000 -> min_amount
        ({"ar_amt_target": 0, "capacity": 0}, {}, None),  # nothing: keep the template's
    ],
)
def test_run_amount(fields, template, amount):
    assert run_amount(target(**fields), template, ArSettings()) == amount


def test_lndg_default_amount_rounds_like_sql_round():
    assert lndg_default_amount(1_000_000, 3) == 30_000
    assert lndg_default_amount(50, 3) == 2  # 1.5 -> 2
    assert lndg_default_amount(49, 3) == 1  # 1.47 -> 1
    assert lndg_default_amount(1_000_000, 0) == 0


def test_run_limits_per_policy():
    pair = (SHIPPED, source(), target(local_fee_rate=777, ar_max_cost=33, remote_fee_rate=100))
    assert run_limits(*pair, ArSettings()) == RunLimits(fee_limit_ppm=256, amount=80_000)
    assert run_limits(*pair, ArSettings(), FeePolicy.TEMPLATE) == RunLimits(None, None)
    at_peer_fee = target(local_fee_rate=777, ar_max_cost=33, remote_fee_rate=256)
    with pytest.raises(ValueError, match="must be skipped"):
        run_limits(SHIPPED, source(), at_peer_fee, ArSettings())


# --- skips -----------------------------------------------------------------------------------


def test_uneconomic_boundary_equal_is_skipped():
    settings_ = ArSettings()
    # cap 78 (120 x 65 %)
    assert target_skip(target(local_fee_rate=120, remote_fee_rate=77), settings_) is None
    skip = target_skip(target(local_fee_rate=120, remote_fee_rate=78), settings_)
    assert isinstance(skip, Uneconomic)
    assert skip.describe() == "cap 78 ppm <= peer's fee 78 ppm"
    skip = target_skip(target(local_fee_rate=120, remote_fee_rate=600), settings_)
    assert skip is not None
    assert skip.describe() == "cap 78 ppm <= peer's fee 600 ppm"


def test_uneconomic_after_ar_max_fee_rate():
    # LNDg's own rate is 1,300 ppm, above the peer's 600, but AR-MaxFeeRate 500 is not.
    channel = target(local_fee_rate=2000, remote_fee_rate=600)
    skip = target_skip(channel, ArSettings())
    assert skip is not None
    assert skip.describe() == "cap 500 ppm <= peer's fee 600 ppm"
    assert target_skip(channel, ArSettings(max_fee_rate_ppm=601)) is None
    big = target(local_fee_rate=4000, ar_max_cost=50, remote_fee_rate=1500)
    skip = target_skip(big, ArSettings(max_fee_rate_ppm=1500))
    assert skip is not None
    assert skip.describe() == "cap 1,500 ppm <= peer's fee 1,500 ppm"


@pytest.mark.parametrize(
    ("fields", "max_fee_rate", "text"),
    [
        ({"ar_max_cost": 0}, 500, "cap 0 ppm: ar_max_cost is 0"),
        ({"ar_max_cost": -5, "local_fee_rate": 100}, 500, "cap -5 ppm: ar_max_cost is -5"),
        ({}, 0, "cap 0 ppm: AR-MaxFeeRate is 0"),
        ({"local_fee_rate": 0}, 500, "cap 0 ppm: our fee is 0 ppm"),
        ({"local_fee_rate": 1}, 500, "cap 0 ppm: 65% of our fee 1 ppm rounds to 0"),
    ],
)
def test_cap_zero_says_why(fields, max_fee_rate, text):
    skip = target_skip(target(**fields), ArSettings(max_fee_rate_ppm=max_fee_rate))
    assert isinstance(skip, Uneconomic)
    assert skip.describe() == text


def test_template_policy_has_no_lndg_cap():
    channel = target(ar_max_cost=0)
    assert target_skip(channel, ArSettings(), fee_policy=FeePolicy.TEMPLATE) is None
    assert pair_skip(SHIPPED, source(), channel, ArSettings(), FeePolicy.TEMPLATE) is None


def test_pair_skip_template_limit():
    channel = target(local_fee_rate=1000, remote_fee_rate=300)  # LNDg cap 500 > 300
    assert pair_skip(SHIPPED, source(), channel, ArSettings()) is None
    skip = pair_skip({"fee_limit_ppm": 300}, source(), channel, ArSettings())
    assert skip == TemplateLimit(limit_ppm=300, remote_fee_ppm=300)
    assert skip.describe() == "template limit 300 ppm <= peer's fee 300 ppm"
    lost = {"lost_profit": True}  # 1000 - 1200 = -200
    skip = pair_skip(lost, source(1200), channel, ArSettings())
    assert skip is not None
    assert skip.describe() == "template limit -200 ppm: no fee left to pay"
    # LNDg's cap is judged first
    uneconomic_target = target(ar_max_cost=0)
    assert isinstance(pair_skip(SHIPPED, source(), uneconomic_target, ArSettings()), Uneconomic)


def test_lndg_working_peers():
    rows = [
        LndgRebalance(id=1, value=1, status=0, last_hop_pubkey="02aa"),
        LndgRebalance(id=2, value=1, status=1, last_hop_pubkey="02bb"),
        LndgRebalance(id=3, value=1, status=2, last_hop_pubkey="02cc"),
        LndgRebalance(id=4, value=1, status=4, last_hop_pubkey="02dd"),
        LndgRebalance(id=5, value=1, status=0, last_hop_pubkey=None),
    ]
    assert lndg_working_peers(rows) == {"02aa", "02bb"}
    channel = target()
    skip = target_skip(channel, ArSettings(), lndg_peers={channel.remote_pubkey})
    assert skip == LndgWorking()
    assert skip.describe() == "LNDg is rebalancing this peer"


def test_skips_in_order_most_lasting_first():
    channel = target(ar_max_cost=0)
    earnings = EarningsBudget(ratio=1, window_days=30)
    daily = DailyBudget(budget_sat=1, spent_msat=1000, day=NOW.date(), zone=UTC)
    skips = target_skips(
        channel, ArSettings(), earnings=earnings, daily=daily, lndg_peers={channel.remote_pubkey}
    )
    assert [skip.reason for skip in skips] == [
        SkipReason.UNECONOMIC,
        SkipReason.EARNINGS_BUDGET,
        SkipReason.LNDG_WORKING,
        SkipReason.DAILY_BUDGET,
    ]
    assert target_skip(channel, ArSettings(), daily=daily) == skips[0]
    assert target_skips(target(), ArSettings()) == []


def test_skip_json():
    skip = target_skip(target(local_fee_rate=120, remote_fee_rate=600), ArSettings())
    assert skip is not None
    assert skip_json(skip) == {
        "reason": "uneconomic",
        "text": "cap 78 ppm <= peer's fee 600 ppm",
    }
    json.dumps(skip_json(skip))


# --- earnings budget -------------------------------------------------------------------------


def forward(fee: float, *, out: str = TARGET_ID, age: timedelta = timedelta(days=1)) -> Forward:
    return Forward.model_validate(
        {
            "id": 1,
            "forward_date": (NOW - age).replace(tzinfo=None).isoformat(),  # LNDg: naive UTC
            "chan_id_in": OTHER_ID if out == TARGET_ID else TARGET_ID,
            "chan_id_out": out,
            "amt_out_msat": 1_000_000,
            "fee": fee,
        }
    )


def payment(
    fee: float,
    *,
    rebal_chan: str | None = TARGET_ID,
    status: int = 2,
    age: timedelta = timedelta(days=1),
) -> Payment:
    return Payment(
        payment_hash=f"{fee}-{rebal_chan}-{status}-{age}",
        creation_date=NOW - age,
        value=100_000,
        fee=fee,
        status=status,
        rebal_chan=rebal_chan,
    )


def budget(forwards: list[Forward], payments: list[Payment], ratio: float = 1) -> EarningsBudget:
    return EarningsBudget.compute(forwards, payments, ratio=ratio, window_days=30, now=NOW)


def test_earnings_over_budget_says_spent_and_earned():
    result = budget([forward(1000), forward(629)], [payment(2000), payment(16)])
    assert result.earnings(TARGET_ID).earned_msat == 1_629_000
    assert result.earnings(TARGET_ID).spent_msat == 2_016_000
    assert not result.allowed(TARGET_ID)
    skip = target_skip(target(), ArSettings(), earnings=result)
    assert isinstance(skip, OverEarningsBudget)
    assert skip.describe() == "spent 2,016 sat, earned 1,629 sat in 30 d"


def test_earnings_strictly_below():
    # spent == k x earned is over budget; one msat less is not
    assert not budget([forward(1000)], [payment(1000)]).allowed(TARGET_ID)
    assert budget([forward(1000)], [payment(999.999)]).allowed(TARGET_ID)
    assert not budget([forward(1000)], [payment(500)], ratio=0.5).allowed(TARGET_ID)
    assert budget([forward(1000)], [payment(499.999)], ratio=0.5).allowed(TARGET_ID)
    # 0.1 is the decimal the operator wrote: 0.1 x 1 sat is 100 msat exactly
    assert not budget([forward(1)], [payment(0.1)], ratio=0.1).allowed(TARGET_ID)


def test_earnings_sum_in_msat():
    # As floats 0.1 + 0.1 + 0.1 is 0.30000000000000004 and would allow spending 0.3 sat.
    result = budget([forward(0.1), forward(0.1), forward(0.1)], [payment(0.3)])
    assert result.earnings(TARGET_ID) == result.by_target[TARGET_ID]
    assert result.earnings(TARGET_ID).earned_msat == 300
    assert not result.allowed(TARGET_ID)


def test_earnings_never_earned():
    result = budget([], [])
    assert not result.allowed(TARGET_ID)
    skip = result.skip(TARGET_ID)
    assert skip is not None
    assert skip.describe() == "earned nothing in 30 d"
    skip = budget([], [payment(12)]).skip(TARGET_ID)
    assert skip is not None
    assert skip.describe() == "spent 12 sat, earned nothing in 30 d"
    # off with k = 0: even a channel that never earned may be rebalanced
    assert budget([], [payment(12)], ratio=0).allowed(TARGET_ID)
    assert target_skip(target(), ArSettings(), earnings=budget([], [], ratio=0)) is None


def test_earnings_ratio_shown_when_not_one():
    skip = budget([forward(1000)], [payment(600)], ratio=0.5).skip(TARGET_ID)
    assert skip is not None
    assert skip.describe() == "spent 600 sat, earned 1,000 sat in 30 d (budget 0.5 x earned)"
    assert budget([forward(1000)], [payment(600)], ratio=2).allowed(TARGET_ID)


def test_earnings_count_only_what_belongs_to_the_target():
    result = budget(
        [
            forward(500),
            forward(700, out=OTHER_ID),  # left through another channel (came in by T)
            forward(900, age=timedelta(days=30, seconds=1)),  # before the window
            forward(11, age=timedelta(days=30)),  # at the window's start: counted
        ],
        [
            payment(100),
            payment(200, rebal_chan=OTHER_ID),  # refilled another channel
            payment(300, rebal_chan=None),  # not a rebalance
            payment(400, status=3),  # failed
            payment(800, age=timedelta(days=31)),
        ],
    )
    assert result.earnings(TARGET_ID).earned_msat == 511_000
    assert result.earnings(TARGET_ID).spent_msat == 100_000
    assert result.earnings(OTHER_ID).earned_msat == 700_000
    assert result.earnings(OTHER_ID).spent_msat == 200_000
    assert result.allowed(TARGET_ID)


def test_earnings_budget_refuses_bad_input():
    with pytest.raises(ValueError, match="window_days"):
        EarningsBudget.compute([], [], ratio=1, window_days=0, now=NOW)
    with pytest.raises(ValueError, match="aware"):
        EarningsBudget.compute([], [], ratio=1, window_days=30, now=NOW.replace(tzinfo=None))


# --- daily budget ----------------------------------------------------------------------------


def ledger_row(moment: datetime, fee_sat: float, row_id: int = 1) -> Rebalance:
    line = StatLine(
        timestamp=int(moment.timestamp()),
        from_channel="879609302301671425",
        to_channel=TARGET_ID,
        amount_msat=100_000_000,
        fees_msat=round(fee_sat * 1000),
    )
    return Rebalance(id=row_id, line=line, from_alias="a", to_alias="b")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0):
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def test_daily_budget_spring_forward_in_berlin():
    # 2026-03-29 has 23 h in Berlin: 00:00 CET = 23:00 UTC the day before, the next
    # 00:00 CEST = 22:00 UTC.
    ledger = [
        ledger_row(utc(2026, 3, 28, 22, 59, 59), 1000),  # 23:59:59 on the 28th
        ledger_row(utc(2026, 3, 28, 23, 0, 0), 3),  # 00:00:00 on the 29th
        ledger_row(utc(2026, 3, 29, 21, 59, 59), 2),  # 23:59:59 on the 29th
        ledger_row(utc(2026, 3, 29, 22, 0, 0), 1000),  # 00:00:00 on the 30th
    ]
    now = utc(2026, 3, 29, 8, 0)  # 10:00 CEST
    daily = DailyBudget.today(ledger, budget_sat=5, now=now, zone=BERLIN)
    assert daily.spent_msat == 5_000
    assert daily.reached
    assert daily.resumes_at == datetime(2026, 3, 30, 0, 0, tzinfo=BERLIN)
    assert daily.resumes_at.astimezone(UTC) == utc(2026, 3, 29, 22, 0)
    skip = target_skip(target(), ArSettings(), daily=daily)
    assert skip == DailyBudgetReached(5_000, 5, daily.resumes_at)
    assert skip.describe() == (
        "daily fee budget reached: 5 sat of 5 sat paid today, "
        "runs resume at 2026-03-30 00:00 Europe/Berlin"
    )
    # one second before local midnight: still stopped; at midnight: a new day, runs resume
    before_midnight = utc(2026, 3, 29, 21, 59, 59)
    assert DailyBudget.today(ledger, budget_sat=5, now=before_midnight, zone=BERLIN).reached
    midnight = DailyBudget.today(ledger, budget_sat=5, now=daily.resumes_at, zone=BERLIN)
    assert midnight.spent_msat == 1_000_000
    budget_big = DailyBudget.today(ledger, budget_sat=1001, now=daily.resumes_at, zone=BERLIN)
    assert not budget_big.reached
    assert budget_big.resumes_at.astimezone(UTC) == utc(2026, 3, 30, 22, 0)


def test_daily_budget_fall_back_in_berlin():
    # 2026-10-25 has 25 h in Berlin: 22:00 UTC on the 24th to 23:00 UTC on the 25th.
    ledger = [
        ledger_row(utc(2026, 10, 24, 21, 59, 59), 100),
        ledger_row(utc(2026, 10, 24, 22, 0, 0), 1),
        ledger_row(utc(2026, 10, 25, 22, 30, 0), 1),  # 23:30 CET, still the 25th
        ledger_row(utc(2026, 10, 25, 23, 0, 0), 100),
    ]
    now = utc(2026, 10, 25, 22, 45)
    daily = DailyBudget.today(ledger, budget_sat=3, now=now, zone=BERLIN)
    assert daily.spent_msat == 2_000
    assert not daily.reached
    assert daily.resumes_at == datetime(2026, 10, 26, 0, 0, tzinfo=BERLIN)
    assert daily.resumes_at.astimezone(UTC) == utc(2026, 10, 25, 23, 0)
    assert DailyBudget.today(ledger, budget_sat=2, now=now, zone=BERLIN).reached


def test_daily_budget_zero_is_none():
    ledger = [ledger_row(NOW, 10_000)]
    daily = DailyBudget.today(ledger, budget_sat=0, now=NOW, zone=UTC)
    assert not daily.reached
    assert daily.skip() is None
    # reaching the budget exactly stops runs
    assert DailyBudget.today(ledger, budget_sat=10_000, now=NOW, zone=UTC).reached
    assert not DailyBudget.today(ledger, budget_sat=10_001, now=NOW, zone=UTC).reached
    with pytest.raises(ValueError, match="aware"):
        DailyBudget.today(ledger, budget_sat=1, now=NOW.replace(tzinfo=None), zone=UTC)


# --- properties ------------------------------------------------------------------------------


def regolancer_econ_fee_msat(
    amount_msat: int, target_fee: int, source_fee: int, ratio: float, econ_max: int, lost: bool
) -> int:
    """routes.go calcEconFeeMsat with base fees 0, in Python floats like Go's float64."""
    lost_msat = int(float(amount_msat * source_fee) / 1e6) if lost else 0
    fee = int(float(amount_msat * target_fee) * ratio / 1e6) - lost_msat
    if econ_max != 0 and int(float(fee) / float(amount_msat) * 1e6) > econ_max:
        fee = econ_max * amount_msat // 1_000_000
    return fee


@settings(max_examples=300, deadline=None)
@given(
    amount=st.integers(1_000, 20_000_000),
    target_fee=st.integers(0, 5_000),
    source_fee=st.integers(0, 5_000),
    ratio=st.integers(1, 300).map(lambda n: n / 100),
    econ_max=st.sampled_from([0, 1, 100, 500, 1500]),
    lost=st.booleans(),
)
def test_template_limit_never_above_regolancers(
    amount, target_fee, source_fee, ratio, econ_max, lost
):
    template = {"econ_ratio": ratio, "econ_ratio_max_ppm": econ_max, "lost_profit": lost}
    ppm = template_cap_ppm(template, source(source_fee), target(local_fee_rate=target_fee))
    theirs = regolancer_econ_fee_msat(amount * 1000, target_fee, source_fee, ratio, econ_max, lost)
    if ppm > 0:
        ours = amount * 1000 * ppm // 1_000_000  # calcFeeLimitMsat
        assert ours <= theirs + 1  # at most regolancer's own 1-msat float rounding above
        assert theirs - ours <= amount * 1000 // 1_000_000 + 2  # at most one whole ppm below
    else:
        assert theirs <= amount * 1000 // 1_000_000 + 1  # regolancer too allows next to nothing


@settings(max_examples=200, deadline=None)
@given(
    local_fee_rate=st.integers(0, 10_000),
    ar_max_cost=st.integers(-10, 200),
    max_fee_rate=st.integers(0, 3_000),
    remote_fee_rate=st.integers(0, 5_000),
    ar_amt_target=st.integers(0, 5_000_000),
    min_amount=st.integers(0, 100_000),
)
def test_run_limits_bounds(
    local_fee_rate, ar_max_cost, max_fee_rate, remote_fee_rate, ar_amt_target, min_amount
):
    channel = target(
        local_fee_rate=local_fee_rate,
        ar_max_cost=ar_max_cost,
        remote_fee_rate=remote_fee_rate,
        ar_amt_target=ar_amt_target,
    )
    ar = ArSettings(max_fee_rate_ppm=max_fee_rate)
    template = {**SHIPPED, "min_amount": min_amount}
    cap = lndg_cap_ppm(channel, ar)
    assert cap <= max_fee_rate
    assert cap == min(max_fee_rate, int(local_fee_rate * (ar_max_cost / 100)))
    skip = pair_skip(template, source(), channel, ar)
    if skip is None:
        limits = run_limits(template, source(), channel, ar)
        assert limits.fee_limit_ppm is not None
        assert remote_fee_rate < limits.fee_limit_ppm <= cap
        assert limits.fee_limit_ppm <= template_cap_ppm(template, source(), channel)
        assert limits.amount is not None
        assert limits.amount >= max(min_amount, 1)
    else:
        with pytest.raises(ValueError, match="must be skipped"):
            run_limits(template, source(), channel, ar)


def test_a_runs_amount_is_cut_to_what_its_earnings_budget_can_pay() -> None:
    target = Channel.model_validate(
        channel_row("7", capacity=1_000_000, local_balance=100_000, remote_balance=900_000)
    )
    limits = RunLimits(fee_limit_ppm=500, amount=200_000)
    # 200,000 sat at 500 ppm could cost 100 sat
    assert within_headroom(limits, target, 1_000_000, 10_000) == (limits, True)  # 1,000 sat left
    # 60 sat left: 120,000 sat at 500 ppm; not the 900,000 sat of room rapid steps could fill
    assert within_headroom(limits, target, 60_000, 10_000) == (RunLimits(500, 120_000), False)
    # 450 sat left pays the fee of the whole room: rapid rebalancing may go on
    assert within_headroom(limits, target, 450_000, 10_000) == (RunLimits(500, 200_000), True)
    # 4.999 sat left: 9,998 sat, below min_amount 10,000: no run
    assert within_headroom(limits, target, 4_999, 10_000) is None
    # the template's own keys (FEE_POLICY=template): nothing to cut
    assert within_headroom(RunLimits(), target, 0, 10_000) == (RunLimits(), True)


def test_a_pair_without_rapid_rebalancing_writes_it_off() -> None:
    source = Channel.model_validate(channel_row("1", local_balance=900_000))
    target = Channel.model_validate(channel_row("2", local_balance=100_000))
    pair = Pair(source, target, 50, 50, fee_limit_ppm=300, amount=50_000, rapid=False)
    template = {"amount": 10_000, "allow_rapid_rebalance": True}
    config = build_config(template, pair, Path("/tmp/stat.csv"), fee_limit_ppm=300, amount=50_000)
    assert config["allow_rapid_rebalance"] is False
    plain = build_config(template, replace(pair, rapid=None), Path("/tmp/stat.csv"))
    assert plain["allow_rapid_rebalance"] is True
