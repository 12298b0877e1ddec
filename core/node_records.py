"""What LNDg recorded of the node's past: its payments and LNDg's own rebalance attempts.

Plain values, validated from LNDg's rows; nothing here does I/O. They live apart from the
HTTP client (core.lndg) so the pure logic that reads them (core.history,
core.report_figures) never imports the adapter, and apart from core.models because they carry
LNDg's wire quirks (naive UTC dates, channel id lists stored as text).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

PAYMENT_SUCCEEDED = 2
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
