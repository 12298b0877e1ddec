"""The `regolancer-orchestrator` command: run, cycle, check, pairs (and `python -m bot`)."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from bot import render
from bot.arguments import ArgumentError, parse_pnl_days
from core import money_json
from core.channel_ref import ChannelLookupError, resolve_channel
from core.checks import environment_warnings, run_checks
from core.control import Control
from core.daemon import open_services
from core.feed import FeedPump, LogSink
from core.health import check_health
from core.lndg import LndgClient, LndgError
from core.lock import DataDirLock, DataDirLockError
from core.logs import setup_logging
from core.metrics_server import MetricsError
from core.models import LIGHTNING_MAINNET
from core.money_reads import MoneyReader
from core.pairing import build_pairs
from core.regolancer_config import TemplateError
from core.report_delivery import Reporter
from core.report_figures import combine, format_summary
from core.runner import binary_problem
from core.runtime import Runtime
from core.settings import Settings, SettingsError, load_settings, url_secrets
from core.spend_guard import SpendGuard
from core.spending import skip_json
from core.state import StateError, StateStore, ensure_data_dir

log = logging.getLogger("bot.cli")

# Commands that start runs: one of them per DATA_DIR at a time (core.lock). The others
# (pairs, check, report, health) only read, and work beside a running daemon.
SPENDING_COMMANDS = ("run", "cycle")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="regolancer-orchestrator",
        description="Keeps a Lightning node's channels balanced with regolancer.",
    )
    parser.add_argument(
        "--env-file",
        type=Path,
        metavar="FILE",
        help="settings file read besides the environment (default: .env, if there is one)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("run", help="run the daemon (with the Telegram bot when TELEGRAM_TOKEN is set)")
    cycle = sub.add_parser("cycle", help="run one cycle in the foreground and exit")
    cycle.add_argument("--dry-run", action="store_true", help="plan and log, start nothing")
    sub.add_parser("check", help="check settings, LNDg, the regolancer binary and the template")
    pairs = sub.add_parser("pairs", help="print the pairs the rule gives now")
    pairs.add_argument("--json", action="store_true", help="machine-readable output")
    channel = sub.add_parser(
        "channel", help="one channel: role and why, fees, earned against rebalancing cost"
    )
    channel.add_argument("ref", nargs="+", help="chan_id, short id (800000x1234x1) or alias")
    channel.add_argument("--json", action="store_true", help="machine-readable output")
    pnl = sub.add_parser("pnl", help="each channel's earnings against its rebalancing cost")
    pnl.add_argument("period", nargs="?", default="7d", help="7d or 30d (any 1d-90d; default 7d)")
    pnl.add_argument("--json", action="store_true", help="machine-readable output")
    sub.add_parser("health", help="exit 0 if a daemon on this DATA_DIR beat recently")
    report = sub.add_parser("report", help="print a rebalancing report and write it to the CSV")
    report.add_argument(
        "--date",
        type=dt.date.fromisoformat,
        help="the (last) day, YYYY-MM-DD in TIMEZONE (default: yesterday)",
    )
    report.add_argument(
        "--days",
        type=int,
        default=1,
        choices=range(1, 91),
        metavar="N",
        help="number of days ending with --date (1-90, default 1)",
    )
    demo = sub.add_parser(
        "demo",
        help="run the daemon live against a simulated node (no real node or payments)",
        description="Run the real daemon against a simulated LNDg and a stand-in regolancer "
        "until Ctrl-C, then print a report. Needs no settings; with TELEGRAM_TOKEN and "
        "TELEGRAM_CHAT_ID in the environment it drives that chat too.",
    )
    demo.add_argument(
        "--data-dir",
        type=Path,
        default=Path("demo-data"),
        metavar="DIR",
        help="the demo's own directory, wiped at every demo start (default: demo-data)",
    )
    demo.add_argument(
        "--seconds",
        type=_positive_int,
        metavar="N",
        help="stop by itself after N seconds (default: at Ctrl-C)",
    )
    demo.add_argument(
        "--seed", type=int, default=1, metavar="N", help="which simulated node (default: 1)"
    )
    return parser


def _secrets(settings: Settings) -> list[str]:
    values = [settings.telegram_token, settings.lndg_pass]
    secrets = [v.get_secret_value() for v in values if v is not None]
    # `http://user:pass@host` is accepted, so that password is as secret as LNDG_PASS.
    for url in (settings.lndg_base_url, settings.telegram_api_base_url):
        secrets += url_secrets(url)
    return secrets


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    # Opt in to PTB's coming duration types now (the outbox reads either), so a PTB 23 upgrade
    # changes nothing that was not already running here.
    os.environ.setdefault("PTB_TIMEDELTA", "true")
    # Every file we (and regolancer, our child) create is private: configs name the
    # macaroon, the ledger and logs tell what the node does.
    os.umask(0o077)
    args = _parser().parse_args(argv)
    if args.command == "demo":
        # The demo builds its own settings: no .env, no LNDg or regolancer to configure.
        from sim.demo import demo_main

        return demo_main(args)
    env_file, problem = pick_env_file(args.env_file)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    env_files = [env_file] if env_file is not None else []
    try:
        settings = load_settings(env_file)
    except SettingsError as exc:
        for problem in exc.problems:
            print(f"configuration error: {problem}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, _secrets(settings))
    if args.command in SPENDING_COMMANDS:
        for warning in environment_warnings(env_files, os.environ):
            log.warning("%s", warning)
    if args.command == "health":
        healthy, line = check_health(settings.database_path)
        print(line)
        return 0 if healthy else 1
    lock = DataDirLock(settings.data_dir)
    try:
        if args.command in SPENDING_COMMANDS:
            # Before anything else: a second daemon must not even touch the state.
            ensure_data_dir(settings.data_dir)
            lock.acquire()
            refusal = _binary_refusal(settings, dry_run=getattr(args, "dry_run", False))
            if refusal is not None:
                print(f"error: {refusal}", file=sys.stderr)
                return 2
        return asyncio.run(_dispatch(args, settings, env_files))
    except (TemplateError, StateError, DataDirLockError, MetricsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        lock.release()


def pick_env_file(given: Path | None) -> tuple[Path | None, str | None]:
    """The env file to read (None: the environment only), or the one-line reason it cannot be.

    Without --env-file, `.env` is read if there is one; a file named by --env-file must exist:
    a typo there would otherwise start the daemon on defaults.
    """
    path = given if given is not None else Path(".env")
    option = f"--env-file {path}" if given is not None else str(path)
    if not path.exists():
        return None, (f"{option}: no such file" if given is not None else None)
    if path.is_dir():
        return None, f"{option} is a directory, not a file"
    if not os.access(path, os.R_OK):
        return None, f"{option} is not readable by this user"
    return path, None


def _binary_refusal(settings: Settings, *, dry_run: bool) -> str | None:
    """Why a live `run`/`cycle` must not start: no regolancer to run. A dry run needs none."""
    if dry_run or settings.dry_run:
        return None
    problem = binary_problem(settings.regolancer_bin)
    if problem is None:
        return None
    with StateStore(settings.database_path) as store:
        if store.dry_run:  # switched on from the chat: this daemon starts nothing either
            return None
    reason, fix = problem
    return (
        f"regolancer binary {reason}: {fix} "
        "(a dry run needs none: DRY_RUN=true, or cycle --dry-run)"
    )


async def _dispatch(args: argparse.Namespace, settings: Settings, env_files: list[Path]) -> int:
    if args.command == "check":
        return await _check(settings, env_files)
    if args.command == "pairs":
        return await _pairs(settings, as_json=args.json)
    if args.command == "cycle":
        return await _cycle(settings, dry_run=args.dry_run)
    if args.command == "report":
        return await _report(settings, args.date, args.days)
    if args.command in ("channel", "pnl"):
        return await _money(settings, args)
    if settings.headless:
        return await Runtime(settings).run()
    from bot.app import TelegramFace  # imported here so headless use never loads telegram

    return await Runtime(settings, TelegramFace(settings)).run()


async def _check(settings: Settings, env_files: list[Path]) -> int:
    checks = await run_checks(settings, env_files)
    for check in checks:
        print(check.line())
    failed = sum(not c.ok for c in checks)
    print(f"{len(checks) - failed} passed, {failed} failed" if failed else "all checks passed")
    return 1 if failed else 0


async def _pairs(settings: Settings, *, as_json: bool) -> int:
    """Every pair the rule gives now, each with why its target is skipped (or null)."""
    ensure_data_dir(settings.data_dir)
    try:
        with StateStore(settings.database_path) as store:
            async with LndgClient.from_settings(settings) as lndg:
                channels = (await lndg.fetch_channels()).channels
                guard = SpendGuard(settings, store, lndg, {})
                await guard.refresh()
                skipped = guard.skips(channels)
            pairs = build_pairs(channels, store.excluded_ids())
    except LndgError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if as_json:
        rows = [
            {
                "source": {"chan_id": p.source.chan_id, "alias": p.source.alias},
                "target": {"chan_id": p.target.chan_id, "alias": p.target.alias},
                "source_local_pct": p.source.local_pct,
                "target_local_pct": p.target.local_pct,
                "pfrom": p.pfrom,
                "pto": p.pto,
                "skip": skip_json(skipped[p.target.chan_id])
                if p.target.chan_id in skipped
                else None,
            }
            for p in pairs
        ]
        print(json.dumps(rows, indent=2))
        return 0
    for pair in pairs:
        skip = skipped.get(pair.target.chan_id)
        why = f"  skipped: {skip.describe()}" if skip is not None else ""
        print(f"{pair.log_line()} pfrom={pair.pfrom} pto={pair.pto}{why}")
    print(f"{len(pairs)} pairs from {len(channels)} channels", file=sys.stderr)
    return 0


async def _cycle(settings: Settings, *, dry_run: bool) -> int:
    async with open_services(settings) as services:
        cycle = await Control(services.engine).run_cycle(dry_run=dry_run or None)
        # One process, no chat: what the cycle landed goes to the log, like headless.
        await FeedPump(services.engine.store, LogSink()).flush()
    return 1 if cycle.skipped else 0


async def _report(settings: Settings, day: dt.date | None, days: int) -> int:
    """Build (and write to daily-report.csv) each day of the period, print the summary."""
    today = dt.datetime.now(settings.zone).date()
    last = day or today - dt.timedelta(days=1)
    first = last - dt.timedelta(days=days - 1)
    if first < LIGHTNING_MAINNET or last > today:
        print(
            f"error: a report covers days from {LIGHTNING_MAINNET} to today ({today}); "
            "fix --date/--days",
            file=sys.stderr,
        )
        return 2
    # Only the state store and LNDg: a report needs no regolancer template.
    ensure_data_dir(settings.data_dir)
    store = StateStore(settings.database_path)
    try:
        async with LndgClient.from_settings(settings) as lndg:
            reporter = Reporter.from_settings(settings, store, lndg)
            reports, _png = await reporter.build_days(first, last)
    except LndgError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(format_summary(combine(reports)))
    print(f"written: {reporter.csv_path} and {reporter.chart_path}", file=sys.stderr)
    return 0


async def _money(settings: Settings, args: argparse.Namespace) -> int:
    """`channel <ref>` and `pnl [7d|30d]`: the chat's card and list, as text or JSON."""
    if args.command == "pnl":
        try:
            days = parse_pnl_days([args.period])
        except ArgumentError as exc:
            print(f"error: {exc.problem}", file=sys.stderr)
            return 2
    ensure_data_dir(settings.data_dir)
    try:
        with StateStore(settings.database_path) as store:
            async with LndgClient.from_settings(settings) as lndg:
                channels = (await lndg.fetch_channels()).channels
                reader = MoneyReader(store, lndg, settings.zone)
                if args.command == "pnl":
                    found = await reader.pnl(days, channels)
                    text, data = render.pnl_text(found), money_json.pnl(found)
                else:
                    channel = resolve_channel(" ".join(args.ref), channels)
                    guard = SpendGuard(settings, store, lndg, {})
                    await guard.refresh()
                    card = await reader.card(
                        channel,
                        channels,
                        excluded=store.excluded_ids(),
                        skipped=guard.skips(channels),
                        ar=guard.ar,
                    )
                    text = render.plain(render.channel_card(card, settings.zone))
                    data = money_json.card(card)
    except ChannelLookupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except LndgError as exc:
        print(f"error: LNDg could not be read: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(data, indent=2) if args.json else text)
    return 0
