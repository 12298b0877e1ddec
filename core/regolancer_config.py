"""regolancer's JSON config: the operator's template, checked, plus one pair per run.

The template holds what the operator decides once (connection, amount, fees, timeouts); the
orchestrator adds what changes per run (`from`, `to`, `pfrom`, `pto`, `stat`, and under
FEE_POLICY=lndg the run's `fee_limit_ppm` and `amount`, see core.spending). Checks here
catch what regolancer would only report at run time, once per pair, with a Go error.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from core.models import Pair

# Keys the orchestrator writes for every run; a template value for them is replaced.
PER_RUN_KEYS = ("from", "to", "pfrom", "pto", "stat")

# regolancer's config struct (v1.12.3) by Go type. json.Decoder rejects anything else, e.g.
# 50000.0 for an int64 or a number inside a []string, and the run dies with exit 1.
INTEGER_KEYS = frozenset(
    {
        "pfrom",
        "pto",
        "perc",
        "amount",
        "min_amount",
        "probe_steps",
        "fail_tolerance",
        "econ_ratio_max_ppm",
        "fee_limit_ppm",
        "exclude_channel_age",
        "node_cache_lifetime",
        "timeout_rebalance",
        "timeout_attempt",
        "timeout_info",
        "timeout_route",
    }
)
NUMBER_KEYS = frozenset({"econ_ratio", "rel_amount_to", "rel_amount_from"})
BOOL_KEYS = frozenset(
    {
        "allow_rapid_rebalance",
        "lost_profit",
        "node_cache_info",
        "allow_unbalance_from",
        "allow_unbalance_to",
    }
)
STRING_KEYS = frozenset(
    {
        "connect",
        "tlscert",
        "macaroon_dir",
        "macaroon_filename",
        "network",
        "node_cache_filename",
        "stat",
    }
)
STRING_LIST_KEYS = frozenset(
    {
        "from",
        "to",
        "exclude",
        "exclude_from",
        "exclude_to",
        "exclude_channels",
        "exclude_channels_in",
        "exclude_channels_out",
        "exclude_nodes",
    }
)

# regolancer's defaults when a key is absent or 0 (see the contract).
DEFAULT_TIMEOUT_REBALANCE_MIN = 360
DEFAULT_TIMEOUT_ATTEMPT_MIN = 5


class TemplateError(Exception):
    """The regolancer template cannot be used; the message is one actionable line."""


def load_template(path: Path) -> dict[str, Any]:
    """Read and check the operator's template; raise TemplateError with a one-line reason."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TemplateError(
            f"regolancer template {path} not found: copy config.template.json there and edit it, "
            "or point REGOLANCER_TEMPLATE at it"
        ) from None
    except IsADirectoryError:
        raise TemplateError(
            f"regolancer template {path} is a directory, not a file (Docker makes an empty "
            "directory when a bind mount's source file is missing): create the file on the "
            "host, or point REGOLANCER_TEMPLATE at it"
        ) from None
    except PermissionError:
        raise TemplateError(
            f"cannot read regolancer template {path}: permission denied for uid {os.getuid()}: "
            "make the file (and its directories) readable by this user, or point "
            "REGOLANCER_TEMPLATE at a copy it can read"
        ) from None
    except UnicodeDecodeError:
        raise TemplateError(f"regolancer template {path} is not UTF-8 text") from None
    except OSError as exc:
        raise TemplateError(
            f"cannot read regolancer template {path}: {exc.strerror or exc}"
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TemplateError(
            f"regolancer template {path} is not valid JSON: {exc.msg} at line {exc.lineno} "
            f"column {exc.colno} (JSON allows no comments or trailing commas)"
        ) from None
    if not isinstance(data, dict):
        raise TemplateError(
            f"regolancer template {path} must be a JSON object {{...}}, "
            f"not a JSON {_json_type(data)}"
        )
    check_template(data, source=str(path))
    return data


def check_template(template: Mapping[str, Any], *, source: str = "regolancer template") -> None:
    """Raise TemplateError for a value regolancer would refuse at start-up.

    Keys the orchestrator replaces per run (`PER_RUN_KEYS`, and `perc`) are not checked:
    their template values never reach regolancer.
    """
    for key, value in template.items():
        if key in PER_RUN_KEYS or key == "perc":
            continue
        problem = _type_problem(key, value)
        if problem:
            raise TemplateError(f"{source}: {problem}")

    def number(key: str) -> float:
        value = template.get(key, 0)
        return float(value) if isinstance(value, int | float) else 0.0

    # regolancer treats 0 as "unset" for all of these.
    if number("econ_ratio_max_ppm") and number("fee_limit_ppm"):
        raise TemplateError(
            f'{source}: set either "econ_ratio_max_ppm" or "fee_limit_ppm", not both '
            "(regolancer refuses to start with both)"
        )
    relative = number("rel_amount_to") or number("rel_amount_from")
    if not number("amount") and not relative:
        raise TemplateError(
            f'{source}: no amount: set "amount" in sats (e.g. 50000) '
            'or "rel_amount_to"/"rel_amount_from"'
        )
    if number("amount") and relative:
        raise TemplateError(
            f'{source}: set either "amount" or "rel_amount_to"/"rel_amount_from", not both'
        )
    if relative and template.get("allow_rapid_rebalance") is True:
        raise TemplateError(
            f'{source}: "allow_rapid_rebalance" cannot be combined with relative amounts; '
            'use "amount" or turn rapid rebalance off'
        )
    if number("amount") and number("min_amount") > number("amount"):
        raise TemplateError(f'{source}: "min_amount" must not exceed "amount"')


def build_config(
    template: Mapping[str, Any],
    pair: Pair,
    stat_path: Path,
    *,
    fee_limit_ppm: int | None = None,
    amount: int | None = None,
) -> dict[str, Any]:
    """The config for one run: the template plus this pair and our stat file. Pure.

    `from`/`to` are lists of decimal strings (numbers are fatal to regolancer), `pfrom`/`pto`
    JSON integers, and `stat` is always our absolute stat path so successes are counted.
    `perc` is dropped: regolancer would let it override the per-pair `pfrom`/`pto`.

    FEE_POLICY=lndg passes the run's own limits (core.spending.run_limits); None keeps the
    template's keys, as FEE_POLICY=template does:
    - `fee_limit_ppm` is written as a JSON integer and `econ_ratio_max_ppm` dropped
      (regolancer refuses both together; with `fee_limit_ppm` set it ignores `econ_ratio`
      and `lost_profit`, so those stay as written);
    - `amount` is written as a JSON integer and `rel_amount_to`/`rel_amount_from` dropped
      (regolancer refuses both kinds together).
    Both must be > 0: regolancer reads 0 as "use the default", which for the fee is no cap.
    A pair with `rapid` False gets `allow_rapid_rebalance` false (its budget allows one step).
    """
    config = copy.deepcopy(dict(template))
    config.pop("perc", None)
    if fee_limit_ppm is not None:
        config["fee_limit_ppm"] = _positive_int("fee_limit_ppm", fee_limit_ppm)
        config.pop("econ_ratio_max_ppm", None)
    if pair.rapid is False:
        config["allow_rapid_rebalance"] = False
    if amount is not None:
        config["amount"] = _positive_int("amount", amount)
        config.pop("rel_amount_to", None)
        config.pop("rel_amount_from", None)
        min_amount = config.get("min_amount")
        if isinstance(min_amount, int) and min_amount > config["amount"]:
            # regolancer would refuse to start ("minimum amount should be less than amount").
            raise ValueError(f"amount {amount} is below the template's min_amount {min_amount}")
    config["from"] = [str(pair.source.chan_id)]
    config["to"] = [str(pair.target.chan_id)]
    config["pfrom"] = int(pair.pfrom)
    config["pto"] = int(pair.pto)
    config["stat"] = os.path.abspath(stat_path)
    return config


def template_warnings(
    template: Mapping[str, Any], stat_path: Path, run_timeout_seconds: float
) -> list[str]:
    """Things in the template that work, but not as the operator may expect (one line each)."""
    warnings: list[str] = []
    ignored = [key for key in ("from", "to", "pfrom", "pto") if key in template]
    if ignored:
        warnings.append(
            f"template keys {', '.join(ignored)} are ignored: the orchestrator sets them for "
            "each pair"
        )
    if "perc" in template:
        warnings.append(
            '"perc" in the template is dropped: it would override the pfrom/pto the '
            "orchestrator computes for each pair"
        )
    stat = template.get("stat")
    wanted = os.path.abspath(stat_path)
    if stat not in (None, "") and (not isinstance(stat, str) or os.path.abspath(stat) != wanted):
        warnings.append(
            f'template "stat" ({stat}) is replaced by {wanted}: the orchestrator reads '
            "successes from its own stat file"
        )
    rebalance_min = _minutes(template, "timeout_rebalance", DEFAULT_TIMEOUT_REBALANCE_MIN)
    if rebalance_min * 60 > run_timeout_seconds:
        warnings.append(
            f"timeout_rebalance is {rebalance_min} min ({rebalance_min * 60} s) but runs are "
            f"killed after RUN_TIMEOUT_SECONDS={run_timeout_seconds:g}: set timeout_rebalance "
            f"(minutes) to at most {max(1, int(run_timeout_seconds // 60) - 1)} so regolancer "
            "stops itself"
        )
    attempt_min = _minutes(template, "timeout_attempt", DEFAULT_TIMEOUT_ATTEMPT_MIN)
    if attempt_min * 60 >= run_timeout_seconds:
        warnings.append(
            f"timeout_attempt is {attempt_min} min, not shorter than RUN_TIMEOUT_SECONDS="
            f"{run_timeout_seconds:g}: a single attempt can outlive the run"
        )
    return warnings


def write_config(config: Mapping[str, Any], directory: Path) -> Path:
    """Write `config` to a new private (0600) `.json` file in `directory`; return its path.

    The file is created with O_CREAT|O_EXCL and mode 0600 (mkstemp) before anything is
    written, so no other user ever sees the macaroon path, and no two runs share a file.
    """
    if ".toml" in str(directory):
        # regolancer parses any config path containing ".toml" as TOML.
        raise ValueError(f"config directory {directory} must not contain '.toml' in its path")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="regolancer-", suffix=".json", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(config, handle, indent=2, allow_nan=False)
            handle.write("\n")
    except BaseException:
        os.unlink(name)
        raise
    return Path(name)


def _positive_int(key: str, value: int) -> int:
    # A JSON integer: 50000.0 is fatal to regolancer, and a bool is not a number to it.
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{key} must be a whole number above 0, not {value!r}")
    return value


def _minutes(template: Mapping[str, Any], key: str, default: int) -> int:
    value = template.get(key)
    # 0 or absent means regolancer's default.
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return default


def _type_problem(key: str, value: Any) -> str | None:
    if key in INTEGER_KEYS:
        if isinstance(value, float) and value.is_integer():
            return (
                f'"{key}" must be a whole number like {int(value)}, not {value!r} '
                "(regolancer rejects decimals for integer keys)"
            )
        if not isinstance(value, int) or isinstance(value, bool):
            return f'"{key}" must be a whole number, not a JSON {_json_type(value)} ({value!r})'
        if key == "exclude_channel_age" and value < 0:
            return f'"{key}" must not be negative'
    elif key in NUMBER_KEYS:
        if not isinstance(value, int | float) or isinstance(value, bool):
            return f'"{key}" must be a number, not a JSON {_json_type(value)}'
    elif key in BOOL_KEYS:
        if not isinstance(value, bool):
            return f'"{key}" must be true or false, not a JSON {_json_type(value)}'
    elif key in STRING_KEYS:
        if not isinstance(value, str):
            return f'"{key}" must be a string, not a JSON {_json_type(value)}'
    elif key in STRING_LIST_KEYS and (
        not isinstance(value, list) or not all(isinstance(item, str) for item in value)
    ):
        return (
            f'"{key}" must be a list of strings like ["879609302301671425"] '
            "(regolancer rejects numbers in channel lists)"
        )
    return None


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if value is None:
        return "null"
    return "object"
