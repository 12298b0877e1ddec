"""The real daemon with its Telegram face, driven through the loopback Bot API."""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sim.lndg import FakeLndg, channel_row
from sim.telegram import FakeTelegram
from tests.daemon_process import Daemon, Node, bot_node, running, wait_until

pytestmark = pytest.mark.subprocess  # every test starts the daemon as a child process

CHAT = 4242
OPERATOR = 4242
STRANGER = 999
TOKEN = "123456:secret-bot-token-for-tests"


def channels(sources: int = 3, targets: int = 4) -> list[dict[str, Any]]:
    rows = [
        channel_row(f"800000x{i}x0", alias=f"Src{i}", local_balance=900_000 - i, ar_out_target=60)
        for i in range(1, sources + 1)
    ]
    rows += [
        channel_row(
            f"800000x{100 + i}x0",
            alias=f"Tgt{i}",
            local_balance=20_000 + i,
            auto_rebalance=True,
            ar_in_target=80,
        )
        for i in range(1, targets + 1)
    ]
    return rows


@pytest.fixture
def lndg() -> Iterator[FakeLndg]:
    with FakeLndg(channels=channels()) as fake:
        yield fake


@pytest.fixture
def telegram() -> Iterator[FakeTelegram]:
    with FakeTelegram(token=TOKEN) as fake:
        yield fake


@pytest.fixture
def node(tmp_path: Path, lndg: FakeLndg, telegram: FakeTelegram) -> Node:
    # sleep_seconds: cycles only when a test asks (/run) or at start
    node = bot_node(tmp_path, lndg.url, telegram.url, token=TOKEN, chat_id=CHAT, sleep_seconds=3600)
    node.set_scenario({"outcome": "success", "amount_sat": 50_000, "fee_sat": 12, "delay": 0.1})
    return node


def texts(telegram: FakeTelegram, since: int = 0) -> list[str]:
    return [
        str(call.params.get("text", ""))
        for call in telegram.calls[since:]
        if call.method in ("sendMessage", "editMessageText") and call.ok
    ]


def ask(telegram: FakeTelegram, text: str, expect: str, user: int = OPERATOR) -> dict[str, Any]:
    """Send a command as the operator and wait for the reply containing `expect`."""
    since = telegram.mark()
    telegram.inject_message(CHAT, user, text)
    return telegram.wait_for_message(CHAT, text=expect, timeout=15, since=since)


def press(telegram: FakeTelegram, message: dict[str, Any], data: str, expect: str) -> str:
    since = telegram.mark()
    telegram.inject_callback_query(CHAT, OPERATOR, data, message_id=message["message_id"])
    call = telegram.wait_for(
        lambda c: c.method == "editMessageText" and expect in str(c.params.get("text")),
        timeout=15,
        since=since,
    )
    return str(call.params["text"])


def buttons(message: dict[str, Any]) -> list[str]:
    markup = message.get("reply_markup") or {}
    return [b["callback_data"] for row in markup.get("inline_keyboard", []) for b in row]


def started(telegram: FakeTelegram, node: Node) -> Daemon:
    daemon = Daemon(node).start()
    telegram.wait_for_message(CHAT, text="regolancer-orchestrator started", timeout=30)
    return daemon


def rebalance_messages(telegram: FakeTelegram) -> list[str]:
    return [t for t in texts(telegram) if t.startswith("✅") and "sat" in t and "→" in t]


def rebalance_lines(telegram: FakeTelegram) -> int:
    count = 0
    for text in rebalance_messages(telegram):
        match = re.match(r"✅ <b>(\d+) rebalances</b>", text)
        count += int(match.group(1)) if match else 1
    return count


def test_start_up_menu_and_the_feed(node: Node, telegram: FakeTelegram) -> None:
    with running(node) as daemon:
        start = telegram.wait_for_message(CHAT, text="started", timeout=30)
        assert "LIVE" in start["text"]
        commands = [c["command"] for c in telegram.calls_to("setMyCommands")[0].params["commands"]]
        # the first start reports the day that ended, with its chart
        daily = telegram.wait_for(lambda c: c.method == "sendPhoto", timeout=30)
        assert "Rebalancing on" in str(daily.params["caption"])
        assert daily.files["photo"].data.startswith(b"\x89PNG")
        assert {"status", "pairs", "dryrun", "pause", "resume", "report", "exclude"} <= set(
            commands
        )
        # the first cycle's successes reach the chat, each stat line exactly once
        wait_until(lambda: len(node.ledger()) >= 4, 30, "4 ledger rows")
        wait_until(lambda: rebalance_lines(telegram) == len(node.ledger()), 10, "the feed")
        feed = " ".join(rebalance_messages(telegram))
        assert "50,000 sat Src" in feed
        assert "fee 12 sat (240 ppm)" in feed
        code, seconds = daemon.stop()
    assert (code, seconds < 10) == (0, True)
    assert "stopping" in texts(telegram)[-1]
    assert TOKEN not in daemon.output
    assert "secret" not in daemon.output


def test_every_command_answers(node: Node, telegram: FakeTelegram) -> None:
    with running(node):
        telegram.wait_for_message(CHAT, text="started", timeout=30)
        wait_until(lambda: len(node.ledger()) >= 4, 30, "first cycle")
        assert "/pairs" in ask(telegram, "/help", "/status")["text"]
        assert "/pairs" in ask(telegram, "/start", "/status")["text"]
        status = ask(telegram, "/status", "Mode")["text"]
        assert "Mode: live" in status
        assert "LNDg: ok" in status
        assert re.search(r"Today: [4-9] rebalances", status)
        pairs = ask(telegram, "/pairs", "Pairs")["text"]
        assert pairs.startswith("Pairs: 12 from 7 channels")
        assert "Src1 (89%) → Tgt1 (2%) pfrom 40 pto 20" in pairs
        plan = ask(telegram, "/dryrun", "Next cycle would run")["text"]
        assert plan.startswith("Next cycle would run 4 (of 12 pairs from 7 channels)")
        history = ask(telegram, "/history 2", "Last 2 rebalances")["text"]
        assert history.count("50,000 sat") == 2
        report = ask(telegram, "/report", "Rebalancing on")["text"]
        assert re.search(r"This daemon: [4-9] · [0-9,]+ sat ", report)
        assert "not found in LNDg's payments; counted anyway" in report
        week = ask(telegram, "/report 7d", "7 days")["text"]
        assert re.search(r"This daemon: [4-9] ", week)
        # and its chart: the 7 days asked for, read from LNDg
        chart = telegram.wait_for(
            lambda c: c.method == "sendPhoto" and "last 7 days" in str(c.params.get("caption")),
            timeout=15,
        )
        assert chart.files["photo"].data.startswith(b"\x89PNG")
        assert "Example: /report" in ask(telegram, "/report lastweek", "Example")["text"]
        config = ask(telegram, "/config", "Effective settings")["text"]
        assert "LNDG_PASS = ****** (set)" in config
        assert "TELEGRAM_TOKEN = ****** (set)" in config
        assert TOKEN not in config
        assert "secret" not in config.replace("(set)", "")
        assert "No channel is excluded" in ask(telegram, "/exclusions", "excluded")["text"]
        excluded = ask(telegram, "/exclude Src2", "excluded")["text"]
        assert excluded.startswith("Src2 ")
        assert "now excluded" in excluded
        assert "1 excluded channels" in ask(telegram, "/exclusions", "excluded")["text"]
        assert ask(telegram, "/pairs", "Pairs")["text"].startswith("Pairs: 8 from 7 channels")
        assert "included again" in ask(telegram, "/include 800000x2x0", "included")["text"]
        bad = ask(telegram, "/history lots", "Example")["text"]
        assert bad == "give a number from 1 to 50. Example: /history 20"
        assert "Example: /exclude" in ask(telegram, "/exclude Nobody", "Example")["text"]
        assert "Example: /pause" in ask(telegram, "/pause soon", "Example")["text"]


def test_switches_confirm_with_a_button_and_persist(node: Node, telegram: FakeTelegram) -> None:
    with running(node) as daemon:
        telegram.wait_for_message(CHAT, text="started", timeout=30)
        question = ask(telegram, "/dryrun on", "Switch dry run ON?")
        confirm, cancel = buttons(question)  # ok:<token>, no:<token>: the action stays here
        assert re.fullmatch(r"ok:[\w-]{8,20}", confirm)
        assert cancel == "no:" + confirm[3:]
        assert node.query("SELECT value FROM kv WHERE key = 'dry_run'") == []  # not yet
        assert "Dry run is ON" in press(telegram, question, confirm, "Dry run")
        question = ask(telegram, "/pause 2h", "Pause for 2h?")
        assert "Paused" in press(telegram, question, buttons(question)[0], "Paused")
        question = ask(telegram, "/resume", "Resume?")
        assert "Cancelled" in press(telegram, question, buttons(question)[1], "Cancelled")
        assert daemon.stop()[0] == 0
    # a restart keeps the switches and says so
    with running(node):
        start = telegram.wait_for_message(CHAT, text="started", timeout=30, since=telegram.mark())
        assert "DRY RUN, PAUSED" in start["text"]
        question = ask(telegram, "/resume", "Resume?")
        assert "Resumed" in press(telegram, question, buttons(question)[0], "Resumed")
        question = ask(telegram, "/dryrun off", "Switch dry run OFF?")
        assert "Dry run is OFF" in press(telegram, question, buttons(question)[0], "Dry run")
        assert "Mode: live" in ask(telegram, "/status", "Mode")["text"]


def test_run_starts_a_cycle_now(node: Node, telegram: FakeTelegram) -> None:
    with running(node) as daemon:
        telegram.wait_for_message(CHAT, text="started", timeout=30)
        daemon.wait_for_log("cycle finish", timeout=30)
        assert len(node.runs_recorded()) == 4
        question = ask(telegram, "/run", "Start a cycle now?")
        press(telegram, question, buttons(question)[0], "Cycle started")
        wait_until(lambda: len(node.runs_recorded()) == 8, 30, "the second cycle's runs")


def test_strangers_get_nothing_and_change_nothing(node: Node, telegram: FakeTelegram) -> None:
    with running(node) as daemon:
        telegram.wait_for_message(CHAT, text="started", timeout=30)
        question = ask(telegram, "/pause", "Pause until /resume?")
        confirm = buttons(question)[0]
        since = telegram.mark()
        telegram.inject_message(STRANGER, STRANGER, "/pause")  # another chat
        telegram.inject_update(
            {
                "callback_query": {
                    "id": "stranger-press",
                    "from": {"id": STRANGER, "is_bot": False, "first_name": "Mallory"},
                    "chat_instance": "elsewhere",
                    "data": confirm,
                    "message": {
                        "message_id": question["message_id"],
                        "date": 0,
                        "chat": {"id": STRANGER, "type": "private"},
                    },
                }
            }
        )
        telegram.inject_edited_message(STRANGER, STRANGER, "/dryrun on")
        telegram.inject_channel_post(STRANGER, "/resume")
        telegram.inject_inline_query(STRANGER, "pairs")
        # the operator's own command afterwards proves the updates above were consumed
        ask(telegram, "/help", "/status")
        replies = [c for c in telegram.calls[since:] if c.method != "getUpdates"]
        to_strangers = [c for c in replies if str(c.params.get("chat_id")) == str(STRANGER)]
        assert to_strangers == []
        assert not any(c.method in ("answerCallbackQuery", "answerInlineQuery") for c in replies)
        assert node.query("SELECT value FROM kv WHERE key = 'paused_until'") == []
        assert buttons(question)[0] == confirm
        daemon.wait_for_log(r"dropped callback_query from user 999")
        daemon.wait_for_log(r"dropped inline_query from user 999")


def test_allowed_users_narrow_the_chat(node: Node, telegram: FakeTelegram) -> None:
    node.env["TELEGRAM_ALLOWED_USER_IDS"] = "7"
    with running(node) as daemon:
        telegram.wait_for_message(CHAT, text="started", timeout=30)
        question = ask(telegram, "/pause", "Pause until /resume?", user=7)
        since = telegram.mark()
        telegram.inject_message(CHAT, OPERATOR, "/status", chat_type="group")
        daemon.wait_for_log(r"dropped message from user 4242")
        telegram.inject_callback_query(
            CHAT, OPERATOR, buttons(question)[0], message_id=question["message_id"]
        )
        daemon.wait_for_log(r"dropped callback_query from user 4242")
        ask(telegram, "/status", "Mode", user=7)
        statuses = [t for t in texts(telegram, since) if "Mode" in t]
        assert len(statuses) == 1
        assert "paused" not in statuses[0]
        assert not any(c.method == "answerCallbackQuery" for c in telegram.calls[since:])


def test_bot_api_outage_loses_and_repeats_nothing(node: Node, telegram: FakeTelegram) -> None:
    node.env["SLEEP_SECONDS"] = "2"
    with running(node) as daemon:
        telegram.wait_for_message(CHAT, text="started", timeout=30)
        telegram.go_down()
        rows_before = len(node.ledger())
        wait_until(lambda: len(node.ledger()) >= rows_before + 8, 40, "rebalances during outage")
        telegram.come_back()
        telegram.rate_limit_next(1, retry_after=1, method="sendMessage")
        wait_until(lambda: rebalance_lines(telegram) >= len(node.ledger()), 40, "the backlog")
        assert daemon.stop()[0] == 0
    assert rebalance_lines(telegram) == len(node.ledger())


def test_restart_repeats_nothing_and_sigterm_mid_run_is_prompt(
    node: Node, telegram: FakeTelegram
) -> None:
    with running(node) as daemon:
        telegram.wait_for_message(CHAT, text="started", timeout=30)
        wait_until(lambda: len(node.ledger()) >= 4, 30, "first cycle")
        wait_until(lambda: rebalance_lines(telegram) == len(node.ledger()), 10, "the feed")
        assert daemon.stop()[0] == 0
    delivered = rebalance_lines(telegram)
    node.set_scenario({"outcome": "hang"})
    with running(node) as daemon:
        telegram.wait_for_message(CHAT, text="started", timeout=30, since=telegram.mark())
        daemon.wait_for_log(r"worker \d: started SRC")
        wait_until(node.leftover_processes, 10, "regolancer running")
        code, seconds = daemon.stop(signal.SIGTERM)
    assert code == 0
    assert seconds < 10
    assert node.leftover_processes() == []
    assert rebalance_lines(telegram) == delivered == len(node.ledger())


def test_lndg_outage_alerts_once_then_recovers(
    node: Node, telegram: FakeTelegram, lndg: FakeLndg
) -> None:
    node.env["SLEEP_SECONDS"] = "1"
    lndg.set_fault("401")
    with running(node) as daemon:
        alert = telegram.wait_for_message(CHAT, text="⚠️ LNDg", timeout=30)
        assert "credentials" in alert["text"]
        assert "secret" not in alert["text"]
        daemon.wait_for_log("cycle skipped", count=3)
        lndg.set_fault(None)
        telegram.wait_for_message(CHAT, text="LNDg is reachable again", timeout=30)
    alerts = [t for t in texts(telegram) if "LNDg" in t and "⚠️" in t]
    assert len(alerts) == 1
