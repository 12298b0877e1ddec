#!/usr/bin/env python3
"""A stand-in for the `regolancer` binary that honours the orchestrator's contract.

Stdlib only, no imports from the project: tests, the demo and CI run it as an executable.

    regolancer.py -f CONFIG.json [--info]

`--info` prints what it would use and exits 0, unless the scenario's outcome for the pair is
`lnd_error` or `hang`: those happen before regolancer looks at --info, so they end it too.

The config is checked the way regolancer's Go JSON decoder does it (numbers in channel
lists or decimals for integer keys are fatal, exit 1). What a run then does comes from the
JSON file named by FAKE_REGOLANCER_SCENARIO, re-read on every invocation:

    {"default": {"outcome": "success", "amount_sat": 50000, "fee_sat": 12, "steps": 1,
                 "delay": 0.1},
     "pairs": {"<from chan_id>><to chan_id>": {"outcome": "no_route"}}}

A pair's entry is merged over "default", then one entry picked at random from its "random"
list, if any (e.g. `"random": [{"outcome": "crash"}, {"outcome": "success"}]`). Outcomes:
    success            `steps` stat lines (rapid rebalance doubles the amount), each after
                       `delay` seconds; exit 0 (or `exit_code`, e.g. 2 after steps)
    not_qualified      exit 1, "no channelpairs available" (by its live balances the pair
                       no longer qualifies, or its amount fell below min_amount)
    no_route           exit 1, "Error during picking channel: no routes"
    route_timeout      exit 1, "Timed out looking for a route"
    rebalance_timeout  `steps` (default 0) stat lines, then exit 2, "Rebalancing timed out"
    lnd_error          exit 1, an rpc error (or `message`)
    crash              exit 2, a Go panic with a goroutine trace
    hang               runs until signalled: SIGINT exits 1 like regolancer, SIGTERM kills;
                       `ignore_signals: ["SIGINT", "SIGTERM"]` ignores them (tests escalation)
    spawn_grandchild   forks a sleeping grandchild in the same process group (it ignores
                       SIGINT unless `grandchild_ignores_sigint` is false), then hangs, or
                       exits 0 after `exit_after` seconds leaving the grandchild behind
    half_line          writes a stat line without its newline, exit 0
    slow               sleeps `sleep` (default `delay`) seconds, then one success

`"unique_amounts": true` adds the stat file's line count (taken under the lock) to every
paid amount in sats, so each stat line, and each chat message about it, is told apart.

Every invocation appends one JSON line to FAKE_REGOLANCER_RECORD (if set), under flock:
pid, pgid, start, end, argv, config, outcome, exit_code, env_keys, no_color, grandchild_pid,
config_mode (of the config file, as read), ppid.
A process killed by SIGKILL records nothing.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any, NoReturn

STAT_HEADER = b"timestamp,from_channel,to_channel,amount_msat,fees_msat\n"

# How regolancer says a run ended (contracts/regolancer.md); the benchmark's in-process model
# of a run (bench/simulate.py) ends its runs with the same lines.
NOT_QUALIFIED = "no channelpairs available"
NO_ROUTE = "Error during picking channel: no routes"
ROUTE_TIMEOUT = "Timed out looking for a route"
REBALANCE_TIMEOUT = "Rebalancing timed out"


def success_line(fee: int, ppm: int) -> str:
    """regolancer's line for a paid rebalance."""
    return f"Success! Paid {fee} in fees, {ppm} ppm"


# regolancer's config struct: JSON key -> Go type.
GO_TYPES = {
    **dict.fromkeys(
        ("connect", "tlscert", "macaroon_dir", "macaroon_filename", "network"), "string"
    ),
    **dict.fromkeys(("node_cache_filename", "stat"), "string"),
    **dict.fromkeys(
        (
            "pfrom",
            "pto",
            "perc",
            "amount",
            "min_amount",
            "fail_tolerance",
            "econ_ratio_max_ppm",
            "fee_limit_ppm",
        ),
        "int64",
    ),
    **dict.fromkeys(
        (
            "probe_steps",
            "node_cache_lifetime",
            "timeout_rebalance",
            "timeout_attempt",
            "timeout_info",
            "timeout_route",
        ),
        "int",
    ),
    "exclude_channel_age": "uint64",
    **dict.fromkeys(("econ_ratio", "rel_amount_to", "rel_amount_from"), "float64"),
    **dict.fromkeys(
        (
            "allow_rapid_rebalance",
            "lost_profit",
            "node_cache_info",
            "allow_unbalance_from",
            "allow_unbalance_to",
        ),
        "bool",
    ),
    **dict.fromkeys(
        (
            "from",
            "to",
            "exclude",
            "exclude_from",
            "exclude_to",
            "exclude_channels",
            "exclude_channels_in",
            "exclude_channels_out",
            "exclude_nodes",
        ),
        "[]string",
    ),
}


class Interrupted(Exception):
    """SIGINT arrived (regolancer saves its cache and exits 1)."""


class Run:
    """What this invocation did, for the record file."""

    def __init__(self) -> None:
        self.start = time.time()
        self.config: dict[str, Any] | None = None
        self.config_mode: str | None = None
        self.outcome = "config_error"
        self.grandchild_pid: int | None = None

    def finish(self, exit_code: int) -> NoReturn:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # exiting already: record only once
        self.record(exit_code)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(exit_code)

    def record(self, exit_code: int) -> None:
        path = os.environ.get("FAKE_REGOLANCER_RECORD")
        if not path:
            return
        entry = {
            "pid": os.getpid(),
            "pgid": os.getpgid(0),
            "start": self.start,
            "end": time.time(),
            "argv": sys.argv,
            "config": self.config,
            "outcome": self.outcome,
            "exit_code": exit_code,
            # Names only: values may be secrets, which is what the tests look for.
            "env_keys": sorted(os.environ),
            "no_color": os.environ.get("NO_COLOR"),
            "grandchild_pid": self.grandchild_pid,
            "config_mode": self.config_mode,
            "ppid": os.getppid(),
        }
        line = (json.dumps(entry) + "\n").encode()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, line)
        finally:
            os.close(fd)


RUN = Run()


def log(message: str) -> None:
    """One line on stderr with Go's log prefix."""
    sys.stderr.write(time.strftime("%Y/%m/%d %H:%M:%S ") + message + "\n")
    sys.stderr.flush()


def fatal(message: str) -> NoReturn:
    """Go's log.Fatal: the message, exit 1."""
    log(message)
    RUN.finish(1)


def on_sigint(signum: int, frame: Any) -> None:
    raise Interrupted


def on_sigterm(signum: int, frame: Any) -> None:
    # Record, then die by the signal itself so the exit status is -15 like Go's.
    RUN.outcome = RUN.outcome + "+sigterm"
    RUN.record(-signal.SIGTERM)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def parse_args(argv: list[str]) -> tuple[str | None, bool]:
    config: str | None = None
    info = False
    args = iter(argv)
    for arg in args:
        if arg in ("-f", "--config"):
            config = next(args, None)
            if config is None:
                fatal(
                    f"Error when parsing command line options: expected argument for flag `{arg}'"
                )
        elif arg.startswith("--config="):
            config = arg.split("=", 1)[1]
        elif arg.startswith("-f") and len(arg) > 2:
            config = arg[2:]
        elif arg == "--info":
            info = True
        elif arg in ("-v", "--version"):
            print("Version: fake-regolancer 0.0.0")
            RUN.outcome = "version"
            RUN.finish(1)
        else:
            fatal(f"Error when parsing command line options: unknown flag `{arg.lstrip('-')}'")
    return config, info


def go_type_error(key: str, value: Any) -> str | None:
    """The error Go's json decoder (UseNumber) reports for `value` in field `key`, if any."""
    go_type = GO_TYPES.get(key)
    if go_type is None:
        return None  # unknown keys are silently ignored

    def kind(item: Any) -> str:
        if isinstance(item, bool):
            return "bool"
        if isinstance(item, int | float):
            return "number"
        if isinstance(item, str):
            return "string"
        if isinstance(item, list):
            return "array"
        if item is None:
            return "null"
        return "object"

    def error(what: str, go: str) -> str:
        return f"json: cannot unmarshal {what} into Go struct field configParams.{key} of type {go}"

    if value is None:
        return None  # null leaves a Go field untouched
    if go_type == "[]string":
        if not isinstance(value, list):
            return error(kind(value), "[]string")
        for item in value:
            if item is not None and not isinstance(item, str):
                return error(kind(item), "string")
        return None
    if go_type in ("int", "int64", "uint64"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return error(kind(value), go_type)
        if isinstance(value, float) or (go_type == "uint64" and value < 0):
            return error(f"number {json.dumps(value)}", go_type)
        return None
    if go_type == "float64":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return None if ok else error(kind(value), "float64")
    if go_type == "bool":
        return None if isinstance(value, bool) else error(kind(value), "bool")
    return None if isinstance(value, str) else error(kind(value), "string")


def load_config(path: str) -> dict[str, Any]:
    if ".toml" in path:
        fatal(f"Error opening config file {path}: toml: this fake only speaks JSON")
    try:
        RUN.config_mode = oct(os.stat(path).st_mode & 0o777)
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        fatal(f"Error opening config file {path}: open {path}: {str(exc.strerror).lower()}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        fatal(f"Error reading config file {path}: {exc.msg} at offset {exc.pos}")
    if not isinstance(data, dict):
        fatal(
            f"Error reading config file {path}: json: cannot unmarshal "
            f"{type(data).__name__} into Go value of type main.configParams"
        )
    RUN.config = data
    for key, value in data.items():
        message = go_type_error(key, value)
        if message:
            if "cannot unmarshal number into Go struct field" in message:
                log(
                    "Info: all prior int channel arrays are now string arrays. Make sure the "
                    "following arguments in the config files are now strings:"
                )
                sys.stderr.write(
                    "ExcludeChannelsIn,ExcludeChannelsOut, ExcludeChannels,ToChannel, FromChannel\n"
                )
            fatal(f"Error reading config file {path}: {message}")
    return data


def preflight(config: dict[str, Any]) -> None:
    """regolancer's preflightChecks: refusals that happen before LND is contacted."""

    def number(key: str) -> float:
        value = config.get(key) or 0
        return float(value)

    if number("econ_ratio_max_ppm") and number("fee_limit_ppm"):
        fatal("use either econ-ratio-max-ppm or fee-limit-ppm but not both")
    if (
        number("min_amount") > 0
        and number("amount") > 0
        and number("min_amount") > number("amount")
    ):
        fatal("minimum amount should be less than amount")
    relative = number("rel_amount_to") > 0 or number("rel_amount_from") > 0
    if number("amount") > 0 and relative:
        fatal("use either precise amount or relative amounts but not both")
    if not number("amount") and not relative:
        fatal("no amount specified, use either --amount, --rel-amount-from, or --rel-amount-to")


def chan_id(value: str) -> int:
    """A decimal chan_id from a chan_id or BLOCKxTXxOUT; 0 for a node pubkey."""
    if value.isdigit():
        return int(value)
    parts = value.lower().split("x")
    if len(parts) == 3 and all(part.isdigit() for part in parts):
        block, tx, out = (int(part) for part in parts)
        return block << 40 | tx << 16 | out
    return 0


def load_scenario(source: int, target: int) -> dict[str, Any]:
    path = os.environ.get("FAKE_REGOLANCER_SCENARIO")
    scenario: dict[str, Any] = {}
    if path:
        with open(path, encoding="utf-8") as handle:
            scenario = json.load(handle)
    spec: dict[str, Any] = {"outcome": "success", "fee_sat": 12, "delay": 0.1}
    spec.update(scenario.get("default", {}))
    spec.update(scenario.get("pairs", {}).get(f"{source}>{target}", {}))
    choices = spec.pop("random", None)
    if choices:
        spec.update(random.choice(choices))
    return spec


def append_stat(path: str, line: bytes | Callable[[int], bytes]) -> None:
    """Append one line like regolancer: flock on $TMPDIR/regolancer.lock, one write.

    `line` may be a function of the file's current line count (read under the lock)."""
    if not path:
        return
    lock_fd = os.open(
        os.path.join(tempfile.gettempdir(), "regolancer.lock"), os.O_CREAT | os.O_RDONLY, 0o600
    )
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        existed = os.path.exists(path)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:  # regolancer logs it and goes on: the success is not counted
            log(f"Error saving rebalance stats to {path}: {exc.strerror}")
            return
        try:
            if not existed:
                os.write(fd, STAT_HEADER)
            if callable(line):
                with open(path, "rb") as current:
                    line = line(current.read().count(b"\n"))
            os.write(fd, line)
        finally:
            os.close(fd)
    finally:
        os.close(lock_fd)  # releases the flock


def pay(
    config: dict[str, Any], source: int, target: int, amount: int, fee: int, unique: bool = False
) -> None:
    ppm = fee * 1_000_000 // amount if amount else 0
    print(f"{source} ⇒ hop ⇒ {target}", flush=True)
    now = int(time.time())

    def line(seq: int) -> bytes:
        paid = amount + (seq if unique else 0)
        return b"%d,%d,%d,%d,%d\n" % (now, source, target, paid * 1000, fee * 1000)

    append_stat(str(config.get("stat") or ""), line if unique else line(0))
    log(success_line(fee, ppm))


def succeed(config: dict[str, Any], spec: dict[str, Any], source: int, target: int) -> int:
    """Pay `steps` times (the first, then rapid rebalances doubling the amount)."""
    amount = int(spec.get("amount_sat") or config.get("amount") or 50000)
    fee = int(spec.get("fee_sat", 12))
    steps = int(spec.get("steps", 1))
    delay = float(spec.get("delay", 0.1))
    total = 0
    for step in range(steps):
        if step == 0:
            log(f"Attempt #1, amount: {amount} (max fee: {fee * 2} sat | 500 ppm )")
        else:
            amount, fee = amount * 2, fee * 2
            log(f"Rapid rebalance attempt {step}, amount: {amount}")
        time.sleep(delay)
        pay(config, source, target, amount, fee, bool(spec.get("unique_amounts")))
        total += amount
    if steps > 1:
        log(f"{steps - 1} rapid rebalances were successful, total amount: {total}")
        log("Finished rapid rebalancing")
    return steps


def hang() -> NoReturn:
    while True:
        time.sleep(3600)


def spawn_grandchild(spec: dict[str, Any]) -> int:
    # Signals wait until each side has its own handlers: no race with an early SIGINT.
    signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    pid = os.fork()
    if pid == 0:  # the grandchild: same process group, keeps the pipes open
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            ignore = spec.get("grandchild_ignores_sigint", True)
            signal.signal(signal.SIGINT, signal.SIG_IGN if ignore else signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)
            while True:
                time.sleep(3600)
        finally:
            os._exit(0)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)
    return pid


def main() -> None:
    # Handlers first: a signal during start-up must already behave like regolancer.
    signal.signal(signal.SIGINT, on_sigint)
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        config_path, info = parse_args(sys.argv[1:])
        if config_path is None:
            fatal("no amount specified, use either --amount, --rel-amount-from, or --rel-amount-to")
        config = load_config(config_path)
        preflight(config)
        sources = config.get("from") or []
        targets = config.get("to") or []
        source = chan_id(sources[0]) if sources else 0
        target = chan_id(targets[0]) if targets else 0
        if info:
            # regolancer asks LND (GetInfo, channels) before it looks at --info: an LND error
            # or an LND that never answers ends --info the way it ends a run.
            spec = load_scenario(source, target)
            if spec.get("outcome") in ("lnd_error", "hang"):
                RUN.outcome = f"info+{spec['outcome']}"
                RUN.finish(run_outcome(str(spec["outcome"]), config, spec, source, target))
            RUN.outcome = "info"
            print(f"Source channels: {', '.join(sources) or 'all'}")
            print(f"Target channels: {', '.join(targets) or 'all'}")
            print(f"Amount: {config.get('amount')} sat")
            print(f"pfrom: {config.get('pfrom')}, pto: {config.get('pto')}")
            RUN.finish(0)
        spec = load_scenario(source, target)
        outcome = str(spec.get("outcome", "success"))
        RUN.outcome = outcome
        for name in spec.get("ignore_signals", []):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
        RUN.finish(run_outcome(outcome, config, spec, source, target))
    except Interrupted:
        cache = (RUN.config or {}).get("node_cache_filename")
        if cache:
            log(f"Saving node cache to {cache}")
        RUN.outcome += "+sigint"
        RUN.finish(1)


def run_outcome(
    outcome: str, config: dict[str, Any], spec: dict[str, Any], source: int, target: int
) -> int:
    amount = int(spec.get("amount_sat") or config.get("amount") or 50000)
    if outcome == "success":
        succeed(config, spec, source, target)
        return int(spec.get("exit_code", 0))
    if outcome == "slow":
        time.sleep(float(spec.get("sleep", spec.get("delay", 1.0))))
        succeed(config, {**spec, "steps": 1, "delay": 0}, source, target)
        return 0
    if outcome == "not_qualified":
        log(NOT_QUALIFIED)
        return 1
    if outcome == "no_route":
        log(f"Attempt #1, amount: {amount} (max fee: 25 sat | 500 ppm )")
        log("fee on the route exceeds our limits: 800 ppm (max fee 500 ppm)")
        log(NO_ROUTE)
        return 1
    if outcome == "route_timeout":
        log(f"Attempt #1, amount: {amount} (max fee: 25 sat | 500 ppm )")
        log(ROUTE_TIMEOUT)
        return 1
    if outcome == "rebalance_timeout":
        if int(spec.get("steps", 0)) > 0:  # rapid-rebalance successes, then the deadline
            succeed(config, spec, source, target)
        time.sleep(float(spec.get("delay", 0.1)))
        log(f"Attempt #14, amount: {amount} (max fee: 25 sat | 500 ppm )")
        log(REBALANCE_TIMEOUT)
        return 2
    if outcome == "lnd_error":
        log(
            spec.get(
                "message",
                "rpc error: code = Unavailable desc = connection error: desc = "
                '"transport: Error while dialing: dial tcp 127.0.0.1:10009: '
                'connect: connection refused"',
            )
        )
        return 1
    if outcome == "crash":
        log(f"Attempt #1, amount: {amount} (max fee: 25 sat | 500 ppm )")
        sys.stderr.write(
            "panic: runtime error: invalid memory address or nil pointer dereference\n"
            "[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x8f1c2a]\n"
            "\n"
            "goroutine 1 [running]:\n"
            "main.(*regolancer).pay(0xc0001a2000, {0xb5c1e8, 0xc000124000}, 0xc350, 0x0)\n"
            "\t/build/regolancer/payment.go:57 +0x2aa\n"
            "main.main()\n"
            "\t/build/regolancer/main.go:512 +0x1c45\n"
        )
        return 2
    if outcome == "hang":
        log(f"Attempt #1, amount: {amount} (max fee: 25 sat | 500 ppm )")
        hang()
    if outcome == "spawn_grandchild":
        RUN.grandchild_pid = spawn_grandchild(spec)
        log(f"started helper pid {RUN.grandchild_pid}")
        if "exit_after" in spec:  # leave the grandchild behind, as a careless wrapper would
            time.sleep(float(spec["exit_after"]))
            return 0
        hang()
    if outcome == "half_line":
        line = b"%d,%d,%d,%d,%d" % (int(time.time()), source, target, amount * 1000, 12000)
        append_stat(str(config.get("stat") or ""), line)
        log(success_line(12, 240))
        return 0
    fatal(f"fake regolancer: unknown scenario outcome {outcome!r}")


if __name__ == "__main__":
    main()
