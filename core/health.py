"""`health`: is a daemon alive on this DATA_DIR? Read from its heartbeat in the state store."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

# The engine beats every few seconds; a minute of silence means it is stuck or gone.
MAX_SILENCE_SECONDS = 120.0
# Standing alerts that mean the daemon itself cannot do its work (see core.engine).
UNHEALTHY_ALERTS = ("start",)


def _read_values(database: Path) -> dict[str, str]:
    """The heartbeat and the standing alerts, in one read-only look (empty when absent)."""
    if not database.exists():
        return {}
    # Read-only: a health probe must never create or lock the daemon's database.
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=2) as db:
        try:
            rows = db.execute(
                "SELECT key, value FROM kv WHERE key IN ('heartbeat', 'alerts')"
            ).fetchall()
        except sqlite3.OperationalError:
            return {}
    return {str(key): str(value) for key, value in rows}


def _alerts(text: str | None) -> dict[str, str]:
    """Standing alerts by key from their stored JSON (empty when none, or unreadable)."""
    try:
        alerts = json.loads(text or "{}")
    except ValueError:
        return {}
    if not isinstance(alerts, dict):
        return {}
    # One line each: an alert can quote outside text (an LNDg body, an exception).
    return {str(k): " ".join(str(v).split()) for k, v in alerts.items()}


def check_health(database: Path, now: float | None = None) -> tuple[bool, str]:
    """(healthy, one line for the operator)."""
    try:
        values = _read_values(database)
    except sqlite3.Error as exc:
        return False, f"unhealthy: cannot read {database}: {exc}"
    if "heartbeat" not in values:
        return False, f"unhealthy: no heartbeat in {database} (has the daemon started?)"
    age = (time.time() if now is None else now) - float(values["heartbeat"])
    alerts = _alerts(values.get("alerts"))
    if age > MAX_SILENCE_SECONDS:
        return False, f"unhealthy: last heartbeat {age:.0f}s ago"
    faults = [alerts[key] for key in UNHEALTHY_ALERTS if key in alerts]
    if faults:
        return False, f"unhealthy: {'; '.join(faults)}"
    others = "; ".join(alerts.values())
    return True, f"healthy: last heartbeat {age:.0f}s ago" + (
        f"; standing alerts: {others}" if others else ""
    )
