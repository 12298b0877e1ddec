"""`health`: is a daemon alive on this DATA_DIR? Read from its heartbeat in the state store."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

# The engine beats every few seconds; a minute of silence means it is stuck or gone.
MAX_SILENCE_SECONDS = 120.0


def heartbeat_age(database: Path, now: float | None = None) -> float | None:
    """Seconds since the last heartbeat, None when there is none (or no database)."""
    if not database.exists():
        return None
    # Read-only: a health probe must never create or lock the daemon's database.
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=2) as db:
        try:
            row = db.execute("SELECT value FROM kv WHERE key = 'heartbeat'").fetchone()
        except sqlite3.OperationalError:
            return None
    if row is None:
        return None
    return (time.time() if now is None else now) - float(row[0])


def check_health(database: Path, now: float | None = None) -> tuple[bool, str]:
    """(healthy, one line for the operator)."""
    try:
        age = heartbeat_age(database, now)
    except sqlite3.Error as exc:
        return False, f"unhealthy: cannot read {database}: {exc}"
    if age is None:
        return False, f"unhealthy: no heartbeat in {database} (has the daemon started?)"
    if age > MAX_SILENCE_SECONDS:
        return False, f"unhealthy: last heartbeat {age:.0f}s ago"
    return True, f"healthy: last heartbeat {age:.0f}s ago"
