"""Which regolancer runs to start next: per target, most depleted first, best source first.

Pure: no I/O and no clock of its own (the engine passes channels and `now`). The planner
never builds the cross product of sources and targets: it sorts both lists once per call and
walks the targets, giving each the first acceptable source, so a call costs about
O(n log n) in the number of channels plus what it has to skip.

Order. Targets go most depleted first, except that a target whose runs keep failing (its
record says fewer than one in four succeeds) goes to the back of the queue. For a target, the
cheapest route known into it comes first (`core.route_costs`, from the ledger; else the
source of its last success); a few runs a day instead try a source never paid through, capped
just below that price (`_explore`). Then sources by surplus, the fullest first, so the
channels with the least inbound room get some back where forwards come in. The records (the
share of runs that succeeded, from a neutral start) decay, so a channel's bad day is
forgotten. Nothing is ever left idle by this: a demoted target still gets a worker when
nothing better is waiting.

What else it remembers between calls:
- per pair, an exponential backoff after failed runs (reset by a success). A backoff orders,
  it does not idle: a worker that has nothing else to do retries the waiting pair whose
  backoff ends first (`retry_when_idle`; not sooner than `retry_after_seconds` after its last
  failure), so a hard target keeps being worked on while every other target is done or busy;
- per channel, the role it last had (the ping-pong guard: a recent target is no source, and
  a recent source no target, for `ping_pong_seconds`);
- per round (one engine cycle), what each target already had: a target whose run succeeded
  gets its next run only once LNDg shows its balance moved; one whose runs failed tries its
  next untried sources, yielding to other targets after `failures_per_round` failures.

Channels with more than `max_pending_htlcs` HTLCs in flight are left alone: their balances
are about to change and a rebalance through them fails more often.

History. `learn` seeds the records and the known-good routes from what happened before this
planner existed (`core.history`: the node's rebalances in LNDg, our own past runs), so a
fresh start does not have to find the working routes again by failing on the others.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace

from core.history import Observation
from core.models import Channel, Outcome, Pair, RunResult, StatLine
from core.pairing import make_pair, same_peer, sources, targets
from core.route_costs import RouteCosts
from core.settings import Settings


@dataclass(frozen=True, slots=True)
class PlannerConfig:
    """The planner's knobs; `from_settings` maps the first six to environment variables.

    The rest are tuning constants of the policy.
    """

    backoff_seconds: float = 1800.0
    backoff_max_seconds: float = 86_400.0
    ping_pong_seconds: float = 3600.0
    max_pending_htlcs: int = 10
    retry_when_idle: bool = True
    # An idle retry comes no sooner than this after the pair's last failure (SLEEP_SECONDS:
    # never more often than the original tool tried every pair), so a pair that fails at
    # once is not restarted in a tight loop.
    retry_after_seconds: float = 300.0
    failures_per_round: int = 3
    confirm_seconds: float = 90.0
    # A record keeps this share of its weight at each new outcome (about 20 outcomes).
    record_decay: float = 0.95
    # A target whose record is below this (e.g. 3 failures, no success) waits at the back.
    poor_record: float = 0.25
    # Per target and period, at most this many runs try a source never paid through, capped
    # below the cheapest route known into the target: a cheaper route, or a short failure.
    explore_runs: int = 3
    explore_period_seconds: float = 86_400.0

    @classmethod
    def from_settings(cls, settings: Settings) -> PlannerConfig:
        return cls(
            backoff_seconds=settings.failure_cooldown_seconds,
            backoff_max_seconds=max(
                settings.failure_cooldown_max_seconds, settings.failure_cooldown_seconds
            ),
            ping_pong_seconds=settings.ping_pong_guard_seconds,
            max_pending_htlcs=settings.max_pending_htlcs,
            retry_when_idle=settings.retry_when_idle,
            retry_after_seconds=settings.sleep_seconds,
        )


@dataclass(frozen=True, slots=True)
class PolicySwitches:
    """Which parts of the policy are on: all of them, always, in the daemon.

    Not configuration: the simulation (`bench/`) turns parts off one at a time to measure
    what each is worth.
    """

    follow_plan: bool = True  # a target's first run of the round takes the plan's source
    prefer_proven: bool = True  # the source of a target's last success comes first
    demote_targets: bool = True  # a target with a poor record waits at the back
    cheapest_known: bool = True  # of the sources that paid into a target, the cheapest first
    explore_cheaper: bool = True  # a few runs per day look for a route below the cheapest


@dataclass(slots=True)
class Backoff:
    """A pair's consecutive failures, when the last one ended, and when it may run again."""

    failures: int
    until: float
    failed_at: float


@dataclass(slots=True)
class Record:
    """A channel's recent run outcomes, decayed: its success rate from a neutral start."""

    wins: float = 0.0
    losses: float = 0.0

    @property
    def score(self) -> float:
        return (self.wins + 1) / (self.wins + self.losses + 2)


@dataclass(slots=True)
class _TargetRound:
    """What a target already had in the current round."""

    seen_local: int  # its effective local balance when its last run was planned
    tried: set[str] = field(default_factory=set)  # sources tried since its balance moved
    failures: int = 0
    succeeded_at: float | None = None  # a success LNDg has not shown yet
    running: bool = False


class Planner:
    """Plans runs from channel snapshots; remembers backoffs, records, roles and the round."""

    def __init__(
        self, config: PlannerConfig | None = None, switches: PolicySwitches | None = None
    ) -> None:
        self.config = config or PlannerConfig()
        self.switches = switches or PolicySwitches()
        # Backoffs by target, then source (an idle worker looks up a target's waiting pairs).
        self._backoff: dict[str, dict[str, Backoff]] = {}
        self._records: dict[str, Record] = {}
        self._proven: dict[str, str] = {}  # target -> source of its last successful run
        self._roles: dict[str, tuple[bool, float]] = {}  # chan_id -> (was a target, when)
        self._round: dict[str, _TargetRound] = {}
        self._planned: dict[str, str] = {}  # target -> the source the round plan gave it
        self.costs = RouteCosts()  # what each route that worked cost (the ledger's lines)
        self._explored: dict[str, list[float]] = {}  # target -> when its explorations started

    # --- memory -------------------------------------------------------------------------

    def begin_round(self, plan: Iterable[Pair] = ()) -> None:
        """Forget what targets had in the last round; their first runs follow `plan`.

        A target whose run is still going (carried over) keeps it as this round's run.
        """
        self._round = {t: s for t, s in self._round.items() if s.running}
        self._planned = {
            p.target.chan_id: p.source.chan_id for p in plan if p.target.chan_id not in self._round
        }

    def started(self, pair: Pair, now: float) -> None:
        """A run of `pair` started; its channels are those of the snapshot it was planned on."""
        target = pair.target.chan_id
        state = self._round.get(target)
        if state is None or state.seen_local != pair.target.effective_local:
            state = self._round[target] = _TargetRound(pair.target.effective_local)
        state.tried.add(pair.source.chan_id)
        state.running = True
        if self._exploring(pair.source.chan_id, target):
            self._explored.setdefault(target, []).append(now)
        self._planned.pop(target, None)
        self._roles[pair.source.chan_id] = (False, now)
        self._roles[target] = (True, now)

    def finished(self, pair: Pair, result: RunResult, now: float) -> None:
        """A run of `pair` ended: learn from it, back the pair off after a route failure."""
        state = self._round.get(pair.target.chan_id)
        if state is not None:
            state.running = False
        outcome = result.outcome
        source, target = pair.key
        if outcome == Outcome.SUCCESS:
            self._backoff.get(target, {}).pop(source, None)
            self._proven[target] = source
            self._learn(source, won=True)
            self._learn(target, won=True)
            if state is not None:
                state.succeeded_at = now
            return
        if outcome.says_nothing_of_route:
            return
        if state is not None:
            state.failures += 1
        if not result.failed_on_route:
            return  # regolancer saw fresher balances than our snapshot: no route was tried
        if self._proven.get(target) == source:
            del self._proven[target]
        self._learn(source, won=False)
        self._learn(target, won=False)
        entry = self._backoff.get(target, {}).get(source)
        failures = 1 if entry is None else entry.failures + 1
        wait = min(
            self.config.backoff_seconds * 2 ** min(failures - 1, 30),
            self.config.backoff_max_seconds,
        )
        self._backoff.setdefault(target, {})[source] = Backoff(failures, now + wait, now)

    def learn(self, observations: Iterable[Observation]) -> int:
        """Seed the records and known-good routes from history, oldest first; returns how many.

        Past failures set no backoff: they are old news, but they do count against the
        channels' records, so sources and targets that keep failing come last.
        """
        count = 0
        for seen in sorted(observations, key=lambda o: o.at):
            count += 1
            self._learn(seen.target, won=seen.won)
            if seen.source is None:
                continue
            self._learn(seen.source, won=seen.won)
            if seen.won:
                self._proven[seen.target] = seen.source
            elif self._proven.get(seen.target) == seen.source:
                del self._proven[seen.target]
        return count

    def paid(self, lines: Iterable[StatLine]) -> None:
        """Learn what routes cost from ledger lines (a target then goes by its cheapest)."""
        self.costs.learn(lines)

    def _learn(self, chan_id: str, *, won: bool) -> None:
        record = self._records.setdefault(chan_id, Record())
        record.wins *= self.config.record_decay
        record.losses *= self.config.record_decay
        if won:
            record.wins += 1
        else:
            record.losses += 1

    def record(self, chan_id: str) -> Record:
        """The channel's record (a fresh one if it never ran)."""
        return self._records.get(chan_id) or Record()

    def backoff(self, key: tuple[str, str], now: float) -> Backoff | None:
        """The pair's backoff if it is still waiting at `now`."""
        source, target = key
        entry = self._backoff.get(target, {}).get(source)
        return entry if entry is not None and entry.until > now else None

    def awaiting_confirmation(self, now: float) -> bool:
        """True while a recent success of this round is not visible in LNDg's balances yet."""
        limit = now - self.config.confirm_seconds
        return any(
            s.succeeded_at is not None and s.succeeded_at >= limit for s in self._round.values()
        )

    def prune(self, now: float) -> None:
        """Drop backoffs and roles that no longer matter (keeps memory flat on big nodes)."""
        keep = now - self.config.backoff_max_seconds
        kept = {t: {s: b for s, b in w.items() if b.until > keep} for t, w in self._backoff.items()}
        self._backoff = {t: waiting for t, waiting in kept.items() if waiting}
        horizon = now - self.config.ping_pong_seconds
        self._roles = {c: r for c, r in self._roles.items() if r[1] > horizon}

    # --- planning -----------------------------------------------------------------------

    def candidates(
        self, channels: Iterable[Channel], now: float, excluded: Collection[str] = ()
    ) -> tuple[list[Channel], list[Channel]]:
        """Sources and targets the guards allow, in the order they are offered (see above)."""
        allowed = [c for c in channels if c.htlc_count <= self.config.max_pending_htlcs]
        guard = now - self.config.ping_pong_seconds
        recent = {c: was_target for c, (was_target, at) in self._roles.items() if at > guard}
        found_sources = [s for s in sources(allowed, excluded) if not recent.get(s.chan_id, False)]
        found_targets = [t for t in targets(allowed, excluded) if recent.get(t.chan_id, True)]
        # Both lists are sorted already (surplus, depletion); these sorts are stable.
        # Sources stay by surplus, whatever their record: the fullest have the least inbound
        # room for the forwards that come in through them (ranking by record drained the
        # same few lucky sources, and earned less; README "Net earnings").
        if self.switches.demote_targets and self._records:
            poor = self.config.poor_record
            found_targets.sort(key=lambda c: self.record(c.chan_id).score < poor)
        return found_sources, found_targets

    def plan(
        self, channels: Iterable[Channel], now: float, excluded: Collection[str] = ()
    ) -> list[Pair]:
        """The round plan: one run per target, most depleted first, each with its best source.

        The source of the target's last success comes first (a route known to work). Else a
        source no other target of the plan has is preferred, so the plan's runs can go side
        by side; a target left without one gets the best source anyway (it waits for it).
        Pairs in backoff are skipped. This is what /dryrun shows and what a round starts with.
        """
        ordered_sources, ordered_targets = self.candidates(channels, now, excluded)
        by_id = {s.chan_id: s for s in ordered_sources}
        # Known-good routes first: each source goes to the most depleted target it served.
        proven: dict[str, Pair] = {}
        used: set[str] = set()
        for target in ordered_targets:
            pair = self._proven_pair(target, by_id, now)
            if pair is not None and pair.source.chan_id not in used:
                proven[target.chan_id] = pair
                used.add(pair.source.chan_id)
        first_free = 0
        planned: list[Pair] = []
        for target in ordered_targets:
            pair = proven.get(target.chan_id)
            if pair is None:
                while (
                    first_free < len(ordered_sources)
                    and ordered_sources[first_free].chan_id in used
                ):
                    first_free += 1
                pair = self._first_source(
                    target, ordered_sources, first_free, now, skip=used
                ) or self._first_source(target, ordered_sources, 0, now)
            if pair is not None:
                used.add(pair.source.chan_id)
                planned.append(pair)
        return planned

    def next_pairs(
        self,
        channels: Iterable[Channel],
        busy: Collection[str],
        free_workers: int,
        now: float,
        excluded: Collection[str] = (),
    ) -> list[Pair]:
        """Up to `free_workers` pairs to start now, disjoint from `busy` and from each other.

        Targets go most depleted first. A target's first run of the round takes the source
        the round plan gave it (waiting while that source is busy); later runs take the best
        free source. A target whose last run succeeded waits until the snapshot shows its
        balance moved; one whose runs failed tries sources it has not tried since. Workers
        still free after that retry pairs in backoff, the soonest to end first.
        """
        if free_workers <= 0:
            return []
        ordered_sources, ordered_targets = self.candidates(channels, now, excluded)
        self._observe(ordered_targets)
        by_id = {s.chan_id: s for s in ordered_sources}
        taken: set[str] = set(busy)
        picked: list[Pair] = []
        # Targets that failed `failures_per_round` times this round yield to the others, and
        # go on with their untried sources only when a worker has nothing better to do.
        cap = self.config.failures_per_round
        patient = [t for t in ordered_targets if not self._capped(t.chan_id, cap)]
        yielding = [t for t in ordered_targets if self._capped(t.chan_id, cap)]
        for target in (*patient, *yielding):
            if len(picked) >= free_workers:
                break
            if target.chan_id in taken:
                continue
            pair = self._pick(target, ordered_sources, by_id, taken, now)
            if pair is not None:
                picked.append(pair)
                taken |= pair.channels
        if len(picked) < free_workers and self.config.retry_when_idle:
            for target in (*patient, *yielding):
                if len(picked) >= free_workers:
                    break
                if target.chan_id in taken:
                    continue
                pair = self._retry(target, by_id, taken, now)
                if pair is not None:
                    picked.append(pair)
                    taken |= pair.channels
        return picked

    def _retry(
        self, target: Channel, by_id: dict[str, Channel], taken: Collection[str], now: float
    ) -> Pair | None:
        """For an otherwise idle worker: the target's pair whose backoff ends (or ended) first.

        Pairs whose backoff already ended come first: the round skipped them only because
        they were tried in it. A pair that failed less than `retry_after_seconds` ago waits.
        """
        state = self._round.get(target.chan_id)
        if state is not None and state.succeeded_at is not None:
            return None  # wait until LNDg shows what the success moved
        waiting = sorted(
            (entry.until, source)
            for source, entry in self._backoff.get(target.chan_id, {}).items()
            if source in by_id
            and source not in taken
            and now >= entry.failed_at + self.config.retry_after_seconds
        )
        for _, source in waiting:
            pair = make_pair(by_id[source], target)
            if pair is not None:
                return pair
        return None

    def _capped(self, target: str, cap: int) -> bool:
        state = self._round.get(target)
        return state is not None and state.failures >= cap

    def _observe(self, current_targets: Sequence[Channel]) -> None:
        """Update the round memory from a snapshot: moved balances make a target fresh."""
        locals_now = {t.chan_id: t.effective_local for t in current_targets}
        for chan_id in list(self._round):
            state = self._round[chan_id]
            if state.running:
                continue
            local = locals_now.get(chan_id)
            if local is None:  # no longer a target (refilled, excluded or closed)
                del self._round[chan_id]
            elif local != state.seen_local:
                self._round[chan_id] = _TargetRound(local)

    def _pick(
        self,
        target: Channel,
        ordered_sources: Sequence[Channel],
        by_id: dict[str, Channel],
        taken: Collection[str],
        now: float,
    ) -> Pair | None:
        state = self._round.get(target.chan_id)
        if state is not None and state.succeeded_at is not None:
            return None  # wait until LNDg shows what the success moved
        planned = self._planned.get(target.chan_id) if self.switches.follow_plan else None
        if planned is not None:
            source = by_id.get(planned)
            if source is not None and self._acceptable(source, target, now):
                return make_pair(source, target) if source.chan_id not in taken else None
        tried = state.tried if state is not None else set()
        explore = self._explore(target, ordered_sources, taken, tried, now)
        if explore is not None:
            return explore
        proven = self._proven_pair(target, by_id, now)
        if proven is not None and not ({proven.source.chan_id} & (set(taken) | tried)):
            return proven
        return self._first_source(target, ordered_sources, 0, now, skip=taken, tried=tried)

    def _exploring(self, source: str, target: str) -> bool:
        """A run of a source never paid through into a target some route is known into."""
        return self.costs.ppm(source, target) is None and bool(self.costs.known(target))

    def _explore(
        self,
        target: Channel,
        ordered_sources: Sequence[Channel],
        taken: Collection[str],
        tried: Collection[str],
        now: float,
    ) -> Pair | None:
        """A run that pays only below the cheapest route known into `target`, through the
        best source never paid through; None when not due.

        Due while the target had fewer than `explore_runs` such runs in the last
        `explore_period_seconds` and the cheapest price leaves room above the peer's own fee
        into us (the last hop, which every route pays). Its fee cap is that price less one:
        it pays less or fails, and a failure backs the pair off as any other.
        """
        if not self.switches.explore_cheaper:
            return None
        chan_id = target.chan_id
        best = self.costs.lowest(chan_id)
        if best is None or best - 1 <= target.remote_fee_rate:
            return None
        since = now - self.config.explore_period_seconds
        recent = [at for at in self._explored.get(chan_id, []) if at > since]
        self._explored[chan_id] = recent
        if len(recent) >= self.config.explore_runs:
            return None
        paid = self.costs.known(chan_id)
        pair = self._first_source(
            target, ordered_sources, 0, now, skip={*taken, *paid}, tried=tried
        )
        return None if pair is None else replace(pair, fee_limit_ppm=best - 1)

    def _proven_pair(self, target: Channel, by_id: dict[str, Channel], now: float) -> Pair | None:
        """The target's cheapest known route (else its last successful pair), if its source
        is still an acceptable source.

        Cheapest: of the sources whose runs paid into the target, the one whose last payment
        cost the fewest ppm; sources backed off after a failure are passed over meanwhile.
        """
        if not self.switches.prefer_proven:
            return None
        if self.switches.cheapest_known:
            cheap = self.costs.cheapest(
                target.chan_id,
                lambda s: s in by_id and self._acceptable(by_id[s], target, now),
            )
            if cheap is not None:
                return make_pair(by_id[cheap], target)
        source = by_id.get(self._proven.get(target.chan_id, ""))
        if source is None or not self._acceptable(source, target, now):
            return None
        return make_pair(source, target)

    def _first_source(
        self,
        target: Channel,
        ordered_sources: Sequence[Channel],
        start: int,
        now: float,
        *,
        skip: Collection[str] = (),
        tried: Collection[str] = (),
    ) -> Pair | None:
        for index in range(start, len(ordered_sources)):
            source = ordered_sources[index]
            if source.chan_id in skip or source.chan_id in tried:
                continue
            if self._acceptable(source, target, now):
                return make_pair(source, target)
        return None

    def _acceptable(self, source: Channel, target: Channel, now: float) -> bool:
        if same_peer(source, target):
            return False
        return self.backoff((source.chan_id, target.chan_id), now) is None
