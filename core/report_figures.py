"""The daily report's figures: who rebalanced how much on one local day. Pure, no I/O.

Its siblings do the rest: core.report_csv keeps `daily-report.csv`, core.report_delivery
fetches the inputs, writes the files and sends the due days.

Attribution rules (the contract is /work/shared/contracts/lndg.md):

- A node rebalance is a succeeded LNDg payment with `rebal_chan` set. It belongs to the local
  day (TIMEZONE) of its `creation_date`; days are half-open `[00:00, next 00:00)`.
- LNDg's share: those whose `payment_hash` is a successful `/api/rebalancer/` row. A hash is
  proof, so **LNDg wins**: such a payment is never matched to a ledger row, even if one fits.
- This daemon's share: ledger rows (regolancer stat lines) matched one-to-one to the remaining
  payments on source = `chan_out`, target = `rebal_chan`, amount = `value` (less than 1 sat
  apart) and |stat timestamp − creation_date| <= the window (inclusive). Greedy by closest
  time (ties: lower ledger id, then earlier payment), then completed with augmenting paths so
  no row stays unmatched that could be matched; each payment and each row is used once.
- A matched pair counts on the payment's day with the payment's figures, so a rebalance that
  started at 23:59:50 and was written to the stat file at 00:00:10 counts once, on the first
  day. Callers therefore pass payments and ledger rows from a margin around the day.
- A ledger row matched to nothing (LNDg has not recorded it, or cleaned it up) still counts
  for this daemon, on the day of its own timestamp, and is flagged as `unmatched`. It is also
  added to the node total: it was a real rebalance on this node, and this way
  node = LNDg + daemon + other holds exactly and the daemon's share never exceeds 100 %.
- Other tools: the day's remaining rebalance payments.
- The daemon's runs of the day (by start time): dry runs never started, runs stopped at
  shutdown decided nothing, and a pair regolancer found no longer qualified tried no route,
  so none of them counts as an attempt (the planner does not count the last against the
  pair either); the last are listed on their own.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from core import fmt
from core.models import Outcome, Rebalance, RunResult, chan_id_to_short_id
from core.node_records import PAYMENT_SUCCEEDED, LndgRebalance, Payment

DEFAULT_MATCH_WINDOW_SECONDS = 300
DEFAULT_MAX_CATCH_UP = 7
_MSAT_TOLERANCE = 1000  # LNDg stores value_msat / 1000 as a float: compare within one sat


# ---------------------------------------------------------------------------------------------
# Values


@dataclass(frozen=True, slots=True)
class Share:
    """Count, amount and fees of a set of rebalances; msat inside so sums stay exact."""

    count: int = 0
    amount_msat: int = 0
    fee_msat: int = 0

    @property
    def sats(self) -> int:
        """Rebalanced amount in whole sats (rounded half up)."""
        return (self.amount_msat + 500) // 1000

    @property
    def fee_sat(self) -> float:
        """Fees paid, in sats with msat precision."""
        return self.fee_msat / 1000

    @property
    def ppm(self) -> int:
        """Fee rate in parts per million of the amount (floored, as the stat lines are)."""
        if self.amount_msat <= 0:
            return 0
        return self.fee_msat * 1_000_000 // self.amount_msat

    def __add__(self, other: Share) -> Share:
        return Share(
            self.count + other.count,
            self.amount_msat + other.amount_msat,
            self.fee_msat + other.fee_msat,
        )

    def __sub__(self, other: Share) -> Share:
        return Share(
            self.count - other.count,
            self.amount_msat - other.amount_msat,
            self.fee_msat - other.fee_msat,
        )


@dataclass(frozen=True, slots=True)
class RunStats:
    """The daemon's regolancer runs started in the period."""

    attempts: int = 0
    successes: int = 0
    failures: Mapping[Outcome, int] = field(default_factory=dict)
    stopped: int = 0
    dry_runs: int = 0
    # regolancer found the pair no longer qualified by its live balances: no route was tried.
    not_qualified: int = 0

    @property
    def failed(self) -> int:
        """All failed runs, whatever the outcome."""
        return sum(self.failures.values())

    @property
    def success_rate(self) -> float | None:
        """Successes per attempt in %, None without attempts."""
        return None if self.attempts == 0 else self.successes * 100 / self.attempts

    def __add__(self, other: RunStats) -> RunStats:
        failures = Counter(self.failures)
        failures.update(other.failures)
        return RunStats(
            self.attempts + other.attempts,
            self.successes + other.successes,
            dict(failures),
            self.stopped + other.stopped,
            self.dry_runs + other.dry_runs,
            self.not_qualified + other.not_qualified,
        )


@dataclass(frozen=True, slots=True)
class ChannelNet:
    """A channel's net (routing revenue − rebalancing cost) over some days."""

    chan_id: str
    alias: str
    net_msat: int

    @property
    def label(self) -> str:
        return self.alias or chan_id_to_short_id(self.chan_id)


@dataclass(frozen=True, slots=True)
class DayMoney:
    """What the node earned routing on the day (core.pnl.day_money), and which channels
    lost and earned most over the `window_days` days ending with it (empty in a summed
    report, whose days each had their own)."""

    revenue_msat: int
    forwards: int
    worst: tuple[ChannelNet, ...] = ()
    best: tuple[ChannelNet, ...] = ()
    window_days: int = 7

    def __add__(self, other: DayMoney) -> DayMoney:
        return DayMoney(self.revenue_msat + other.revenue_msat, self.forwards + other.forwards)


@dataclass(frozen=True, slots=True)
class DayReport:
    """The figures of one local day, or of `days` days ending with `day` (a summed report)."""

    day: date
    zone_name: str
    node: Share
    lndg: Share
    daemon: Share
    other: Share
    unmatched: Share
    runs: RunStats
    days: int = 1
    # The money lines; None with `money_error` set when LNDg's forwards could not be read
    # (the report goes out anyway), None without it where no one asked (a bare computation).
    money: DayMoney | None = None
    money_error: str = ""

    @property
    def first_day(self) -> date:
        """The first day covered (== `day` for a daily report)."""
        return self.day - timedelta(days=self.days - 1)

    @property
    def unmatched_count(self) -> int:
        """Daemon rebalances LNDg did not show (counted anyway, see the module doc)."""
        return self.unmatched.count

    @property
    def share_by_count(self) -> float | None:
        """This daemon's rebalances as % of the node's, None when the node made none."""
        return _pct(self.daemon.count, self.node.count)

    @property
    def share_by_sats(self) -> float | None:
        """This daemon's rebalanced sats as % of the node's, None when the node moved none."""
        return _pct(self.daemon.amount_msat, self.node.amount_msat)

    @property
    def cost_share(self) -> float | None:
        """The node's rebalancing fees (all tools) as % of its routing revenue; None when
        the money is unknown or nothing was earned."""
        return None if self.money is None else _pct(self.node.fee_msat, self.money.revenue_msat)


def _pct(part: int, whole: int) -> float | None:
    return None if whole <= 0 else part * 100 / whole


def zone_name(zone: tzinfo) -> str:
    """The IANA name of a ZoneInfo (`Europe/Berlin`), else whatever the tzinfo calls itself."""
    key = getattr(zone, "key", None)
    return key if isinstance(key, str) else str(zone)


# ---------------------------------------------------------------------------------------------
# Days and schedule


def day_bounds(day: date, zone: tzinfo) -> tuple[datetime, datetime]:
    """The local day `day` in `zone` as aware UTC datetimes `[start, end)`.

    23 or 25 hours long on a DST change day. One day's end is exactly the next day's start,
    so days never overlap or leave gaps.
    """
    start = datetime.combine(day, time(0), tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware (e.g. datetime.now(UTC))")


def _report_moment(day: date, zone: tzinfo, report_time: time) -> datetime:
    moment = datetime.combine(day, report_time.replace(tzinfo=None), tzinfo=zone)
    # Through UTC and back: a wall time skipped by DST (02:30 on spring-forward day) becomes
    # the real instant it denotes (03:30), which compares equal to itself in any zone.
    return moment.astimezone(UTC).astimezone(zone)


def latest_due_day(now: datetime, zone: tzinfo, report_time: time) -> date:
    """The newest day whose report is due at `now`: the day before the latest REPORT_TIME."""
    _require_aware(now)
    today = now.astimezone(zone).date()
    if now < _report_moment(today, zone, report_time):
        today -= timedelta(days=1)
    return today - timedelta(days=1)


def next_report_at(now: datetime, zone: tzinfo, report_time: time) -> datetime:
    """The first REPORT_TIME in `zone` strictly after `now` (aware, in `zone`)."""
    _require_aware(now)
    day = now.astimezone(zone).date()
    moment = _report_moment(day, zone, report_time)
    while moment <= now:
        day += timedelta(days=1)
        moment = _report_moment(day, zone, report_time)
    return moment


def due_days(
    now: datetime,
    zone: tzinfo,
    report_time: time,
    sent: Callable[[str], bool] | Collection[str | date],
    max_catch_up: int = DEFAULT_MAX_CATCH_UP,
    *,
    earliest: date | None = None,
) -> list[date]:
    """Days to report now, oldest first.

    The days that ended before the most recent REPORT_TIME (in `zone`), at most
    `max_catch_up` of them counting back from the newest, none before `earliest`, minus those
    `sent` already (a predicate on the ISO day, e.g. `StateStore.report_sent`, or a collection
    of ISO strings / dates).
    """
    if max_catch_up < 1:
        raise ValueError("max_catch_up must be at least 1")
    if callable(sent):
        was_sent = sent
    else:
        done = {d.isoformat() if isinstance(d, date) else d for d in sent}
        was_sent = done.__contains__
    newest = latest_due_day(now, zone, report_time)
    days = [newest - timedelta(days=back) for back in range(max_catch_up - 1, -1, -1)]
    return [d for d in days if (earliest is None or d >= earliest) and not was_sent(d.isoformat())]


# ---------------------------------------------------------------------------------------------
# Attribution


def _payment_msat(payment: Payment) -> tuple[int, int]:
    return round(payment.value * 1000), round(payment.fee * 1000)


def _candidates_by_key(
    payments: Sequence[Payment],
) -> dict[tuple[str, str], tuple[list[float], list[int]]]:
    """Payment indexes per (source, target), in time order, with their timestamps beside them
    for bisecting: a ledger row then looks only at the payments within its match window."""
    by_key: dict[tuple[str, str], list[tuple[float, int]]] = {}
    for index, payment in enumerate(payments):
        if payment.chan_out is not None and payment.rebal_chan is not None:
            key = (payment.chan_out, payment.rebal_chan)
            by_key.setdefault(key, []).append((payment.creation_date.timestamp(), index))
    ordered: dict[tuple[str, str], tuple[list[float], list[int]]] = {}
    for key, found in by_key.items():
        found.sort()
        ordered[key] = ([ts for ts, _i in found], [i for _ts, i in found])
    return ordered


def match_ledger(
    ledger_rows: Sequence[Rebalance], payments: Sequence[Payment], window: float
) -> dict[int, int]:
    """Ledger index -> payment index, one-to-one: greedy by closest time, then augmented.

    The greedy pass pairs the closest (row, payment) first. It can strand a row whose only
    candidate went to a neighbour that had another choice, so augmenting paths (Kuhn) then
    re-pair as needed: the result matches as many rows as possible, keeping greedy's pairs
    wherever that costs nothing. Payments are indexed by pair and time, so the cost grows
    with the rows and the payments near each, not with their product.
    """
    by_key = _candidates_by_key(payments)
    amounts = [_payment_msat(payment)[0] for payment in payments]
    # The bisect bounds are a second wider than the window; `gap <= window` decides exactly.
    slack = window + 1
    options: dict[int, list[int]] = {}
    candidates: list[tuple[float, int, int, int]] = []
    for row_index, row in enumerate(ledger_rows):
        line = row.line
        found = by_key.get((line.from_channel, line.to_channel))
        if found is None:
            continue
        times, indexes = found
        scored: list[tuple[float, int]] = []
        low = bisect_left(times, line.timestamp - slack)
        high = bisect_right(times, line.timestamp + slack, lo=low)
        for at, pay_index in zip(times[low:high], indexes[low:high], strict=True):
            if abs(amounts[pay_index] - line.amount_msat) >= _MSAT_TOLERANCE:
                continue
            gap = abs(line.timestamp - at)
            if gap <= window:
                scored.append((gap, pay_index))
                candidates.append((gap, row.id, pay_index, row_index))
        if scored:
            options[row_index] = [pay_index for _gap, pay_index in sorted(scored)]
    # Payments are sorted by creation time, so pay_index breaks ties towards the earlier one.
    candidates.sort()
    matched: dict[int, int] = {}
    owner: dict[int, int] = {}
    for _gap, _id, pay_index, row_index in candidates:
        if row_index not in matched and pay_index not in owner:
            matched[row_index], owner[pay_index] = pay_index, row_index
    for row_index in sorted(options):
        if row_index not in matched:
            _augment(row_index, options, matched, owner)
    return matched


def _augment(
    root: int, options: Mapping[int, list[int]], matched: dict[int, int], owner: dict[int, int]
) -> bool:
    """Kuhn's augmenting path from an unmatched row, depth first in `options` order.

    Iterative (a recursive search overflows Python's stack on a long chain of rows that
    share payments); it visits payments in exactly the order the recursive form would.
    """
    seen: set[int] = set()
    # Each frame: a row and the position of the next option to try.
    stack: list[list[int]] = [[root, 0]]
    path: list[int] = []  # the payment each frame below the top is trying to take over
    while stack:
        frame = stack[-1]
        row_index, position = frame
        choices = options[row_index]
        if position == len(choices):
            stack.pop()
            if path:
                path.pop()
            continue
        frame[1] = position + 1
        pay_index = choices[position]
        if pay_index in seen:
            continue
        seen.add(pay_index)
        holder = owner.get(pay_index)
        if holder is None:
            # Free payment: flip every edge along the path, deepest first.
            path.append(pay_index)
            for (row, _pos), pay in zip(reversed(stack), reversed(path), strict=True):
                matched[row], owner[pay] = pay, row
            return True
        path.append(pay_index)
        stack.append([holder, 0])
    return False


@dataclass(frozen=True, slots=True)
class Authorship:
    """Who paid the node's rebalances: the rules of the module doc, applied once.

    `rebalances`: the succeeded payments with a `rebal_chan`, in time order. A hash in `lndg`
    was paid by LNDg's rebalancer, one in `daemon` matched a stat line of ours; the rest are
    other tools'. `unmatched`: our ledger rows (in id order) no payment matched.
    """

    rebalances: list[Payment]
    lndg: frozenset[str | None]
    daemon: frozenset[str | None]
    unmatched: list[Rebalance]

    def tool(self, payment: Payment) -> str:
        """ "lndg", "daemon" or "other"."""
        if payment.payment_hash in self.lndg:
            return "lndg"
        return "daemon" if payment.payment_hash in self.daemon else "other"


def authorship(
    payments: Iterable[Payment],
    lndg_rebalances: Iterable[LndgRebalance],
    ledger_rows: Iterable[Rebalance],
    match_window_seconds: float = DEFAULT_MATCH_WINDOW_SECONDS,
) -> Authorship:
    """Attribute every rebalance payment to LNDg, this daemon or another tool."""
    lndg_hashes = frozenset(
        r.payment_hash for r in lndg_rebalances if r.succeeded and r.payment_hash is not None
    )
    rebalances = sorted(
        (p for p in payments if p.status == PAYMENT_SUCCEEDED and p.rebal_chan is not None),
        key=lambda p: (p.creation_date, p.payment_hash),
    )
    # LNDg's hash is proof of authorship: those payments never match a stat line.
    matchable = [p for p in rebalances if p.payment_hash not in lndg_hashes]
    rows = sorted(ledger_rows, key=lambda r: r.id)
    matched = match_ledger(rows, matchable, match_window_seconds)
    daemon = frozenset(matchable[i].payment_hash for i in matched.values())
    unmatched = [row for index, row in enumerate(rows) if index not in matched]
    return Authorship(rebalances, lndg_hashes, daemon, unmatched)


def run_stats(runs: Iterable[RunResult]) -> RunStats:
    outcomes = Counter(run.outcome for run in runs)
    dry, stopped = outcomes.pop(Outcome.DRY_RUN, 0), outcomes.pop(Outcome.STOPPED, 0)
    not_qualified = outcomes.pop(Outcome.NOT_QUALIFIED, 0)
    successes = outcomes.get(Outcome.SUCCESS, 0)
    failures = {o: n for o, n in outcomes.items() if o.is_failure}
    attempts = successes + sum(failures.values())
    return RunStats(attempts, successes, failures, stopped, dry, not_qualified)


def compute_day(
    day: date,
    zone: tzinfo,
    payments: Iterable[Payment],
    lndg_rebalances: Iterable[LndgRebalance],
    ledger_rows: Iterable[Rebalance],
    runs: Iterable[RunResult],
    match_window_seconds: float = DEFAULT_MATCH_WINDOW_SECONDS,
) -> DayReport:
    """Attribute the node's rebalances of local day `day` (see the module doc for the rules).

    Inputs may cover more than the day and should, by `match_window_seconds` on both sides,
    so pairs that straddle midnight match; everything is cut to the day here. Non-rebalance
    and unsucceeded payments, and unsucceeded LNDg rows, are ignored.
    """
    paid = authorship(payments, lndg_rebalances, ledger_rows, match_window_seconds)
    return split_days(paid, [day], zone, runs)[0]


def compute_days(
    days: Sequence[date],
    zone: tzinfo,
    payments: Iterable[Payment],
    lndg_rebalances: Iterable[LndgRebalance],
    ledger_rows: Iterable[Rebalance],
    runs: Iterable[RunResult],
    match_window_seconds: float = DEFAULT_MATCH_WINDOW_SECONDS,
) -> list[DayReport]:
    """`compute_day` for each of `days` from one attribution of the whole input: the same
    figures, since each day's report attributes the same inputs and keeps its own day."""
    paid = authorship(payments, lndg_rebalances, ledger_rows, match_window_seconds)
    return split_days(paid, days, zone, runs)


class DayIndex:
    """Which of some distinct local days an instant falls in, by bisecting their boundaries
    (`day_bounds`, so a day holds exactly what `start <= moment < end` would give it)."""

    def __init__(self, days: Sequence[date], zone: tzinfo) -> None:
        bounds = sorted((day_bounds(day, zone), n) for n, day in enumerate(days))
        self.starts = [start for (start, _end), _n in bounds]
        self.ends = [end for (_start, end), _n in bounds]
        self.start_ts = [start.timestamp() for start in self.starts]
        self.end_ts = [end.timestamp() for end in self.ends]
        self.order = [n for _bounds, n in bounds]

    def at(self, moment: datetime) -> int | None:
        """The position in `days` of the day holding `moment`, None outside them all."""
        slot = bisect_right(self.starts, moment) - 1
        if slot < 0 or not moment < self.ends[slot]:
            return None
        return self.order[slot]

    def at_ts(self, timestamp: float) -> int | None:
        """`at` for a POSIX timestamp (ledger rows and runs keep those)."""
        slot = bisect_right(self.start_ts, timestamp) - 1
        if slot < 0 or not timestamp < self.end_ts[slot]:
            return None
        return self.order[slot]


def split_days(
    paid: Authorship, days: Sequence[date], zone: tzinfo, runs: Iterable[RunResult] = ()
) -> list[DayReport]:
    """One attribution cut into the reports of `days` (in that order): each payment on the
    day of its `creation_date`, an unmatched row and a run on the day of their own time."""
    index = DayIndex(days, zone)
    node = [Share() for _ in days]
    lndg = [Share() for _ in days]
    daemon = [Share() for _ in days]
    unmatched = [Share() for _ in days]
    day_runs: list[list[RunResult]] = [[] for _ in days]
    for payment in paid.rebalances:
        slot = index.at(payment.creation_date)
        if slot is None:
            continue
        amount_msat, fee_msat = _payment_msat(payment)
        one = Share(1, amount_msat, fee_msat)
        node[slot] += one
        tool = paid.tool(payment)
        if tool == "lndg":
            lndg[slot] += one
        elif tool == "daemon":
            daemon[slot] += one
    for row in paid.unmatched:
        slot = index.at_ts(row.line.timestamp)
        if slot is not None:
            unmatched[slot] += Share(1, row.line.amount_msat, row.line.fees_msat)
    for run in runs:
        slot = index.at_ts(run.started_at)
        if slot is not None:
            day_runs[slot].append(run)
    return [
        DayReport(
            day=day,
            zone_name=zone_name(zone),
            node=node[n] + unmatched[n],
            lndg=lndg[n],
            daemon=daemon[n] + unmatched[n],
            other=node[n] - lndg[n] - daemon[n],
            unmatched=unmatched[n],
            runs=run_stats(day_runs[n]),
        )
        for n, day in enumerate(days)
    ]


def combine(reports: Sequence[DayReport]) -> DayReport:
    """Sum consecutive daily reports into one covering all their days."""
    if not reports:
        raise ValueError("nothing to combine")
    ordered = sorted(reports, key=lambda r: r.day)
    first, last = ordered[0], ordered[-1]
    total = first
    money = first.money
    errors = [r.money_error for r in ordered if r.money_error]
    for report in ordered[1:]:
        total = DayReport(
            day=report.day,
            zone_name=report.zone_name,
            node=total.node + report.node,
            lndg=total.lndg + report.lndg,
            daemon=total.daemon + report.daemon,
            other=total.other + report.other,
            unmatched=total.unmatched + report.unmatched,
            runs=total.runs + report.runs,
        )
        money = None if money is None or report.money is None else money + report.money
    if money is not None and len(ordered) > 1:
        money = DayMoney(money.revenue_msat, money.forwards)  # no one window for the nets
    days = (last.day - first.first_day).days + 1
    return DayReport(
        day=last.day,
        zone_name=last.zone_name,
        node=total.node,
        lndg=total.lndg,
        daemon=total.daemon,
        other=total.other,
        unmatched=total.unmatched,
        runs=total.runs,
        days=days,
        money=money,
        money_error=errors[-1] if errors else "",
    )


# ---------------------------------------------------------------------------------------------
# Text


def _share_line(label: str, share: Share) -> str:
    if share.count == 0:
        return f"{label}: 0"
    return (
        f"{label}: {share.count} · {fmt.sats(share.sats)} · "
        f"{fmt.fee(share.fee_sat)} fees ({fmt.ppm(share.ppm)})"
    )


def format_summary(report: DayReport) -> str:
    """A compact plain-text summary, a few lines (HTML-escape it for a chat)."""
    if report.days == 1:
        title = f"Rebalancing on {report.day:%a %Y-%m-%d} ({report.zone_name})"
    else:
        title = (
            f"Rebalancing {report.first_day.isoformat()} – {report.day.isoformat()} "
            f"({report.days} days, {report.zone_name})"
        )
    daemon = _share_line("This daemon", report.daemon)
    if report.daemon.count:
        daemon += (
            f" — share {fmt.pct(report.share_by_count)} of rebalances, "
            f"{fmt.pct(report.share_by_sats)} of sats"
        )
    lines = [title, _share_line("Node", report.node), daemon]
    if report.unmatched.count:
        lines.append(
            f"  ({report.unmatched.count} of them not found in LNDg's payments; counted anyway)"
        )
    lines.append(_share_line("LNDg", report.lndg))
    lines.append(_share_line("Other tools", report.other))
    runs = report.runs
    if runs.attempts:
        text = (
            f"Runs: {runs.attempts} attempts, {runs.successes} succeeded "
            f"({fmt.pct(runs.success_rate)})"
        )
        if runs.failures:
            ordered = sorted(runs.failures.items(), key=lambda item: (-item[1], item[0].value))
            text += "; failed: " + ", ".join(f"{o.describe} {n}" for o, n in ordered)
    else:
        text = "Runs: none"
    if runs.not_qualified:
        text += f"; {runs.not_qualified} no longer qualified"
    if runs.dry_runs:
        text += f"; {runs.dry_runs} dry run{'' if runs.dry_runs == 1 else 's'}"
    lines.append(text)
    lines += money_lines(report)
    return "\n".join(lines)


def signed_fee(msat: int) -> str:
    """A net in sats with its sign: `+12.5 sat`, `-3 sat`, `0 sat`."""
    text = fmt.fee(msat / 1000)
    return text if text.startswith(("-", "0 ")) else "+" + text


def _nets(channels: Sequence[ChannelNet]) -> str:
    return ", ".join(f"{c.label} {signed_fee(c.net_msat)}" for c in channels) or "none"


def money_lines(report: DayReport) -> list[str]:
    """Routing revenue, rebalancing cost as a share of it, the worst and best 7-day nets."""
    money = report.money
    if money is None:
        if not report.money_error:
            return []
        return [f"Routing revenue: not read from LNDg ({report.money_error})"]
    share = (
        ", with no revenue to set it against"
        if report.cost_share is None
        else f" = {fmt.pct(report.cost_share)} of it"
    )
    lines = [
        f"Routing revenue: {fmt.fee(money.revenue_msat / 1000)} from {money.forwards:,} "
        f"forward{'' if money.forwards == 1 else 's'}; rebalancing cost "
        f"{fmt.fee(report.node.fee_sat)}{share}"
    ]
    if report.days == 1:
        lines.append(f"Worst net {money.window_days} d: {_nets(money.worst)}")
        lines.append(f"Best net {money.window_days} d: {_nets(money.best)}")
    return lines
