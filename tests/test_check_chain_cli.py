"""`check` end to end, and the refusal to start live without regolancer: the real entry point
as a child process against the loopback LNDg, Telegram and the regolancer stand-in."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.check_lnd import check_info
from sim.lndg import FakeLndg
from sim.telegram import FakeTelegram
from tests.daemon_process import FAKE_REGOLANCER, Node, run_cli, running

pytestmark = pytest.mark.subprocess  # every test starts a CLI run or the stand-in

TOKEN = "123456789:AAcheck-chain-cli-token-never-shown"
CHAT = -1001234567890


@pytest.fixture
def lndg() -> Iterator[FakeLndg]:
    with FakeLndg() as fake:  # the samples: one pair, SourceA -> TargetB
        yield fake


def check_lines(node: Node, *args: str, **kwargs: object) -> tuple[int, list[str]]:
    result = run_cli(node, *args, "check", **kwargs)  # type: ignore[arg-type]
    assert "Traceback" not in result.stdout + result.stderr
    assert str(node.root / "lnd") not in result.stdout + result.stderr  # LND's paths: secret
    return result.returncode, result.stdout.splitlines()


def line_of(lines: list[str], name: str) -> str:
    return next(line for line in lines if line[5:].startswith(f"{name}:"))


def test_a_good_setup_passes_and_names_what_it_read(tmp_path: Path, lndg: FakeLndg) -> None:
    node = Node(tmp_path, lndg.url)
    (tmp_path / ".env").write_text("SLEEP_SECONDS=60\n")
    code, lines = check_lines(node)
    assert code == 0, lines
    assert lines[0] == f"ok   settings: read the environment and {tmp_path / '.env'}"
    assert line_of(lines, "tlscert") == "ok   tlscert: .../tls.cert is a readable file"
    assert line_of(lines, "macaroon") == "ok   macaroon: .../admin.macaroon is a readable file"
    assert line_of(lines, "regolancer --info") == (
        "ok   regolancer --info: LND at 127.0.0.1:10009 answers regolancer"
    )
    assert lines[-1] == "all checks passed"
    # --info ran once, on a run's config for the pair LNDg gives, and the config is gone.
    (info,) = node.runs_recorded()
    assert info["outcome"] == "info"
    assert "--info" in info["argv"]
    assert (info["config"]["from"], info["config"]["to"]) == (
        ["879609302301671425"],
        ["879609302301671426"],
    )
    assert info["config_mode"] == "0o600"
    assert not list(node.data.glob("regolancer-*.json"))


def test_missing_cert_fails_and_info_is_not_run(tmp_path: Path, lndg: FakeLndg) -> None:
    node = Node(tmp_path, lndg.url)
    (tmp_path / "lnd" / "tls.cert").unlink()
    code, lines = check_lines(node)
    assert code == 1
    assert line_of(lines, "tlscert") == (
        'FAIL tlscert: .../tls.cert does not exist -> fix "tlscert" in the template'
    )
    assert not any("regolancer --info" in line for line in lines)
    assert node.runs_recorded() == []


def test_cert_that_is_a_directory_fails(tmp_path: Path, lndg: FakeLndg) -> None:
    node = Node(tmp_path, lndg.url)
    cert = tmp_path / "lnd" / "tls.cert"
    cert.unlink()
    cert.mkdir()
    code, lines = check_lines(node)
    assert code == 1
    assert line_of(lines, "tlscert").startswith("FAIL tlscert: .../tls.cert is a directory")


def test_unreadable_macaroon_fails_naming_the_user(tmp_path: Path, lndg: FakeLndg) -> None:
    node = Node(tmp_path, lndg.url)
    (tmp_path / "lnd" / "macaroons" / "admin.macaroon").chmod(0o000)
    code, lines = check_lines(node, file_modes=True)  # root obeys file modes too
    assert code == 1
    line = line_of(lines, "macaroon")
    assert line.startswith("FAIL macaroon: .../admin.macaroon is not readable by user ")
    assert line.endswith("read access to it (e.g. add it to LND's group)")


def test_info_failing_is_said_in_regolancers_words(tmp_path: Path, lndg: FakeLndg) -> None:
    node = Node(tmp_path, lndg.url)
    macaroon = tmp_path / "lnd" / "macaroons" / "admin.macaroon"
    node.set_scenario(
        {
            "outcome": "lnd_error",
            "message": "unable to read macaroon path (check the network setting!): "
            f"open {macaroon}: permission denied",
        }
    )
    code, lines = check_lines(node)
    assert code == 1
    assert line_of(lines, "regolancer --info") == (
        "FAIL regolancer --info: exit 1: unable to read macaroon path (check the network "
        'setting!): open <macaroon>: permission denied -> fix "connect", "tlscert", '
        '"macaroon_dir" in the template, or LND'
    )
    node.set_scenario({"outcome": "lnd_error"})  # LND down: the stand-in's grpc error
    _, lines = check_lines(node)
    assert line_of(lines, "regolancer --info").startswith(
        "FAIL regolancer --info: exit 1: rpc error: code = Unavailable desc = connection error"
    )


def test_info_that_never_answers_is_stopped(tmp_path: Path) -> None:
    node = Node(tmp_path, "http://127.0.0.1:9")
    node.set_scenario({"outcome": "hang"})
    config = {**json.loads(node.template.read_text()), "stat": str(node.stat)}
    environ = {"FAKE_REGOLANCER_SCENARIO": str(node.scenario)}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environ.items():
            patch.setenv(name, value)
        check = asyncio.run(check_info(str(FAKE_REGOLANCER), config, node.data, limit_seconds=1))
    assert check.line().startswith(
        "FAIL regolancer --info: no answer from LND at 127.0.0.1:10009 within 1 s"
    )
    assert not list(node.data.glob("regolancer-*.json"))
    assert node.leftover_processes() == []


def test_typos_and_the_original_tools_keys_are_warned(tmp_path: Path, lndg: FakeLndg) -> None:
    node = Node(tmp_path, lndg.url)
    env_file = tmp_path / "original.env"
    env_file.write_text("AMOUNT_INITIAL=10000\nSEND_REBALANCE_MSG_LOS=true\n")
    env = {"LNDG_PASSWORD": "x1", "SLEEP_SECONDS": "300"}  # no SLEEP_SECONDS warning here
    code, lines = check_lines(node, "--env-file", str(env_file), env=env)
    assert code == 0  # warnings, not failures
    assert lines[0] == f"ok   settings: read the environment and {env_file}"
    warnings = [line for line in lines if line.startswith("warn settings:")]
    assert warnings == [
        "warn settings: AMOUNT_INITIAL (from the original tool) is ignored: each run's amount "
        "is LNDg's ar_amt_target for its target (FEE_POLICY=lndg) or the template's \"amount\" "
        "(FEE_POLICY=template); nothing grows between rounds",
        "warn settings: LNDG_PASSWORD is not a setting and is ignored: did you mean LNDG_PASS?",
        "warn settings: SEND_REBALANCE_MSG_LOS (from the original tool) is ignored: every "
        "rebalance is reported in the Telegram chat through the feed (headless: the log)",
    ]


def test_missing_env_file_is_an_error(tmp_path: Path, lndg: FakeLndg) -> None:
    result = run_cli(Node(tmp_path, lndg.url), "--env-file", "prod.env", "check")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == "error: --env-file prod.env: no such file\n"


def test_telegram_lines_against_the_bot_api(tmp_path: Path, lndg: FakeLndg) -> None:
    with FakeTelegram(TOKEN, known_chats={CHAT}) as telegram:
        telegram.add_chat(CHAT, chat_type="supergroup", title="Node ops")
        node = Node(
            tmp_path,
            lndg.url,
            telegram_token=TOKEN,
            telegram_chat_id=CHAT,
            telegram_api_base_url=telegram.url,
        )
        code, lines = check_lines(node)
        assert code == 0, lines
        assert lines[-4:-1] == [
            "ok   Telegram: token accepted: the bot is @regolancer_test_bot",
            f'ok   Telegram chat: @regolancer_test_bot is in supergroup chat {CHAT} "Node ops"',
            f"ok   Telegram users: everyone in chat {CHAT} may command the bot "
            "(TELEGRAM_ALLOWED_USER_IDS is empty)",
        ]
        telegram.reject_token()
        code, lines = check_lines(node)
    assert code == 1
    assert line_of(lines, "Telegram").startswith("FAIL Telegram: token rejected (401 Unauthorized)")
    assert TOKEN.split(":")[1] not in "\n".join(lines)


# --- regolancer missing: live runs refuse to start, dry runs do not need it -------------------


@pytest.mark.parametrize("command", [["run"], ["cycle"]])
def test_live_start_without_regolancer_is_refused(
    tmp_path: Path, lndg: FakeLndg, command: list[str]
) -> None:
    missing = tmp_path / "go" / "bin" / "regolancer"
    node = Node(tmp_path, lndg.url, regolancer_bin=missing)
    result = run_cli(node, *command, timeout=30)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"error: regolancer binary {missing} not found: install regolancer or set "
        "REGOLANCER_BIN to its full path (a dry run needs none: DRY_RUN=true, or cycle --dry-run)\n"
    )
    assert node.ledger() == []


def test_dry_runs_start_without_regolancer(tmp_path: Path, lndg: FakeLndg) -> None:
    node = Node(tmp_path, lndg.url, regolancer_bin=tmp_path / "nowhere" / "regolancer")
    cycle = run_cli(node, "cycle", "--dry-run", timeout=30)
    assert cycle.returncode == 0, cycle.stderr
    assert "SRC SourceA" in cycle.stderr
    with running(node, env={"DRY_RUN": "true", "LNDG_PASSWORD": "x1"}) as daemon:
        daemon.wait_for_log(r"started headless \(DRY RUN\)")
        # The names that are no settings are logged at start too, one line each.
        daemon.wait_for_log("LNDG_PASSWORD is not a setting and is ignored: did you mean LNDG_PASS")
        code, _ = daemon.stop()
    assert code == 0
    assert node.runs_recorded() == []
