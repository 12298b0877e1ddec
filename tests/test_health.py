"""`health` reads the heartbeat without creating or changing anything."""

from __future__ import annotations

from pathlib import Path

from core.health import check_health
from core.state import StateStore


def test_health_follows_the_heartbeat(tmp_path: Path) -> None:
    database = tmp_path / "state.sqlite3"
    healthy, line = check_health(database)
    assert not healthy
    assert "no heartbeat" in line
    assert not database.exists()
    with StateStore(database) as store:
        assert check_health(database)[0] is False
        store.put_value("heartbeat", "1000.0")
    assert check_health(database, now=1030.0) == (True, "healthy: last heartbeat 30s ago")
    assert check_health(database, now=1500.0) == (False, "unhealthy: last heartbeat 500s ago")
