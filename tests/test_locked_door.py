"""The locked door: nobody but the operator gets in, no secret gets out, no shell is used.

- Updates from other chats and from users not allowed (messages, commands, button presses,
  edited messages, channel posts, inline queries, ...) reach no handler, get no reply and
  change no state: in process (PTB's real dispatch) and end to end.
- The bot token, the LNDg password and the macaroon/TLS paths of the template appear in no
  log line, chat message or file outside DATA_DIR; generated configs are 0600 and removed;
  DATA_DIR is created 0700.
- No shell is ever invoked: every process the daemon starts is audited.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from telegram import Update
from telegram.ext import ApplicationBuilder, TypeHandler

from bot.auth import make_guard
from sim.lndg import FakeLndg
from sim.telegram import FakeTelegram
from tests.daemon_process import REPO, TEMPLATE, Daemon, Node, wait_until

CHAT = -1001234567890  # a group: the operator and maybe others in it
OPERATOR = 4242
MEMBER = 5151  # in the chat, but not in TELEGRAM_ALLOWED_USER_IDS
STRANGER = 999
TOKEN = "123456:locked-door-bot-token-XYZ"
LNDG_PASSWORD = "lndg-password-locked-door"
MACAROON_DIR = "/home/bitcoin/.lnd/data/chain/bitcoin/mainnet-secret-macaroons"
TLS_CERT = "/home/bitcoin/.lnd/tls-secret.cert"


def user(uid: int) -> dict[str, Any]:
    return {"id": uid, "is_bot": False, "first_name": f"U{uid}"}


def chat(cid: int) -> dict[str, Any]:
    return {"id": cid, "type": "private" if cid > 0 else "supergroup", "title": "t"}


def message(cid: int, uid: int | None, text: str) -> dict[str, Any]:
    body: dict[str, Any] = {"message_id": 7, "date": 0, "chat": chat(cid), "text": text}
    if uid is not None:
        body["from"] = user(uid)
    if text.startswith("/"):
        body["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
    return body


def unauthorised_updates() -> list[tuple[str, dict[str, Any]]]:
    """Every kind of update, from a stranger's chat and from a non-allowed member of ours."""
    updates: list[tuple[str, dict[str, Any]]] = []
    for who, cid, uid in (("stranger", STRANGER, STRANGER), ("member", CHAT, MEMBER)):
        updates += [
            (f"{who} message", {"message": message(cid, uid, "hello")}),
            (f"{who} /pause", {"message": message(cid, uid, "/pause 2h")}),
            (f"{who} /dryrun off", {"message": message(cid, uid, "/dryrun off")}),
            (f"{who} /exclude", {"message": message(cid, uid, "/exclude SourceA")}),
            (
                f"{who} edited /run",
                {"edited_message": {**message(cid, uid, "/run"), "edit_date": 1}},
            ),
            (
                f"{who} button",
                {
                    "callback_query": {
                        "id": f"cb-{who}",
                        "from": user(uid),
                        "chat_instance": "x",
                        "data": "ok:pause",
                        "message": message(cid, OPERATOR, "Pause until /resume?"),
                    }
                },
            ),
            (
                f"{who} inline",
                {
                    "inline_query": {
                        "id": f"iq-{who}",
                        "from": user(uid),
                        "query": "pairs",
                        "offset": "",
                    }
                },
            ),
            (
                f"{who} chosen inline",
                {"chosen_inline_result": {"result_id": "1", "from": user(uid), "query": "pairs"}},
            ),
        ]
    # Channel posts carry no user: even one in the operator's chat id is refused.
    updates.append(("channel post", {"channel_post": message(CHAT, None, "/resume")}))
    updates.append(("edited channel post", {"edited_channel_post": message(CHAT, None, "/run")}))
    # Anonymous group admin: the sender is the chat itself, no user we can check.
    anonymous = message(CHAT, None, "/pause")
    anonymous["sender_chat"] = chat(CHAT)
    updates.append(("anonymous admin", {"message": anonymous}))
    return updates


@pytest.mark.parametrize(
    ("kind", "payload"), unauthorised_updates(), ids=lambda v: v if isinstance(v, str) else ""
)
async def test_unauthorised_update_reaches_no_handler(
    kind: str, payload: dict[str, Any], telegram: FakeTelegram
) -> None:
    app = ApplicationBuilder().token(TOKEN).base_url(telegram.url).updater(None).build()
    await app.initialize()
    reached: list[object] = []

    async def handler(update: object, context: object) -> None:
        reached.append(update)

    app.add_handler(TypeHandler(Update, make_guard(CHAT, [OPERATOR])), group=-1)
    app.add_handler(TypeHandler(object, handler))  # stands for every command handler
    update = Update.de_json({"update_id": 1, **payload}, app.bot)
    await app.process_update(update)
    assert reached == []
    # the operator, in the chat, does get through the same door
    await app.process_update(
        Update.de_json({"update_id": 2, "message": message(CHAT, OPERATOR, "/status")}, app.bot)
    )
    assert len(reached) == 1
    await app.shutdown()
    assert telegram.calls_to("sendMessage") == []


# --- end to end ----------------------------------------------------------------------------


@pytest.fixture
def template(tmp_path: Path) -> Path:
    data = json.loads(TEMPLATE.read_text())
    data.update({"macaroon_dir": MACAROON_DIR, "tlscert": TLS_CERT})
    path = tmp_path / "config.template.json"
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def telegram() -> Iterator[FakeTelegram]:
    with FakeTelegram(token=TOKEN) as fake:
        yield fake


# Runs every process the daemon starts past Python's audit hooks, into audit.jsonl.
AUDIT_HOOK = """
import json, os, sys
_path = os.environ["AUDIT_LOG"]
_EVENTS = ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork")
def _hook(event, args):
    if event in _EVENTS:
        with open(_path, "a") as f:
            f.write(json.dumps([event, [str(a) for a in args[:2]]]) + "\\n")
sys.addaudithook(_hook)
"""


def state_snapshot(node: Node) -> list[Any]:
    return [
        node.query("SELECT key, value FROM kv WHERE key IN ('dry_run', 'paused_until')"),
        node.query("SELECT chan_id FROM exclusions"),
        node.query("SELECT count(*) FROM runs"),
    ]


@pytest.mark.subprocess
def test_strangers_and_members_not_allowed_change_nothing_and_hear_nothing(
    tmp_path: Path, telegram: FakeTelegram
) -> None:
    with FakeLndg() as lndg:
        node = Node(
            tmp_path,
            lndg.url,
            telegram_token=TOKEN,
            telegram_chat_id=CHAT,
            telegram_allowed_user_ids=OPERATOR,
            telegram_api_base_url=telegram.url,
            sleep_seconds=3600,
        )
        daemon = Daemon(node).start()
        try:
            telegram.wait_for_message(CHAT, text="started", timeout=30)
            daemon.wait_for_log("cycle finish", timeout=30)
            telegram.inject_message(CHAT, OPERATOR, "/pause")
            asked = telegram.wait_for_message(CHAT, text="Pause until /resume?", timeout=15)
            before = state_snapshot(node)
            since = telegram.mark()
            for _kind, payload in unauthorised_updates():
                if "callback_query" in payload:  # a press on the operator's real question
                    payload["callback_query"]["message"] = {
                        **asked,
                        "chat": payload["callback_query"]["message"]["chat"],
                    }
                telegram.inject_update(payload)
            # the operator's command afterwards proves every update above was consumed
            telegram.inject_message(CHAT, OPERATOR, "/help")
            telegram.wait_for_message(CHAT, text="/status", timeout=15, since=since)
            daemon.wait_for_log("dropped .* from user 999", count=8)
            calls = [
                c
                for c in telegram.calls[since:]
                if c.method != "getUpdates"
                # the rebalance feed of the first cycle may still be on its way
                and not str(c.params.get("text", "")).startswith("✅")
            ]
            assert [c.method for c in calls] == ["sendMessage"]  # the answer to /help only
            assert all(
                str(c.params.get("chat_id")) == str(CHAT)
                for c in telegram.calls[since:]
                if c.method.startswith("send")
            )
            assert state_snapshot(node) == before
            code, _ = daemon.stop()
        finally:
            daemon.kill()
    assert code == 0
    assert len(re.findall(r"dropped \w+ from user 5151", daemon.output)) == 8


@pytest.mark.subprocess
def test_no_secret_leaks_configs_are_private_and_no_shell_is_used(
    tmp_path: Path, telegram: FakeTelegram, template: Path
) -> None:
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(AUDIT_HOOK)
    audit = tmp_path / "audit.jsonl"
    # A binary path a shell would split and run `touch INJECTED` from: argv is used as is.
    tricky = tmp_path / "bin; touch INJECTED"
    tricky.mkdir()
    binary = tricky / "regolancer"
    binary.symlink_to(REPO / "sim" / "regolancer.py")
    with FakeLndg(password=LNDG_PASSWORD) as lndg:
        node = Node(
            tmp_path,
            lndg.url,
            lndg_pass=LNDG_PASSWORD,
            telegram_token=TOKEN,
            telegram_chat_id=OPERATOR,
            telegram_api_base_url=telegram.url,
            regolancer_template=template,
            regolancer_bin=binary,
            sleep_seconds=1,
            log_level="DEBUG",
        )
        node.env["PYTHONPATH"] = f"{hooks}{os.pathsep}{node.env['PYTHONPATH']}"
        node.env["AUDIT_LOG"] = str(audit)
        node.set_scenario({"outcome": "success", "delay": 0.05})
        daemon = Daemon(node).start()
        try:
            telegram.wait_for_message(OPERATOR, text="started", timeout=30)
            wait_until(lambda: len(node.ledger()) >= 3, 30, "a few rebalances")
            assert stat.S_IMODE(node.data.stat().st_mode) == 0o700
            lndg.set_fault("401")  # an alert naming LNDg's URL and user
            telegram.wait_for_message(OPERATOR, text="⚠️ LNDg", timeout=30)
            lndg.set_fault(None)
            for command in ("/config", "/status", "/history", "/pairs"):
                since = telegram.mark()
                telegram.inject_message(OPERATOR, OPERATOR, command)
                telegram.wait_for(lambda c: c.method == "sendMessage", 15, since=since)
            code, _ = daemon.stop()
        finally:
            daemon.kill()
    assert code == 0
    secrets = [TOKEN, TOKEN.split(":")[1], LNDG_PASSWORD, MACAROON_DIR, TLS_CERT]
    chat_texts = [json.dumps(c.params) for c in telegram.calls if c.method != "getUpdates"]
    for secret in secrets:
        assert secret not in daemon.output, secret
        assert not any(secret in text for text in chat_texts), secret
    # files the daemon wrote outside DATA_DIR (the stand-ins' own records aside)
    harness = {node.record, node.scenario, audit, template, hooks / "sitecustomize.py"}
    outside = [
        p
        for p in tmp_path.rglob("*")
        if p.is_file()
        and node.data not in p.parents
        and p not in harness
        and not p.name.startswith("daemon-")
    ]
    for path in outside:
        content = path.read_bytes()
        assert not any(s.encode() in content for s in secrets), path
    # generated configs: 0600 while regolancer read them, gone afterwards
    runs = node.runs_recorded()
    assert runs
    assert {r["config_mode"] for r in runs} == {"0o600"}
    assert all(r["config"]["macaroon_dir"] == MACAROON_DIR for r in runs)
    assert list(node.data.glob("*.json")) == []
    assert all(
        "LNDG_PASS" not in r["env_keys"] and "TELEGRAM_TOKEN" not in r["env_keys"] for r in runs
    )
    # no shell: every process started is regolancer itself, argv as given, child of the daemon
    started = [json.loads(line) for line in audit.read_text().splitlines()]
    popen = [args[0] for event, args in started if event == "subprocess.Popen"]
    assert {event for event, _ in started} <= {"subprocess.Popen", "os.fork"}  # no os.system
    assert not {Path(exe).name for exe in popen} & {"sh", "bash", "dash", "zsh", "busybox"}
    # regolancer, and matplotlib's font scan (fc-list) when it builds its cache
    assert set(popen) - {"fc-list"} == {str(binary)}
    assert {r["ppid"] for r in runs} == {daemon.proc.pid}  # type: ignore[union-attr]
    assert not (tmp_path / "INJECTED").exists()
    assert list(tmp_path.rglob("INJECTED")) == []
