"""Secrets from files: Docker's /run/secrets and systemd's $CREDENTIALS_DIRECTORY.

Also the start-up line for a mounted file that is a directory or unreadable (what Docker leaves
when a bind mount's or a secret's source file is missing, or owned by another uid).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core import settings as settings_module
from core.regolancer_config import TemplateError, load_template
from core.settings import SettingsError, load_settings, masked
from tests.daemon_process import REPO, honour_file_modes

TOKEN = "123456:AAH-secret-token-from-a-file"
PASSWORD = "lndg-password-from-a-file"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No secret in the environment, no .env in the working directory."""
    for name in ("TELEGRAM_TOKEN", "LNDG_PASS", "TELEGRAM_CHAT_ID", "CREDENTIALS_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    return secrets


def test_secret_files_fill_token_and_password(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Docker names the file after the secret; either case works, a trailing newline is dropped.
    (clean_env / "telegram_token").write_text(TOKEN + "\n")
    (clean_env / "LNDG_PASS").write_text(PASSWORD)
    monkeypatch.setenv("TELEGRAM_CHAT_ID", "42")
    settings = load_settings(None, secrets_dir=clean_env)
    assert settings.telegram_token is not None
    assert settings.telegram_token.get_secret_value() == TOKEN
    assert settings.lndg_pass is not None
    assert settings.lndg_pass.get_secret_value() == PASSWORD
    assert not settings.headless
    shown = repr(masked(settings))
    assert TOKEN not in shown
    assert PASSWORD not in shown


def test_a_variable_wins_over_the_file_but_an_empty_one_does_not(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (clean_env / "lndg_pass").write_text(PASSWORD)
    monkeypatch.setenv("LNDG_PASS", "from-the-environment")
    settings = load_settings(None, secrets_dir=clean_env)
    assert settings.lndg_pass is not None
    assert settings.lndg_pass.get_secret_value() == "from-the-environment"
    # compose's env_file passes .env.example's "LNDG_PASS=" on as an empty variable.
    monkeypatch.setenv("LNDG_PASS", "")
    dotenv = tmp_path / "env"
    dotenv.write_text("LNDG_PASS=\nTELEGRAM_TOKEN=\n")
    settings = load_settings(dotenv, secrets_dir=clean_env)
    assert settings.lndg_pass is not None
    assert settings.lndg_pass.get_secret_value() == PASSWORD


def test_only_the_secret_settings_come_from_files(clean_env: Path) -> None:
    # A stray secret of another service must not switch anything.
    (clean_env / "dry_run").write_text("true")
    (clean_env / "max_workers").write_text("oops")
    (clean_env / "lndg_pass").write_text("\n")  # empty: unset, as an empty variable is
    settings = load_settings(None, secrets_dir=clean_env)
    assert settings.dry_run is False
    assert settings.max_workers == 4
    assert settings.lndg_pass is None


def test_a_directory_where_a_secret_should_be_is_one_line(clean_env: Path) -> None:
    (clean_env / "telegram_token").mkdir()
    (clean_env / "lndg_pass").write_text(PASSWORD)
    with pytest.raises(SettingsError) as caught:
        load_settings(None, secrets_dir=clean_env)
    (problem,) = caught.value.problems
    assert problem.startswith("TELEGRAM_TOKEN: secret ")
    assert "is a directory, not a file" in problem
    assert "\n" not in problem
    assert PASSWORD not in problem


def test_two_spellings_of_one_secret_are_refused(clean_env: Path) -> None:
    (clean_env / "lndg_pass").write_text("one")
    (clean_env / "LNDG_PASS").write_text("two")
    with pytest.raises(SettingsError) as caught:
        load_settings(None, secrets_dir=clean_env)
    assert caught.value.problems == [
        f"LNDG_PASS: two secret files, LNDG_PASS and lndg_pass in {clean_env}: keep one"
    ]


def test_credentials_directory_then_run_secrets(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    docker = tmp_path / "run-secrets"
    docker.mkdir()
    (docker / "lndg_pass").write_text("docker")
    (clean_env / "lndg_pass").write_text("systemd")
    monkeypatch.setattr(settings_module, "DOCKER_SECRETS_DIR", docker)
    assert settings_module.default_secrets_dir() == docker
    from_docker = load_settings(None).lndg_pass
    assert from_docker is not None
    assert from_docker.get_secret_value() == "docker"
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(clean_env))
    assert settings_module.default_secrets_dir() == clean_env
    settings = load_settings(None)
    assert settings.lndg_pass is not None
    assert settings.lndg_pass.get_secret_value() == "systemd"
    # Neither there: no secret files at all, and no warning about a missing directory.
    monkeypatch.setattr(settings_module, "DOCKER_SECRETS_DIR", tmp_path / "absent")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "absent-too"))
    assert settings_module.default_secrets_dir() is None
    assert load_settings(None).lndg_pass is None


def test_a_directory_at_the_template_path_is_one_line(tmp_path: Path) -> None:
    mounted = tmp_path / "config.template.json"
    mounted.mkdir()
    with pytest.raises(TemplateError) as caught:
        load_template(mounted)
    message = str(caught.value)
    assert "is a directory, not a file" in message
    assert "REGOLANCER_TEMPLATE" in message
    assert "\n" not in message


def _cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The real entry point, obeying file modes even as root (see honour_file_modes)."""
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=tmp_path,
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(REPO),
            "DATA_DIR": str(tmp_path / "data"),
            "LNDG_BASE_URL": "http://127.0.0.1:9",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        preexec_fn=honour_file_modes,
    )


@pytest.mark.subprocess
def test_run_refuses_a_directory_or_unreadable_template_in_one_line(tmp_path: Path) -> None:
    mounted = tmp_path / "mounted"
    mounted.mkdir()
    result = _cli(tmp_path, "run", REGOLANCER_TEMPLATE=str(mounted), DRY_RUN="true")
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: regolancer template ")
    assert "is a directory, not a file" in line

    unreadable = tmp_path / "config.template.json"
    unreadable.write_text((REPO / "config.template.json").read_text())
    unreadable.chmod(0o000)
    result = _cli(tmp_path, "run", REGOLANCER_TEMPLATE=str(unreadable), DRY_RUN="true")
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "permission denied" in line
    assert "REGOLANCER_TEMPLATE" in line


@pytest.mark.subprocess
def test_an_unreadable_secret_stops_start_up_in_one_line(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    secret = credentials / "lndg_pass"
    secret.write_text(PASSWORD)
    secret.chmod(0o000)
    result = _cli(tmp_path, "health", CREDENTIALS_DIRECTORY=str(credentials))
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("configuration error: LNDG_PASS: cannot read secret ")
    assert "Permission denied" in line
    assert PASSWORD not in result.stdout + result.stderr
