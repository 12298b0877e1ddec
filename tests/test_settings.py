"""Settings: the original names, defaults, and one readable line per problem."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from core.settings import Settings, SettingsError, load_settings, masked


def test_defaults_are_headless_and_relative_to_data_dir() -> None:
    settings = load_settings()
    assert settings.headless
    assert settings.lndg_base_url == "http://localhost:8889"
    assert settings.stat_path == Path("data/stat.csv")
    assert settings.database_path == Path("data/state.sqlite3")
    assert settings.report_time == dt.time(0, 5)
    assert (settings.max_workers, settings.sleep_seconds, settings.dry_run) == (4, 300, False)


def test_original_names_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEGRAM_TOKEN", "123:abc")
    monkeypatch.setenv("TELEGRAM_CHAT_ID", "-100123")
    monkeypatch.setenv("LNDG_BASE_URL", "http://10.0.0.2:8889/")
    monkeypatch.setenv("LNDG_USER", "admin")
    monkeypatch.setenv("LNDG_PASS", "hunter2")
    monkeypatch.setenv("DRY_RUN", "true")
    monkeypatch.setenv("SLEEP_SECONDS", "60")
    monkeypatch.setenv("MAX_WORKERS", "2")
    monkeypatch.setenv("EXCLUDE_CHANNELS", "800000x1234x1, 879609302301671426,Some Alias")
    monkeypatch.setenv("TELEGRAM_ALLOWED_USER_IDS", "11,22")
    settings = load_settings()
    assert not settings.headless
    assert settings.telegram_chat_id == -100123
    assert settings.lndg_base_url == "http://10.0.0.2:8889"
    assert settings.lndg_pass is not None
    assert settings.lndg_pass.get_secret_value() == "hunter2"
    assert settings.dry_run is True
    assert (settings.sleep_seconds, settings.max_workers) == (60, 2)
    assert settings.exclude_channels == ["800000x1234x1", "879609302301671426", "Some Alias"]
    assert settings.telegram_allowed_user_ids == [11, 22]


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("MAX_WORKERS=7\nDATA_DIR=/var/lib/rgo\n")
    settings = load_settings(env)
    assert settings.max_workers == 7
    assert settings.stat_path == Path("/var/lib/rgo/stat.csv")


def test_every_problem_is_one_line_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_WORKERS", "zero")
    monkeypatch.setenv("SLEEP_SECONDS", "0")
    monkeypatch.setenv("LNDG_BASE_URL", "localhost:8889")
    monkeypatch.setenv("TIMEZONE", "Mars/Olympus")
    monkeypatch.setenv("REPORT_TIME", "25:99")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    problems = caught.value.problems
    assert len(problems) == 5
    by_name = {line.split(":", 1)[0]: line for line in problems}
    assert set(by_name) == {
        "MAX_WORKERS",
        "SLEEP_SECONDS",
        "LNDG_BASE_URL",
        "TIMEZONE",
        "REPORT_TIME",
    }
    assert "greater than or equal to 1" in by_name["SLEEP_SECONDS"]
    assert "http://" in by_name["LNDG_BASE_URL"]
    assert "Mars/Olympus" in by_name["TIMEZONE"]
    assert all("\n" not in line for line in problems)


def test_token_without_chat_id_is_refused_without_echoing_the_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TELEGRAM_TOKEN", "999:very-secret-token")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    text = str(caught.value)
    assert "TELEGRAM_CHAT_ID" in text
    assert "very-secret-token" not in text


def test_bad_secret_value_is_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEGRAM_CHAT_ID", "not-a-number-secret")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert caught.value.problems[0].startswith("TELEGRAM_CHAT_ID:")
    assert "not-a-number-secret" not in str(caught.value)


def test_masked_hides_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LNDG_PASS", "hunter2")
    monkeypatch.setenv("TELEGRAM_TOKEN", "1:tok")
    monkeypatch.setenv("TELEGRAM_CHAT_ID", "5")
    shown = masked(load_settings())
    assert shown["LNDG_PASS"] == "****** (set)"
    assert shown["TELEGRAM_TOKEN"] == "****** (set)"
    assert "hunter2" not in repr(shown)
    assert "1:tok" not in repr(shown)
    assert shown["MAX_WORKERS"] == "4"


def test_env_example_lists_every_setting_with_its_default() -> None:
    example = Path(__file__).parent.parent / ".env.example"
    listed: dict[str, str] = {}
    for line in example.read_text().splitlines():
        # `#DATA_DIR=data`: a setting left commented out (its default), not prose.
        if line and (not line.startswith("#") or re.match(r"#[A-Z][A-Z0-9_]*=", line)):
            key, _, value = line.lstrip("#").partition("=")
            listed[key] = value
    assert set(listed) == {name.upper() for name in Settings.model_fields}
    # the file's values, read as settings, are the defaults
    from_file = load_settings(example)
    defaults = load_settings(None)
    assert from_file.model_dump() == defaults.model_dump()


def test_readme_settings_table_lists_every_setting() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("## Settings", 1)[1].split("\n## ", 1)[0]
    names = {line.split("`")[1] for line in section.splitlines() if line.startswith("| `")}
    assert names == {name.upper() for name in Settings.model_fields}
