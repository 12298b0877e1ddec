"""Pure parts of the chat face: argument parsing, rendering, the authorisation rule."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest
from telegram import Update

from bot import render
from bot.arguments import (
    ArgumentError,
    parse_channel,
    parse_count,
    parse_duration,
    parse_on_off,
    parse_report_period,
)
from bot.auth import is_authorised
from core.control import Status
from core.events import Mode, RebalanceLanded
from core.models import Outcome, Rebalance, StatLine
from core.pairing import build_pairs
from core.state import Totals
from tests.test_pairing import channel


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("30", 1800), ("2h", 7200), ("1d", 86400), ("3 days", 259200)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "-5m", "0m", "31d", "2w"])
def test_bad_durations_explain_with_an_example(text: str) -> None:
    with pytest.raises(ArgumentError) as caught:
        parse_duration(text)
    assert caught.value.example.startswith("/pause ")


def test_other_arguments() -> None:
    assert parse_on_off("ON") is True
    assert parse_on_off("off") is False
    with pytest.raises(ArgumentError, match="neither on nor off"):
        parse_on_off("maybe")
    assert parse_count([]) == 10
    assert parse_count(["3"]) == 3
    for bad in (["0"], ["51"], ["x"], ["1", "2"]):
        with pytest.raises(ArgumentError, match="from 1 to 50"):
            parse_count(bad)
    assert parse_channel(["Some", "Alias"], "exclude") == "Some Alias"
    with pytest.raises(ArgumentError):
        parse_channel([], "exclude")


def rebalance(amount_sat: int, fee_msat: int, src: str = "<b>Evil</b>", tgt: str = "") -> Rebalance:
    return Rebalance(1, StatLine(1764021421, "1", "2", amount_sat * 1000, fee_msat), src, tgt)


def test_rebalance_message_escapes_aliases_and_names_unknown_channels_by_id() -> None:
    text = render.rebalances([RebalanceLanded((rebalance(50_000, 12_500),))])
    assert text == (
        "✅ Rebalanced 50,000 sat &lt;b&gt;Evil&lt;/b&gt; → <code>2</code>, fee 12.5 sat (250 ppm)"
    )


def test_many_rebalances_are_one_message_within_the_limit() -> None:
    rows = [rebalance(1000 + i, 0, "A" * 60, "B" * 60) for i in range(200)]
    text = render.rebalances([RebalanceLanded((r,)) for r in rows])
    assert len(text) <= render.MAX_MESSAGE
    assert text.startswith("✅ <b>200 rebalances</b>, 219,900 sat, fee 0 sat")
    assert text.endswith("… (cut)")


def test_fit_never_leaves_a_tag_open() -> None:
    text = "<b>" + "x" * 5000 + "</b>"
    cut = render.fit(text)
    assert len(cut) <= render.MAX_MESSAGE
    assert cut.count("<b>") == cut.count("</b>")


def test_pairs_pages() -> None:
    sources = [channel(i, local_balance=900_000) for i in range(1, 5)]
    targets = [channel(100 + i, local_balance=10_000, auto_rebalance=True) for i in range(1, 9)]
    pairs = build_pairs(sources + targets)
    assert len(pairs) == 32
    assert render.pages(32) == 3
    first = render.pairs_page(pairs, 0, 12)
    assert first.startswith("<b>Pairs</b>: 32 from 12 channels (page 1/3)")
    assert first.count("• ") == 15
    last = render.pairs_page(pairs, 9, 12)  # past the end: the last page
    assert "(page 3/3)" in last
    assert last.count("• ") == 2
    assert "nothing to rebalance" in render.pairs_page([], 0, 12)


def test_status_lists_runs_and_totals() -> None:
    snapshot = Status(
        now=1_000_000.0,
        mode=Mode(dry_run=False),
        last_cycle=(999_000.0, 999_100.0),
        next_cycle=1_000_200.0,
        cycle_running=False,
        active=(),
        today=Totals(3, 150_000, 37.5),
        outcomes={Outcome.SUCCESS: 3, Outcome.NO_ROUTE: 5},
        lndg_ok=False,
        lndg_error="credentials rejected",
    )
    text = render.status(snapshot, dt.UTC)
    assert "<b>Mode</b>: live" in text
    assert "(15m ago, 1m)" in text
    assert "(in 3m)" in text
    assert "⚠️ credentials rejected" in text
    assert "3 rebalances, 150,000 sat, fee 37.5 sat (250 ppm)" in text
    assert "no route 5, success 3" in text
    assert "Fee budget" not in text  # DAILY_FEE_BUDGET_SATS=0: no budget, no line
    budget = dataclasses.replace(snapshot, daily_fee_budget_sat=50)
    assert "<b>Fee budget</b>: 37.5 sat of 50 sat today\n" in render.status(budget, dt.UTC)
    spent = dataclasses.replace(snapshot, daily_fee_budget_sat=30)
    assert "37.5 sat of 30 sat today — reached: no new run until midnight" in render.status(
        spent, dt.UTC
    )


def test_pairs_list_the_skipped_targets_with_why() -> None:
    sources = [channel(1, local_balance=900_000)]
    targets = [channel(101, local_balance=10_000, auto_rebalance=True, alias="Bitrefill")]
    text = render.pairs_page([], 0, 2, skipped=[(targets[0], "earned nothing in 30 d")])
    assert "nothing to rebalance" in text
    assert text.endswith("<b>Skipped targets</b>: 1\n⏸ Bitrefill: earned nothing in 30 d")
    pairs = build_pairs(sources + targets)
    assert "Skipped" not in render.pairs_page(pairs, 0, 2)


def update(payload: dict[str, Any]) -> Update:
    return Update.de_json({"update_id": 1, **payload}, None)


def message(chat_id: int, user_id: int | None, chat_type: str = "private") -> dict[str, Any]:
    body: dict[str, Any] = {
        "message_id": 1,
        "date": 0,
        "chat": {"id": chat_id, "type": chat_type},
        "text": "/pause",
    }
    if user_id is not None:
        body["from"] = {"id": user_id, "is_bot": False, "first_name": "x"}
    return body


@pytest.mark.parametrize(
    ("payload", "allowed", "expected"),
    [
        ({"message": message(42, 42)}, [], True),
        ({"message": message(43, 43)}, [], False),
        ({"message": message(-100, 7, "group")}, [], False),
        ({"message": message(42, 42)}, [7], False),
        ({"message": message(42, 7)}, [7], True),
        ({"edited_message": message(43, 43)}, [], False),
        ({"channel_post": message(42, None, "channel")}, [], False),
        (
            {
                "inline_query": {
                    "id": "1",
                    "from": {"id": 42, "is_bot": False, "first_name": "x"},
                    "query": "q",
                    "offset": "",
                }
            },
            [],
            False,
        ),
        (
            {
                "callback_query": {
                    "id": "1",
                    "from": {"id": 9, "is_bot": False, "first_name": "x"},
                    "chat_instance": "c",
                    "data": "ok:resume",
                    "message": message(42, 42),
                }
            },
            [7],
            False,
        ),
    ],
)
def test_only_the_operator_gets_in(
    payload: dict[str, Any], allowed: list[int], expected: bool
) -> None:
    assert is_authorised(update(payload), 42, allowed) is expected


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], (dt.date(2026, 11, 24), 1)),
        (["today"], (dt.date(2026, 11, 24), 1)),
        (["yesterday"], (dt.date(2026, 11, 23), 1)),
        (["2026-11-01"], (dt.date(2026, 11, 1), 1)),
        (["7d"], (dt.date(2026, 11, 24), 7)),
        (["30D"], (dt.date(2026, 11, 24), 30)),
    ],
)
def test_report_periods(args: list[str], expected: tuple[dt.date, int]) -> None:
    assert parse_report_period(args, dt.date(2026, 11, 24)) == expected


@pytest.mark.parametrize("args", [["lastweek"], ["2026-11-25"], ["0d"], ["91d"], ["1", "2"]])
def test_bad_report_periods(args: list[str]) -> None:
    with pytest.raises(ArgumentError):
        parse_report_period(args, dt.date(2026, 11, 24))
