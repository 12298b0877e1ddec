"""Telegram refusals no retry can end, end to end: the token revoked, the group upgraded to a
supergroup. The daemon runs as a child process; the fault is injected after it started.

The daemon says once what to do, holds its outbox, keeps rebalancing, and a SIGTERM ends it
with exit 0 and no traceback.
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from telegram import Bot
from telegram.error import ChatMigrated, InvalidToken

from bot.outbox import BOTFATHER_HINT
from sim.lndg import FakeLndg
from sim.telegram import FakeTelegram
from tests.daemon_process import Daemon, bot_node, wait_until
from tests.test_e2e_bot import channels

TOKEN = "123456:trust-telegram-token"
GROUP = -4242  # a group: only groups become supergroups
SUPERGROUP = -100123


@pytest.fixture
def telegram() -> Iterator[FakeTelegram]:
    with FakeTelegram(token=TOKEN, max_long_poll=2.0) as fake:
        yield fake


# --- the stand-in's faults, as PTB sees them ---------------------------------------------------


async def test_the_stand_in_rejects_a_revoked_token_and_names_a_migrated_chat(
    telegram: FakeTelegram,
) -> None:
    async with Bot(TOKEN, base_url=telegram.url) as bot:
        telegram.reject_token()
        with pytest.raises(InvalidToken):
            await bot.get_me()
        telegram.clear_faults()
        telegram.migrate_chat(GROUP, SUPERGROUP)
        with pytest.raises(ChatMigrated) as caught:
            await bot.send_message(GROUP, "hello")
        assert caught.value.new_chat_id == SUPERGROUP
        await bot.send_message(SUPERGROUP, "the new chat works")
        telegram.clear_faults()
        await bot.send_message(GROUP, "healed")
    assert [c.status for c in telegram.calls_to("getMe")][-1] == 401
    sends = telegram.calls_to("sendMessage")
    assert [c.status for c in sends] == [400, 200, 200]
    assert sends[0].response == {
        "ok": False,
        "error_code": 400,
        "description": "Bad Request: group chat was upgraded to a supergroup chat",
        "parameters": {"migrate_to_chat_id": SUPERGROUP},
    }


# --- the daemon -------------------------------------------------------------------------------


def started_daemon(tmp_path: Path, lndg: FakeLndg, telegram: FakeTelegram) -> Daemon:
    node = bot_node(tmp_path, lndg.url, telegram.url, token=TOKEN, chat_id=GROUP, sleep_seconds=1)
    node.set_scenario({"outcome": "success", "amount_sat": 50_000, "fee_sat": 12, "delay": 0.2})
    daemon = Daemon(node).start()
    telegram.wait_for_message(GROUP, text="started", timeout=30)
    wait_until(lambda: telegram.polls_waiting, 30, "long polling")
    return daemon


@pytest.mark.parametrize(
    ("fault", "said"),
    [
        ("revoked token", BOTFATHER_HINT),
        (
            "supergroup",
            f"the chat became a supergroup: set TELEGRAM_CHAT_ID={SUPERGROUP} and restart",
        ),
    ],
)
@pytest.mark.subprocess
def test_a_refusal_is_said_once_the_daemon_rebalances_on_and_stops_cleanly(
    tmp_path: Path, telegram: FakeTelegram, fault: str, said: str
) -> None:
    with FakeLndg(channels=channels()) as lndg:
        daemon = started_daemon(tmp_path, lndg, telegram)
        try:
            if fault == "revoked token":
                telegram.reject_token()
            else:
                telegram.migrate_chat(GROUP, SUPERGROUP)
            daemon.wait_for_log(re.escape(said), timeout=30)
            rows = len(daemon.node.ledger())
            # The outbox job runs every second; polling retries (with a rejected token its
            # pauses grow to several seconds, which SIGTERM must not wait out).
            time.sleep(14)
            assert daemon.output.count(said) == 1
            assert len(daemon.node.ledger()) > rows  # rebalancing goes on
            code, seconds = daemon.stop(signal.SIGTERM)
        finally:
            daemon.kill()
    assert code == 0
    assert seconds < 10  # the README promises 10 s; PTB alone would wait out up to 30 s
    assert "Traceback" not in daemon.output
    assert TOKEN not in daemon.output
    # nothing reached the chat since: held in the outbox for after the restart
    assert daemon.node.query("SELECT count(*) FROM outbox WHERE sent_at IS NULL")[0][0] > 0
    refused = [c for c in telegram.calls if c.method == "sendMessage" and not c.ok]
    assert len(refused) <= 7  # backoff 1, 2, 4, 8 s ...: one a second would be 15 and more
    assert "Telegram accepts" not in daemon.output  # no false recovery from a poll in flight
