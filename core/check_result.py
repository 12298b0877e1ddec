"""One line of `check`: what was checked, how it went, and what to do about it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str
    hint: str = ""
    warning: bool = False

    def line(self) -> str:
        mark = "ok  " if self.ok and not self.warning else ("warn" if self.ok else "FAIL")
        text = f"{mark} {self.name}: {self.detail}"
        return f"{text} -> {self.hint}" if self.hint else text
