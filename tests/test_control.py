"""The control surface: typed calls the chat and the CLI share, and the one channel parser."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.channel_ref import ChannelLookupError, ChannelRef
from core.control import DRY_RUN_LOCKED, Control, Refused, Schedule
from core.events import Mode
from core.models import short_id_to_chan_id
from tests.test_engine import Node, ScriptedRunner, make_engine, star_node


@pytest.mark.parametrize(
    ("text", "chan_id"),
    [
        ("879609302301671425", "879609302301671425"),
        (" 800000x1234x1 ", short_id_to_chan_id("800000x1234x1")),
        ("800000X1234X1", short_id_to_chan_id("800000x1234x1")),
        ("xox", None),  # shaped like nothing: an alias
        ("99999999x1x1", None),  # out of range for a short id: looked up as an alias
        ("٣٤", None),  # digits, but not ASCII ones: an alias, never a number
        ("Bitrefill", None),
    ],
)
def test_one_parser_for_every_channel_reference(text: str, chan_id: str | None) -> None:
    ref = ChannelRef.parse(text)
    assert (ref.text, ref.chan_id) == (text.strip(), chan_id)


def test_an_empty_reference_says_how_to_name_a_channel() -> None:
    with pytest.raises(ChannelLookupError, match="chan_id, short id"):
        ChannelRef.parse("  ")


async def test_switches_answer_with_the_mode_and_refuse_what_cannot_be(tmp_path: Path) -> None:
    engine, _ = make_engine(tmp_path, Node(star_node()), ScriptedRunner())
    clock = [1_000_000.0]
    control = Control(engine, clock=lambda: clock[0])
    assert control.mode() == Mode(dry_run=False)
    with pytest.raises(Refused, match="Not paused"):
        control.resume()
    assert control.pause(600) == Mode(False, 1_000_600.0)
    clock[0] += 601  # the pause ran out: the mode says so, though nobody resumed
    assert control.mode() == Mode(False, None)
    assert control.pause() == Mode(False, float("inf"))
    assert control.resume() == Mode(False, None)
    assert control.set_dry_run(True) == Mode(True, None)
    assert engine.dry_run
    with pytest.raises(Refused, match="Nothing runs cycles"):
        control.run_now()  # the CLI's control: no runtime to start one in the background


async def test_dry_run_set_in_the_environment_cannot_be_switched_off(tmp_path: Path) -> None:
    engine, _ = make_engine(tmp_path, Node(star_node()), ScriptedRunner(), dry_run=True)
    control = Control(engine)
    with pytest.raises(Refused) as refused:
        control.set_dry_run(False)
    assert str(refused.value) == DRY_RUN_LOCKED
    assert control.dry_run_locked


async def test_exclude_and_include_by_any_reference(tmp_path: Path) -> None:
    channels = star_node()
    engine, _ = make_engine(tmp_path, Node(channels), ScriptedRunner())
    control = Control(engine)
    first = channels[3]
    excluded, added = await control.exclude(first.short_chan_id or first.chan_id)
    assert (excluded.chan_id, added) == (first.chan_id, True)
    assert (await control.exclude(first.chan_id))[1] is False  # already out
    # found among the exclusions by its label, case aside: the channel may be closed by now
    engine._fetch_channels = Node([]).fetch
    found, removed = control.include(first.alias.upper())
    assert (found.chan_id, removed) == (first.chan_id, True)
    with pytest.raises(ChannelLookupError, match="matches no exclusion"):
        control.include(first.chan_id)


async def test_status_is_a_typed_snapshot_of_the_engine(tmp_path: Path) -> None:
    engine, _ = make_engine(tmp_path, Node(star_node()), ScriptedRunner(), max_workers=4)
    control = Control(engine, Schedule(next_cycle=lambda: 1_234.0))
    before = control.status()
    assert (before.last_cycle, before.lndg_ok, before.next_cycle) == (None, None, 1_234.0)
    finished = await engine.cycle()
    status = control.status()
    assert status.last_cycle == (finished.started_at, finished.finished_at)
    assert status.lndg_ok is True
    assert status.today.count == 0  # no stat line yet: runs are not rebalances
    assert not status.cycle_running
    assert status.active == ()
