"""Confirming a success through LNDg's channel detail endpoint, not the whole channel list.

The client and the engine against the fake LNDg over a real loopback socket; the fake's
request log says what each side cost LNDg.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.checks import check_pace
from core.confirm import Confirmations, patch
from core.engine import Engine, FetchChannel, Pacing
from core.lndg import LndgClient, LndgNotFound, LndgProtocolError
from core.lndg_pace import sleep_warning
from core.models import Channel, Pair
from core.settings import load_settings
from core.state import StateStore
from sim.lndg import FakeLndg, _json_reply, _Reply, channel_row
from tests.test_engine import ScriptedRunner
from tests.test_lndg_client import PASSWORD, client_for
from tests.test_pairing import channel

AMOUNT = 50_000
LONG_RUN = 3.0  # the second pair's one run: it keeps the cycle going while the first is served


def node_rows() -> list[dict[str, Any]]:
    """Two sources full of outbound; a target that needs four runs of 50k to leave (20%), and
    one that needs one."""

    def source(short_id: str, local: int) -> dict[str, Any]:
        return channel_row(short_id, capacity=1_000_000, local_balance=local, remote_balance=0)

    def target(short_id: str, local: int) -> dict[str, Any]:
        return channel_row(
            short_id,
            capacity=1_000_000,
            local_balance=local,
            remote_balance=990_000 - local,
            auto_rebalance=True,
            ar_in_target=80,
        )

    return [
        source("800000x1x0", 990_000),
        target("800000x11x0", 0),
        source("800000x2x0", 980_000),
        target("800000x12x0", 160_000),
    ]


@pytest.fixture
def fake() -> Iterator[FakeLndg]:
    with FakeLndg(channels=node_rows(), password=PASSWORD) as server:
        yield server


def chan_ids(fake: FakeLndg) -> tuple[str, str]:
    """The first pair's source and target."""
    return str(fake.channels[0]["chan_id"]), str(fake.channels[1]["chan_id"])


def scripted_runner(fake: FakeLndg) -> ScriptedRunner:
    """Quick runs, except the second pair's one long run."""
    runner = ScriptedRunner(delay=0.02)
    runner.delays[(str(fake.channels[2]["chan_id"]), str(fake.channels[3]["chan_id"]))] = LONG_RUN
    lndg_syncs_after(fake, runner, SYNC_DELAY)
    return runner


def first_pair_runs(runner: ScriptedRunner, fake: FakeLndg) -> list[tuple[str, str]]:
    _source, target = chan_ids(fake)
    return [key for key in runner.started if key[1] == target]


def is_list(path: str) -> bool:
    return path.split("?")[0] == "/api/channels/"


def is_detail(chan_id: str) -> Any:
    return lambda path: path == f"/api/channels/{chan_id}/"


def lndg_syncs_after(fake: FakeLndg, runner: ScriptedRunner, delay: float) -> None:
    """Each success shows in the fake's rows `delay` seconds later, as after LNDg's sync."""

    def apply(pair: Pair) -> None:
        with fake.lock:
            for row in fake.channels:
                if row["chan_id"] == pair.source.chan_id:
                    row["local_balance"] -= AMOUNT
                    row["remote_balance"] += AMOUNT
                elif row["chan_id"] == pair.target.chan_id:
                    row["local_balance"] += AMOUNT
                    row["remote_balance"] -= AMOUNT

    def later(pair: Pair) -> None:
        asyncio.get_running_loop().call_later(delay, apply, pair)

    runner.on_success.append(later)


def engine_on(
    tmp_path: Path,
    client: LndgClient,
    runner: ScriptedRunner,
    pacing: Pacing,
    fetch_channel: FetchChannel | None,
) -> Engine:
    async def fetch() -> list[Channel]:
        return (await client.fetch_channels()).channels

    settings = load_settings(None, data_dir=tmp_path, max_workers=2)
    store = StateStore(tmp_path / "state.sqlite3")
    return Engine(settings, store, fetch, runner, pacing=pacing, fetch_channel=fetch_channel)


# Short on purpose: the daemon's are 10 s to the first read and 20 s between two.
PACING = Pacing(refresh_seconds=0.1, detail_seconds=0.3, max_snapshot_age=60)
SYNC_DELAY = 0.35


# -- the client --------------------------------------------------------------------------------


async def test_fetch_channel_reads_one_channel_as_the_list_shows_it(fake: FakeLndg) -> None:
    source, _ = chan_ids(fake)
    async with client_for(fake) as client:
        listed = {c.chan_id: c for c in await client.fetch_channels()}
        one = await client.fetch_channel(source)
    assert one == listed[source]
    assert fake.requests[-1].path == f"/api/channels/{source}/"
    assert fake.requests[-1].authorized


async def test_an_unknown_channel_is_a_clear_not_found(fake: FakeLndg) -> None:
    async with client_for(fake) as client:
        with pytest.raises(LndgNotFound) as caught:
            await client.fetch_channel("123456789")
    message = str(caught.value)
    assert f"LNDg at {fake.url}/api/channels/123456789/ has no channel 123456789 (HTTP 404)" in (
        message
    )
    assert PASSWORD not in message
    assert len(fake.requests) == 1  # a 404 is an answer: not retried


async def test_a_strange_id_never_reaches_lndg(fake: FakeLndg) -> None:
    async with client_for(fake) as client:
        for bad in ("../settings/AR-Enabled", "", "12x3", "1" * 21):
            with pytest.raises(ValueError, match="not a channel id"):
                await client.fetch_channel(bad)
    assert fake.requests == []


async def test_an_error_body_or_a_foreign_row_is_a_protocol_error(fake: FakeLndg) -> None:
    source, target = chan_ids(fake)
    async with client_for(fake) as client:
        fake.set_fault("error_body", 1)
        with pytest.raises(LndgProtocolError, match="something other than a channel: database"):
            await client.fetch_channel(source)
        fake.set_fault("missing_fields", 1)
        with pytest.raises(LndgProtocolError, match="capacity: Field required"):
            await client.fetch_channel(source)

    def foreign(request: httpx.Request) -> httpx.Response:
        headers = {key.lower(): value for key, value in request.headers.items()}
        reply = fake.handle("GET", f"/api/channels/{target}/", headers, b"")
        return httpx.Response(reply.status, content=reply.body)

    lying = LndgClient(fake.url, password=PASSWORD, transport=httpx.MockTransport(foreign))
    async with lying:
        with pytest.raises(LndgProtocolError, match=f"channel {target}, not {source}"):
            await lying.fetch_channel(source)


# -- the fake ----------------------------------------------------------------------------------


def test_the_fakes_detail_is_one_row_of_the_list_and_its_log_counts_bytes(
    fake: FakeLndg,
) -> None:
    source, _ = chan_ids(fake)
    with httpx.Client(base_url=fake.url, auth=("lndg-admin", PASSWORD)) as http:
        listed = http.get("/api/channels/", params={"limit": 10}).json()["results"]
        one = http.get(f"/api/channels/{source}/")
        missing = http.get("/api/channels/42/")
        fake.channels[0]["is_open"] = False  # closed: gone from the filtered list, not detail
        closed = http.get(f"/api/channels/{source}/").json()
        filtered = http.get("/api/channels/", params={"is_open": "true"}).json()["results"]
    assert one.json() == listed[0]
    assert (missing.status_code, missing.json()) == (404, {"detail": "Not found."})
    assert closed["is_open"] is False
    assert [r["chan_id"] for r in filtered] == [r["chan_id"] for r in fake.channels[1:]]
    assert fake.traffic(is_detail(source)) == (2, len(one.content) + len(one.content) + 1)
    count, size = fake.traffic(is_list)
    assert count == 2
    assert size > len(one.content)
    assert fake.traffic() == (5, sum(r.body_bytes for r in fake.replies))


# -- the engine --------------------------------------------------------------------------------


async def test_a_success_is_confirmed_through_the_detail_endpoint(
    tmp_path: Path, fake: FakeLndg
) -> None:
    source, target = chan_ids(fake)
    runner = scripted_runner(fake)
    reads: dict[str, list[float]] = {source: [], target: []}
    async with client_for(fake) as client:

        async def fetch_channel(chan_id: str) -> Channel:
            reads[chan_id].append(time.monotonic())
            return await client.fetch_channel(chan_id)

        engine = engine_on(tmp_path, client, runner, PACING, fetch_channel)
        report = await asyncio.wait_for(engine.cycle(), 20)

    # 0 -> 50k -> ... -> 200k: four runs, each after LNDg showed the last one moved
    assert first_pair_runs(runner, fake) == [(source, target)] * 4
    assert len(report.results) == 5
    assert fake.traffic(is_list)[0] == 1  # the cycle's own read, nothing more
    for chan_id in (source, target):
        assert fake.traffic(is_detail(chan_id))[0] == len(reads[chan_id]) >= 4
        gaps = [b - a for a, b in zip(reads[chan_id], reads[chan_id][1:], strict=False)]
        assert min(gaps) >= PACING.detail_seconds - 0.02  # never more often than that


async def test_without_a_detail_reader_the_whole_list_is_read_instead(
    tmp_path: Path, fake: FakeLndg
) -> None:
    source, target = chan_ids(fake)
    runner = scripted_runner(fake)
    async with client_for(fake) as client:
        engine = engine_on(tmp_path, client, runner, PACING, None)
        await asyncio.wait_for(engine.cycle(), 20)
    assert first_pair_runs(runner, fake) == [(source, target)] * 4
    assert fake.traffic(lambda path: is_list(path) is False)[0] == 0
    assert fake.traffic(is_list)[0] >= 4 * int(SYNC_DELAY / PACING.refresh_seconds) - 4


class NoDetailLndg(FakeLndg):
    """An LNDg (or a proxy in front of it) that serves the list but no channel detail."""

    def _detail(self, kind: str, key: str, *args: Any) -> _Reply:
        if kind == "channels":
            return _json_reply(404, {"detail": "Not found."})
        return super()._detail(kind, key, *args)


@pytest.mark.parametrize("failure", ["404", "timeout"])
async def test_a_failed_confirmation_read_never_falls_back_to_the_whole_list(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, failure: str
) -> None:
    kind = NoDetailLndg if failure == "404" else FakeLndg
    with kind(channels=node_rows(), password=PASSWORD) as fake:
        source, target = chan_ids(fake)
        runner = scripted_runner(fake)
        if failure == "timeout":  # the first detail read finds LNDg stuck, once
            fake.slow_seconds = 2.0
            stuck = [fake]

            def stick_once(_pair: Pair) -> None:
                if stuck:
                    stuck.pop().set_fault("slow", 1)

            runner.on_success.append(stick_once)
        caplog.set_level(logging.DEBUG, logger="core.engine")
        async with client_for(fake, timeout=0.3, attempts=1) as client:
            engine = engine_on(tmp_path, client, runner, PACING, client.fetch_channel)
            await asyncio.wait_for(engine.cycle(), 20)
            fake.set_fault(None)
            lists = fake.traffic(is_list)[0]
            await asyncio.wait_for(engine.cycle(), 20)
            lists_after_next = fake.traffic(is_list)[0]

    assert lists == 1  # the cycle's own read: never the whole list to confirm
    warned = [r for r in caplog.records if "not read from LNDg's channel detail" in r.getMessage()]
    gone = [r for r in caplog.records if "is gone from LNDg" in r.getMessage()]
    if failure == "404":
        # LNDg does not know the target any more: no run on it until a list shows it again,
        # and the list is read at the next cycle although CHANNEL_LIST_SECONDS did not pass.
        assert first_pair_runs(runner, fake)[:1] == [(source, target)]
        assert first_pair_runs(runner, fake).count((source, target)) == 2  # once per list
        assert warned == []
        assert gone[0].getMessage().startswith(f"channel {target} is gone from LNDg")
        assert lists_after_next == 2
    else:
        assert first_pair_runs(runner, fake)[:4] == [(source, target)] * 4  # confirmed later
        assert [r.levelno for r in warned if r.levelno >= logging.WARNING] == [logging.WARNING]
        line = warned[0].getMessage()
        assert line.startswith(f"channel {target} not read from LNDg's channel detail (")
        assert "did not answer within 0.3s" in line
        assert line.endswith("); no run starts on channels not read fresh")
        assert lists_after_next == 1  # the next cycle plans on the book


# -- the pure parts ----------------------------------------------------------------------------


def test_confirmations_read_each_channel_at_most_every_spacing() -> None:
    confirms = Confirmations(first_read=10, spacing=20, give_up=90)
    confirms.succeeded(["1", "11"], 100)
    assert confirms.due(105) == []
    assert confirms.next_at() == 110
    assert confirms.due(110) == ["1", "11"]
    confirms.read("1", 110)
    confirms.read("11", 110)
    confirms.succeeded(["1", "12"], 115)  # the source again, for another target
    assert confirms.next_at() == 125
    assert confirms.due(125) == ["12"]  # 1 was read 15 s ago: it waits
    confirms.read("12", 125)
    assert confirms.due(129) == []
    assert confirms.due(130) == ["11", "1"]
    confirms.read("1", 130)
    confirms.read("11", 130)
    assert confirms.due(191) == ["1", "12"]  # 11 waited 91 s: the full reads take over
    confirms.read("1", 191)
    confirms.read("12", 191)
    assert confirms.next_at() is None  # 211 is past their patience (205)
    assert confirms.due(206) == []
    assert confirms.waiting(206) == frozenset()
    assert confirms.next_at() is None


def test_a_row_that_changed_or_left_the_list_is_confirmed() -> None:
    confirms = Confirmations()
    before = [channel(1), channel(11), channel(12)]
    confirms.succeeded(["1", "11", "12"], 0)
    moved = patch(before, channel(11, local_balance=550_000))
    closed = patch(moved, channel(12, is_open=False))
    same = patch(closed, channel(1))
    assert [c.chan_id for c in same] == ["1", "11"]
    assert same[1].local_balance == 550_000
    confirms.settle(before, same)
    assert confirms.waiting(1) == frozenset({"1"})
    assert [c.chan_id for c in patch([channel(1)], channel(2))] == ["1", "2"]


def test_sleep_seconds_below_60_is_warned_with_why() -> None:
    line = sleep_warning(15)
    assert line is not None
    assert line.startswith("SLEEP_SECONDS=15 is below 60: LNDg syncs with LND only about every ")
    assert "each cycle reads LNDg's forwards" in line
    assert sleep_warning(60) is None
    assert sleep_warning(300) is None
    (check,) = check_pace(load_settings(None, sleep_seconds=59))
    assert check.line().startswith("warn settings: SLEEP_SECONDS=59 is below 60: ")
    assert check_pace(load_settings(None, sleep_seconds=60)) == []
