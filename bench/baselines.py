"""What an operator would run instead of the daemon, on the same simulated node (`bench.simulate`).

- `run_original`: the original tool's current scheduling (brbgyn/regolancer-orchestrator's
  `worker_loop`): each of MAX_WORKERS workers on its own fetches the channels, builds the
  pairing rule's cross product, shuffles it (RANDOMIZE_PAIRS), runs its pairs one after the
  other until MAX_CYCLE_SECONDS (300) have passed since its cycle began (checked before each
  pair), then sleeps SLEEP_SECONDS (15, its .env.example) and fetches again. No channel locks:
  two workers may run the same pair. Runs use the template (its fee cap, the bench's amount).
- `run_lndg`: LNDg's own auto-rebalancer (rebalancer.py, contracts/lndg.md): every 30 s its
  manager queues one attempt per auto-rebalanced peer that needs inbound-side refilling and
  has none pending, most depleted first, if `local_fee_rate x ar_max_cost` beats the peer's
  fee and the last attempt into that peer succeeded or failed more than AR-WaitPeriod ago.
  An attempt offers every source at once (LND picks the route), moves `ar_amt_target` within
  `min(AR-MaxFeeRate, local_fee_rate x ar_max_cost)` ppm, for AR-Time (5 min). A success is
  followed at once by an attempt of 1.21x (1 min), a failed follow-up above 69,420 sat by one
  of half; a failed first attempt ends (LND's liquidity estimate is not modelled).
- `run_early`: the original tool as first published: the whole cross product per cycle, run
  in order on the workers, the cycle awaited, then SLEEP_SECONDS.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

from bench.shuffle import shuffled_range
from bench.simulate import Meter, SideResult, SimConfig, SimNode, SimRunner, _drive, _result
from core.models import Channel, Pair
from core.node_records import ArSettings
from core.pairing import PairView
from sim.nodes import node_channels

MAX_CYCLE_SECONDS = 300.0  # the original's per-worker cycle cap
ORIGINAL_SLEEP_SECONDS = 15.0  # its .env.example
LNDG_MANAGER_SECONDS = 30.0  # LNDg's queue manager looks for work this often
LNDG_FIRST_MINUTES = 5  # AR-Time: an attempt's duration (timeout)
LNDG_FOLLOW_MINUTES = 1  # a follow-up's
LNDG_GROWTH = 1.21  # value of the follow-up after a success
LNDG_HALVE_ABOVE = 69_420  # a failed follow-up above this many sats is retried at half
LNDG_TRY_SECONDS = 60.0  # median time LND spends on one outgoing channel that fails


def _setup(config: SimConfig) -> tuple[SimNode, Meter, SimRunner]:
    node = SimNode(node_channels(config.channels, config.seed), config)
    meter = Meter(config.workers, available=node.available_work(0.0))
    return node, meter, SimRunner(node, meter, config.seed)


async def run_original(config: SimConfig) -> SideResult:
    """The original tool's current scheduling on the simulated node, until the horizon."""
    node, meter, runner = _setup(config)
    loop = asyncio.get_running_loop()

    async def worker(number: int) -> None:
        rng = random.Random(f"{config.seed}:original:{number}")
        while True:
            began = loop.time()
            # The cross product, shuffled: its positions are shuffled as the list would be
            # (the same draws), and a pair is made only when the walk reaches it.
            pairs = PairView(await node.fetch())
            order = shuffled_range(rng, len(pairs))
            for index in order:
                if loop.time() - began > MAX_CYCLE_SECONDS:
                    break  # "CYCLE TIMEOUT ... restarting cycle"
                await runner.run(pairs[index], number)
            await asyncio.sleep(ORIGINAL_SLEEP_SECONDS)

    async def workers() -> None:
        await asyncio.gather(*(worker(n) for n in range(1, config.workers + 1)))

    end = await _drive(node, meter, asyncio.create_task(workers()), config.horizon_hours * 3600)
    return _result("original", node, meter, end)


async def run_early(config: SimConfig) -> SideResult:
    """The original tool as first published on the same simulated node."""
    node, meter, runner = _setup(config)

    async def original() -> None:
        while True:
            pairs = iter(PairView(await node.fetch()))  # the cross product, every cycle
            workers = (_work_through(pairs, runner, n) for n in range(1, config.workers + 1))
            await asyncio.gather(*workers)
            await asyncio.sleep(config.sleep_seconds)  # after the whole cycle

    end = await _drive(node, meter, asyncio.create_task(original()), config.horizon_hours * 3600)
    return _result("early", node, meter, end)


async def _work_through(pairs: Iterator[Pair], runner: SimRunner, worker: int) -> None:
    """One of the early tool's workers: the next pair of the cycle, whatever it shares."""
    for pair in pairs:
        await runner.run(pair, worker)


# --- LNDg's auto-rebalancer ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Attempt:
    """One Rebalancer row LNDg queues: into `target`'s peer, `value` sats, `fee_limit` sats."""

    target: str
    value: int
    fee_limit: float
    minutes: int


@dataclass(frozen=True, slots=True)
class Last:
    """The last attempt into a peer that left the pending state (LNDg's scheduling reads it)."""

    succeeded: bool
    start: float
    stop: float | None  # None: in flight
    minutes: int


def _outbound_pct(channel: Channel, less: float = 0.0) -> float:
    return (channel.local_balance + channel.pending_outbound - less) * 100 // channel.capacity


def _needs(channel: Channel) -> bool:
    """LNDg's `inbound_can >= 1`: inbound % (integer) at least `ar_in_target`."""
    inbound = (channel.remote_balance + channel.pending_inbound) * 100 // channel.capacity
    return channel.ar_in_target > 0 and inbound // channel.ar_in_target >= 1


def _sources(channels: list[Channel], target_peer: str, value: float) -> list[Channel]:
    """`get_out_cans`: channels without AR whose outbound % after `value` stays at target."""
    return [
        c
        for c in channels
        if not c.auto_rebalance
        and c.capacity
        and _outbound_pct(c, value) >= c.ar_out_target
        and c.remote_pubkey != target_peer
    ]


class LndgRebalancer:
    """LNDg's queue manager and AR-Workers on the simulated node (see the module doc)."""

    def __init__(
        self, node: SimNode, meter: Meter, config: SimConfig, ar: ArSettings | None = None
    ) -> None:
        self.node = node
        self.meter = meter
        self.config = config
        self.ar = ar or ArSettings()
        self.queue: asyncio.Queue[Attempt] = asyncio.Queue()
        self.pending: set[str] = set()  # target peers with an attempt queued (status 0)
        self.last: dict[str, Last] = {}  # by target peer
        self._number = 0

    def lndg_view(self) -> list[Channel]:
        """LNDg's database: balances as of its last sync."""
        return self.node.listed()

    def may_try(self, peer: str, now: float) -> bool:
        """The AR-WaitPeriod rule on the last attempt into `peer`."""
        last = self.last.get(peer)
        if last is None or (last.succeeded and last.stop is not None):
            return True
        wait = self.ar.wait_period_minutes
        if last.stop is None:  # in flight
            return int((now - last.start) / 60) + last.minutes > wait
        return int((now - last.stop) / 60) > wait

    def schedule(self, now: float) -> list[Attempt]:
        """`auto_schedule`: the attempts queued at `now`."""
        channels = self.lndg_view()
        if not any(not c.auto_rebalance and _outbound_pct(c) >= c.ar_out_target for c in channels):
            return []
        targets = [
            c
            for c in channels
            if c.auto_rebalance and _needs(c) and c.remote_pubkey not in self.pending
        ]
        targets.sort(
            key=lambda c: (
                -((c.remote_balance + c.pending_inbound) * 100 // c.capacity) // c.ar_in_target
            )
        )
        queued: list[Attempt] = []
        for target in targets:
            rate = int(target.local_fee_rate * (target.ar_max_cost / 100))
            if not (rate > 0 and rate > target.remote_fee_rate):
                continue
            value = target.ar_amt_target
            fee = round(min(rate, self.ar.max_fee_rate_ppm) * value * 0.000001, 3)
            if fee == 0 or not self.may_try(target.remote_pubkey, now):
                continue
            queued.append(Attempt(target.chan_id, value, fee, LNDG_FIRST_MINUTES))
            self.pending.add(target.remote_pubkey)
        return queued

    async def manager(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            for attempt in self.schedule(loop.time()):
                self.queue.put_nowait(attempt)
            await asyncio.sleep(LNDG_MANAGER_SECONDS)

    async def worker(self, number: int) -> None:
        while True:
            attempt: Attempt | None = await self.queue.get()
            assert attempt is not None
            self.pending.discard(self.node.channels[attempt.target].remote_pubkey)
            while attempt is not None:
                attempt = await self.run(attempt, number)

    async def run(self, attempt: Attempt, worker: int) -> Attempt | None:
        """`run_rebalancer`: one attempt; returns LNDg's follow-up, if any."""
        node, loop = self.node, asyncio.get_running_loop()
        target = node.channels[attempt.target]
        peer = target.remote_pubkey
        started = loop.time()
        self.meter.runs += 1
        self.meter.change(started, busy=+1)
        self.last[peer] = Last(False, started, None, attempt.minutes)
        try:
            succeeded = await self._pay(attempt, started, worker)
        finally:
            now = loop.time()
            self.meter.change(now, busy=-1)
        self.last[peer] = Last(succeeded, started, now, attempt.minutes)
        if not succeeded:
            self.meter.wasted += 1
            self.meter.futile.append((now, now - started))
        view = self.lndg_view()
        live = node.view(attempt.target)
        if succeeded:
            value = attempt.value * LNDG_GROWTH
            if _needs(live) and _sources(view, peer, value):
                return Attempt(
                    attempt.target,
                    int(value),
                    round(attempt.fee_limit * LNDG_GROWTH, 3),
                    LNDG_FOLLOW_MINUTES,
                )
            return None
        if attempt.value > LNDG_HALVE_ABOVE and attempt.minutes == LNDG_FOLLOW_MINUTES:
            half = attempt.value / 2
            if _needs(live) and _sources(view, peer, attempt.value):
                return Attempt(
                    attempt.target, int(half), round(attempt.fee_limit / 2, 3), LNDG_FOLLOW_MINUTES
                )
        return None

    async def _pay(self, attempt: Attempt, started: float, worker: int) -> bool:
        """LND's payment with every source offered, until one pays or the time is up."""
        node, loop = self.node, asyncio.get_running_loop()
        target = attempt.target
        offered = [
            c.chan_id
            for c in _sources(self.lndg_view(), node.channels[target].remote_pubkey, attempt.value)
        ]
        if not offered:
            return False  # 406: no outbound candidates (LNDg records it at once)
        self._number += 1
        rng = random.Random(f"{self.config.seed}:lndg:{target}:{self._number}")
        rng.shuffle(offered)
        cap = math.floor(attempt.fee_limit * 1_000_000 / attempt.value)
        deadline = started + attempt.minutes * 60
        for source in offered:
            if not node.within(source, target, cap):
                continue  # LND's pathfinding leaves routes above the fee limit out
            if node.finds_route(source, target, rng, loop.time()):
                took = _lognormal(rng, self.config.success_median_seconds, 0.7, 10.0)
                if loop.time() + took > deadline:
                    break
                await asyncio.sleep(took)
                if node.headroom(source, target) >= attempt.value:
                    node.rebalance(source, target, attempt.value, loop.time(), self.meter)
                    return True
                continue  # the balance moved meanwhile: that route fails
            took = _lognormal(rng, LNDG_TRY_SECONDS, 0.8, 5.0)
            if loop.time() + took >= deadline:
                await asyncio.sleep(max(deadline - loop.time(), 0.0))
                return False
            await asyncio.sleep(took)
        return False


def _lognormal(rng: random.Random, median: float, sigma: float, low: float) -> float:
    return max(median * math.exp(rng.gauss(0, sigma)), low)


async def run_lndg(config: SimConfig) -> SideResult:
    """LNDg's own auto-rebalancer (AR-Workers = the bench's workers) on the simulated node."""
    node, meter, _runner = _setup(config)
    lndg = LndgRebalancer(node, meter, config)

    async def rebalancer() -> None:
        workers = (lndg.worker(n) for n in range(1, config.workers + 1))
        await asyncio.gather(lndg.manager(), *workers)

    end = await _drive(node, meter, asyncio.create_task(rebalancer()), config.horizon_hours * 3600)
    return _result("lndg", node, meter, end)
