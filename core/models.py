"""The operator's nouns: channels, pairs, runs and rebalances.

Plain values shared by every part of the engine. Nothing here does I/O.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

# Lightning's mainnet began in 2018: no payment, and nothing LNDg holds, is older.
LIGHTNING_MAINNET = dt.date(2018, 1, 1)

# LND packs a short channel id BLOCKxTXxOUT into one uint64: block<<40 | tx<<16 | out.
_BLOCK_SHIFT = 40
_TX_SHIFT = 16


def short_id_to_chan_id(short_id: str) -> str:
    """Turn `800000x1234x1` into LND's decimal chan_id; ValueError when it is not one."""
    parts = short_id.lower().split("x")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"{short_id!r} is not a short channel id like 800000x1234x1")
    block, tx, out = (int(p) for p in parts)
    if block >= 1 << 24 or tx >= 1 << 24 or out >= 1 << 16:
        raise ValueError(f"{short_id!r} is out of range for a short channel id")
    return str(block << _BLOCK_SHIFT | tx << _TX_SHIFT | out)


def chan_id_to_short_id(chan_id: str) -> str:
    """Turn LND's decimal chan_id into `BLOCKxTXxOUT`."""
    value = int(chan_id)
    return f"{value >> _BLOCK_SHIFT}x{(value >> _TX_SHIFT) & 0xFFFFFF}x{value & 0xFFFF}"


class Channel(BaseModel):
    """One channel as LNDg reports it; only the fields the orchestrator uses."""

    model_config = ConfigDict(frozen=True, extra="ignore", strict=False)

    chan_id: str = Field(pattern=r"^\d{1,20}$")
    short_chan_id: str = ""
    remote_pubkey: str
    alias: str = ""
    capacity: int = Field(ge=0)
    local_balance: int = Field(ge=0)
    remote_balance: int = Field(ge=0)
    pending_outbound: int = Field(default=0, ge=0)
    pending_inbound: int = Field(default=0, ge=0)
    local_fee_rate: int = 0
    # The peer's fee rate into us (ppm): what the last hop of a rebalance into this channel
    # costs at least; LNDg refills a target only while its fee cap stays above it.
    remote_fee_rate: int = 0
    htlc_count: int = 0
    is_open: bool
    is_active: bool
    private: bool
    auto_rebalance: bool
    # LNDg does no range check (150 and -5 are stored as given); only the field a channel's
    # role uses is judged, by core.pairing, so an odd value elsewhere does not drop the row.
    ar_out_target: int
    ar_in_target: int
    # LNDg's per-channel refill size (sats) and the share (%) of local_fee_rate it may spend
    # to refill it. 0 only when LNDg never filled them in (it does on its first sync).
    ar_amt_target: int = 0
    ar_max_cost: int = 0

    @property
    def effective_local(self) -> int:
        """Local balance with our in-flight outgoing HTLCs counted, as LNDg's AR does."""
        return self.local_balance + self.pending_outbound

    @property
    def local_pct(self) -> int:
        """Integer outbound percentage (LNDg's rule); 0 for a zero-capacity channel."""
        if self.capacity <= 0:
            return 0
        return self.effective_local * 100 // self.capacity

    @property
    def label(self) -> str:
        """What the operator calls this channel: its alias, else its short id."""
        return self.alias or self.short_chan_id or self.chan_id


@dataclass(frozen=True, slots=True)
class Pair:
    """A source with surplus outbound, a target that needs outbound, and regolancer's bounds."""

    source: Channel
    target: Channel
    pfrom: int
    pto: int
    # This run's own limits (FEE_POLICY=lndg, core.spending.run_limits); None: the template's.
    fee_limit_ppm: int | None = None
    amount: int | None = None
    # False: this run must not double its amount (regolancer's allow_rapid_rebalance), because
    # its earnings budget could not pay for it; None: the template's.
    rapid: bool | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.source.chan_id, self.target.chan_id)

    @property
    def channels(self) -> frozenset[str]:
        return frozenset(self.key)

    def log_line(self) -> str:
        """The original tool's pair line, kept so existing log greps keep working."""
        return (
            f"SRC {self.source.label} (LOCAL {self.source.local_pct}%) -> "
            f"TGT {self.target.label} (LOCAL {self.target.local_pct}%)"
        )


class Outcome(enum.StrEnum):
    """How one regolancer run ended: a small closed set, so runs can be counted."""

    SUCCESS = "success"
    NO_ROUTE = "no_route"
    # regolancer refused the pair by its own live balances, fresher than our snapshot
    # ("no channelpairs available"): no route was tried, and the pair no longer qualifies.
    NOT_QUALIFIED = "not_qualified"
    REBALANCE_TIMEOUT = "rebalance_timeout"
    ROUTE_TIMEOUT = "route_timeout"
    LND_ERROR = "lnd_error"
    CRASHED = "crashed"
    KILLED = "killed"
    BINARY_MISSING = "binary_missing"
    # Our side failed to start or follow the run (worker log or config not writable, no
    # file descriptors): says nothing of the route, and is a fault of this host.
    START_FAILED = "start_failed"
    STOPPED = "stopped"
    DRY_RUN = "dry_run"

    @property
    def describe(self) -> str:
        return _OUTCOME_TEXT[self]

    @property
    def is_failure(self) -> bool:
        """An attempt that moved nothing (a pair that no longer qualified was not attempted)."""
        return self not in (
            Outcome.SUCCESS,
            Outcome.DRY_RUN,
            Outcome.STOPPED,
            Outcome.NOT_QUALIFIED,
        )

    @property
    def says_nothing_of_route(self) -> bool:
        """The node or the setup failed, or we stopped the run: no verdict on its pair."""
        return self in _NEUTRAL_OUTCOMES


_NEUTRAL_OUTCOMES = frozenset(
    {
        Outcome.STOPPED,
        Outcome.DRY_RUN,
        Outcome.LND_ERROR,
        Outcome.BINARY_MISSING,
        Outcome.START_FAILED,
    }
)

_OUTCOME_TEXT = {
    Outcome.SUCCESS: "success",
    Outcome.NO_ROUTE: "no route",
    Outcome.NOT_QUALIFIED: "pair no longer qualifies",
    Outcome.REBALANCE_TIMEOUT: "rebalance timed out",
    Outcome.ROUTE_TIMEOUT: "route search timed out",
    Outcome.LND_ERROR: "LND or config error",
    Outcome.CRASHED: "crashed",
    Outcome.KILLED: "killed at our time limit",
    Outcome.BINARY_MISSING: "regolancer binary missing",
    Outcome.START_FAILED: "could not be started",
    Outcome.STOPPED: "stopped at shutdown",
    Outcome.DRY_RUN: "dry run (not started)",
}


@dataclass(frozen=True, slots=True)
class RunResult:
    """One finished regolancer run, as recorded in the state store."""

    source: str
    target: str
    started_at: float
    ended_at: float
    exit_code: int | None
    outcome: Outcome
    last_line: str

    @property
    def elapsed(self) -> float:
        return self.ended_at - self.started_at

    @property
    def failed_on_route(self) -> bool:
        """Whether the run failed on its route: what backs a pair off and counts against it.

        Not a success, not an outcome that says nothing of the route, and not a pair that
        no longer qualified (then no route was tried).
        """
        return self.outcome.is_failure and not self.outcome.says_nothing_of_route


@dataclass(frozen=True, slots=True)
class StatLine:
    """One line of regolancer's stat CSV: a successful payment."""

    timestamp: int
    from_channel: str
    to_channel: str
    amount_msat: int
    fees_msat: int

    @property
    def amount_sat(self) -> int:
        return self.amount_msat // 1000

    @property
    def fee_sat(self) -> float:
        return self.fees_msat / 1000

    @property
    def ppm(self) -> int:
        if self.amount_msat <= 0:
            return 0
        return self.fees_msat * 1_000_000 // self.amount_msat


@dataclass(frozen=True, slots=True)
class Rebalance:
    """A ledger row: a stat line with the aliases known when it was read."""

    id: int
    line: StatLine
    from_alias: str
    to_alias: str
