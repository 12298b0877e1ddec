"""`check`, the LND end: the template's TLS certificate and macaroon, and `regolancer --info`.

The two paths are secrets of the node's layout (logs never show them): lines here name the
template key and the file's last component only, and regolancer's own words have the paths
replaced by the key that holds them.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.check_result import Check
from core.models import Pair
from core.regolancer_config import PER_RUN_KEYS, build_config, write_config
from core.runner import child_environment, last_meaningful_line

# regolancer --info asks LND within its own timeout_info (30 s by default); this bounds a
# binary that hangs anyway.
INFO_TIMEOUT_SECONDS = 60.0
DEFAULT_CONNECT = "127.0.0.1:10009"  # regolancer's, when "connect" is empty

# regolancer's words when LND answered but no channel qualifies for this config: LND is
# reached all the same (see its main.go).
_REACHED_MARKERS = (
    "no source channels selected",
    "no target channels selected",
    "no source nodes/channels selected",
    "no target nodes/channels selected",
)


@dataclass(frozen=True, slots=True)
class LndFile:
    """A file regolancer reads to reach LND: which template key names it, and where it is."""

    key: str
    path: Path


def lnd_files(template: Mapping[str, Any], home: Path) -> list[LndFile]:
    """The TLS certificate and macaroon regolancer will open, with lndclient's defaults.

    Empty or absent keys fall back to `~/.lnd/tls.cert` and
    `~/.lnd/data/chain/bitcoin/<network>/admin.macaroon`, as regolancer's LND client does.
    """

    def text(key: str, default: str) -> str:
        value = template.get(key)
        return value if isinstance(value, str) and value else default

    lnd_dir = home / ".lnd"
    network = text("network", "mainnet")
    cert = text("tlscert", str(lnd_dir / "tls.cert"))
    macaroon_dir = text("macaroon_dir", str(lnd_dir / "data" / "chain" / "bitcoin" / network))
    macaroon = Path(macaroon_dir) / text("macaroon_filename", "admin.macaroon")
    return [LndFile("tlscert", Path(cert)), LndFile("macaroon", macaroon)]


def shown(path: Path) -> str:
    """A secret path as a line may show it: its last component only."""
    return f".../{path.name}"


def check_lnd_file(file: LndFile, user: str) -> Check:
    """Does `file` exist, is it a file, can this user read it (by opening it, as regolancer)."""
    key = "macaroon_dir" if file.key == "macaroon" else file.key
    where = f'"{key}" in the template'
    what = shown(file.path)
    if str(file.path).startswith("~"):
        return Check(file.key, False, f"{what} starts with ~", f"write {where} as a full path")
    if file.path.is_dir():
        # Docker makes a directory where a mounted file did not exist.
        return Check(
            file.key, False, f"{what} is a directory, not a file", f"point {where} at the file"
        )
    try:
        with file.path.open("rb"):
            pass
    except FileNotFoundError:
        return Check(file.key, False, f"{what} does not exist", f"fix {where}")
    except PermissionError:
        return Check(
            file.key,
            False,
            f"{what} is not readable by user {user}",
            f"give {user} read access to it (e.g. add it to LND's group)",
        )
    except OSError as exc:
        return Check(file.key, False, f"{what} cannot be read: {exc.strerror or exc}")
    return Check(file.key, True, f"{what} is a readable file")


def check_lnd_files(template: Mapping[str, Any]) -> list[Check]:
    user = _user()
    return [check_lnd_file(file, user) for file in lnd_files(template, Path.home())]


def info_config(template: Mapping[str, Any], pair: Pair | None, stat_path: Path) -> dict[str, Any]:
    """The config `--info` reads: a run's config for `pair` (so LND must know both of LNDg's
    channels), or with no pair the template with every channel open to regolancer."""
    if pair is not None:
        return build_config(template, pair, stat_path)
    config = {k: v for k, v in template.items() if k not in PER_RUN_KEYS and k != "perc"}
    config["stat"] = os.path.abspath(stat_path)
    return config


def info_verdict(
    exit_code: int | None,
    stderr: Sequence[str],
    secrets: Mapping[str, str],
    connect: str = DEFAULT_CONNECT,
    limit_seconds: float = INFO_TIMEOUT_SECONDS,
) -> Check:
    """How `regolancer --info` ended, in its own words (secret paths replaced). Pure."""
    if exit_code is None:
        return Check(
            "regolancer --info",
            False,
            f"no answer from LND at {connect} within {limit_seconds:g} s",
            'check "connect" in the template and that LND is running',
        )
    words = last_meaningful_line(stderr)
    for key, path in secrets.items():
        if len(path) > 1:
            words = words.replace(path, f"<{key}>")
    if exit_code == 0:
        return Check("regolancer --info", True, f"LND at {connect} answers regolancer")
    if any(marker in words.lower() for marker in _REACHED_MARKERS):
        return Check(
            "regolancer --info",
            True,
            f"LND answers, but regolancer says: {words}",
            "no channel qualifies now; `pairs` shows why",
            warning=True,
        )
    return Check(
        "regolancer --info",
        False,
        f"exit {exit_code}: {words or 'no message'}",
        'fix "connect", "tlscert", "macaroon_dir" in the template, or LND',
    )


async def check_info(
    binary: str,
    config: Mapping[str, Any],
    work_dir: Path,
    *,
    limit_seconds: float = INFO_TIMEOUT_SECONDS,
) -> Check:
    """Run `regolancer -f <config> --info` once; the config is private and removed after."""
    cert, macaroon = lnd_files(config, Path.home())
    # Longest first: the macaroon's path holds its directory.
    secrets = {
        "tlscert": str(cert.path),
        "macaroon": str(macaroon.path),
        "macaroon_dir": str(macaroon.path.parent),
    }
    try:
        path = write_config(config, work_dir)
    except (OSError, ValueError) as exc:
        return Check("regolancer --info", False, f"cannot write its config: {exc}")
    try:
        code, stderr = await _run_info(binary, path, limit_seconds)
    except OSError as exc:
        return Check("regolancer --info", False, f"cannot start {binary}: {exc.strerror or exc}")
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    connect = str(config.get("connect") or DEFAULT_CONNECT)
    return info_verdict(code, stderr, secrets, connect, limit_seconds)


async def _run_info(
    binary: str, config: Path, limit_seconds: float
) -> tuple[int | None, list[str]]:
    # Never a shell; its own process group so a hung one is killed with all it started.
    proc = await asyncio.create_subprocess_exec(
        binary,
        "-f",
        str(config),
        "--info",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
        env=child_environment(os.environ),
    )
    try:
        async with asyncio.timeout(limit_seconds):
            _, err = await proc.communicate()
    except TimeoutError:
        # --info pays nothing: nothing is lost by SIGKILL.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        return None, []
    return proc.returncode, err.decode("utf-8", errors="replace").splitlines()


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a uid without a passwd entry (a container)
        return f"uid {os.getuid()}"
