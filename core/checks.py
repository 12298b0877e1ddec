"""`check`: is everything in place for the daemon to work? One line per check, with a fix."""

from __future__ import annotations

import os
from dataclasses import dataclass

from core.lndg import LndgAuthError, LndgClient, LndgError, LndgServerError, LndgUnreachable
from core.regolancer_config import TemplateError, load_template, template_warnings
from core.runner import find_binary
from core.settings import Settings, shown_url
from core.state import StateError, StateStore, ensure_data_dir


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str
    hint: str = ""
    warning: bool = False

    def line(self) -> str:
        mark = "ok  " if self.ok and not self.warning else ("warn" if self.ok else "FAIL")
        text = f"{mark} {self.name}: {self.detail}"
        return f"{text} -> {self.hint}" if self.hint else text


def check_data_dir(settings: Settings) -> Check:
    try:
        ensure_data_dir(settings.data_dir)
        StateStore(settings.database_path).close()
    except StateError as exc:
        return Check("data", False, str(exc), "set DATA_DIR to a directory this user can write")
    return Check("data", True, f"{settings.data_dir.resolve()} writable, state database ok")


def check_regolancer(settings: Settings) -> Check:
    name = settings.regolancer_bin
    found = find_binary(name)
    if found is not None:
        return Check("regolancer", True, f"{found} is executable")
    if os.path.exists(name) and not os.access(name, os.X_OK):
        return Check("regolancer", False, f"{name} is not executable", f"chmod +x {name}")
    return Check(
        "regolancer",
        False,
        f"{name} not found",
        "install regolancer or set REGOLANCER_BIN to its full path",
    )


def check_template(settings: Settings) -> list[Check]:
    path = settings.regolancer_template
    try:
        template = load_template(path)
    except TemplateError as exc:
        return [Check("template", False, str(exc), "fix REGOLANCER_TEMPLATE or the file")]
    checks = [Check("template", True, f"{path} is a JSON object with {len(template)} keys")]
    checks += [
        Check("template", True, warning, warning=True)
        for warning in template_warnings(template, settings.stat_path, settings.run_timeout_seconds)
    ]
    return checks


async def check_lndg(settings: Settings) -> Check:
    try:
        async with LndgClient.from_settings(settings) as lndg:
            fetched = await lndg.fetch_channels()
    # The client's messages already name the URL and the setting to fix.
    except LndgAuthError as exc:
        return Check("LNDg", False, f"credentials rejected: {exc}")
    except LndgUnreachable as exc:
        return Check("LNDg", False, f"unreachable: {exc}")
    except LndgServerError as exc:
        return Check("LNDg", False, f"server error: {exc}")
    except LndgError as exc:
        # A 400 from Django, an error body, a page that is not JSON: the message says which.
        return Check("LNDg", False, f"unexpected answer: {exc}")
    skipped = f", {len(fetched.skipped)} rows skipped" if fetched.skipped else ""
    return Check(
        "LNDg",
        True,
        f"{shown_url(settings.lndg_base_url)} answers, credentials accepted, "
        f"{len(fetched.channels)} open active public channels{skipped}",
    )


async def run_checks(settings: Settings) -> list[Check]:
    """Every check, in the order an operator would fix them."""
    return [
        Check("settings", True, "environment and .env parsed"),
        check_data_dir(settings),
        await check_lndg(settings),
        check_regolancer(settings),
        *check_template(settings),
    ]
