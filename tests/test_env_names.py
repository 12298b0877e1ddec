"""Names that look like settings but are not read: typos of ours, the original tool's keys."""

from __future__ import annotations

from pathlib import Path

from core.checks import environment_names, environment_warnings
from core.env_names import ORIGINAL_TOOL_KEYS, name_warnings
from core.settings import Settings

SETTINGS = list(Settings.model_fields)


def test_a_typo_of_ours_names_the_setting_meant() -> None:
    assert name_warnings(["LNDG_PASSWORD"], SETTINGS) == [
        "LNDG_PASSWORD is not a setting and is ignored: did you mean LNDG_PASS?"
    ]
    assert name_warnings(["telegram_chatid", "SLEEP_SECOND"], SETTINGS) == [
        "SLEEP_SECOND is not a setting and is ignored: did you mean SLEEP_SECONDS?",
        "TELEGRAM_CHATID is not a setting and is ignored: did you mean TELEGRAM_CHAT_ID?",
    ]


def test_a_shortened_name_held_by_one_setting_names_it() -> None:
    assert name_warnings(["LNDG_URL"], SETTINGS) == [
        "LNDG_URL is not a setting and is ignored: did you mean LNDG_BASE_URL?"
    ]


def test_our_prefix_without_a_close_setting_is_still_named() -> None:
    assert name_warnings(["TELEGRAM_WEBHOOK_SECRET_SAUCE"], SETTINGS) == [
        "TELEGRAM_WEBHOOK_SECRET_SAUCE is not a setting and is ignored"
    ]


def test_settings_in_any_case_and_the_rest_of_the_environment_stay_quiet() -> None:
    names = [
        "LNDG_PASS",
        "lndg_user",
        "Dry_Run",
        "PATH",
        "HOME",
        "LANG",
        "NOTIFY_SOCKET",  # systemd's
        "WATCHDOG_USEC",
        "CREDENTIALS_DIRECTORY",
        "PYTHON_VERSION",  # Docker's python image
        "GPG_KEY",
        "JOURNAL_STREAM",
        "INVOCATION_ID",
        "FAKE_REGOLANCER_SCENARIO",
        "PTB_TIMEDELTA",
        "TZ",
    ]
    assert name_warnings(names, SETTINGS) == []


def test_every_original_tool_key_says_what_replaces_it() -> None:
    warnings = name_warnings(ORIGINAL_TOOL_KEYS, SETTINGS)
    assert len(warnings) == 7
    assert all("(from the original tool) is ignored" in warning for warning in warnings)
    by_name = {warning.split()[0]: warning for warning in warnings}
    for name in ("AMOUNT_INITIAL", "AMOUNT_INCREASE_PERCENT", "AMOUNT_EVERY_ROUNDS"):
        assert "ar_amt_target" in by_name[name]
        assert '"amount"' in by_name[name]
    assert "Telegram chat through the feed" in by_name["SEND_REBALANCE_MSG_LNDG"]
    assert "no replacement" in by_name["SYNC_LOS_TO_LNDG"]


def test_names_come_from_the_env_file_and_the_environment(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# the original tool's file\nexport LNDG_PASSWORD=hunter2\nAMOUNT_INITIAL=10000\n"
        "LNDG_PASS=\n"
    )
    assert sorted(environment_names([env_file], {"SLEEP_SECOND": "3"})) == [
        "AMOUNT_INITIAL",
        "LNDG_PASS",
        "LNDG_PASSWORD",
        "SLEEP_SECOND",
    ]
    warnings = environment_warnings([env_file], {"SLEEP_SECOND": "3"})
    assert [warning.split()[0] for warning in warnings] == [
        "AMOUNT_INITIAL",
        "LNDG_PASSWORD",
        "SLEEP_SECOND",
    ]
    assert "hunter2" not in " ".join(warnings)  # names only, never values
