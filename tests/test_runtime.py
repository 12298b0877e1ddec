"""The runtime's cycle loop: a cycle, then the engine's pause; never stopped by a bug."""

from __future__ import annotations

from typing import Any

from core.runtime import Cycles


class Engine:
    """Just what `Cycles` reads of the engine: a cycle that fails once, then works."""

    def __init__(self) -> None:
        self.cycles = 0
        self.stopping = False

    async def cycle(self) -> Any:
        self.cycles += 1
        if self.cycles == 2:
            raise RuntimeError("a bug in the second cycle")

    def next_cycle_delay(self) -> float:
        return 0.0 if self.cycles == 1 else 60.0  # the first was cut by its budget


async def test_cycles_follow_the_engines_pause_and_survive_a_failing_cycle(
    caplog: Any,
) -> None:
    engine = Engine()
    seen: list[tuple[float, float | None]] = []
    cycles = Cycles(engine, clock=lambda: 1000.0)  # type: ignore[arg-type]

    async def sleep(seconds: float) -> None:
        seen.append((seconds, cycles.next_at()))
        if len(seen) == 3:
            engine.stopping = True

    cycles.sleep = sleep
    await cycles.run()
    assert engine.cycles == 3
    assert seen == [(0.0, 1000.0), (60.0, 1060.0), (60.0, 1060.0)]
    assert cycles.next_at() is None
    assert "cycle raised an exception: RuntimeError: a bug in the second cycle" in caplog.text
