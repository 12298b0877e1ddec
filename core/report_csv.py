"""`daily-report.csv`: one row per reported day, kept sorted, rewritten atomically.

The first four columns are the original tool's (date, node rebalances, this daemon's
rebalances, its share in %); the rest add sats, fees and ppm per share, the daemon rows LNDg
did not show, the daemon's runs, and last the money: the day's routing revenue and
forwards, rebalancing cost as % of revenue, and the worst and best 7-day nets. A day
reported again replaces its row. A missing file is an empty history; rows that cannot be
read (no valid date) are dropped with a warning; rows from an older layout keep the columns
they have, the others stay empty.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import tempfile
from datetime import date
from pathlib import Path

from core.models import chan_id_to_short_id
from core.report_figures import ChannelNet, DayReport, Share

logger = logging.getLogger(__name__)

CSV_NAME = "daily-report.csv"
# Private like everything in DATA_DIR: the report tells what the node earns and spends.
FILE_MODE = 0o600

COLUMNS: tuple[str, ...] = (
    "date",
    "node_rebalances",
    "daemon_rebalances",
    "daemon_share_pct",
    "daemon_share_sats_pct",
    "node_sats",
    "node_fee_sat",
    "node_ppm",
    "lndg_rebalances",
    "lndg_sats",
    "lndg_fee_sat",
    "lndg_ppm",
    "daemon_sats",
    "daemon_fee_sat",
    "daemon_ppm",
    "other_rebalances",
    "other_sats",
    "other_fee_sat",
    "other_ppm",
    "daemon_unmatched",
    "runs_attempted",
    "runs_succeeded",
    "runs_failed",
    # Appended for the money question; rows written before them read as empty.
    "revenue_sat",
    "forwards",
    "cost_pct_of_revenue",
    "worst_net_7d",
    "best_net_7d",
)

Row = dict[str, str]


def _pct_text(value: float | None) -> str:
    # Empty, not 0: a day without any node rebalance has no share.
    return "" if value is None else f"{value:.2f}"


def _share_cells(prefix: str, share: Share) -> Row:
    return {
        f"{prefix}_rebalances": str(share.count),
        f"{prefix}_sats": str(share.sats),
        f"{prefix}_fee_sat": f"{share.fee_sat:.3f}",
        f"{prefix}_ppm": str(share.ppm),
    }


def report_row(report: DayReport) -> Row:
    """The CSV row (column -> text) for one daily report."""
    if report.days != 1:
        raise ValueError("daily-report.csv holds single days, not a summed report")
    row: Row = {
        "date": report.day.isoformat(),
        "daemon_share_pct": _pct_text(report.share_by_count),
        "daemon_share_sats_pct": _pct_text(report.share_by_sats),
        "daemon_unmatched": str(report.unmatched.count),
        "runs_attempted": str(report.runs.attempts),
        "runs_succeeded": str(report.runs.successes),
        "runs_failed": str(report.runs.failed),
    }
    row |= _share_cells("node", report.node)
    row |= _share_cells("lndg", report.lndg)
    row |= _share_cells("daemon", report.daemon)
    row |= _share_cells("other", report.other)
    row |= _money_cells(report)
    return {column: row[column] for column in COLUMNS}


def _nets_text(channels: tuple[ChannelNet, ...]) -> str:
    """`Tgt1 800000x101x0 -12.500; ...`: label, short id, net in sats (msat precision)."""
    return "; ".join(
        f"{c.alias} {chan_id_to_short_id(c.chan_id)} {c.net_msat / 1000:.3f}".strip()
        for c in channels
    )


def _money_cells(report: DayReport) -> Row:
    money = report.money
    if money is None:  # forwards not read: empty, never a made-up 0
        return {
            "revenue_sat": "",
            "forwards": "",
            "cost_pct_of_revenue": "",
            "worst_net_7d": "",
            "best_net_7d": "",
        }
    return {
        "revenue_sat": f"{money.revenue_msat / 1000:.3f}",
        "forwards": str(money.forwards),
        "cost_pct_of_revenue": _pct_text(report.cost_share),
        "worst_net_7d": _nets_text(money.worst),
        "best_net_7d": _nets_text(money.best),
    }


def _valid_day(text: str | None) -> str | None:
    try:
        return date.fromisoformat((text or "").strip()).isoformat()
    except ValueError:
        return None


def read_days(path: Path) -> list[Row]:
    """Every readable day row of the CSV, sorted by date, one per date (the last one wins).

    Each row has every column of `COLUMNS` (empty text where the file had none). A missing
    file gives []; unreadable rows are skipped with a WARNING.
    """
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    lines = list(csv.reader(io.StringIO(text.replace("\0", ""))))
    if not lines:
        return []
    first = [cell.strip().lower() for cell in lines[0]]
    names: list[str] = list(COLUMNS)
    body = lines
    if first and _valid_day(first[0]) is None:
        body = lines[1:]
        if "date" in first and "node_rebalances" in first:
            names = first  # ours, perhaps older or newer: read by name
        # Otherwise a foreign header (the original tool's wording): read by position, as its
        # four columns are our first four.
    rows: dict[str, Row] = {}
    skipped = 0
    for cells in body:
        if not any(cell.strip() for cell in cells):
            continue
        raw = dict(zip(names, cells, strict=False))
        day = _valid_day(raw.get("date"))
        if day is None:
            skipped += 1
            continue
        row = {column: (raw.get(column) or "").strip() for column in COLUMNS}
        row["date"] = day
        rows[day] = row
    if skipped:
        logger.warning("%s: skipped %d row(s) without a valid date", path, skipped)
    return [rows[day] for day in sorted(rows)]


def write_rows(path: Path, rows: list[Row]) -> None:
    """Write `rows` (sorted by date) with the header, atomically: readers never see half a file."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(sorted(rows, key=lambda row: row["date"]))
    data = buffer.getvalue().encode("utf-8")
    atomic_write(path, data)


def atomic_write(path: Path, data: bytes, mode: int = FILE_MODE) -> None:
    """Write a file through a temporary file in the same directory and `os.replace`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_day(path: Path, report: DayReport) -> Row:
    """Add the report's day to the CSV at `path`, replacing that day's row if present.

    Returns the row written. Raises OSError when the file cannot be written.
    """
    row = report_row(report)
    rows = {existing["date"]: existing for existing in read_days(path)}
    rows[row["date"]] = row
    write_rows(path, list(rows.values()))
    return row
