"""What LNDg recorded of the node: its payments, forwards, LNDg's own rebalance attempts and
the global AR settings its rebalancer obeys.

Plain values, validated from LNDg's rows; nothing here does I/O. They live apart from the
HTTP client (core.lndg) so the pure logic that reads them (core.history,
core.report_figures, core.spending) never imports the adapter, and apart from core.models
because they carry LNDg's wire quirks (naive UTC dates, channel id lists and settings stored
as text).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

PAYMENT_SUCCEEDED = 2
REBALANCE_PENDING = 0
REBALANCE_IN_FLIGHT = 1
REBALANCE_SUCCEEDED = 2


def as_utc(value: datetime) -> datetime:
    """An aware UTC datetime; a naive one is taken to be UTC already (LNDg's USE_TZ=False)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


_CHAN_ID_LIST = re.compile(r"^\[\s*(?:['\"]?\d+['\"]?\s*(?:,\s*['\"]?\d+['\"]?\s*)*)?\]$")


def _chan_id_list(value: object) -> object:
    """LNDg keeps `outgoing_chan_ids` as the text of a Python list: `"[1, 2]"` or `"['1']"`."""
    if isinstance(value, str):
        text = value.strip()
        if not _CHAN_ID_LIST.match(text):
            raise ValueError("should be a list of channel ids like [879609302301671425]")
        return re.findall(r"\d+", text)
    if isinstance(value, list):
        return [str(item) for item in value]
    return value


UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]
ChanIdList = Annotated[list[str], BeforeValidator(_chan_id_list)]


class Payment(BaseModel):
    """One payment LNDg recorded; `rebal_chan` set means it was a circular rebalance."""

    model_config = ConfigDict(frozen=True, extra="ignore", coerce_numbers_to_str=True)

    payment_hash: str = Field(min_length=1)
    creation_date: UtcDatetime
    value: float = Field(ge=0, allow_inf_nan=False)
    fee: float = Field(ge=0, allow_inf_nan=False)
    status: int = PAYMENT_SUCCEEDED
    chan_out: str | None = None
    chan_out_alias: str | None = None
    rebal_chan: str | None = None

    @property
    def is_rebalance(self) -> bool:
        """True when the payment went back to one of our channels (any tool's rebalance)."""
        return self.rebal_chan is not None


class LndgRebalance(BaseModel):
    """One rebalance attempt made by LNDg's own rebalancer."""

    model_config = ConfigDict(frozen=True, extra="ignore", coerce_numbers_to_str=True)

    id: int
    requested: UtcDatetime | None = None
    start: UtcDatetime | None = None
    stop: UtcDatetime | None = None
    value: int = Field(ge=0)
    fee_limit: float | None = Field(default=None, allow_inf_nan=False)
    fees_paid: float | None = Field(default=None, allow_inf_nan=False)
    payment_hash: str | None = None
    outgoing_chan_ids: ChanIdList = Field(default_factory=list)
    last_hop_pubkey: str | None = None
    target_alias: str | None = None
    status: int

    @property
    def succeeded(self) -> bool:
        """LNDg status 2 is a successful rebalance."""
        return self.status == REBALANCE_SUCCEEDED

    @property
    def is_open(self) -> bool:
        """Pending (0) or in flight (1): LNDg has not finished this attempt."""
        return self.status in (REBALANCE_PENDING, REBALANCE_IN_FLIGHT)


class Forward(BaseModel):
    """One HTLC the node forwarded, as LNDg recorded it (`/api/forwards/`).

    `fee_sat` is what the node earned (LNDg's `fee`, in sats, fractions kept); it belongs to
    the channel the forward left by, `chan_id_out`: that channel's outbound liquidity is what
    the forward used and what a rebalance refills. Build from LNDg's row with
    `Forward.model_validate(row)` or by field name (`fee_sat=...`).
    """

    model_config = ConfigDict(
        frozen=True, extra="ignore", coerce_numbers_to_str=True, populate_by_name=True
    )

    id: int
    forward_date: UtcDatetime
    chan_id_in: str = Field(min_length=1)
    chan_id_out: str = Field(min_length=1)
    amt_in_msat: int = Field(default=0, ge=0)
    amt_out_msat: int = Field(ge=0)
    fee_sat: float = Field(alias="fee", allow_inf_nan=False)
    # Negative for an inbound discount; LNDg before inbound fees sent no such field.
    inbound_fee_sat: float = Field(default=0.0, alias="inbound_fee", allow_inf_nan=False)
    chan_in_alias: str = ""
    chan_out_alias: str = ""

    @property
    def amount_out_sat(self) -> int:
        """The amount that left by `chan_id_out`, in whole sats (msat dropped)."""
        return self.amt_out_msat // 1000


# ---------------------------------------------------------------------------------------------
# LNDg's global AR settings


class ArSettingsError(ValueError):
    """An LNDg setting holds a value LNDg itself cannot read (its code does `int(value)`)."""

    def __init__(self, key: str, value: object) -> None:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:39] + "…"
        super().__init__(
            f"LNDg setting {key} is {shown}, not a whole number: LNDg's own rebalancer cannot "
            "read it either; fix it on LNDg's settings page"
        )
        self.key = key
        self.value = value


# LNDg v1.10.1's code defaults (rebalancer.py `get_local_setting(key, default, int)`): a key
# exists in its settings table only once some LNDg code or the settings page created it.
_AR_KEYS: dict[str, tuple[str, int]] = {
    "AR-MaxFeeRate": ("max_fee_rate_ppm", 500),
    "AR-Enabled": ("enabled", 0),
    "AR-Workers": ("workers", 1),
    "AR-WaitPeriod": ("wait_period_minutes", 30),
    "AR-Target%": ("target_pct", 3),
    "AR-MaxCost%": ("max_cost_pct", 65),
}


def _setting_int(key: str, value: object) -> int:
    """LNDg's `int(value)`: decimal text with optional sign and spaces; anything else fails."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip()
        # int() would also take "5_00" and non-ASCII digits; LNDg's form never writes them.
        if re.fullmatch(r"[+-]?[0-9]+", text):
            return int(text)
    raise ArSettingsError(key, value)


@dataclass(frozen=True, slots=True)
class ArSettings:
    """LNDg's global auto-rebalance settings (`/api/settings/`), with its code defaults.

    `max_fee_rate_ppm` (AR-MaxFeeRate) caps the fee rate of every target; `enabled`
    (AR-Enabled) says whether LNDg's own rebalancer schedules at all; `target_pct` and
    `max_cost_pct` are the defaults LNDg gives a channel's `ar_amt_target` / `ar_max_cost`.
    `defaulted` names the keys LNDg does not hold yet, whose defaults were taken.
    """

    max_fee_rate_ppm: int = 500
    enabled: bool = False
    workers: int = 1
    wait_period_minutes: int = 30
    target_pct: int = 3
    max_cost_pct: int = 65
    defaulted: tuple[str, ...] = ()

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, Any]]) -> ArSettings:
        """Read LNDg's `{"key", "value"}` rows (string values); other keys are ignored.

        A missing key takes LNDg's code default (and is named in `defaulted`). A value that
        is not a whole number raises `ArSettingsError` naming the key: LNDg's rebalancer
        cannot read it either, and guessing a default for a fee cap could overspend.
        """
        values: dict[str, Any] = {}
        for row in rows:
            key = row.get("key")
            if key in _AR_KEYS:
                attribute, _default = _AR_KEYS[key]
                values[attribute] = _setting_int(key, row.get("value"))
        defaulted = tuple(
            key for key, (attribute, _d) in _AR_KEYS.items() if attribute not in values
        )
        for key in defaulted:
            attribute, default = _AR_KEYS[key]
            values[attribute] = default
        values["enabled"] = values["enabled"] != 0  # LNDg: `if enabled == 0: return`
        return cls(**values, defaulted=defaulted)
