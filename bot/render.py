"""Every text the operator reads in the chat, as pure functions of values.

HTML parse mode; everything that comes from outside (aliases, errors) is escaped.
Each function returns text that fits one Telegram message (4096 characters).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from html import escape, unescape

from core import fmt
from core.channel_card import ChannelCard
from core.control import FAR_SECONDS, Status
from core.events import DaemonStarted, DaemonStopping, Mode, RebalanceLanded
from core.fold import PairTotal, grand_total, pair_totals
from core.models import Channel, Pair, Rebalance, chan_id_to_short_id
from core.pnl import ChannelMoney, ChannelRuns, Pnl
from core.report_figures import RunStats, signed_fee
from core.state import Exclusion

MAX_MESSAGE = 4096
PAIRS_PER_PAGE = 15
PNL_PER_PAGE = 20

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
    ("channel", "one channel: role and why, fees, earned vs rebalancing cost"),
    ("pnl", "each channel's earnings against its rebalancing cost: 7d or 30d"),
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


# --- money: /channel and /pnl ------------------------------------------------------------


def _msat_fee(msat: int) -> str:
    return fmt.fee(msat / 1000)


def _money_line(days: int, money: ChannelMoney) -> str:
    cost = money.cost
    ours = f" (this daemon {_msat_fee(money.daemon.fee_msat)})" if money.daemon.count else ""
    return (
        f"<b>{days} d</b>: {money.forwards} fw out earned {_msat_fee(money.earned_msat)}; "
        f"rebalancing in {_msat_fee(cost.fee_msat)}{ours}; "
        f"net <b>{escape(signed_fee(money.net_msat))}</b>"
    )


def _runs_text(stats: RunStats) -> str:
    if not stats.attempts:
        return "none"
    return f"{stats.attempts}, {stats.successes} ok ({fmt.pct(stats.success_rate)})"


def _last_run(runs: ChannelRuns, chan_id: str, now: float, zone: dt.tzinfo) -> str:
    last = runs.last
    if last is None:
        return "Last run: none in 30 d"
    side = "into it" if last.target == chan_id else "out of it"
    return (
        f"Last run: {escape(last.outcome.describe)} ({side}), {clock(last.started_at, zone)} "
        f"({ago(now - last.started_at)} ago)"
    )


def channel_card(card: ChannelCard, zone: dt.tzinfo) -> str:
    """`/channel`: one channel on one phone screen."""
    c, role, ar = card.channel, card.role, card.ar
    lines = [
        f"<b>{escape(c.alias or c.short_chan_id or c.chan_id)}</b> "
        f"{escape(c.short_chan_id or chan_id_to_short_id(c.chan_id))}",
        f"<code>{c.chan_id}</code>",
        f"Capacity {fmt.sats(c.capacity)} · local {c.local_pct}% ({fmt.sats(c.effective_local)})",
        f"<b>Role</b>: {role.kind.value} — {escape(role.why)}",
    ]
    if role.skipped:
        lines.append(f"⏸ skipped now: {escape(role.skipped)}")
    lines += [
        f"LNDg: AR {'on' if c.auto_rebalance else 'off'} · ar_out_target {c.ar_out_target}% · "
        f"ar_in_target {c.ar_in_target}% · ar_amt_target {fmt.sats(c.ar_amt_target)} · "
        f"ar_max_cost {c.ar_max_cost}%",
        f"Fees: ours {fmt.ppm(c.local_fee_rate)} · peer's {fmt.ppm(c.remote_fee_rate)} · "
        f"cap {fmt.ppm(card.cap_ppm)} (AR-MaxFeeRate {fmt.ppm(ar.max_fee_rate_ppm)})",
        _money_line(7, card.week),
        _money_line(30, card.month),
        f"Runs 30 d: into {_runs_text(card.runs.into)}; out of {_runs_text(card.runs.out_of)}",
        _last_run(card.runs, c.chan_id, card.now, zone),
    ]
    if card.sources:
        lines.append("Sources that worked (30 d):")
        lines += [
            f"• {name(s.alias, s.chan_id)}: {s.share.count}× {fmt.sats(s.share.sats)}, "
            f"{fmt.fee(s.share.fee_sat)} ({fmt.ppm(s.share.ppm)})"
            for s in card.sources
        ]
    else:
        lines.append("Sources that worked (30 d): none yet")
    return fit("\n".join(lines))


def pnl_pages(count: int) -> int:
    return pages(count, PNL_PER_PAGE)


def _pnl_lines(pnl: Pnl, page: int, per_page: int) -> list[str]:
    span = pnl.period
    when = f"{span.first_day.isoformat()} – {span.last_day.isoformat()} ({escape(span.zone_name)})"
    if not pnl.channels:
        return [f"No channel earned or cost anything in {span.days} d, {when}."]
    cost = pnl.cost
    total_pages = pages(len(pnl.channels), per_page)
    page = min(max(page, 0), total_pages - 1)
    head = f"<b>Earned vs rebalancing cost, {span.days} d</b>\n{when}"
    if total_pages > 1:
        head += f" · page {page + 1}/{total_pages}"
    lines = [
        head,
        f"Routing revenue: {_msat_fee(pnl.revenue_msat)} from {pnl.forwards:,} forwards",
        f"Rebalancing cost: {_msat_fee(cost.fee_msat)} = {fmt.pct(pnl.cost_share)} of revenue",
        f"  this daemon {_msat_fee(pnl.daemon.fee_msat)} · LNDg {_msat_fee(pnl.lndg.fee_msat)}"
        f" · other {_msat_fee(pnl.other.fee_msat)}",
        f"Net: <b>{escape(signed_fee(pnl.net_msat))}</b> · {len(pnl.channels)} channels, "
        "worst net first",
    ]
    shown = pnl.channels[page * per_page : (page + 1) * per_page]
    lines += [
        f"• {name(m.alias, m.chan_id)}: earned {_msat_fee(m.earned_msat)} ({m.forwards} fw), "
        f"cost {_msat_fee(m.cost.fee_msat)} → <b>{escape(signed_fee(m.net_msat))}</b>"
        for m in shown
    ]
    return lines


def pnl_page(pnl: Pnl, page: int) -> str:
    """One page of `/pnl`: the totals, then channels worst net first (pages start at 0)."""
    return fit("\n".join(_pnl_lines(pnl, page, PNL_PER_PAGE)))


def pnl_text(pnl: Pnl) -> str:
    """All of `/pnl` as plain text, for the CLI (no page, no limit)."""
    return plain("\n".join(_pnl_lines(pnl, 0, max(1, len(pnl.channels)))))


def money_unavailable(problem: str) -> str:
    """LNDg could not be read for /channel or /pnl: one line, never silence."""
    return alert(f"LNDg could not be read, try again later: {problem}")


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
EXCLUDE, INCLUDE = "Exclude…", "Include…"
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


def confirm_exclude(label: str, chan_id: str) -> str:
    return f"Exclude {escape(label)} <code>{chan_id}</code>? No run will use it until /include."


def confirm_include(label: str, chan_id: str) -> str:
    return f"Include {escape(label)} <code>{chan_id}</code> again? Runs may use it."


def command_failed(command: str, error_type: str) -> str:
    """A command that raised: its name and the error's type only (its text may hold a secret)."""
    return f"Sorry, {escape(command)} failed: {escape(error_type)}; the log has details."


def unknown_command(command: str) -> str:
    return f"Unknown command {escape(command)}; /help lists the commands."
