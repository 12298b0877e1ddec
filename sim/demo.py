"""`regolancer-orchestrator demo`: the real daemon, live, against a simulated node.

Everything the daemon talks to is simulated in this process or started by it: a loopback
LNDg (`FakeLndg`, in a thread) serving a node of 40 channels, and the regolancer stand-in
(`sim/regolancer.py`) as the binary. The daemon itself is not: `core.runtime.Runtime` (with
the Telegram face when TELEGRAM_TOKEN is set) runs exactly as in production, with its own signal
handlers, state database, stat CSV and worker logs in the demo's data directory.

It needs no setting from the environment; only TELEGRAM_TOKEN/TELEGRAM_CHAT_ID (and the
other TELEGRAM_* variables), LOG_LEVEL, TIMEZONE, REPORT_TIME, NOTIFY_MIN_SATS,
REGOLANCER_ECHO_OUTPUT and METRICS_LISTEN are taken from it. No `.env` is read.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import os
import secrets
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from core import fmt
from core.events import Text
from core.feed import Feed
from core.lndg import LndgClient, LndgError
from core.lock import LOCK_NAME, DataDirLock, DataDirLockError
from core.logs import setup_logging
from core.metrics_server import MetricsError
from core.regolancer_config import TemplateError
from core.report_delivery import Reporter
from core.report_figures import format_summary
from core.runtime import Runtime
from core.settings import Settings, SettingsError, load_settings
from core.state import StateError, StateStore, ensure_data_dir
from sim.lndg import FakeLndg
from sim.model import MIN_AMOUNT
from sim.nodes import demo_rows
from sim.simulation import EARNINGS_DAYS, Move, Simulation

log = logging.getLogger("sim.demo")

BANNER = "SIMULATION — no real node, no real payments"
# Marks a directory the demo made, so a second start may wipe it (and nothing else).
MARKER = ".regolancer-orchestrator-demo"
STANDIN_NAME = "regolancer-standin"
# The chart of the demo's last 30 days, written when it stops (the README's example).
CHART_FILE = "demo-chart.png"
# Settings for the CLI beside the running demo (`--env-file`).
DEMO_ENV = "demo.env"

SLEEP_SECONDS = 5
MAX_WORKERS = 4
# Above timeout_rebalance (1 min) in the template, so regolancer's own deadline comes first.
RUN_TIMEOUT_SECONDS = 90
# Short, so a pair that found no route is tried again while someone is watching.
FAILURE_COOLDOWN_SECONDS = 30
FAILURE_COOLDOWN_MAX_SECONDS = 300

TICK_SECONDS = 0.5
STATUS_SECONDS = 10.0
# When the rest of the node acts: (first after start, then every) in seconds.
LNDG_REBALANCER = (4.0, 25.0)
OTHER_TOOL = (7.0, 40.0)
ROUTED_PAYMENT = (15.0, 5.0)

# regolancer's config for every run. It never reaches LND: the stand-in only reads it.
DEMO_TEMPLATE: dict[str, Any] = {
    "connect": "127.0.0.1:10009",
    "network": "mainnet",
    "amount": 50_000,
    "min_amount": MIN_AMOUNT,
    "allow_rapid_rebalance": True,
    "econ_ratio": 0.9,
    "econ_ratio_max_ppm": 1500,
    "fail_tolerance": 1000,
    "timeout_rebalance": 1,
    "timeout_attempt": 1,
    "timeout_route": 30,
    "timeout_info": 30,
}


class DemoError(Exception):
    """The demo cannot start; the message says why in one line."""


def prepare_data_dir(path: Path, lock: DataDirLock) -> None:
    """Create the data directory, wiping it first if an earlier demo made it; hold `lock`.

    A directory that is not empty and was not made by the demo is refused: `--data-dir`
    pointing at the operator's real DATA_DIR must never lose it. A demo still running on
    the directory holds its lock: then this one stops before wiping anything.
    """
    if path.exists():
        if not path.is_dir():
            raise DemoError(f"{path} exists and is not a directory")
        if (path / MARKER).exists():
            lock.acquire()
            for entry in path.iterdir():
                if entry.name == LOCK_NAME:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        elif any(path.iterdir()):
            raise DemoError(
                f"{path} is not empty and was not made by the demo; "
                "choose an empty or new directory with --data-dir"
            )
    ensure_data_dir(path)
    lock.acquire()
    (path / MARKER).write_text(
        "made by `regolancer-orchestrator demo`, wiped when the demo starts again\n",
        encoding="utf-8",
    )


def install_standin(data_dir: Path) -> Path:
    """Copy the regolancer stand-in into `data_dir` as an executable for this Python.

    Wheels do not keep file modes, and the source's `/usr/bin/env python3` may be another
    Python: so a copy with this interpreter in its shebang, mode 0755.
    """
    interpreter = sys.executable
    if not interpreter or any(char.isspace() for char in interpreter):
        raise DemoError(
            f"cannot make the regolancer stand-in executable: the Python path {interpreter!r} "
            "contains spaces, which a #! line cannot hold"
        )
    text = resources.files("sim").joinpath("regolancer.py").read_text(encoding="utf-8")
    if text.startswith("#!"):
        text = text.partition("\n")[2]
    path = data_dir / STANDIN_NAME
    path.write_text(f"#!{interpreter}\n{text}", encoding="utf-8")
    path.chmod(0o755)
    return path


def demo_settings(files: DemoFiles, lndg: FakeLndg) -> Settings:
    """Settings pointing at the simulation; what could break it is set here, not read.

    Raises SettingsError if a variable the demo does read (TELEGRAM_*, LOG_LEVEL, ...) is bad.
    """
    return load_settings(
        None,
        lndg_base_url=lndg.url,
        lndg_user=lndg.user,
        lndg_pass=lndg.password,
        lndg_verify_tls=True,
        lndg_ca_file=None,
        dry_run=False,
        sleep_seconds=SLEEP_SECONDS,
        max_workers=MAX_WORKERS,
        regolancer_bin=str(files.standin),
        regolancer_template=files.template,
        run_timeout_seconds=RUN_TIMEOUT_SECONDS,
        failure_cooldown_seconds=FAILURE_COOLDOWN_SECONDS,
        failure_cooldown_max_seconds=FAILURE_COOLDOWN_MAX_SECONDS,
        exclude_channels=[],
        data_dir=files.data_dir,
        stat_file=None,
    )


async def simulate(sim: Simulation) -> None:
    """Play the node around the daemon until cancelled: balances, scenario, status lines."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    actions = [
        (LNDG_REBALANCER, sim.lndg_rebalance),
        (OTHER_TOOL, sim.other_rebalance),
        (ROUTED_PAYMENT, sim.forward),
    ]
    due = [start + first for (first, _every), _act in actions]
    next_status = start + STATUS_SECONDS
    while True:
        for move in sim.apply_new_lines():
            log.info("%s", move.describe())
        now = loop.time()
        for index, ((_first, every), act) in enumerate(actions):
            if now >= due[index]:
                due[index] = now + every
                _log_move(act())
        # Every tick: amounts follow the balances and outcomes vary from run to run.
        sim.write_scenario()
        if now >= next_status:
            next_status = now + STATUS_SECONDS
            log.info("%s | %s", BANNER, sim.summary().line())
        await asyncio.sleep(TICK_SECONDS)


def _log_move(move: Move | None) -> None:
    if move is not None:
        log.info("%s", move.describe())


@dataclass(frozen=True, slots=True)
class DemoFiles:
    """What the demo writes into its data directory before anything starts."""

    data_dir: Path
    standin: Path
    template: Path
    scenario: Path


def prepare_files(data_dir: Path, lock: DataDirLock) -> DemoFiles:
    """A fresh data directory with the stand-in regolancer and the demo template in it."""
    data_dir = data_dir.resolve()
    prepare_data_dir(data_dir, lock)
    template = data_dir / "demo-template.json"
    template.write_text(json.dumps(DEMO_TEMPLATE, indent=2) + "\n", encoding="utf-8")
    return DemoFiles(
        data_dir, install_standin(data_dir), template, data_dir / "standin-scenario.json"
    )


async def run_demo(files: DemoFiles, *, seconds: int | None = None, seed: int = 1) -> int:
    """Run the daemon against the simulation until SIGINT/SIGTERM (or `seconds`); report."""
    # The daemon hands its environment (minus secrets) to regolancer: this reaches the stand-in.
    os.environ["FAKE_REGOLANCER_SCENARIO"] = str(files.scenario)
    os.environ.pop("FAKE_REGOLANCER_RECORD", None)
    channels = demo_rows(seed)
    with FakeLndg(
        channels=channels, payments=[], rebalancer=[], password=secrets.token_urlsafe(16)
    ) as lndg:
        settings = demo_settings(files, lndg)
        setup_logging(settings.log_level)
        sim = Simulation(lndg, settings.stat_path, files.scenario, seed=seed)
        now = dt.datetime.now(settings.zone)
        attempts, paid = sim.seed_history(now)
        month = sim.seed_earnings(now)
        sim.write_scenario()
        write_demo_env(settings, files.data_dir / DEMO_ENV)
        _print_banner(settings, lndg, len(channels), seconds)
        log.info(
            "simulated node: LNDg's rebalancer made %d attempts in the past week, %d paid",
            attempts,
            paid,
        )
        log.info(
            "simulated node: in the past %d days it forwarded %d payments and earned %s; "
            "LNDg's rebalancer paid %d more, other tools %d",
            EARNINGS_DAYS,
            month.forwards,
            fmt.fee(month.revenue_sat),
            month.lndg_paid,
            month.other,
        )
        log.info("%s | %s", BANNER, sim.summary().line())
        started = time.time()
        code = await _run_daemon(settings, sim, seconds)
        for move in sim.apply_new_lines():  # lines written while the daemon stopped
            log.info("%s", move.describe())
        print(await _report(settings, sim, started, seed), flush=True)
    return code


async def _run_daemon(settings: Settings, sim: Simulation, seconds: int | None) -> int:
    if settings.headless:
        daemon = asyncio.create_task(Runtime(settings, simulated=True).run())
    else:
        from bot.app import TelegramFace  # only Telegram mode loads telegram

        with StateStore(settings.database_path) as store:
            Feed(store).put(
                Text(
                    f"🧪 <b>{BANNER}</b>\nThis chat is driven by <code>regolancer-orchestrator "
                    "demo</code>: a simulated node, a stand-in regolancer."
                )
            )
        daemon = asyncio.create_task(
            Runtime(settings, TelegramFace(settings), simulated=True).run()
        )
    simulation = asyncio.create_task(simulate(sim))
    simulation.add_done_callback(lambda task: _on_simulation_end(task, daemon))
    loop = asyncio.get_running_loop()
    timer = loop.call_later(seconds, _stop, daemon, "demo time is up") if seconds else None
    try:
        code = await daemon
    finally:
        if timer is not None:
            timer.cancel()
        simulation.cancel()
        await asyncio.gather(simulation, return_exceptions=True)
    failed = not simulation.cancelled() and simulation.exception() is not None
    return 1 if failed else code


def _stop(daemon: asyncio.Task[int], reason: str) -> None:
    # The daemon stops on SIGTERM through its own handler, exactly as under systemd.
    if not daemon.done():
        log.info("%s; stopping the daemon", reason)
        signal.raise_signal(signal.SIGTERM)


def _on_simulation_end(task: asyncio.Task[None], daemon: asyncio.Task[int]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        # A broken simulation makes the demo meaningless: say so and stop the daemon.
        log.error("simulation failed", exc_info=exc)
        _stop(daemon, "the simulation failed")


def write_demo_env(settings: Settings, path: Path) -> None:
    """The settings that point the CLI at the running demo (`--env-file`), mode 0600.

    So an operator can try the read-only commands beside the demo's daemon (`pnl`, `channel`,
    `pairs`, `check`). The password is the simulated LNDg's, made up for this demo run.
    """
    password = settings.lndg_pass.get_secret_value() if settings.lndg_pass else ""
    values = {
        "LNDG_BASE_URL": settings.lndg_base_url,
        "LNDG_USER": settings.lndg_user,
        "LNDG_PASS": password,
        "DATA_DIR": settings.data_dir.resolve(),
        "REGOLANCER_BIN": settings.regolancer_bin,
        "REGOLANCER_TEMPLATE": Path(settings.regolancer_template).resolve(),
        "TIMEZONE": settings.timezone,
    }
    text = "".join(f"{name}={value}\n" for name, value in values.items())
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)


def _print_banner(settings: Settings, lndg: FakeLndg, channels: int, seconds: int | None) -> None:
    rule = "=" * 78
    chat = (
        "headless (TELEGRAM_TOKEN and TELEGRAM_CHAT_ID set would drive a chat too)"
        if settings.headless
        else f"with Telegram, in chat {settings.telegram_chat_id}"
    )
    until = f"for {seconds} s or until Ctrl-C" if seconds else "until Ctrl-C"
    lines = [
        rule,
        f"  {BANNER}",
        f"  The real daemon runs {chat}",
        f"  against a simulated LNDg at {lndg.url} ({channels} channels)",
        f"  and a stand-in regolancer, {until}; then a report.",
        f"  Data: {settings.data_dir} (wiped when the demo starts again)",
        f"  Beside it: regolancer-orchestrator --env-file {settings.data_dir / DEMO_ENV} pnl",
        "             (or channel <alias>, pairs, check)",
        rule,
    ]
    print("\n".join(lines), flush=True)


async def _report(settings: Settings, sim: Simulation, started: float, seed: int) -> str:
    """The closing report: this daemon's ledger and runs, the node, and today's daily report."""
    with StateStore(settings.database_path) as store:
        # The data directory is new for every demo: everything in it is this run's.
        totals = store.totals()
        outcomes = store.outcome_counts()
        try:
            async with LndgClient.from_settings(settings) as lndg:
                reporter = Reporter.from_settings(settings, store, lndg)
                today = dt.datetime.now(settings.zone).date()
                daily = format_summary(await reporter.build_range(today, 1))
                chart = await reporter.chart(today)  # never fails: says what it lacks
                (settings.data_dir / CHART_FILE).write_bytes(chart.png)
        except LndgError as exc:
            daily = f"not available: {exc}"
    summary = sim.summary()
    runs = sum(outcomes.values())
    by_outcome = ", ".join(
        f"{outcome.describe} {count}"
        for outcome, count in sorted(outcomes.items(), key=lambda item: (-item[1], item[0]))
    )
    rule = "=" * 78
    lines = [
        rule,
        f"  {BANNER}: report",
        rule,
        f"ran {time.time() - started:.0f} s on a simulated node of "
        f"{len(sim.channels())} channels (seed {seed})",
        f"rebalances by this daemon: {totals.count}, {fmt.sats(totals.amount_sat)}, "
        f"fees {fmt.fee(totals.fee_sat)} ({fmt.ppm(totals.ppm)})",
        f"regolancer runs: {runs}" + (f" ({by_outcome})" if by_outcome else ""),
        f"AR channels below their band: {summary.targets_at_start} at start, "
        f"{summary.targets_below} now (of {summary.ar_channels})",
        "today's daily report:",
        *(f"  {line}" for line in daily.splitlines()),
        f"chart of the last 30 days: {settings.data_dir / CHART_FILE}",
        f"state database, stat CSV and worker logs: {settings.data_dir}",
        rule,
    ]
    return "\n".join(lines)


def demo_main(args: argparse.Namespace) -> int:
    """`regolancer-orchestrator demo [--data-dir DIR] [--seconds N] [--seed N]`."""
    lock = DataDirLock(args.data_dir.resolve())
    try:
        files = prepare_files(args.data_dir, lock)
        return asyncio.run(run_demo(files, seconds=args.seconds, seed=args.seed))
    except SettingsError as exc:
        for problem in exc.problems:
            print(f"configuration error: {problem}", file=sys.stderr)
        return 2
    except (DemoError, TemplateError, StateError, DataDirLockError, MetricsError) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C before the daemon's own handler was installed
        return 130
    finally:
        lock.release()
