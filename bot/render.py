"""Every text the operator reads in the chat, as pure functions of values.

HTML parse mode; everything that comes from outside (aliases, errors) is escaped.
Each function returns text that fits one Telegram message (4096 characters).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from html import escape, unescape

from core import fmt
from core.control import FAR_SECONDS, Status
from core.events import DaemonStarted, DaemonStopping, Mode, RebalanceLanded
from core.fold import PairTotal, grand_total, pair_totals
from core.models import Channel, Pair, Rebalance
from core.state import Exclusion

MAX_MESSAGE = 4096
PAIRS_PER_PAGE = 15

COMMANDS: tuple[tuple[str, str], ...] = (
    ("status", "mode, cycles, running pairs, today's totals"),
    ("pairs", "the pairs the rule gives now"),
    ("dryrun", "what the next cycle would run; /dryrun on|off switches"),
    ("run", "start a cycle now"),
    ("pause", "stop starting runs, e.g. /pause 2h"),
    ("resume", "start runs again"),
    ("exclude", "keep a channel out: chan_id, short id or alias"),
    ("include", "take a channel back in"),
    ("exclusions", "the excluded channels"),
    ("history", "the last rebalances, e.g. /history 20"),
    ("report", "rebalancing report: today, yesterday, a date, 7d or 30d"),
    ("config", "the effective settings, secrets masked"),
    ("help", "this list"),
)


def fit(text: str, limit: int = MAX_MESSAGE) -> str:
    """Cut a text to Telegram's limit at a line break, saying that it was cut."""
    if len(text) <= limit:
        return text
    marker = "\n… (cut)"
    cut = text[: limit - len(marker)]
    if "\n" in cut:
        cut = cut[: cut.rindex("\n")]
    # never leave an unclosed tag: drop back to the last line that closed its tags
    while cut.count("<b>") != cut.count("</b>") or cut.count("<code>") != cut.count("</code>"):
        if "\n" not in cut:
            cut = escape(_strip_tags(cut))[: limit - len(marker)]
            break
        cut = cut[: cut.rindex("\n")]
    return cut + marker


def _strip_tags(text: str) -> str:
    for tag in ("<b>", "</b>", "<code>", "</code>", "<i>", "</i>"):
        text = text.replace(tag, "")
    return text


def plain(text: str) -> str:
    """The HTML message as plain text, for a resend without parse mode."""
    return unescape(_strip_tags(text))


def ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 90:
        return f"{seconds}s"
    if seconds < 90 * 60:
        return f"{seconds // 60}m"
    if seconds < 48 * 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d"


def clock(ts: float, zone: dt.tzinfo) -> str:
    return dt.datetime.fromtimestamp(ts, zone).strftime("%Y-%m-%d %H:%M")


def name(alias: str, chan_id: str) -> str:
    return escape(alias) if alias else f"<code>{chan_id}</code>"


# --- the feed ---------------------------------------------------------------------------


def rebalance_line(rebalance: Rebalance) -> str:
    line = rebalance.line
    return (
        f"{fmt.sats(line.amount_sat)} {name(rebalance.from_alias, line.from_channel)} → "
        f"{name(rebalance.to_alias, line.to_channel)}, fee {fmt.fee(line.fee_sat)} "
        f"({fmt.ppm(line.ppm)})"
    )


def landed_line(rebalance: RebalanceLanded) -> str:
    """One run's payments as one line: `132,000 sat A → B in 2 payments, fee 35 sat (265 ppm)`."""
    first = rebalance.first
    count = len(rebalance.payments)
    return (
        f"{fmt.sats(rebalance.amount_sat)} {name(first.from_alias, first.line.from_channel)} → "
        f"{name(first.to_alias, first.line.to_channel)}"
        f"{f' in {count} payments' if count > 1 else ''}, fee {fmt.fee(rebalance.fee_sat)} "
        f"({fmt.ppm(rebalance.ppm)})"
    )


def rebalances(landed: Sequence[RebalanceLanded]) -> str:
    """One message for one or many rebalances (each the payments of one run)."""
    if len(landed) == 1:
        return f"✅ Rebalanced {landed_line(landed[0])}"
    total = sum(r.amount_sat for r in landed)
    fees = sum(r.fee_sat for r in landed)
    head = f"✅ <b>{len(landed)} rebalances</b>, {fmt.sats(total)}, fee {fmt.fee(fees)}"
    return fit("\n".join([head, *(f"• {landed_line(r)}" for r in landed)]))


def _payments(count: int) -> str:
    return f"{count} payment{'' if count == 1 else 's'}"


def _pair_total(total: PairTotal) -> str:
    return (
        f"{fmt.sats(total.amount_sat)} in {_payments(total.payments)}, "
        f"fee {fmt.fee(total.fee_sat)} ({fmt.ppm(total.ppm)})"
    )


def digest(start: float, end: float, landed: Sequence[RebalanceLanded], zone: dt.tzinfo) -> str:
    """NOTIFY_DIGEST_MINUTES: the window's rebalances, one line per pair, the total first."""
    pairs = pair_totals(landed)
    first, last = dt.datetime.fromtimestamp(start, zone), dt.datetime.fromtimestamp(end, zone)
    span = f"{first:%Y-%m-%d %H:%M}–{last:%H:%M}"
    if last.date() != first.date() and last.time() != dt.time(0):
        span = f"{first:%Y-%m-%d %H:%M}–{last:%Y-%m-%d %H:%M}"
    lines = [
        f"🧾 <b>Rebalances {span}</b>",
        f"<b>Total</b>: {_pair_total(grand_total(pairs))}",
    ]
    lines += [
        f"• {name(p.from_alias, p.from_channel)} → {name(p.to_alias, p.to_channel)}: "
        f"{_pair_total(p)}"
        for p in pairs
    ]
    return fit("\n".join(lines))


def alert(message: str) -> str:
    return fit(f"⚠️ {escape(message)}")


def recovered(message: str) -> str:
    return fit(f"✅ {escape(message)}")


def mode(switches: Mode, now: float, zone: dt.tzinfo) -> str:
    """`live`, `dry run, paused until 14:05`, `live, paused` (until /resume)."""
    text = "dry run" if switches.dry_run else "live"
    until = switches.paused_until
    if until is not None and until > now:
        far = until - now > FAR_SECONDS
        text += ", paused" + ("" if far else f" until {clock(until, zone)}")
    return text


def started(event: DaemonStarted, now: float, zone: dt.tzinfo) -> str:
    return (
        f"🚀 regolancer-orchestrator started: <b>{escape(event.mode.headline(now))}</b>\n"
        f"cycle every {ago(event.sleep_seconds)}, {event.workers} workers. /help for commands"
    )


def stopping(event: DaemonStopping, now: float, zone: dt.tzinfo) -> str:
    return f"🛑 regolancer-orchestrator stopping ({escape(event.mode.headline(now))})"


# --- commands ---------------------------------------------------------------------------


def help_text(dry_run_locked: bool) -> str:
    lines = ["<b>regolancer-orchestrator</b>", ""]
    lines += [f"/{command} — {escape(text)}" for command, text in COMMANDS]
    if dry_run_locked:
        lines += [
            "",
            "DRY_RUN=true is set in the environment: dry run cannot be switched off here.",
        ]
    return "\n".join(lines)


def status(snapshot: Status, zone: dt.tzinfo) -> str:
    """`/status`: mode, cycles, LNDg, the runs going on, today's totals."""
    now, last_cycle, next_cycle = snapshot.now, snapshot.last_cycle, snapshot.next_cycle
    active, today, outcomes = snapshot.active, snapshot.today, snapshot.outcomes
    lines = [f"<b>Mode</b>: {escape(mode(snapshot.mode, now, zone))}"]
    if last_cycle:
        start, end = last_cycle
        lines.append(
            f"<b>Last cycle</b>: {clock(start, zone)} ({ago(now - end)} ago, {ago(end - start)})"
        )
    else:
        lines.append("<b>Last cycle</b>: none yet")
    if snapshot.cycle_running:
        lines.append("<b>Cycle</b>: running now")
    if next_cycle is not None:
        lines.append(f"<b>Next cycle</b>: {clock(next_cycle, zone)} (in {ago(next_cycle - now)})")
    if snapshot.lndg_ok is None:
        lines.append("<b>LNDg</b>: not asked yet")
    elif snapshot.lndg_ok:
        lines.append("<b>LNDg</b>: ok")
    else:
        lines.append(f"<b>LNDg</b>: ⚠️ {escape(snapshot.lndg_error)}")
    lines.append(f"<b>Running</b>: {len(active)}")
    for run in active:
        lines.append(f"• w{run.worker} {escape(run.pair.log_line())} ({ago(now - run.started_at)})")
    lines.append(
        f"<b>Today</b>: {today.count} rebalances, {fmt.sats(today.amount_sat)}, "
        f"fee {fmt.fee(today.fee_sat)} ({fmt.ppm(today.ppm)})"
    )
    budget = snapshot.daily_fee_budget_sat
    if budget:
        state = " — reached: no new run until midnight" if today.fee_sat >= budget else ""
        lines.append(
            f"<b>Fee budget</b>: {fmt.fee(today.fee_sat)} of {fmt.sats(budget)} today{state}"
        )
    if outcomes:
        counted = ", ".join(
            f"{o.describe} {n}" for o, n in sorted(outcomes.items(), key=lambda i: -i[1])
        )
        lines.append(f"<b>Runs today</b>: {escape(counted)}")
    return fit("\n".join(lines))


def pair_line(pair: Pair) -> str:
    return (
        f"{escape(pair.source.label)} ({pair.source.local_pct}%) → "
        f"{escape(pair.target.label)} ({pair.target.local_pct}%) "
        f"<i>pfrom {pair.pfrom} pto {pair.pto}</i>"
    )


def pages(count: int, per_page: int = PAIRS_PER_PAGE) -> int:
    return max(1, -(-count // per_page))


def skipped_lines(skipped: Sequence[tuple[Channel, str]]) -> list[str]:
    """Targets the spending rules leave alone now, each with why (core.spending)."""
    if not skipped:
        return []
    lines = [f"<b>Skipped targets</b>: {len(skipped)}"]
    lines += [f"⏸ {name(c.alias, c.chan_id)}: {escape(why)}" for c, why in skipped]
    return lines


def pairs_page(
    pairs: Sequence[Pair],
    page: int,
    channels: int,
    title: str = "Pairs",
    skipped: Sequence[tuple[Channel, str]] = (),
) -> str:
    """One page of the pair list (page numbers start at 0), the skipped targets after it."""
    if not pairs:
        text = f"<b>{escape(title)}</b>: none from {channels} channels — nothing to rebalance."
        return fit("\n".join([text, *skipped_lines(skipped)]))
    total_pages = pages(len(pairs))
    page = min(max(page, 0), total_pages - 1)
    shown = pairs[page * PAIRS_PER_PAGE : (page + 1) * PAIRS_PER_PAGE]
    head = f"<b>{escape(title)}</b>: {len(pairs)} from {channels} channels"
    if total_pages > 1:
        head += f" (page {page + 1}/{total_pages})"
    lines = [head, *(f"• {pair_line(p)}" for p in shown)]
    if page == total_pages - 1:
        lines += skipped_lines(skipped)
    return fit("\n".join(lines))


def dry_run_plan(planned: Sequence[Pair], all_pairs: int, channels: int) -> str:
    if not planned:
        return f"Next cycle would run nothing ({all_pairs} pairs from {channels} channels)."
    head = (
        f"<b>Next cycle would run {len(planned)}</b> "
        f"(of {all_pairs} pairs from {channels} channels):"
    )
    return fit("\n".join([head, *(f"• {pair_line(p)}" for p in planned)]))


def history(rows: Sequence[Rebalance], zone: dt.tzinfo) -> str:
    if not rows:
        return "No rebalances recorded yet."
    lines = [f"<b>Last {len(rows)} rebalances</b>"]
    lines += [f"{clock(r.line.timestamp, zone)} {rebalance_line(r)}" for r in rows]
    return fit("\n".join(lines))


def exclusions(rows: Sequence[Exclusion]) -> str:
    if not rows:
        return "No channel is excluded. /exclude &lt;chan_id|short id|alias&gt; adds one."
    lines = [f"<b>{len(rows)} excluded channels</b>"]
    lines += [
        f"• {escape(e.label) or '?'} <code>{e.chan_id}</code> (by {escape(e.added_by)})"
        for e in rows
    ]
    return fit("\n".join(lines))


def excluded(channel: Channel, added: bool) -> str:
    what = "now excluded" if added else "was already excluded"
    return f"{escape(channel.label)} <code>{channel.chan_id}</code> {what}."


def included(label: str, chan_id: str, removed: bool) -> str:
    if not removed:
        return f"<code>{chan_id}</code> was not excluded."
    return f"{escape(label)} <code>{chan_id}</code> is included again."


def config(shown: Mapping[str, str]) -> str:
    lines = ["<b>Effective settings</b>"]
    lines += [f"{key} = <code>{escape(value)}</code>" for key, value in shown.items()]
    return fit("\n".join(lines))


def report(summary: str) -> str:
    """The daily report's plain-text summary, kept aligned in a monospace block."""
    return fit(f"<pre>{escape(summary)}</pre>")


def bad_argument(problem: str, example: str) -> str:
    return f"{escape(problem)}. Example: <code>{escape(example)}</code>"


# --- confirmations and failures ----------------------------------------------------------


def refused(reason: str) -> str:
    return escape(reason)


def dry_run_switched(switches: Mode, now: float, zone: dt.tzinfo) -> str:
    state = "ON" if switches.dry_run else "OFF"
    return f"Dry run is {state}. Mode: {mode(switches, now, zone)}."


def paused(switches: Mode, now: float, zone: dt.tzinfo) -> str:
    return f"Paused. Mode: {mode(switches, now, zone)}. /resume to start runs again."


def resumed(switches: Mode, now: float, zone: dt.tzinfo) -> str:
    return f"Resumed. Mode: {mode(switches, now, zone)}."


def not_paused(switches: Mode, now: float, zone: dt.tzinfo) -> str:
    return f"Not paused ({mode(switches, now, zone)})."


CONFIRM, CANCEL = "Confirm", "Cancel"
CHART_CAPTION = "Node rebalancing, last 30 days"
NO_REPORTS = "Reports are not available in this process."
CYCLE_STARTED = "Cycle started; rebalances will appear here as they land."
CYCLE_RUNNING = "A cycle is running now; /status shows its runs."
CONFIRMATION_VOID = "This confirmation expired or is not valid; send the command again."
CANCELLED = "Cancelled; nothing changed."


def confirm_dry_run(on: bool) -> str:
    if on:
        return "Switch dry run <b>ON</b>? Cycles will plan and log but start nothing."
    return "Switch dry run <b>OFF</b>? Cycles will start real rebalances."


def confirm_pause(duration: str | None) -> str:
    """`duration` as the operator reads it (`2h`), None for until /resume."""
    if duration:
        return f"Pause for {escape(duration)}? Running rebalances finish, no new ones start."
    return "Pause until /resume? Running rebalances finish, no new ones start."


def confirm_resume() -> str:
    return "Resume? Cycles will start runs again."


def confirm_run() -> str:
    return "Start a cycle now?"


def command_failed(command: str, error_type: str) -> str:
    """A command that raised: its name and the error's type only (its text may hold a secret)."""
    return f"Sorry, {escape(command)} failed: {escape(error_type)}; the log has details."


def unknown_command(command: str) -> str:
    return f"Unknown command {escape(command)}; /help lists the commands."
