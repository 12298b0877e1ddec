"""A state store whose sent-marks can be made to fail, as a full disk or a long lock does."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from core.state import StateStore


class RefusingStore(StateStore):
    """Marks for sent messages and delivered reports fail while `refusing`; `refused` counts."""

    refusing = False
    refused = 0

    def _refuse(self) -> None:
        if self.refusing:
            self.refused += 1
            raise sqlite3.OperationalError("database or disk is full")

    def mark_sent(self, ids: Iterable[int]) -> None:
        self._refuse()
        super().mark_sent(ids)

    def mark_report_sent(self, day: str) -> None:
        self._refuse()
        super().mark_report_sent(day)
