"""The money question: `/channel`, `/pnl` and the daily report's money lines, with figures
computed by hand, against the LNDg stand-in over a socket (seeded forwards and payments), a
real state store, and days cut in Europe/Berlin (a forward at 23:30 local is that day's).

The node, `now` = Tue 2026-11-24 12:00 Berlin (11:00 UTC); 7 d = Nov 18 00:00 Berlin
(Nov 17 23:00 UTC) to now, 30 d from Oct 26 00:00 Berlin.

Forwards (fee = what we earned, sats), by the channel they left through:
  F2 Tgt1 7.2   Nov 18 00:30 Berlin (Nov 17 23:30 UTC: a UTC day would miss it from 7 d)
  F3 Tgt1 3.0   Nov 17 23:30 Berlin (30 d only)
  F4 Src1 100   Nov 20 10:00 UTC
  F5 Tgt2 1.0   Nov 24 09:00 UTC
  F7 Src1 0.5   Nov 23 23:30 Berlin (Nov 23's, not Nov 24's)
  F8 Tgt1 50    Nov 24 13:00 Berlin (after now: not counted)
  F9 Src1 2.0   Nov 24 00:30 Berlin (Nov 23 23:30 UTC: Nov 24's, not Nov 23's)
  F10 Src1 0.3  Nov 23 00:30 Berlin (Nov 22 23:30 UTC: Nov 23's, not Nov 22's)
Rebalances into (all tools):
  P1 Tgt1 4.0  LNDg's (its hash)       Nov 20 10:00 UTC
  P2 Tgt1 20.0 ours (ledger row)       Nov 21 10:00 UTC
  P3 Tgt2 9.0  another tool            Nov 22 10:00 UTC
  P4 Tgt1 1.0  ours (ledger row)       Nov 17 23:40 Berlin (30 d only)
  U  Tgt2 6.0  ours, LNDg never showed Nov 23 08:00 UTC
"""

from __future__ import annotations

import asyncio
import csv
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from telegram import Update

from bot import render
from bot.app import build_application
from bot.arguments import ArgumentError, parse_pnl_days
from bot.handlers import Commands, Confirmations
from core.channel_card import RoleKind, role_of
from core.channel_ref import ChannelLookupError
from core.control import Control, Refused
from core.engine import Engine
from core.lndg import LndgClient, LndgError
from core.models import Channel, Outcome, RunResult, StatLine, short_id_to_chan_id
from core.report_csv import COLUMNS, read_days
from core.report_delivery import Reporter
from core.report_figures import format_summary
from core.settings import load_settings
from core.state import StateStore
from sim.lndg import FakeLndg, channel_row, forward_row, payment_row, rebalance_row
from sim.telegram import FakeTelegram
from tests.daemon_process import Node, run_cli
from tests.test_engine import ScriptedRunner

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=BERLIN).timestamp()
SRC1, TGT1, TGT2 = (short_id_to_chan_id(s) for s in ("800000x1x0", "800000x101x0", "800000x102x0"))
CHAT = OPERATOR = 4242
TOKEN = "123456:money-token"


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, s: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, s, tzinfo=UTC)


def berlin(year: int, month: int, day: int, hour: int = 0, minute: int = 0, s: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, s, tzinfo=BERLIN)


def seed(fake: FakeLndg, store: StateStore) -> None:
    fake.channels = [
        channel_row(SRC1, alias="Src1", local_balance=900_000, ar_out_target=60),
        channel_row(
            TGT1,
            alias="Tgt1",
            local_balance=20_000,
            auto_rebalance=True,
            ar_in_target=80,
            local_fee_rate=500,
            remote_fee_rate=40,
            ar_max_cost=65,
        ),
        channel_row(TGT2, alias="Tgt2", local_balance=20_000, auto_rebalance=True, ar_in_target=80),
    ]
    fake.forwards = [
        forward_row(n, chan_id_in=SRC1 if out != SRC1 else TGT1, chan_id_out=out, fee=fee,
                    forward_date=when)
        for n, out, fee, when in (
            (2, TGT1, 7.2, berlin(2026, 11, 18, 0, 30)),
            (3, TGT1, 3.0, berlin(2026, 11, 17, 23, 30)),
            (4, SRC1, 100, utc(2026, 11, 20, 10)),
            (5, TGT2, 1.0, utc(2026, 11, 24, 9)),
            (7, SRC1, 0.5, berlin(2026, 11, 23, 23, 30)),
            (8, TGT1, 50, berlin(2026, 11, 24, 13)),
            (9, SRC1, 2.0, berlin(2026, 11, 24, 0, 30)),
            (10, SRC1, 0.3, berlin(2026, 11, 23, 0, 30)),
        )
    ]  # fmt: skip
    lndg_hash = "a" * 64
    fake.payments = [
        payment_row(lndg_hash, creation_date=utc(2026, 11, 20, 10), value=50_000, fee=4.0,
                    chan_out=SRC1, rebal_chan=TGT1),
        payment_row("b" * 64, creation_date=utc(2026, 11, 21, 10), value=100_000, fee=20.0,
                    chan_out=SRC1, rebal_chan=TGT1),
        payment_row("c" * 64, creation_date=utc(2026, 11, 22, 10), value=30_000, fee=9.0,
                    chan_out=SRC1, rebal_chan=TGT2),
        payment_row("d" * 64, creation_date=berlin(2026, 11, 17, 23, 40), value=40_000, fee=1.0,
                    chan_out=SRC1, rebal_chan=TGT1),
        payment_row("e" * 64, creation_date=utc(2026, 11, 21, 12), value=5_000, fee=2.0,
                    chan_out=SRC1),  # a plain payment: no one's rebalancing cost
    ]  # fmt: skip
    fake.rebalancer = [rebalance_row(payment_hash=lndg_hash, stop=utc(2026, 11, 20, 10, 2))]

    def line(moment: datetime, to: str, sats: int, fee_msat: int) -> tuple[StatLine, str, str]:
        to_alias = "Tgt1" if to == TGT1 else "Tgt2"
        return StatLine(int(moment.timestamp()), SRC1, to, sats * 1000, fee_msat), "Src1", to_alias

    store.record_stat_lines(
        [
            line(utc(2026, 11, 21, 10, 0, 30), TGT1, 100_000, 20_000),
            line(berlin(2026, 11, 17, 23, 40, 20), TGT1, 40_000, 1_000),
            line(utc(2026, 11, 23, 8), TGT2, 30_000, 6_000),  # U: LNDg never showed it
        ],
        (1, 300),
    )
    for hour, outcome in ((10, Outcome.SUCCESS), (11, Outcome.NO_ROUTE), (12, Outcome.NO_ROUTE)):
        started = utc(2026, 11, 21 + hour - 10, 10).timestamp()
        store.record_run(RunResult(SRC1, TGT1, started, started + 60, 0, outcome, ""))
    dry = utc(2026, 11, 24, 9).timestamp()
    store.record_run(RunResult(SRC1, TGT1, dry, dry, None, Outcome.DRY_RUN, ""))


@pytest.fixture
def fake() -> Iterator[FakeLndg]:
    with FakeLndg(payments=[], rebalancer=[]) as server:
        yield server


@pytest.fixture
async def client(fake: FakeLndg) -> AsyncIterator[LndgClient]:
    async with LndgClient(fake.url, password="secret", backoff=0.01, attempts=1) as opened:
        yield opened


@pytest.fixture
async def control(tmp_path: Path, fake: FakeLndg, client: LndgClient) -> AsyncIterator[Control]:
    settings = load_settings(
        None,
        data_dir=tmp_path,
        timezone="Europe/Berlin",
        telegram_token=TOKEN,
        telegram_chat_id=CHAT,
    )
    store = StateStore(tmp_path / "state.sqlite3")
    seed(fake, store)

    async def fetch() -> list[Channel]:
        return (await client.fetch_channels()).channels

    engine = Engine(settings, store, fetch, ScriptedRunner(), clock=lambda: NOW)
    try:
        yield Control(engine, clock=lambda: NOW, node=client)
    finally:
        store.close()


# --- the figures ---------------------------------------------------------------------------


async def test_pnl_7d_by_hand_cut_at_berlin_midnight(control: Control) -> None:
    pnl = await control.pnl(7)
    assert (pnl.period.first_day, pnl.period.last_day) == (date(2026, 11, 18), date(2026, 11, 24))
    got = [
        (m.alias, m.forwards, m.earned_msat, m.cost.fee_msat, m.daemon.fee_msat, m.net_msat)
        for m in pnl.channels
    ]
    assert got == [  # worst net first
        ("Tgt1", 1, 7_200, 24_000, 20_000, -16_800),  # F2; P1 (LNDg) + P2 (ours)
        ("Tgt2", 1, 1_000, 15_000, 6_000, -14_000),  # F5; P3 (other) + U (ours)
        ("Src1", 4, 102_800, 0, 0, 102_800),  # F4 + F7 + F9 + F10
    ]
    assert pnl.revenue_msat == 111_000
    assert (pnl.daemon.fee_msat, pnl.lndg.fee_msat, pnl.other.fee_msat) == (26_000, 4_000, 9_000)
    assert pnl.cost_share == pytest.approx(39 / 111 * 100)
    text = render.pnl_page(pnl, 0)
    assert "Routing revenue: 111 sat from 6 forwards" in text
    assert "Rebalancing cost: 39 sat = 35.1% of revenue" in text
    assert "this daemon 26 sat · LNDg 4 sat · other 9 sat" in text
    assert "Net: <b>+72 sat</b>" in text
    assert "• Tgt1: earned 7.2 sat (1 fw), cost 24 sat → <b>-16.8 sat</b>" in text


async def test_channel_card_by_hand(control: Control) -> None:
    card = await control.channel("800000x101x0")
    assert card.role.kind is RoleKind.TARGET
    assert card.role.why == "AR on, local 2% < 100 - ar_in_target 80 = 20%"
    assert card.cap_ppm == 325  # min(AR-MaxFeeRate 500, int(500 * 0.65))
    assert (card.week.forwards, card.week.earned_msat, card.week.net_msat) == (1, 7_200, -16_800)
    # 30 d adds F3 (3.0) and P4 (1.0, ours): 10.2 earned, 25 spent, 21 of it ours.
    month = card.month
    assert (month.forwards, month.earned_msat, month.cost.fee_msat) == (2, 10_200, 25_000)
    assert (month.daemon.fee_msat, month.net_msat) == (21_000, -14_800)
    assert (card.runs.into.attempts, card.runs.into.successes) == (3, 1)  # the dry run: none
    assert card.runs.last is not None
    assert card.runs.last.outcome is Outcome.NO_ROUTE
    (source,) = card.sources
    assert (source.alias, source.share.count, source.share.sats, source.share.ppm) == (
        "Src1",
        2,
        140_000,
        150,  # 21,000 msat * 1e6 // 140,000,000 msat
    )
    text = render.channel_card(card, BERLIN)
    lines = text.splitlines()
    assert len(lines) <= 25
    assert (
        "<b>7 d</b>: 1 fw out earned 7.2 sat; rebalancing in 24 sat (this daemon 20 sat); "
        "net <b>-16.8 sat</b>"
    ) in lines
    assert "Runs 30 d: into 3, 1 ok (33.3%); out of none" in text
    assert "Last run: no route (into it), 2026-11-23 11:00" in text
    assert "Fees: ours 500 ppm · peer's 40 ppm · cap 325 ppm (AR-MaxFeeRate 500 ppm)" in text
    assert "• Src1: 2× 140,000 sat, 21 sat (150 ppm)" in text


async def test_unknown_and_ambiguous_references_say_what_to_type(
    control: Control, fake: FakeLndg
) -> None:
    with pytest.raises(ChannelLookupError, match="no open channel with alias 'nope'"):
        await control.channel("nope")
    fake.channels.append(channel_row("800000x103x0", alias="Tgt1"))
    with pytest.raises(ChannelLookupError, match=r"matches 2 channels.*use an id"):
        await control.channel("tgt1")


def test_role_reasons_follow_the_pairing_rule() -> None:
    def make(**fields: Any) -> Channel:
        return Channel.model_validate(channel_row("800000x5x0", **fields))

    assert role_of(make(local_balance=900_000, ar_out_target=60), excluded=False).why == (
        "AR off, local 90% > ar_out_target 60%"
    )
    assert role_of(make(local_balance=500_000, ar_out_target=60), excluded=False).why == (
        "AR off, local 50% <= ar_out_target 60%: no surplus"
    )
    full = make(local_balance=500_000, auto_rebalance=True, ar_in_target=80)
    assert role_of(full, excluded=False).kind is RoleKind.NEITHER
    assert role_of(full, excluded=True).why.startswith("excluded by the operator")
    odd = make(auto_rebalance=True, ar_in_target=150)
    assert role_of(odd, excluded=False).why.startswith("ar_in_target 150 is outside 0-100")


async def test_without_a_reader_or_with_lndg_down_it_says_so(
    control: Control, fake: FakeLndg
) -> None:
    bare = Control(control.engine, clock=lambda: NOW)
    with pytest.raises(Refused, match="not available"):
        await bare.pnl(7)
    fake.fault = "500"
    with pytest.raises(LndgError):
        await control.channel("Tgt1")


def test_pnl_arguments() -> None:
    assert parse_pnl_days([]) == 7
    assert parse_pnl_days(["30d"]) == 30
    for bad in (["30"], ["0d"], ["91d"], ["7d", "x"], ["٣d"]):
        with pytest.raises(ArgumentError, match="give 7d or 30d"):
            parse_pnl_days(bad)


# --- the daily report --------------------------------------------------------------------


@pytest.fixture
def reporter(tmp_path: Path, control: Control, client: LndgClient) -> Reporter:
    return Reporter(tmp_path / "data", BERLIN, time(0, 5), control.engine.store, client)


async def test_daily_report_money_lines_by_hand(reporter: Reporter) -> None:
    report = await reporter.build(date(2026, 11, 23))
    # Nov 23 Berlin: F10 at 00:30 and F7 at 23:30 local (F9 at 00:30 is Nov 24's); the
    # node's cost is U (6 sat, ours, unmatched).
    # 7 d = Nov 17..23: Tgt1 F2 + F3 - (P1 + P2 + P4) = 10.2 - 25; Tgt2 -(9 + 6);
    # Src1 F4 + F7 + F10 = 100.8.
    assert format_summary(report).splitlines()[-3:] == [
        "Routing revenue: 0.8 sat from 2 forwards; rebalancing cost 6 sat = 750.0% of it",
        "Worst net 7 d: Tgt2 -15 sat, Tgt1 -14.8 sat",
        "Best net 7 d: Src1 +100.8 sat",
    ]
    (row,) = read_days(reporter.csv_path)
    assert {k: row[k] for k in COLUMNS[-5:]} == {
        "revenue_sat": "0.800",
        "forwards": "2",
        "cost_pct_of_revenue": "750.00",
        "worst_net_7d": "Tgt2 800000x102x0 -15.000; Tgt1 800000x101x0 -14.800",
        "best_net_7d": "Src1 800000x1x0 100.800",
    }


async def test_daily_report_goes_out_when_forwards_cannot_be_read(
    reporter: Reporter, fake: FakeLndg
) -> None:
    broken = forward_row(chan_id_in=SRC1, chan_id_out=TGT1, forward_date=utc(2026, 11, 23, 9))
    del broken["fee"]  # LNDg renamed the field: nothing readable, never "earned nothing"
    fake.forwards = [broken]
    report = await reporter.build(date(2026, 11, 23))
    assert report.node.fee_msat == 6_000  # the rebalancing figures are all there
    assert (
        format_summary(report).splitlines()[-1].startswith("Routing revenue: not read from LNDg (")
    )
    (row,) = read_days(reporter.csv_path)
    assert row["revenue_sat"] == row["worst_net_7d"] == ""


def test_an_older_csv_without_the_money_columns_is_still_read(tmp_path: Path) -> None:
    path = tmp_path / "daily-report.csv"
    old = list(COLUMNS[:-5])
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(old)
        writer.writerow(["2026-11-20", *["1"] * (len(old) - 1)])
    (row,) = read_days(path)
    assert (row["node_rebalances"], row["revenue_sat"], row["best_net_7d"]) == ("1", "", "")


# --- the chat ----------------------------------------------------------------------------


@pytest.fixture
async def chat(control: Control) -> AsyncIterator[tuple[Commands, FakeTelegram, Any]]:
    with FakeTelegram(token=TOKEN) as telegram:
        settings = control.engine.settings.model_copy(
            update={"telegram_api_base_url": telegram.url}
        )
        app = build_application(settings)
        commands = Commands(control, None, settings, confirmations=Confirmations())
        commands.register(app)
        await app.initialize()

        async def dispatch(update_id: int) -> list[dict[str, Any]]:
            since = telegram.mark()
            await app.process_update(Update.de_json(telegram.update(update_id), app.bot))
            return [
                {"method": c.method, **c.params}
                for c in telegram.calls[since:]
                if c.method in ("sendMessage", "editMessageText", "answerCallbackQuery")
            ]

        try:
            yield commands, telegram, dispatch
        finally:
            await app.shutdown()


def _buttons(call: dict[str, Any]) -> list[str]:
    markup = call.get("reply_markup") or {}
    if isinstance(markup, str):
        markup = json.loads(markup)
    return [b["callback_data"] for row in markup.get("inline_keyboard", []) for b in row]


async def test_chat_channel_card_and_its_confirmed_exclude(
    chat: tuple[Commands, FakeTelegram, Any], fake: FakeLndg
) -> None:
    commands, telegram, dispatch = chat
    (card,) = await dispatch(telegram.inject_message(CHAT, OPERATOR, "/channel Tgt1"))
    assert "<b>Role</b>: target" in card["text"]
    (ask,) = _buttons(card)
    assert ask.startswith("ask:")
    message_id = 1  # the stand-in edits by id; the question is a new message either way
    calls = await dispatch(
        telegram.inject_callback_query(CHAT, OPERATOR, ask, message_id=message_id)
    )
    question = next(c for c in calls if c["method"] == "sendMessage")
    assert question["text"].startswith("Exclude Tgt1")
    ok = next(b for b in _buttons(question) if b.startswith("ok:"))
    calls = await dispatch(
        telegram.inject_callback_query(CHAT, OPERATOR, ok, message_id=message_id)
    )
    assert any("now excluded" in str(c.get("text")) for c in calls)
    assert TGT1 in commands.control.engine.store.excluded_ids()
    (card,) = await dispatch(telegram.inject_message(CHAT, OPERATOR, "/channel Tgt1"))
    assert "<b>Role</b>: neither — excluded by the operator" in card["text"]
    assert _buttons(card)[0].startswith("ask:")  # now an Include… button


async def test_chat_every_money_command_gets_an_answer(
    chat: tuple[Commands, FakeTelegram, Any], fake: FakeLndg
) -> None:
    _commands, telegram, dispatch = chat

    async def say(text: str) -> str:
        (reply,) = await dispatch(telegram.inject_message(CHAT, OPERATOR, text))
        return str(reply["text"])

    assert "Earned vs rebalancing cost, 7 d" in await say("/pnl")
    assert "Earned vs rebalancing cost, 30 d" in await say("/pnl 30d")
    assert "give 7d or 30d" in await say("/pnl 3x")
    assert "no open channel with alias" in await say("/channel nobody")
    assert "name a channel" in await say("/channel")
    fake.fault = "500"
    assert "LNDg could not be read" in await say("/channel Tgt1")
    assert "LNDg could not be read" in await say("/pnl")


async def test_chat_pnl_pages_with_buttons(
    chat: tuple[Commands, FakeTelegram, Any], fake: FakeLndg
) -> None:
    _commands, telegram, dispatch = chat
    for n in range(30):  # 30 more earning channels: two pages of 20
        chan = f"800000x{200 + n}x0"
        fake.channels.append(channel_row(chan, alias=f"Peer{n:02d}"))
        fake.forwards.append(
            forward_row(
                chan_id_in=SRC1, chan_id_out=chan, fee=n + 1, forward_date=utc(2026, 11, 22)
            )
        )
    (first,) = await dispatch(telegram.inject_message(CHAT, OPERATOR, "/pnl"))
    assert "page 1/2" in first["text"]
    assert len(first["text"]) <= 4096
    assert _buttons(first) == ["pnl:1"]
    calls = await dispatch(telegram.inject_callback_query(CHAT, OPERATOR, "pnl:1", message_id=1))
    edited = next(c for c in calls if c["method"] == "editMessageText")
    assert "page 2/2" in edited["text"]
    assert "Src1" in edited["text"]  # the best net is last


async def test_two_cards_at_once_both_answer(control: Control) -> None:
    one, two = await asyncio.gather(control.channel("Tgt1"), control.channel("Src1"))
    assert (one.role.kind, two.role.kind) == (RoleKind.TARGET, RoleKind.SOURCE)
    assert two.week.earned_msat == 102_800
    assert timedelta(0) <= timedelta(seconds=NOW - two.now)


# --- the CLI -----------------------------------------------------------------------------


@pytest.mark.subprocess
def test_cli_channel_and_pnl_as_text_and_json(tmp_path: Path) -> None:
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    with FakeLndg(payments=[], rebalancer=[]) as lndg:
        lndg.channels = [
            channel_row(SRC1, alias="Src1", local_balance=900_000, ar_out_target=60),
            channel_row(
                TGT1, alias="Tgt1", local_balance=20_000, auto_rebalance=True, ar_in_target=80
            ),
        ]
        lndg.forwards = [
            forward_row(chan_id_in=SRC1, chan_id_out=TGT1, fee=12.5, forward_date=hour_ago)
        ]
        lndg.payments = [
            payment_row(creation_date=hour_ago, fee=2.5, chan_out=SRC1, rebal_chan=TGT1)
        ]
        node = Node(tmp_path, lndg.url, timezone="America/New_York")
        card = run_cli(node, "channel", "800000x101x0", "--json")
        assert card.returncode == 0, card.stderr
        shown = json.loads(card.stdout)
        assert (shown["alias"], shown["role"], shown["7d"]["net_sat"]) == ("Tgt1", "target", 10.0)
        assert shown["7d"]["cost_by_tool"]["other"] == {"count": 1, "sats": 1000, "fee_sat": 2.5}
        text = run_cli(node, "pnl", "30d")
        assert text.returncode == 0, text.stderr
        assert "• Tgt1: earned 12.5 sat (1 fw), cost 2.5 sat → +10 sat" in text.stdout
        assert json.loads(run_cli(node, "pnl", "--json").stdout)["revenue_sat"] == 12.5
        unknown = run_cli(node, "channel", "nobody")
        assert (unknown.returncode, unknown.stdout) == (2, "")
        assert unknown.stderr.strip() == "error: no open channel with alias 'nobody'"
        bad = run_cli(node, "pnl", "3x")
        assert bad.returncode == 2
        assert "give 7d or 30d" in bad.stderr
        lndg.fault = "401"  # the password changed: refused at once, no retries
        down = run_cli(node, "pnl")
        assert down.returncode == 1
        assert down.stderr.startswith("error: LNDg could not be read")
