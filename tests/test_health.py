"""`health` reads the heartbeat without creating or changing anything."""

from __future__ import annotations

import json
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


def test_standing_alerts_are_listed_and_only_a_start_failure_is_unhealthy(tmp_path: Path) -> None:
    database = tmp_path / "state.sqlite3"
    with StateStore(database) as store:
        store.put_value("heartbeat", "1000.0")
        store.put_value("alerts", json.dumps({"lndg": "LNDg: down\nINFO forged line"}))
        assert check_health(database, now=1010.0) == (
            True,
            "healthy: last heartbeat 10s ago; standing alerts: LNDg: down INFO forged line",
        )
        store.put_value("alerts", json.dumps({"start": "runs cannot be started: disk full"}))
        assert check_health(database, now=1010.0) == (
            False,
            "unhealthy: runs cannot be started: disk full",
        )
        store.put_value("alerts", "{}")
        assert check_health(database, now=1010.0)[0]
