"""`python -m bench [--quick]`: every benchmark figure, each with its target and PASS/FAIL.

Both sides of each comparison come from the same run. `--quick` is the CI size: smaller
simulations, fewer repeats and shorter windows (same code paths). Nothing here is asserted
on timing: the figures are printed for the README; `tests/test_bench_smoke.py` only checks
that every line is there.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from bench import (
    earnings,
    fetch,
    latency,
    lndg_load,
    planning,
    reports,
    resources,
    simulate,
    target_order,
)
from bench.daemon import running_daemon
from sim.nodes import node_rows


@dataclass
class Verdicts:
    passed: int = 0
    failed: int = 0

    def line(self, text: str, target: str | None = None, ok: bool | None = None) -> None:
        """Print one figure; with a target, its verdict."""
        if target is None or ok is None:
            print(text, flush=True)
            return
        verdict = "PASS" if ok else "FAIL"
        self.passed += ok
        self.failed += not ok
        print(f"{text}  [target {target}: {verdict}]", flush=True)


def earnings_plan(quick: bool) -> list[tuple[int, tuple[int, ...], float]]:
    """(channels, seeds, route_channel_share) of each earnings comparison.

    Full: 10 nodes at each of 40, 150 and 500 channels with route success per pair, and 3 at
    150 and 500 with route success per channel. One 7-day seed of the six sides takes about
    25 s of one core at 40 channels, 70 s at 150 and 3 min at 500 (36 seeds, ~58 CPU-minutes):
    about 30 min with `--jobs 2` on 2 cores (estimated from those timings).
    """
    if quick:
        return [(40, (1,), 0.0), (150, (1,), 0.0), (500, (1,), 0.0)]
    nodes = tuple(range(1, 11))
    return [
        (40, nodes, 0.0),
        (150, nodes, 0.0),
        (500, nodes, 0.0),
        (150, (1, 2, 3), 1.0),
        (500, (1, 2, 3), 1.0),
    ]


def run_earnings(out: Verdicts, quick: bool, jobs: int) -> None:
    base = replace(
        simulate.SimConfig(),
        horizon_hours=1.5 if quick else 7 * 24.0,
        routing_share_per_day=0.1,
        demand_sigma=1.0,
    )
    out.line(
        "== earnings: the daemon (engine, planner, SpendGuard with FEE_POLICY=lndg) vs the "
        "original's current scheduling (per-worker shuffled lists, 300 s cycle cap, "
        "SLEEP_SECONDS 15), LNDg's auto-rebalancer (AR-Workers = workers, AR-WaitPeriod 30 min, "
        "1.21x after a success, half after a failed follow-up) and the early original; same "
        f"nodes and seeds, one process each, virtual clock; {base.workers} workers; routing "
        f"demand {base.routing_share_per_day:.0%} of capacity a day, uneven (sigma "
        f"{base.demand_sigma:g}); route fees per pair; {base.horizon_hours:g} simulated hours; "
        "cold start unless said =="
    )
    plan = earnings_plan(quick)
    configs = [
        (replace(base, channels=size, route_channel_share=share), seeds)
        for size, seeds, share in plan
    ]
    for (size, seeds, share), figures in zip(
        plan, earnings.measure_all(configs, jobs), strict=True
    ):
        config = figures.config
        plural = "s" if len(seeds) > 1 else ""
        routes = "route success per pair" if share == 0 else "route success per channel"
        head = f"earn {size} channels ({len(seeds)} node{plural}, {routes})"
        horizon = config.horizon_hours
        for hours in sorted({min(24.0, horizon), horizon}):
            for text in earnings.lines(figures, head, hours):
                out.line(text)
        out.line(earnings.band_line(figures, head))
        ratio, best, theirs = earnings.ratio(figures, horizon)
        ours = figures.mean("daemon", earnings.figure_table(horizon)["net earnings"][1])
        goal = 1.0 if size < 150 else 1.3
        verdict = share == 0 and not quick
        out.line(
            f"{head}: net earnings over {horizon:g} h, cold start, daemon {ours:,.0f} sat vs the "
            f"best baseline ({earnings.LABELS[best]}) {theirs:,.0f} sat: {ratio:.2f}x",
            f">= {goal:g}x" if verdict else None,
            ratio >= goal,
        )
        lost_best, lost_theirs = earnings.best_lost(figures, horizon)
        lost_ours = figures.mean(
            "daemon", earnings.figure_table(horizon)["revenue lost to depleted channels"][1]
        )
        out.line(
            f"{head}: revenue lost over {horizon:g} h, daemon {lost_ours:,.0f} sat vs the best "
            f"baseline ({earnings.LABELS[lost_best]}) {lost_theirs:,.0f} sat",
            "no worse than the best baseline" if verdict else None,
            lost_ours <= lost_theirs,
        )
        over = [len(s.over_budget) for s in figures.sides["budget"]]
        out.line(
            f"{head}: EARNINGS_BUDGET_RATIO=1, channels whose rebalancing fees exceed their "
            f"revenue over the last {config.earnings_window_days} days at the end: "
            f"{sum(over)} on {len(over)} node{plural} (per node {over})",
            "0" if verdict else None,
            sum(over) == 0,
        )


def run_target_order(out: Verdicts, quick: bool) -> None:
    """Serving first the targets that earn most, against the daemon's depletion order."""
    base = replace(simulate.SimConfig(), horizon_hours=24.0, demand_sigma=1.0)
    sizes: tuple[tuple[int, tuple[int, ...]], ...]
    if quick:
        sizes = ((40, (1,)),)
        base = replace(base, horizon_hours=6.0)
    else:
        sizes = ((40, tuple(range(1, 11))), (150, tuple(range(1, 11))), (500, (1, 2, 3, 4, 5)))
    out.line(
        "== target order: the daemon's planner serving first the targets whose outbound earned "
        "most per sat of capacity (7 days of forwards) vs as shipped (most depleted first); "
        f"routing demand uneven across channels (log-normal sigma {base.demand_sigma:g}), "
        f"{base.routing_share_per_day:.0%} of capacity forwarded per day, "
        f"{base.horizon_hours:g} simulated hours per node =="
    )
    for size, seeds in sizes:
        for history in (0.0, 7.0):
            config = replace(base, channels=size, forward_history_days=history)
            figures = target_order.compare(config, seeds)
            plural = "s" if len(seeds) > 1 else ""
            start = "cold start" if not history else f"{history:g} days of forwards in LNDg"
            out.line(f"order {size} channels ({len(seeds)} node{plural}), {start}:")
            for text in target_order.lines(config, figures):
                out.line(text)


def run_planning(out: Verdicts, quick: bool) -> None:
    out.line("== planning (the daemon's planner; the original built the cross product) ==")
    for size in planning.SIZES:
        f = planning.measure(size, repeats=5 if quick else 50)
        text = (
            f"planning {size} channels ({f.targets} targets, {f.sources} sources): "
            f"cycle start {f.cycle_start_ms:.2f} ms (max {f.cycle_start_max_ms:.2f}), "
            f"next pairs {f.next_pairs_ms:.2f} ms (max {f.next_pairs_max_ms:.2f}); original: "
            f"{f.cross_product_pairs:,} pairs in {f.cross_product_ms:.0f} ms"
        )
        worst = max(f.cycle_start_ms, f.next_pairs_ms)
        if size == planning.SIZES[-1]:
            out.line(text, "<= 20 ms", worst <= 20)
        else:
            out.line(text)


def run_fetch(out: Verdicts, quick: bool) -> None:
    out.line("== LNDg (stand-in as a separate process, real client) ==")
    f = fetch.measure(1500, repeats=3 if quick else 10)
    out.line(
        f"fetch {f.channels} channels from the loopback LNDg: {f.fetch_ms:.0f} ms "
        f"(max {f.fetch_max_ms:.0f})"
    )
    out.line(
        f"fetch + plan {f.channels} channels: {f.fetch_plan_ms:.0f} ms "
        f"(max {f.fetch_plan_max_ms:.0f})",
        "<= 300 ms",
        f.fetch_plan_ms <= 300,
    )


def run_lndg_load(out: Verdicts, quick: bool) -> None:
    """Channel reads from LNDg per hour, before (whole list to confirm) and after (details)."""
    # Quick: half an hour, still one CHANNEL_LIST_SECONDS period (1800 s by default).
    hours = 0.5 if quick else 1.0
    load = lndg_load.measure(hours)
    out.line(
        f"== LNDg load: the engine's reads at {lndg_load.SIZE} channels, per hour over "
        f"{hours:g} simulated h (virtual clock, simulated node, routing and regolancer, "
        "SLEEP_SECONDS 300, 4 workers; the fake LNDg's own handler in process; answer bodies "
        "counted); before: the list at each cycle start, every 120 s and every 10 s while a "
        "success waits to show; after (as shipped): the list every CHANNEL_LIST_SECONDS "
        f"({lndg_load.LIST_SECONDS} s), forwards since it once per cycle, a run's two "
        "channels' detail before it starts and until a success shows =="
    )

    def side(s: lndg_load.Side) -> str:
        requests = s.list_reads + s.detail_reads + s.forwards_reads
        return (
            f"{requests:.0f} requests ({s.list_reads:.0f} list, {s.detail_reads:.0f} detail, "
            f"{s.forwards_reads:.0f} forwards), {s.megabytes:.2f} MB"
        )

    for name, before, after in (
        ("idle", load.idle_before, load.idle_after),
        ("under load", load.busy_before, load.busy_after),
    ):
        ratio = before.megabytes / after.megabytes if after.megabytes else float("inf")
        text = (
            f"lndg {lndg_load.SIZE} channels {name} ({after.runs:.0f} runs, "
            f"{after.successes:.0f} successes per h): before {side(before)} per h; after "
            f"{side(after)} per h; {ratio:.1f}x fewer bytes"
        )
        if name == "idle":
            out.line(text)
        else:
            out.line(text, ">= 10x", ratio >= 10)


def run_daemon_figures(out: Verdicts, quick: bool) -> None:
    out.line("== the daemon as a child process (python -m bot run), loopback LNDg and Bot API ==")
    idle_seconds = 4.0 if quick else 20.0
    lines = 6 if quick else 40
    size = resources.SIZE
    with tempfile.TemporaryDirectory(prefix="bench-daemon-") as tmp:
        rows = node_rows(size, seed=2, balanced=True)
        with running_daemon(Path(tmp), rows) as daemon:
            daemon.wait_for_log("cycle finish")
            daemon.telegram.wait_for("sendPhoto", timeout=60)  # the start-up day report
            time.sleep(2)
            idle = resources.measure_window(daemon, idle_seconds)
            lat = latency.measure_on(daemon, lines)
    out.line(
        f"idle resident memory ({size} channels, nothing to do): {idle.rss_mb:.1f} MB",
        "<= 120 MB",
        idle.rss_mb <= 120,
    )
    out.line(
        f"idle CPU: {idle.cpu_pct:.2f} % of one core over {idle.seconds:.0f} s",
        "< 1 %",
        idle.cpu_pct < 1,
    )
    out.line(
        f"stat line -> chat message ({lat.lines} lines): p50 {lat.p50_s:.2f} s, "
        f"p95 {lat.p95_s:.2f} s (max {lat.max_s:.2f} s)",
        "p95 <= 2 s",
        lat.p95_s <= 2,
    )
    load = resources.load(3.0 if quick else 20.0)
    out.line(
        f"resident memory under load ({size} channels, 4 workers, {load.runs} runs in "
        f"{load.seconds:.0f} s): {load.rss_mb:.0f} MB (max {load.rss_max_mb:.0f} MB), "
        f"CPU {load.cpu_pct:.1f} % of one core"
    )


def run_reports(out: Verdicts, quick: bool) -> None:
    """`/report 30d` on a big ledger: built once per period, off the event loop."""
    out.line(
        "== /report 30d: text + chart figures from a real SQLite ledger and LNDg's rows in "
        "memory (HTTP reads not timed; bench/reports.py) =="
    )
    f = reports.measure(rows=20_000 if quick else reports.ROWS, repeats=1 if quick else 3)
    out.line(
        f"report 30d at {f.rows:,} ledger rows ({f.payments:,} LNDg payments), 29 closed days "
        f"stored: {f.seconds:.2f} s (max {f.max_seconds:.2f} s); nothing stored yet (the "
        f"first after an upgrade): {f.cold_seconds:.2f} s; before: 10.7 s at 100,000 rows, "
        "44-76 s at 10,000 (issue 17, one attribution per day)",
        "< 1 s",
        f.seconds < 1,
    )
    stall = max(f.stall_ms, f.cold_stall_ms)
    out.line(
        f"report 30d at {f.rows:,} ledger rows: longest event-loop stall while it ran "
        f"{f.stall_ms:.0f} ms stored, {f.cold_stall_ms:.0f} ms nothing stored (/status waits "
        "at most this long; before: 1.6 s at 100,000 rows)",
        "< 1000 ms",
        stall < 1000,
    )


SECTIONS = ("earnings", "order", "planning", "fetch", "lndg", "reports", "daemon")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="CI size: smaller and shorter")
    parser.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="processes for the earnings simulations (default: this machine's cores)",
    )
    parser.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma-separated sections to run (of {','.join(SECTIONS)})",
    )
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown or args.jobs < 1:
        parser.error(f"--only takes {','.join(SECTIONS)}; --jobs at least 1")
    out = Verdicts()
    started = time.monotonic()
    out.line(f"regolancer-orchestrator benchmarks ({'quick' if args.quick else 'full'})")
    if "earnings" in chosen:
        run_earnings(out, args.quick, args.jobs)
    if "order" in chosen:
        run_target_order(out, args.quick)
    if "planning" in chosen:
        run_planning(out, args.quick)
    if "fetch" in chosen:
        run_fetch(out, args.quick)
    if "lndg" in chosen:
        run_lndg_load(out, args.quick)
    if "reports" in chosen:
        run_reports(out, args.quick)
    if "daemon" in chosen:
        run_daemon_figures(out, args.quick)
    out.line(f"summary: {out.passed} PASS, {out.failed} FAIL ({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
