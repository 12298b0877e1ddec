"""Bad input, generated: chat command arguments, stat CSV lines, LNDg channel rows and the
regolancer template. Always a clear message or a skipped row with a warning, never a crash,
never lost state.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bot import render
from bot.arguments import (
    FIRST_REPORT_DAY,
    ArgumentError,
    parse_channel,
    parse_count,
    parse_duration,
    parse_on_off,
    parse_report_period,
)
from core.lndg import LndgClient
from core.models import Channel, Pair
from core.pairing import build_pairs
from core.regolancer_config import (
    INTEGER_KEYS,
    NUMBER_KEYS,
    STRING_KEYS,
    STRING_LIST_KEYS,
    TemplateError,
    build_config,
    load_template,
)
from core.statfile import (
    StatLineError,
    StatPosition,
    parse_stat_line,
    read_new_lines,
)
from sim.regolancer import go_type_error

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
words = st.text(st.characters(codec="utf-8"), max_size=40)
args = st.lists(words, max_size=4)


def one_line(text: str) -> bool:
    return bool(text) and "\n" not in text


# --- chat command arguments ----------------------------------------------------------------


@FAST
@given(args)
# Digits `str.isdigit()` accepts and `int()` refuses (or reads), and dates before LNDg's data:
# once found by chance, now checked on every run.
@example(["²"])
@example(["³d"])
@example(["٣"])
@example(["0001-01-01"])
def test_command_arguments_give_a_value_or_a_clear_message(arguments: list[str]) -> None:
    today = dt.date(2026, 11, 25)
    text = " ".join(arguments)
    problems: list[ArgumentError] = []
    for parse in (
        lambda: parse_duration(text),
        lambda: parse_on_off(text),
        lambda: parse_count(arguments),
        lambda: parse_channel(arguments, "exclude"),
        lambda: parse_report_period(arguments, today),
    ):
        try:
            value = parse()
        except ArgumentError as exc:
            problems.append(exc)
            continue
        if isinstance(value, int) and not isinstance(value, bool):
            assert value > 0
        if isinstance(value, tuple):
            assert FIRST_REPORT_DAY <= value[0] <= today
            assert 1 <= value[1] <= 90
    for problem in problems:  # each refusal: one line, an example, a reply that fits
        assert one_line(problem.problem)
        assert problem.example.startswith("/")
        assert len(render.bad_argument(problem.problem, problem.example)) <= render.MAX_MESSAGE


# --- stat CSV lines ----------------------------------------------------------------------------

valid_line = st.builds(
    lambda ts, a, b, amount, fee: f"{ts},{a},{b},{amount},{fee}",
    st.integers(1_231_006_505, 4_102_444_799),
    st.integers(1, 2**64 - 1),
    st.integers(1, 2**64 - 1),
    st.integers(1, 2**63 - 1),
    st.integers(0, 2**63 - 1),
)
noise = st.one_of(
    words,
    st.text(st.sampled_from("0123456789,- \t\r\ufeffx"), max_size=60),
    st.just("timestamp,from_channel,to_channel,amount_msat,fees_msat"),
)


@FAST
@given(st.one_of(valid_line, noise))
def test_any_stat_line_parses_or_gives_a_one_line_reason(text: str) -> None:
    try:
        parsed = parse_stat_line(text)
    except StatLineError as exc:
        reason = str(exc)
        parsed = None
    else:
        reason = "ok"
    assert one_line(reason)
    if parsed is not None:
        assert parsed.amount_msat > 0
        assert parsed.from_channel.isdigit()


@FAST
@given(
    st.lists(st.one_of(valid_line, noise), max_size=25),
    st.lists(st.integers(1, 300), min_size=1, max_size=8),
    st.integers(16, 4096),
)
def test_stat_file_written_in_any_chunks_yields_each_good_line_once(
    tmp_path_factory: Any, lines: list[str], cuts: list[int], budget: int
) -> None:
    path = tmp_path_factory.mktemp("stat") / "stat.csv"
    data = "".join(line.replace("\n", " ") + "\n" for line in lines).encode()
    expected = []
    for line in lines:
        try:
            parsed = parse_stat_line(line.replace("\n", " "))
        except StatLineError:
            continue
        if parsed is not None:
            expected.append(parsed)
    seen = []
    position: StatPosition | None = None
    written = 0
    for cut in [*cuts, len(data)]:  # the writer appends arbitrary pieces, even half lines
        piece = data[written : written + cut]
        written += len(piece)
        with path.open("ab") as f:
            f.write(piece)
        while True:
            batch = read_new_lines(path, position, max_bytes=budget)
            seen += batch.lines
            position = batch.end
            if not batch.has_more:
                break
    assert seen == expected


# --- LNDg channel rows -------------------------------------------------------------------------

json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | words,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(words, inner, max_size=3),
    max_leaves=6,
)
GOOD_ROW: dict[str, Any] = {
    "chan_id": "879609302301671425",
    "short_chan_id": "800000x1x1",
    "remote_pubkey": "02" + "ab" * 32,
    "alias": "Peer",
    "capacity": 1_000_000,
    "local_balance": 900_000,
    "remote_balance": 100_000,
    "pending_outbound": 0,
    "pending_inbound": 0,
    "local_fee_rate": 100,
    "is_open": True,
    "is_active": True,
    "private": False,
    "auto_rebalance": False,
    "ar_out_target": 60,
    "ar_in_target": 80,
}
row = st.one_of(
    json_value,
    st.builds(
        lambda drop, change: {
            **{k: v for k, v in GOOD_ROW.items() if k not in drop},
            **change,
        },
        st.sets(st.sampled_from(sorted(GOOD_ROW))),
        st.dictionaries(st.sampled_from(sorted(GOOD_ROW)), json_value, max_size=4),
    ),
)


@settings(max_examples=80, deadline=None)
@given(st.lists(row, max_size=8))
def test_any_channel_rows_are_used_or_skipped_with_a_warning(rows: list[Any]) -> None:
    client = LndgClient("http://127.0.0.1:9", password="pw")  # never contacted
    logger = logging.getLogger("core.lndg")
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Collect()
    logger.addHandler(handler)
    try:
        parsed = client._parse(rows, Channel, "channel", "chan_id")
    finally:
        logger.removeHandler(handler)
    assert len(parsed) + len(parsed.skipped) <= len(rows)
    assert len(records) == len(parsed.skipped)
    assert all(r.levelno == logging.WARNING for r in records)
    assert all(one_line(reason) for reason in parsed.skipped)
    pairs: list[Pair] = build_pairs(list(parsed), frozenset())  # never raises either
    assert all(p.source.chan_id != p.target.chan_id for p in pairs)


# --- the template ------------------------------------------------------------------------------

known_keys = [
    *sorted(INTEGER_KEYS | NUMBER_KEYS | STRING_KEYS | STRING_LIST_KEYS),
    "allow_rapid_rebalance",
    "lost_profit",
    "unknown_key",
]
template_value = st.one_of(
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.booleans(),
    words,
    st.lists(st.one_of(words, st.integers()), max_size=3),
    st.none(),
)


@FAST
@given(st.dictionaries(st.sampled_from(known_keys), template_value, max_size=8))
def test_any_template_is_refused_clearly_or_accepted_by_regolancer(
    tmp_path_factory: Any, data: dict[str, Any]
) -> None:
    path: Path = tmp_path_factory.mktemp("template") / "config.template.json"
    path.write_text(json.dumps(data))
    try:
        template = load_template(path)
    except TemplateError as exc:
        refusal = str(exc)
    else:
        refusal = ""
    if refusal:
        assert one_line(refusal)
        assert str(path) in refusal
        return
    channel = Channel.model_validate(GOOD_ROW)
    other = Channel.model_validate(
        {**GOOD_ROW, "chan_id": "879609302301671426", "remote_pubkey": "03" + "cd" * 32}
    )
    config = build_config(template, Pair(channel, other, 40, 20), path.parent / "stat.csv")
    # what we accept, regolancer's JSON decoder accepts too (checked by the stand-in's copy)
    assert [go_type_error(key, value) for key, value in config.items()] == [None] * len(config)


def test_partial_line_longer_than_the_budget_does_not_ask_to_read_again(tmp_path: Path) -> None:
    # has_more=True here made the engine's ledger poll spin for ever on the event loop.
    path = tmp_path / "stat.csv"
    path.write_bytes(b"1764021421,1,2,1000,0\n" + b"\0" * 5000)  # a hole, no newline yet
    first = read_new_lines(path, None, max_bytes=100)
    stuck = read_new_lines(path, first.end, max_bytes=100)
    assert (stuck.entries, stuck.end, stuck.has_more) == ([], first.end, False)
