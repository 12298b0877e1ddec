"""Settings from the environment and `.env`, with the original tool's variable names.

`load_settings()` turns every validation problem into one line naming the variable, so
start-up can print them and stop without a traceback and without echoing a secret.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import ssl
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import unquote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
)

from core.metrics_server import parse_listen
from core.spending import FeePolicy

TELEGRAM_DEFAULT_BASE_URL = "https://api.telegram.org/bot"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

# The settings that may also come from a file named after them (`lndg_pass` or `LNDG_PASS`),
# read when the variable is unset or empty: Docker and Podman mount secrets in /run/secrets,
# systemd's LoadCredential= puts them in $CREDENTIALS_DIRECTORY.
SECRET_FIELDS = ("telegram_token", "lndg_pass")
DOCKER_SECRETS_DIR = Path("/run/secrets")


class SettingsError(Exception):
    """Start-up configuration is unusable; `problems` holds one line per variable."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _split_list(value: Any) -> Any:
    # Comma-separated in .env files (aliases may hold spaces); JSON would surprise operators.
    if isinstance(value, str):
        return [item.strip() for item in value.replace("\n", ",").split(",") if item.strip()]
    return value


class _SecretFiles(SecretsSettingsSource):
    """Secret files for SECRET_FIELDS only (a stray `/run/secrets/dry_run` changes nothing);
    an empty file counts as unset, like an empty variable."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        if field_name not in SECRET_FIELDS:
            return None, field_name, False
        value, key, is_complex = super().get_field_value(field, field_name)
        return (value or None), key, is_complex


class Settings(BaseSettings):
    """Every setting of the daemon. Names are the environment variables, upper-cased."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        validate_default=True,
        # "LNDG_PASS=" in a .env means "not set", as operators expect.
        env_ignore_empty=True,
    )

    # Telegram (absent token = headless mode)
    telegram_token: SecretStr | None = None
    telegram_chat_id: int | None = None
    telegram_allowed_user_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)
    telegram_api_base_url: str = TELEGRAM_DEFAULT_BASE_URL

    # LNDg
    lndg_base_url: str = "http://localhost:8889"
    lndg_user: str = "lndg-admin"
    lndg_pass: SecretStr | None = None
    lndg_verify_tls: bool = True
    lndg_ca_file: Path | None = None
    lndg_timeout_seconds: float = Field(default=15.0, gt=0, le=300)

    # Engine
    dry_run: bool = False
    sleep_seconds: int = Field(default=300, ge=1, le=86_400)
    max_workers: int = Field(default=4, ge=1, le=64)
    regolancer_bin: str = "regolancer"
    regolancer_template: Path = Path("config.template.json")
    regolancer_echo_output: bool = False
    run_timeout_seconds: int = Field(default=1800, ge=1, le=86_400)
    failure_cooldown_seconds: int = Field(default=1800, ge=0, le=7 * 86_400)
    failure_cooldown_max_seconds: int = Field(default=86_400, ge=0, le=30 * 86_400)
    ping_pong_guard_seconds: int = Field(default=3600, ge=0, le=7 * 86_400)
    max_pending_htlcs: int = Field(default=10, ge=0, le=966)
    retry_when_idle: bool = True
    history_days: int = Field(default=7, ge=0, le=90)

    # Spending (core.spending)
    fee_policy: FeePolicy = FeePolicy.LNDG
    daily_fee_budget_sats: int = Field(default=0, ge=0)
    earnings_budget_ratio: float = Field(default=0.0, ge=0, le=100)
    earnings_window_days: int = Field(default=30, ge=1, le=365)
    exclude_channels: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # Files
    data_dir: Path = Path("data")
    stat_file: Path | None = None
    worker_log_max_bytes: int = Field(default=1_000_000, ge=10_000)
    # Runs (attempts) older than this are deleted once a day; the ledger is kept forever.
    run_retention_days: int = Field(default=90, ge=7, le=36_500)

    # Chat and report
    notify_min_sats: int = Field(default=0, ge=0)
    notify_digest_minutes: int = Field(default=0, ge=0, le=1440)
    report_time: dt.time = dt.time(0, 5)
    timezone: str = "UTC"
    log_level: str = "INFO"

    # Monitoring (core.metrics_server): host:port for /metrics and /healthz; empty: off
    metrics_listen: str = ""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The usual order (variables, then .env, then secret files), with our secret source.
        directory = getattr(file_secret_settings, "secrets_dir", None)
        secrets = _SecretFiles(settings_cls, secrets_dir=directory)
        return init_settings, env_settings, dotenv_settings, secrets

    @field_validator("telegram_allowed_user_ids", "exclude_channels", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("telegram_allowed_user_ids", mode="before")
    @classmethod
    def _user_ids(cls, value: Any) -> Any:
        # Name the item: "abc" in a list of ten ids is otherwise hard to find.
        value = _split_list(value)
        for item in value if isinstance(value, list) else ():
            if isinstance(item, str) and not item.lstrip("-").isdecimal():
                raise ValueError(
                    f"{item!r} is not a Telegram user id; give numeric ids separated by commas, "
                    "e.g. 12345678,87654321 (@userinfobot tells yours)"
                )
        return value

    @field_validator("lndg_base_url", "telegram_api_base_url")
    @classmethod
    def _http_url(cls, value: str, info: ValidationInfo) -> str:
        value = value.strip()
        if not value.startswith(("http://", "https://")) or len(value) < 10:
            raise ValueError("must be an http:// or https:// URL, e.g. http://localhost:8889")
        # PTB appends the token straight to its base URL, so only LNDg's is normalised.
        return value.rstrip("/") if info.field_name == "lndg_base_url" else value

    @field_validator("lndg_ca_file")
    @classmethod
    def _ca_file(cls, value: Path | None) -> Path | None:
        # Checked here so a bad file is one configuration line, not a traceback at start.
        if value is None:
            return None
        try:
            ssl.create_default_context(cafile=os.fspath(value))
        except OSError as exc:  # ssl.SSLError included
            reason = (
                "no PEM certificate in it"
                if isinstance(exc, ssl.SSLError)
                else exc.strerror or str(exc)
            )
            raise ValueError(f"{value} cannot be used as a CA certificate: {reason}") from None
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r}; use a name like Europe/Berlin"
            ) from None
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return level

    @field_validator("metrics_listen")
    @classmethod
    def _metrics_listen(cls, value: str) -> str:
        value = value.strip()
        if value:
            parse_listen(value)
        return value

    @model_validator(mode="after")
    def _telegram_pairing(self) -> Settings:
        if self.telegram_token is not None and not self.telegram_token.get_secret_value():
            self.telegram_token = None
        if self.telegram_token is not None and self.telegram_chat_id is None:
            raise ValueError(
                "TELEGRAM_CHAT_ID is required when TELEGRAM_TOKEN is set "
                "(the id of the one chat allowed to steer the daemon)"
            )
        return self

    # Derived values: paths are relative to DATA_DIR unless given absolutely.
    @property
    def stat_path(self) -> Path:
        return self.stat_file if self.stat_file is not None else self.data_dir / "stat.csv"

    @property
    def database_path(self) -> Path:
        return self.data_dir / "state.sqlite3"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def headless(self) -> bool:
        return self.telegram_token is None


def _describe(error: dict[str, Any]) -> str:
    location = [str(part) for part in error.get("loc", ()) if not isinstance(part, int)]
    name = location[0].upper() if location else "settings"
    message = str(error.get("msg", "invalid value"))
    message = message.removeprefix("Value error, ")
    return f"{name}: {message}"


def default_secrets_dir() -> Path | None:
    """Where secret files are looked for: systemd's credentials, else Docker's /run/secrets."""
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    for candidate in (Path(credentials) if credentials else None, DOCKER_SECRETS_DIR):
        if candidate is not None and candidate.is_dir():
            return candidate
    return None


def secret_file_problems(directory: Path) -> list[str]:
    """A secret file that is a directory or unreadable, as one line each (never its content)."""
    problems = []
    wanted = {name.lower(): name for name in SECRET_FIELDS}
    try:
        entries = sorted(directory.iterdir())
    except OSError as exc:
        return [f"secrets: cannot list {directory}: {exc.strerror or exc}"]
    seen: dict[str, Path] = {}
    for entry in entries:
        name = wanted.get(entry.name.lower())
        if name is None:
            continue
        variable = name.upper()
        if name in seen:
            # Which of the two pydantic-settings would read depends on the directory order.
            problems.append(
                f"{variable}: two secret files, {seen[name].name} and {entry.name} in "
                f"{directory}: keep one"
            )
            continue
        seen[name] = entry
        if entry.is_dir():
            problems.append(
                f"{variable}: secret {entry} is a directory, not a file (Docker makes one when "
                "the secret's source file is missing): create that file on the host"
            )
            continue
        try:
            with entry.open("rb"):
                pass
        except OSError as exc:
            problems.append(
                f"{variable}: cannot read secret {entry}: {exc.strerror or exc}: make it "
                f"readable by uid {os.getuid()}"
            )
    return problems


def load_settings(
    env_file: str | Path | None = ".env",
    *,
    secrets_dir: Path | None = None,
    **overrides: Any,
) -> Settings:
    """Read the settings; raise SettingsError with one readable line per problem.

    `secrets_dir` defaults to default_secrets_dir(); files there fill TELEGRAM_TOKEN and
    LNDG_PASS when the environment and the .env file leave them unset or empty.
    """
    if env_file is not None and not os.path.exists(env_file):
        env_file = None
    directory = secrets_dir if secrets_dir is not None else default_secrets_dir()
    if directory is not None:
        problems = secret_file_problems(directory)
        if problems:
            raise SettingsError(problems)
    try:
        return Settings(_env_file=env_file, _secrets_dir=directory, **overrides)
    except ValidationError as exc:
        # Built from loc and msg only: input values (maybe a secret) never appear.
        problems = [_describe(dict(err)) for err in exc.errors(include_input=False)]
        raise SettingsError(problems) from None


# The `user:password@` of a URL: up to the last "@" before the path, query or fragment.
_USERINFO = re.compile(r"^(?P<scheme>[^:/?#]+://)(?P<userinfo>[^/?#]*)@")


def shown_url(url: str) -> str:
    """The URL as a log, `check` or the chat may show it: `http://user:***@host`."""
    match = _USERINFO.match(url)
    if match is None or ":" not in match["userinfo"]:
        return url
    user = match["userinfo"].partition(":")[0]
    return f"{match['scheme']}{user}:***@{url[match.end() :]}"


def url_secrets(url: str) -> list[str]:
    """The password in a URL's `user:password@`, as written and percent-decoded (to redact)."""
    match = _USERINFO.match(url)
    if match is None:
        return []
    _user, _colon, password = match["userinfo"].partition(":")
    return [s for s in dict.fromkeys((password, unquote(password))) if s]


def masked(settings: Settings) -> dict[str, str]:
    """Every setting as the operator may see it: secrets replaced, paths as strings.

    URLs lose their password, and a secret's value written into another setting (a token
    pasted into TELEGRAM_API_BASE_URL) is replaced by `***` there too.
    """
    values = {name: getattr(settings, name) for name in type(settings).model_fields}
    # Short values would mangle unrelated text; RedactSecrets draws the same line.
    secrets = [
        v.get_secret_value()
        for v in values.values()
        if isinstance(v, SecretStr) and len(v.get_secret_value()) >= 4
    ]
    shown: dict[str, str] = {}
    for name, value in values.items():
        if isinstance(value, SecretStr):
            shown[name.upper()] = "****** (set)" if value.get_secret_value() else "(empty)"
            continue
        if value is None:
            text = "(not set)"
        elif isinstance(value, list):
            text = ", ".join(str(v) for v in value) or "(none)"
        elif name.endswith("_url"):
            text = shown_url(str(value))
        else:
            text = str(value)
        for secret in secrets:
            text = text.replace(secret, "***")
        shown[name.upper()] = text
    return shown
