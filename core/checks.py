"""`check`: is everything in place for the daemon to work? One line per check, with a fix."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from core.check_lnd import check_info, check_lnd_files, info_config
from core.check_result import Check
from core.check_telegram import check_telegram
from core.env_names import name_warnings
from core.lndg import LndgAuthError, LndgClient, LndgError, LndgServerError, LndgUnreachable
from core.lndg_pace import sleep_warning
from core.models import Channel
from core.pairing import build_pairs
from core.regolancer_config import TemplateError, load_template, template_warnings
from core.runner import binary_problem, find_binary
from core.settings import Settings, shown_url
from core.state import StateError, StateStore, ensure_data_dir

__all__ = ["Check", "environment_warnings", "run_checks"]


def environment_names(env_files: Iterable[Path], environ: Mapping[str, str]) -> list[str]:
    """Every name set in the env files and the process environment."""
    names = list(environ)
    for path in env_files:
        names += [name for name in dotenv_values(path) if name]
    return names


def environment_warnings(env_files: Iterable[Path], environ: Mapping[str, str]) -> list[str]:
    """Names that look like settings but are not read (see core.env_names)."""
    return name_warnings(environment_names(env_files, environ), Settings.model_fields)


def check_settings(env_files: Sequence[Path], environ: Mapping[str, str]) -> list[Check]:
    read = ", ".join(str(path.resolve()) for path in env_files)
    detail = f"read the environment and {read}" if read else "read the environment (no env file)"
    return [Check("settings", True, detail)] + [
        Check("settings", True, warning, warning=True)
        for warning in environment_warnings(env_files, environ)
    ]


def check_pace(settings: Settings) -> list[Check]:
    """A warning when SLEEP_SECONDS would read LNDg's whole channel list too often."""
    warning = sleep_warning(settings.sleep_seconds)
    return [] if warning is None else [Check("settings", True, warning, warning=True)]


def check_data_dir(settings: Settings) -> Check:
    try:
        ensure_data_dir(settings.data_dir)
        StateStore(settings.database_path).close()
    except StateError as exc:
        return Check("data", False, str(exc), "set DATA_DIR to a directory this user can write")
    return Check("data", True, f"{settings.data_dir.resolve()} writable, state database ok")


def check_regolancer(settings: Settings) -> Check:
    problem = binary_problem(settings.regolancer_bin)
    if problem is not None:
        return Check("regolancer", False, *problem)
    return Check("regolancer", True, f"{find_binary(settings.regolancer_bin)} is executable")


def check_template(settings: Settings) -> list[Check]:
    return _template_checks(settings)[0]


def _template_checks(settings: Settings) -> tuple[list[Check], dict[str, Any] | None]:
    path = settings.regolancer_template
    try:
        template = load_template(path)
    except TemplateError as exc:
        return [Check("template", False, str(exc), "fix REGOLANCER_TEMPLATE or the file")], None
    checks = [Check("template", True, f"{path} is a JSON object with {len(template)} keys")]
    checks += [
        Check("template", True, warning, warning=True)
        for warning in template_warnings(template, settings.stat_path, settings.run_timeout_seconds)
    ]
    return checks, template


async def check_lndg(settings: Settings) -> Check:
    return (await _lndg_check(settings))[0]


async def _lndg_check(settings: Settings) -> tuple[Check, list[Channel]]:
    try:
        async with LndgClient.from_settings(settings) as lndg:
            fetched = await lndg.fetch_channels()
    # The client's messages already name the URL and the setting to fix.
    except LndgAuthError as exc:
        return Check("LNDg", False, f"credentials rejected: {exc}"), []
    except LndgUnreachable as exc:
        return Check("LNDg", False, f"unreachable: {exc}"), []
    except LndgServerError as exc:
        return Check("LNDg", False, f"server error: {exc}"), []
    except LndgError as exc:
        # A 400 from Django, an error body, a page that is not JSON: the message says which.
        return Check("LNDg", False, f"unexpected answer: {exc}"), []
    skipped = f", {len(fetched.skipped)} rows skipped" if fetched.skipped else ""
    check = Check(
        "LNDg",
        True,
        f"{shown_url(settings.lndg_base_url)} answers, credentials accepted, "
        f"{len(fetched.channels)} open active public channels{skipped}",
    )
    return check, list(fetched.channels)


async def run_checks(
    settings: Settings,
    env_files: Sequence[Path] = (),
    environ: Mapping[str, str] | None = None,
) -> list[Check]:
    """Every check, in the order an operator would fix them."""
    environ = os.environ if environ is None else environ
    lndg, channels = await _lndg_check(settings)
    binary = check_regolancer(settings)
    template_checks, template = _template_checks(settings)
    checks = [
        *check_settings(env_files, environ),
        *check_pace(settings),
        check_data_dir(settings),
        lndg,
        binary,
        *template_checks,
    ]
    if template is not None:
        files = check_lnd_files(template)
        checks += files
        if binary.ok and all(check.ok for check in files):
            # A pair LNDg gives now, so LND must know both its channels; else every channel.
            pairs = build_pairs(channels)
            config = info_config(template, pairs[0] if pairs else None, settings.stat_path)
            checks.append(await check_info(settings.regolancer_bin, config, settings.data_dir))
    checks += await check_telegram(settings)
    return checks
