"""A state store whose sent-marks can be made to fail, as a full disk or a long lock does."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from core.state import StateStore


class RefusingStore(StateStore):
    """Marks for sent messages and delivered reports fail while `refusing`; `refused` counts.
    A worker thread's writes (`writer`, the report's stored day figures) are refused by
    SQLite itself meanwhile: its connection is read-only."""

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

    @contextmanager
    def writer(self) -> Iterator[sqlite3.Connection]:
        with super().writer() as db:
            if self.refusing:
                self.refused += 1
                db.execute("PRAGMA query_only = 1")
            yield db
