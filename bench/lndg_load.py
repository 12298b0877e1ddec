"""What the daemon costs LNDg at 1,500 channels: channel requests and bytes per hour.

The real `Engine`, `Planner` and `LndgClient` run on the virtual clock (`bench.vclock`) with
the simulated node and regolancer of `bench.simulate`, driven as the daemon drives them
(`core.runtime.Cycles`, SLEEP_SECONDS 300, 4 workers). LNDg is the `sim.lndg.FakeLndg`
stand-in answering through its own request handler in process (no socket, so an hour passes
in seconds); its rows follow the node every 20 s, as LNDg's sync does. Both sides come from
one run, on the same node and seed:

- before: the engine without a detail reader, as it was: after a success, the whole channel
  list at most every 10 s until LNDg shows the move;
- after: the daemon as shipped: the whole list at most every CHANNEL_LIST_SECONDS (and at the
  start); in between the last list moved by the forwards LNDg recorded since (one read per
  cycle, `GET /api/forwards/?forward_date__gte=`), each run's two channels read through
  `GET /api/channels/<chan_id>/` before it starts, and after a success until LNDg shows it.

The node routes as in the earnings benchmark, and the fake LNDg lists its forwards after each
sync. Counted: the requests for channels and forwards and the bytes of the answers' bodies
(the fake's reply log; headers add about 300 bytes a request). Not counted, and the same on
both sides: the spend guard's settings and earnings reads, the reports' payments reads, the
history read at start.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx

from bench.simulate import Meter, SimConfig, SimNode, SimRunner, _drive
from bench.vclock import VirtualClockLoop, run_virtual
from core.engine import Engine
from core.lndg import LndgClient
from core.models import Channel, Outcome
from core.runtime import Cycles
from core.settings import Settings, load_settings
from core.state import StateStore
from sim.lndg import FakeLndg, forward_row
from sim.nodes import node_rows

SIZE = 1500
WINDOW_EDGE = 0.001  # s
LIST_SECONDS = Settings.model_fields["channel_list_seconds"].default
PASSWORD = "bench"  # noqa: S105 - the in-process stand-in's login


class _InProcess(httpx.AsyncBaseTransport):
    """httpx to FakeLndg's request handler without a socket (the virtual clock needs none)."""

    def __init__(self, fake: FakeLndg) -> None:
        self.fake = fake

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        headers = {key.lower(): value for key, value in request.headers.items()}
        body = await request.aread()
        reply = self.fake.handle(request.method, request.url.raw_path.decode(), headers, body)
        return httpx.Response(
            reply.status,
            headers={"Content-Type": reply.content_type, **reply.headers},
            content=reply.body,
        )


class _LndgNode(SimNode):
    """The simulated node, with LNDg's rows following it at each sync."""

    def __init__(self, rows: list[dict[str, Any]], config: SimConfig, fake: FakeLndg) -> None:
        super().__init__([Channel.model_validate(row) for row in rows], config)
        self.fake = fake
        self._shown_forwards = 0
        self.sync()

    def sync(self) -> None:
        super().sync()
        now = asyncio.get_running_loop().time() if _loop_running() else 0.0
        shown = {c.chan_id: c for c in self.snapshot(self.synced, now)}
        with self.fake.lock:
            for row in self.fake.channels:
                channel = shown[row["chan_id"]]
                row["local_balance"] = channel.local_balance
                row["remote_balance"] = channel.remote_balance
                row["htlc_count"] = channel.htlc_count
            for forward in self.forwards[self._shown_forwards :]:
                self.fake.forwards.append(
                    forward_row(
                        forward.id,
                        chan_id_in=forward.chan_id_in,
                        chan_id_out=forward.chan_id_out,
                        forward_date=forward.forward_date,
                        amt_out_msat=forward.amt_out_msat,
                        amt_in_msat=forward.amt_in_msat,
                        fee=forward.fee_sat,
                    )
                )
            self._shown_forwards = len(self.forwards)


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@dataclass(frozen=True)
class Side:
    """One engine's channel reads over the window, per hour."""

    list_reads: float
    detail_reads: float
    forwards_reads: float
    megabytes: float  # answer bodies, MB (10^6 bytes)
    runs: float
    successes: float


@dataclass(frozen=True)
class Load:
    hours: float
    idle_before: Side
    idle_after: Side
    busy_before: Side
    busy_after: Side


def _is_list(path: str) -> bool:
    return path.split("?")[0] == "/api/channels/"


def _is_detail(path: str) -> bool:
    return path.startswith("/api/channels/") and not _is_list(path)


def _is_forwards(path: str) -> bool:
    return path.startswith("/api/forwards/")


async def _side(config: SimConfig, balanced: bool, details: bool, data_dir: Path) -> Side:
    loop = asyncio.get_running_loop()
    assert isinstance(loop, VirtualClockLoop)
    fake = FakeLndg(channels=node_rows(SIZE, config.seed, balanced=balanced), password=PASSWORD)
    node = _LndgNode(fake.channels, config, fake)
    meter = Meter(config.workers, available=node.available_work(0.0))
    settings = load_settings(
        None, data_dir=data_dir, max_workers=config.workers, sleep_seconds=config.sleep_seconds
    )
    client = LndgClient("http://lndg.bench", password=PASSWORD, transport=_InProcess(fake))

    async def fetch() -> list[Channel]:
        return (await client.fetch_channels()).channels

    store = StateStore(data_dir / "state.sqlite3")
    engine = Engine(
        settings,
        store,
        fetch,
        SimRunner(node, meter, config.seed),
        clock=loop.wall,
        fetch_channel=client.fetch_channel if details else None,
        fetch_forwards=client.fetch_forwards if details else None,
    )
    try:
        cycles = asyncio.create_task(Cycles(engine, clock=loop.wall).run())
        # The window is [0, horizon): a list read due at its very end belongs to the next.
        await _drive(node, meter, cycles, config.horizon_hours * 3600 - WINDOW_EDGE)
        won = sum(1 for run in store.runs() if run.outcome is Outcome.SUCCESS)
    finally:
        store.close()
        await client.aclose()
    hours = config.horizon_hours
    lists, list_bytes = fake.traffic(_is_list)
    detail, detail_bytes = fake.traffic(_is_detail)
    forwards, forwards_bytes = fake.traffic(_is_forwards)
    return Side(
        list_reads=lists / hours,
        detail_reads=detail / hours,
        forwards_reads=forwards / hours,
        megabytes=(list_bytes + detail_bytes + forwards_bytes) / 1e6 / hours,
        runs=meter.runs / hours,
        successes=won / hours,
    )


def measure(hours: float = 1.0, seed: int = 1) -> Load:
    """Idle and under load, before and after, each `hours` of virtual time."""
    config = replace(SimConfig(), channels=SIZE, seed=seed, horizon_hours=hours)
    sides: dict[tuple[bool, bool], Side] = {}
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # the engine's lines, not the figures
    try:
        for balanced in (True, False):
            for details in (False, True):
                with tempfile.TemporaryDirectory(prefix="bench-lndg-load-") as tmp:
                    sides[balanced, details] = run_virtual(
                        _side(config, balanced, details, Path(tmp))
                    )
    finally:
        logging.disable(previous)
    return Load(
        hours,
        idle_before=sides[True, False],
        idle_after=sides[True, True],
        busy_before=sides[False, False],
        busy_after=sides[False, True],
    )
