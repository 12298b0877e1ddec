"""The demo's simulated node: its week of LNDg history and how often its pairs succeed.

In process, but at the real boundary: the history is served by the loopback LNDg and read by
the daemon's own client and history loader, as the demo's daemon reads it at its first cycle.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from core.daemon import history_loader
from core.lndg import LndgClient
from core.pairing import build_pairs, is_usable
from core.settings import load_settings
from core.state import StateStore
from sim.lndg import FakeLndg
from sim.nodes import demo_rows
from sim.simulation import HISTORY_ATTEMPTS, Simulation

# 13 h ahead of UTC in December: its midnight is far from UTC midnight
AUCKLAND = ZoneInfo("Pacific/Auckland")


def simulation(fake: FakeLndg, tmp_path: Path) -> Simulation:
    return Simulation(fake, tmp_path / "stat.csv", tmp_path / "scenario.json", seed=1)


async def test_the_week_before_the_demo_is_what_the_daemon_learns_from(tmp_path: Path) -> None:
    now = datetime(2026, 12, 6, 23, 20, tzinfo=AUCKLAND)  # late: most of today is behind
    with FakeLndg(channels=demo_rows(1), payments=[], rebalancer=[], password="pw") as fake:
        sim = simulation(fake, tmp_path)
        attempts, paid = sim.seed_history(now)
        settings = load_settings(
            None, data_dir=tmp_path, lndg_base_url=fake.url, lndg_pass="pw", history_days=7
        )
        store = StateStore(tmp_path / "state.sqlite3")
        async with LndgClient.from_settings(settings) as lndg:
            channels = (await lndg.fetch_channels()).channels
            load = history_loader(settings, store, lndg, now=lambda: now.astimezone(UTC))
            assert load is not None
            seen = await load(channels)
            payments = await lndg.fetch_payments(now - timedelta(days=8), now)
        store.close()

    usable_ar = [c for c in sim.channels() if c.auto_rebalance and is_usable(c)]
    assert attempts == HISTORY_ATTEMPTS * len(usable_ar)
    assert 0 < paid < attempts
    # every success is one payment whose hash is LNDg's row's: the report credits LNDg
    assert len(payments) == paid
    hashes = {row["payment_hash"] for row in fake.rebalancer if row["status"] == 2}
    assert {p.payment_hash for p in payments} == hashes
    # all within the daemon's 7-day window, none today in the report's zone
    midnight = now.replace(hour=0, minute=0).astimezone(UTC)
    assert all(now - timedelta(days=7) < p.creation_date < midnight for p in payments)
    stops = [datetime.fromisoformat(row["stop"]).replace(tzinfo=UTC) for row in fake.rebalancer]
    assert all(now - timedelta(days=7) < stop < midnight for stop in stops)
    # the loader sees every success as a route, and every failure whose target it can name
    peers = Counter(c.remote_pubkey for c in channels)
    failures = [row for row in fake.rebalancer if row["status"] != 2]
    named = [row for row in failures if peers[row["last_hop_pubkey"]] == 1]
    assert 0 < len(named) <= len(failures)
    assert sum(o.won for o in seen) == paid
    assert sum(not o.won for o in seen) == len(named)
    # a route that worked is one the rule allows: a source into an AR channel, two peers
    by_id = {c.chan_id: c for c in channels}
    for won in (o for o in seen if o.won):
        assert won.source is not None
        source, target = by_id[won.source], by_id[won.target]
        assert not source.auto_rebalance
        assert target.auto_rebalance
        assert source.remote_pubkey != target.remote_pubkey


def test_a_pair_succeeds_as_often_as_its_reach_says(tmp_path: Path) -> None:
    with FakeLndg(channels=demo_rows(1), payments=[], rebalancer=[]) as fake:
        sim = simulation(fake, tmp_path)
        pairs = build_pairs(sim.channels())
        odds = {
            f"{int(p.source.chan_id)}>{int(p.target.chan_id)}": sim.node.odds(
                p.source.chan_id, p.target.chan_id
            )
            for p in pairs
        }
        best, worst = max(odds, key=odds.__getitem__), min(odds, key=odds.__getitem__)
        assert odds[worst] < 0.4 < 0.85 < odds[best]
        outcomes: dict[str, Counter[str]] = {best: Counter(), worst: Counter()}
        for _ in range(400):
            sim.write_scenario()
            specs = json.loads((tmp_path / "scenario.json").read_text())["pairs"]
            for key in outcomes:
                outcomes[key][specs[key]["outcome"]] += 1
    for key, seen in outcomes.items():
        assert abs(seen["success"] / 400 - odds[key]) < 0.08, (key, odds[key], seen)
    # what fails mostly finds no route, as on a real node
    failed = outcomes[worst]
    assert failed["no_route"] > failed["route_timeout"] > 0
    assert failed["rebalance_timeout"] > 0
