"""regolancer's stat CSV: line parsing and tailing a real file across appends and rotations."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.models import StatLine
from core.statfile import (
    HEADER,
    MAX_AMOUNT_MSAT,
    StatBatch,
    StatFileError,
    StatLineError,
    StatPosition,
    parse_stat_line,
    read_new_lines,
)

SAMPLE = Path(__file__).parent / "samples" / "regolancer" / "stat.csv"

CHAN_A = "879609302301671425"
CHAN_B = "879609302301671426"
CHAN_C = "879609302301671427"
UINT64_MAX = str((1 << 64) - 1)
ABOVE_INT63 = str(1 << 63)

SAMPLE_LINES = [
    StatLine(1764021421, CHAN_A, CHAN_B, 50_000_000, 12_500),
    StatLine(1764021433, CHAN_A, CHAN_B, 100_000_000, 25_000),
    StatLine(1764022980, CHAN_C, CHAN_B, 30_000_000, 0),
]


def line(ts: int, amount: int, fees: int = 0, src: str = CHAN_A, dst: str = CHAN_B) -> str:
    """One stat line exactly as regolancer writes it (`%d,%d,%d,%d,%d\\n`)."""
    return f"{ts},{src},{dst},{amount},{fees}\n"


def stat(ts: int, amount: int, fees: int = 0, src: str = CHAN_A, dst: str = CHAN_B) -> StatLine:
    return StatLine(ts, src, dst, amount, fees)


def append(path: Path, data: str | bytes) -> None:
    raw = data.encode() if isinstance(data, str) else data
    with path.open("ab") as f:
        f.write(raw)


def inode(path: Path) -> int:
    return os.stat(path).st_ino


# --- parse_stat_line -------------------------------------------------------------------------


def test_sample_file_parses_line_by_line() -> None:
    rows = SAMPLE.read_text().splitlines()
    assert rows[0] == HEADER
    assert parse_stat_line(rows[0]) is None
    assert [parse_stat_line(r) for r in rows[1:]] == SAMPLE_LINES


@pytest.mark.parametrize(
    "text",
    [
        HEADER,
        HEADER + "\n",
        HEADER + "\r\n",
        "  " + HEADER + "  ",
        "timestamp, from_channel, to_channel, amount_msat, fees_msat",
        "\ufeff" + HEADER,
        "",
        "\n",
        "\r\n",
        "   \t ",
    ],
)
def test_header_and_blank_lines_are_skipped(text: str) -> None:
    assert parse_stat_line(text) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "1764021421,879609302301671425,879609302301671426,50000000,12500\n",
            stat(1764021421, 50_000_000, 12_500),
            id="regolancer-format",
        ),
        pytest.param(
            "1764021421,879609302301671425,879609302301671426,50000000,12500\r\n",
            stat(1764021421, 50_000_000, 12_500),
            id="crlf",
        ),
        pytest.param(
            "  1764021421 , 879609302301671425 ,879609302301671426,  50000000 ,12500  \n",
            stat(1764021421, 50_000_000, 12_500),
            id="spaces",
        ),
        pytest.param(
            f"1764021421,{UINT64_MAX},{ABOVE_INT63},1000,1\n",
            stat(1764021421, 1000, 1, src=UINT64_MAX, dst=ABOVE_INT63),
            id="uint64-chan-ids",
        ),
        pytest.param(
            "1764021421,00012,000879609302301671426,1000,0\n",
            stat(1764021421, 1000, 0, src="12", dst=CHAN_B),
            id="leading-zeros-normalised",
        ),
        pytest.param(
            f"1764021421,{CHAN_A},{CHAN_B},{MAX_AMOUNT_MSAT},0",
            stat(1764021421, MAX_AMOUNT_MSAT, 0),
            id="21M-btc-amount-no-newline",
        ),
    ],
)
def test_valid_lines(text: str, expected: StatLine) -> None:
    parsed = parse_stat_line(text)
    assert parsed == expected
    assert parsed is not None
    assert isinstance(parsed.from_channel, str)
    assert isinstance(parsed.to_channel, str)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        pytest.param("1764021421,1,2,3", "expected 5 comma-separated columns, got 4", id="4-cols"),
        pytest.param("1764021421,1,2,3,4,5", "got 6", id="6-cols"),
        pytest.param("garbage", "got 1", id="1-col"),
        pytest.param(HEADER + ",extra", "got 6", id="header-plus-column"),
        pytest.param("1764021421,1,2,,0", "amount_msat is not an unsigned integer: ''", id="empty"),
        pytest.param("1764021421,abc,2,3,0", "from_channel is not an unsigned integer", id="alpha"),
        pytest.param("1764021421,1,2,1.5,0", "amount_msat is not an unsigned integer", id="float"),
        pytest.param("1764021421,1,2,+5,0", "amount_msat is not an unsigned integer", id="plus"),
        pytest.param("1764021421,1,2,1_000,0", "amount_msat is not an unsigned integer", id="us"),
        pytest.param("1764021421,1,2,١٢٣,0", "amount_msat is not an unsigned integer", id="arabic"),
        pytest.param("1764021421,1,2,-5,0", "amount_msat is negative: -5", id="neg-amount"),
        pytest.param("1764021421,1,2,5,-1", "fees_msat is negative: -1", id="neg-fees"),
        pytest.param("1764021421,-1,2,5,0", "from_channel is negative", id="neg-chan"),
        pytest.param("0,1,2,5,0", "timestamp 0 is not a plausible", id="ts-zero"),
        pytest.param("1764021421000,1,2,5,0", "not a plausible Unix time", id="ts-millis"),
        pytest.param("-1764021421,1,2,5,0", "timestamp is negative", id="ts-negative"),
        pytest.param(f"1764021421,{1 << 64},2,5,0", "from_channel", id="chan-above-uint64"),
        pytest.param("1764021421,0,2,5,0", "from_channel is 0", id="chan-zero"),
        pytest.param("1764021421,1,0,5,0", "to_channel is 0", id="to-chan-zero"),
        pytest.param("1764021421,1,2,0,0", "amount_msat is 0", id="amount-zero"),
        pytest.param(f"1764021421,1,2,{1 << 63},0", "amount_msat", id="amount-above-int64"),
        pytest.param("1764021421;1;2;5;0", "got 1", id="semicolons"),
        pytest.param("1764021421,1,2,5,0\x00", "fees_msat is not an unsigned integer", id="nul"),
    ],
)
def test_malformed_lines_raise_one_line_reason(text: str, reason: str) -> None:
    with pytest.raises(StatLineError) as info:
        parse_stat_line(text)
    message = str(info.value)
    assert reason in message
    assert "\n" not in message
    assert len(message) < 200


def test_stat_line_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="columns"):
        parse_stat_line("1,2")


def test_long_bad_value_is_shortened_in_reason() -> None:
    with pytest.raises(StatLineError) as info:
        parse_stat_line("1764021421,1,2," + "x" * 5000 + ",0")
    assert len(str(info.value)) < 120


# --- read_new_lines: basics ------------------------------------------------------------------


def test_first_read_of_sample_returns_every_payment_with_line_end_positions(
    tmp_path: Path,
) -> None:
    path = tmp_path / "stat.csv"
    path.write_bytes(SAMPLE.read_bytes())
    batch = read_new_lines(path, None)

    ends, total = [], 0
    for raw in SAMPLE.read_bytes().splitlines(keepends=True):
        total += len(raw)
        ends.append(total)
    ino = inode(path)
    assert batch.lines == SAMPLE_LINES
    assert [pos for _, pos in batch.entries] == [StatPosition(ino, e) for e in ends[1:]]
    assert batch.end == StatPosition(ino, path.stat().st_size)
    assert batch.malformed == []
    assert batch.reset_reason is None
    assert batch.has_more is False


def test_nothing_new_returns_empty_batch_at_same_position(tmp_path: Path) -> None:
    path = tmp_path / "stat.csv"
    path.write_bytes(SAMPLE.read_bytes())
    first = read_new_lines(path, None)
    again = read_new_lines(path, first.end)
    assert again == StatBatch(entries=[], malformed=[], end=first.end)


def test_incremental_appends_return_only_new_lines(tmp_path: Path) -> None:
    path = tmp_path / "stat.csv"
    append(path, HEADER + "\n" + line(1764021421, 1000))
    first = read_new_lines(path, None)
    assert first.lines == [stat(1764021421, 1000)]

    append(path, line(1764021500, 2000, 3))
    second = read_new_lines(path, first.end)
    assert second.lines == [stat(1764021500, 2000, 3)]
    assert second.end.offset == first.end.offset + len(line(1764021500, 2000, 3))

    append(path, line(1764021600, 4000) + line(1764021700, 8000))
    third = read_new_lines(path, second.end)
    assert third.lines == [stat(1764021600, 4000), stat(1764021700, 8000)]
    assert third.end == StatPosition(inode(path), path.stat().st_size)
    assert third.reset_reason is None


def test_partial_line_is_not_consumed_until_completed(tmp_path: Path) -> None:
    path = tmp_path / "stat.csv"
    append(path, HEADER + "\n" + line(1764021421, 1000) + "1764021500,879609302301671425,8796")
    first = read_new_lines(path, None)
    assert first.lines == [stat(1764021421, 1000)]
    assert first.end.offset == len(HEADER) + 1 + len(line(1764021421, 1000))
    assert first.malformed == []

    append(path, "09302301671426,300")
    assert read_new_lines(path, first.end).entries == []
    assert read_new_lines(path, first.end).end == first.end

    append(path, "0,7\n")
    done = read_new_lines(path, first.end)
    assert done.lines == [stat(1764021500, 3000, 7)]
    assert done.end.offset == path.stat().st_size
    assert done.malformed == []


def test_crlf_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "stat.csv"
    append(path, HEADER + "\r\n" + line(1764021421, 1000).replace("\n", "\r\n"))
    batch = read_new_lines(path, None)
    assert batch.lines == [stat(1764021421, 1000)]
    assert batch.end.offset == path.stat().st_size


def test_missing_file_without_position_then_created(tmp_path: Path) -> None:
    path = tmp_path / "stat.csv"
    missing = read_new_lines(path, None)
    assert missing.entries == []
    assert missing.malformed == []
    assert missing.reset_reason is None
    # inode 0 is "no file seen yet": storing it and passing it back acts like None.
    assert missing.end == StatPosition(0, 0)

    append(path, HEADER + "\n" + line(1764021421, 1000))
    created = read_new_lines(path, missing.end)
    assert created.lines == [stat(1764021421, 1000)]
    assert created.reset_reason is None
    assert created.end == StatPosition(inode(path), path.stat().st_size)


def test_missing_file_keeps_stored_position(tmp_path: Path) -> None:
    stored = StatPosition(inode=12345, offset=678)
    batch = read_new_lines(tmp_path / "nope.csv", stored)
    assert batch.end == stored
    assert batch.entries == []
    assert batch.reset_reason is None


def test_pre_created_empty_file_without_header(tmp_path: Path) -> None:
    path = tmp_path / "stat.csv"
    path.touch()
    empty = read_new_lines(path, None)
    assert empty.entries == []
    assert empty.end == StatPosition(inode(path), 0)

    append(path, line(1764021421, 1000) + line(1764021422, 2000))
    batch = read_new_lines(path, empty.end)
    assert batch.lines == [stat(1764021421, 1000), stat(1764021422, 2000)]
    assert batch.reset_reason is None
    assert batch.malformed == []


def test_malformed_line_is_reported_once_and_following_lines_returned(tmp_path: Path) -> None:
    path = tmp_path / "stat.csv"
    bad = "1764021430,879609302301671425,oops,1000,0"
    append(path, HEADER + "\n" + line(1764021421, 1000) + bad + "\r\n" + line(1764021440, 2000))
    batch = read_new_lines(path, None)
    assert batch.lines == [stat(1764021421, 1000), stat(1764021440, 2000)]
    assert batch.malformed == [(bad, "to_channel is not an unsigned integer: 'oops'")]
    # The good line after the bad one is positioned after both.
    assert batch.entries[1][1].offset == path.stat().st_size
    assert batch.end.offset == path.stat().st_size

    again = read_new_lines(path, batch.end)
    assert again.malformed == []
    assert again.entries == []


def test_invalid_utf8_is_replaced_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "stat.csv"
    append(path, b"17640\xff21421,1,2,3,0\n" + line(1764021440, 2000).encode())
    batch = read_new_lines(path, None)
    assert batch.lines == [stat(1764021440, 2000)]
    assert len(batch.malformed) == 1
    raw, reason = batch.malformed[0]
    assert raw == "17640\ufffd21421,1,2,3,0"
    assert reason.startswith("timestamp is not an unsigned integer")


def test_header_in_the_middle_of_one_file_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "stat.csv"
    append(path, HEADER + "\n" + line(1764021421, 1000) + HEADER + "\n" + line(1764021422, 2000))
    batch = read_new_lines(path, None)
    assert batch.lines == [stat(1764021421, 1000), stat(1764021422, 2000)]
    assert batch.malformed == []


# --- read_new_lines: rotation, truncation, deletion -------------------------------------------


def test_rotation_by_rename_starts_new_file_at_zero(tmp_path: Path) -> None:
    path = tmp_path / "stat.csv"
    append(path, HEADER + "\n" + line(1764021421, 1000) + line(1764021422, 2000))
    before = read_new_lines(path, None)
    old_inode = inode(path)

    path.rename(tmp_path / "stat.csv.1")
    append(path, HEADER + "\n" + line(1764021500, 5000, 5))
    new_inode = inode(path)
    assert new_inode != old_inode  # the old file still exists, so no inode reuse

    after = read_new_lines(path, before.end)
    assert after.reset_reason == f"rotated: inode changed from {old_inode} to {new_inode}"
    assert after.lines == [stat(1764021500, 5000, 5)]
    assert after.malformed == []
    assert after.entries[0][1] == StatPosition(new_inode, path.stat().st_size)
    assert after.end == StatPosition(new_inode, path.stat().st_size)

    append(path, line(1764021501, 6000))
    next_batch = read_new_lines(path, after.end)
    assert next_batch.reset_reason is None
    assert next_batch.lines == [stat(1764021501, 6000)]


def test_truncation_to_zero_then_new_lines(tmp_path: Path) -> None:
    path = tmp_path / "stat.csv"
    append(path, HEADER + "\n" + line(1764021421, 1000) + line(1764021422, 2000))
    before = read_new_lines(path, None)

    path.write_bytes(b"")
    empty = read_new_lines(path, before.end)
    assert empty.reset_reason == f"truncated: size 0 is below the stored offset {before.end.offset}"
    assert empty.entries == []
    assert empty.end == StatPosition(inode(path), 0)

    append(path, line(1764021500, 5000))
    after = read_new_lines(path, empty.end)
    assert after.reset_reason is None
    assert after.lines == [stat(1764021500, 5000)]


def test_truncation_noticed_after_new_lines_were_written(tmp_path: Path) -> None:
    path = tmp_path / "stat.csv"
    append(path, HEADER + "\n" + line(1764021421, 1000) + line(1764021422, 2000))
    before = read_new_lines(path, None)

    path.write_bytes(line(1764021500, 5000).encode())
    after = read_new_lines(path, before.end)
    assert after.reset_reason is not None
    assert after.reset_reason.startswith("truncated: ")
    assert after.lines == [stat(1764021500, 5000)]


def test_truncated_and_rewritten_past_the_old_offset(tmp_path: Path) -> None:
    path = tmp_path / "stat.csv"
    append(path, line(1764021421, 1000))
    before = read_new_lines(path, None)

    # Same inode, now longer than the stored offset, and no newline just before it.
    longer = [line(1764021500, 123_456_789, 1, src=UINT64_MAX), line(1764021501, 7)]
    path.write_bytes("".join(longer).encode())
    assert path.read_bytes()[before.end.offset - 1 : before.end.offset] != b"\n"

    after = read_new_lines(path, before.end)
    assert after.reset_reason == (
        f"rewritten: the byte before offset {before.end.offset} is no longer a newline"
    )
    assert after.lines == [stat(1764021500, 123_456_789, 1, src=UINT64_MAX), stat(1764021501, 7)]


def test_deleted_file_then_recreated(tmp_path: Path) -> None:
    path = tmp_path / "stat.csv"
    append(path, HEADER + "\n" + line(1764021421, 1000) + line(1764021422, 2000))
    before = read_new_lines(path, None)

    path.unlink()
    gone = read_new_lines(path, before.end)
    assert gone.end == before.end
    assert gone.entries == []
    assert gone.reset_reason is None

    append(path, HEADER + "\n" + line(1764021500, 5000))
    back = read_new_lines(path, gone.end)
    # The filesystem may hand the old inode back: then truncation or rewrite detection fires.
    assert back.reset_reason is not None
    assert back.reset_reason.split(":")[0] in {"rotated", "truncated", "rewritten"}
    assert back.lines == [stat(1764021500, 5000)]
    assert back.end == StatPosition(inode(path), path.stat().st_size)


def test_position_with_inode_zero_is_like_none(tmp_path: Path) -> None:
    path = tmp_path / "stat.csv"
    append(path, line(1764021421, 1000))
    batch = read_new_lines(path, StatPosition(0, 999))
    assert batch.reset_reason is None
    assert batch.lines == [stat(1764021421, 1000)]


# --- read_new_lines: slicing -------------------------------------------------------------------


def _expected_file(tmp_path: Path, count: int) -> tuple[Path, list[StatLine], list[int]]:
    path = tmp_path / "stat.csv"
    text = HEADER + "\n"
    expected, ends = [], []
    for i in range(count):
        # Varying widths so line boundaries fall everywhere relative to the budget.
        amount = 1000 * (7**i % 100_003) + 1
        text += line(1764021421 + i, amount, i)
        expected.append(stat(1764021421 + i, amount, i))
        ends.append(len(text))
        if i == count // 2:
            text += "not,a,stat,line\n"
    path.write_text(text)
    return path, expected, ends


@pytest.mark.parametrize("max_bytes", [1, 7, 40, 64, 65, 66, 100, 333, 4096, 1 << 20])
def test_max_bytes_slicing_returns_every_line_exactly_once(tmp_path: Path, max_bytes: int) -> None:
    path, expected, ends = _expected_file(tmp_path, 60)
    size = path.stat().st_size
    ino = inode(path)

    got: list[StatLine] = []
    positions: list[int] = []
    malformed: list[tuple[str, str]] = []
    position: StatPosition | None = None
    calls = 0
    while True:
        calls += 1
        assert calls < 500, "no progress"
        batch = read_new_lines(path, position, max_bytes=max_bytes)
        assert batch.reset_reason is None
        if position is not None:
            assert batch.end.offset >= position.offset
        got.extend(batch.lines)
        positions.extend(pos.offset for _, pos in batch.entries)
        assert all(pos.inode == ino for _, pos in batch.entries)
        malformed.extend(batch.malformed)
        if position is not None and batch.end == position:
            break
        position = batch.end
        if max_bytes >= size:
            assert batch.has_more is False

    assert got == expected
    assert positions == ends
    assert positions == sorted(set(positions))  # strictly increasing
    assert malformed == [("not,a,stat,line", "expected 5 comma-separated columns, got 4")]
    assert position == StatPosition(ino, size)


def test_has_more_signals_budget_hit(tmp_path: Path) -> None:
    path, expected, _ = _expected_file(tmp_path, 10)
    first = read_new_lines(path, None, max_bytes=200)
    assert first.has_more is True
    assert 0 < len(first.lines) < len(expected)
    rest = read_new_lines(path, first.end, max_bytes=1 << 20)
    assert rest.has_more is False
    assert first.lines + rest.lines == expected


def test_runaway_line_longer_than_budget_is_skipped_as_malformed(tmp_path: Path) -> None:
    path = tmp_path / "stat.csv"
    append(path, b"\x00" * 200_000 + b"\n" + line(1764021421, 1000).encode())
    first = read_new_lines(path, None, max_bytes=1000)
    assert first.entries == []
    assert len(first.malformed) == 1
    assert first.malformed[0][1] == "line is 200000 bytes long, not a stat line"
    assert len(first.malformed[0][0]) <= 100
    assert first.end.offset == 200_001

    second = read_new_lines(path, first.end, max_bytes=1000)
    assert second.lines == [stat(1764021421, 1000)]


def test_runaway_partial_line_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "stat.csv"
    append(path, line(1764021421, 1000) + "x" * 10_000)
    first = read_new_lines(path, None, max_bytes=50)
    assert first.lines == [stat(1764021421, 1000)]
    stuck = read_new_lines(path, first.end, max_bytes=50)
    assert stuck.entries == []
    assert stuck.malformed == []
    assert stuck.end == first.end


def test_max_bytes_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        read_new_lines(tmp_path / "stat.csv", None, max_bytes=0)


# --- read_new_lines: unreadable files --------------------------------------------------------


def test_directory_raises_stat_file_error(tmp_path: Path) -> None:
    with pytest.raises(StatFileError, match="is a directory") as info:
        read_new_lines(tmp_path, None)
    assert isinstance(info.value, OSError)
    assert str(tmp_path) in str(info.value)


def test_permission_denied_raises_actionable_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "stat.csv"
    path.write_text(HEADER + "\n")

    def denied(self: Path, *args: object, **kwargs: object) -> object:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "open", denied)
    with pytest.raises(StatFileError, match="permission denied") as info:
        read_new_lines(path, None)
    message = str(info.value)
    assert str(path) in message
    assert "as the user that runs regolancer" in message
    assert isinstance(info.value.__cause__, PermissionError)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_real_unreadable_file_raises(tmp_path: Path) -> None:
    path = tmp_path / "stat.csv"
    path.write_text(HEADER + "\n")
    path.chmod(0)
    try:
        with pytest.raises(StatFileError, match="permission denied"):
            read_new_lines(path, None)
    finally:
        path.chmod(0o644)
