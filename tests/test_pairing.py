"""The pairing rule, exactly as the original tool had it, boundaries included."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from core.channel_ref import ChannelLookupError, resolve_channel
from core.models import Channel, chan_id_to_short_id, short_id_to_chan_id
from core.pairing import (
    PairView,
    build_pairs,
    count_pairs,
    is_source,
    is_target,
    make_pair,
    role_problem,
    same_peer,
    sources,
    targets,
)

SAMPLES = Path(__file__).resolve().parents[1] / "sim" / "samples" / "lndg"


def channel(chan_id: int, **fields: Any) -> Channel:
    row: dict[str, Any] = {
        "chan_id": str(chan_id),
        "short_chan_id": chan_id_to_short_id(str(chan_id)),
        "remote_pubkey": f"02{chan_id:064x}",
        "alias": f"peer{chan_id}",
        "capacity": 1_000_000,
        "local_balance": 500_000,
        "remote_balance": 500_000,
        "pending_outbound": 0,
        "pending_inbound": 0,
        "is_open": True,
        "is_active": True,
        "private": False,
        "auto_rebalance": False,
        "ar_out_target": 75,
        "ar_in_target": 80,
    }
    row.update(fields)
    return Channel.model_validate(row)


def test_sample_channels_pair_as_the_original_did() -> None:
    rows = json.loads((SAMPLES / "channels_page1.json").read_text())["results"]
    channels = [Channel.model_validate(r) for r in rows]
    pairs = build_pairs(channels)
    assert len(pairs) == 1
    pair = pairs[0]
    # SourceA: (1_800_000 + 10_000 pending) * 100 // 2_000_000 = 90 > 75
    # TargetB: 50_000 * 100 // 1_000_000 = 5 < 100 - 80
    assert pair.key == ("879609302301671425", "879609302301671426")
    assert (pair.pfrom, pair.pto) == (25, 20)
    assert pair.log_line() == "SRC SourceA (LOCAL 90%) -> TGT TargetB (LOCAL 5%)"


@pytest.mark.parametrize(
    ("local", "pending", "out_target", "expected_pct", "expected"),
    [
        (750_000, 0, 75, 75, False),  # equal to ar_out_target: not a source
        (750_000, 10_000, 75, 76, True),  # pending outbound tips it over
        (759_999, 0, 75, 75, False),  # integer division: 75.9999 is 75
        (760_000, 0, 75, 76, True),
        (1_000_000, 0, 100, 100, False),
        (1, 0, 0, 0, False),  # 0% is not above 0
        (10_000, 0, 0, 1, True),
    ],
)
def test_source_boundaries(
    local: int, pending: int, out_target: int, expected_pct: int, expected: bool
) -> None:
    c = channel(1, local_balance=local, pending_outbound=pending, ar_out_target=out_target)
    assert c.local_pct == expected_pct
    assert is_source(c) is expected


@pytest.mark.parametrize(
    ("local", "pending", "in_target", "expected_pct", "expected"),
    [
        (200_000, 0, 80, 20, False),  # equal to 100 - ar_in_target: not a target
        (199_999, 0, 80, 19, True),
        (190_000, 10_000, 80, 20, False),  # pending outbound counts as local
        (0, 0, 100, 0, False),  # 100 - 100 = 0: nothing is below
        (989_999, 0, 1, 98, True),
    ],
)
def test_target_boundaries(
    local: int, pending: int, in_target: int, expected_pct: int, expected: bool
) -> None:
    c = channel(
        1,
        local_balance=local,
        pending_outbound=pending,
        ar_in_target=in_target,
        auto_rebalance=True,
    )
    assert c.local_pct == expected_pct
    assert is_target(c) is expected


def test_auto_rebalance_decides_the_role() -> None:
    full_ar = channel(1, local_balance=950_000, auto_rebalance=True)
    empty_plain = channel(2, local_balance=10_000, auto_rebalance=False)
    assert not is_source(full_ar)
    assert not is_target(empty_plain)
    assert build_pairs([full_ar, empty_plain]) == []


@pytest.mark.parametrize(
    "unusable",
    [
        {"is_open": False},
        {"is_active": False},
        {"private": True},
        {"capacity": 0, "local_balance": 0, "remote_balance": 0},
    ],
)
def test_unusable_channels_are_ignored(unusable: dict[str, Any]) -> None:
    src = channel(1, local_balance=900_000)
    tgt = channel(2, local_balance=10_000, auto_rebalance=True)
    assert len(build_pairs([src, tgt])) == 1
    assert build_pairs([channel(1, **{"local_balance": 900_000, **unusable}), tgt]) == []
    bad_target = {"local_balance": 10_000, "auto_rebalance": True, **unusable}
    assert build_pairs([src, channel(2, **bad_target)]) == []


def test_exclusions_apply_to_both_roles() -> None:
    src = channel(1, local_balance=900_000)
    tgt = channel(2, local_balance=10_000, auto_rebalance=True)
    assert build_pairs([src, tgt], excluded={"1"}) == []
    assert build_pairs([src, tgt], excluded={"2"}) == []
    assert len(build_pairs([src, tgt], excluded={"3"})) == 1


def test_same_peer_never_paired() -> None:
    peer = "03" + "ab" * 32
    src = channel(1, local_balance=900_000, remote_pubkey=peer)
    tgt = channel(2, local_balance=10_000, auto_rebalance=True, remote_pubkey=peer)
    other = channel(3, local_balance=950_000)
    pairs = build_pairs([src, tgt, other])
    assert [p.key for p in pairs] == [("3", "2")]


def test_same_peer_is_the_rule_for_two_channels_and_for_one() -> None:
    peer = "03" + "ab" * 32
    src = channel(1, local_balance=900_000, remote_pubkey=peer)
    tgt = channel(2, local_balance=10_000, auto_rebalance=True, remote_pubkey=peer)
    other = channel(3, local_balance=950_000)
    assert same_peer(src, tgt)
    assert same_peer(src, src)
    assert not same_peer(other, tgt)


def test_order_most_depleted_target_then_most_surplus_source() -> None:
    s_small = channel(1, local_balance=800_000)  # 80%: 5 points of surplus
    s_big = channel(2, local_balance=990_000)  # 99%: 24 points
    s_mid = channel(3, local_balance=900_000, ar_out_target=60)  # 90%: 30 points
    t_low = channel(4, local_balance=10_000, auto_rebalance=True)  # 1%
    t_high = channel(5, local_balance=150_000, auto_rebalance=True)  # 15%
    channels = [s_small, t_high, s_big, t_low, s_mid]
    assert [c.chan_id for c in sources(channels)] == ["3", "2", "1"]
    assert [c.chan_id for c in targets(channels)] == ["4", "5"]
    keys = [p.key for p in build_pairs(channels)]
    assert keys == [("3", "4"), ("2", "4"), ("1", "4"), ("3", "5"), ("2", "5"), ("1", "5")]
    mid = build_pairs(channels)[0]
    assert (mid.pfrom, mid.pto) == (40, 20)


def test_short_id_round_trip_matches_lnd_encoding() -> None:
    assert short_id_to_chan_id("800000x1234x1") == "879609302301671425"
    assert chan_id_to_short_id("879609302301671425") == "800000x1234x1"
    with pytest.raises(ValueError, match="short channel id"):
        short_id_to_chan_id("800000x12x")


def test_resolve_channel_by_id_short_id_and_alias() -> None:
    a = channel(879609302301671425, alias="SourceA")
    b = channel(879609302301671426, alias="Twin")
    c = channel(879609302301671427, alias="Twin")
    chans = [a, b, c]
    assert resolve_channel("879609302301671425", chans) is a
    assert resolve_channel("800000x1234x1", chans) is a
    assert resolve_channel("sourcea", chans) is a
    with pytest.raises(
        ChannelLookupError, match=r"matches 2 channels: 879609302301671426 .*use an id"
    ):
        resolve_channel("Twin", chans)
    with pytest.raises(ChannelLookupError, match="no open channel with alias 'Nobody'"):
        resolve_channel("Nobody", chans)
    with pytest.raises(ChannelLookupError, match="no open channel with id 1"):
        resolve_channel("1", chans)


# --- targets LNDg accepted outside 0..100 (issue 12, item 13) ----------------------------------


def test_a_non_ar_channel_with_ar_in_target_150_is_still_a_source() -> None:
    # ar_in_target plays no part in a source's role; LNDg does no range check on it.
    src = channel(1, local_balance=900_000, ar_in_target=150)
    tgt = channel(2, local_balance=10_000, auto_rebalance=True)
    assert is_source(src)
    assert [p.key for p in build_pairs([src, tgt])] == [("1", "2")]


@pytest.mark.parametrize(
    "fields",
    [
        {"auto_rebalance": True, "local_balance": 10_000, "ar_in_target": 150},
        {"auto_rebalance": True, "local_balance": 10_000, "ar_in_target": -5},
        {"auto_rebalance": False, "local_balance": 900_000, "ar_out_target": 150},
        {"auto_rebalance": False, "local_balance": 900_000, "ar_out_target": -5},
    ],
    ids=["in-150", "in-minus-5", "out-150", "out-minus-5"],
)
def test_a_role_field_outside_0_to_100_gives_no_role(fields: dict[str, Any]) -> None:
    odd = channel(3, **fields)
    src = channel(1, local_balance=900_000)
    tgt = channel(2, local_balance=10_000, auto_rebalance=True)
    assert not is_source(odd)
    assert not is_target(odd)
    assert [p.key for p in build_pairs([src, tgt, odd])] == [("1", "2")]
    # Nor can a caller pairing it by hand get bounds regolancer cannot take.
    pair = make_pair(src, odd) if odd.auto_rebalance else make_pair(odd, tgt)
    assert pair is None


def test_role_problem_names_only_the_field_the_role_uses() -> None:
    assert role_problem(channel(1, ar_in_target=150)) is None
    assert role_problem(channel(1, ar_out_target=-5)) == ("ar_out_target", -5)
    assert role_problem(channel(1, auto_rebalance=True, ar_in_target=150)) == (
        "ar_in_target",
        150,
    )
    assert role_problem(channel(1, auto_rebalance=True, ar_out_target=-5)) is None


@pytest.mark.parametrize("seed", range(8))
def test_counts_views_and_lists_agree_with_out_of_range_targets(seed: int) -> None:
    rng = random.Random(seed)
    odd_values = (-5, -1, 0, 50, 100, 101, 150)
    peers = [f"02{rng.randrange(1 << 60):064x}" for _ in range(12)]
    channels = [
        channel(
            i,
            remote_pubkey=rng.choice(peers),
            local_balance=rng.randrange(0, 1_000_000),
            auto_rebalance=rng.random() < 0.5,
            ar_out_target=rng.choice(odd_values),
            ar_in_target=rng.choice(odd_values),
        )
        for i in range(1, 41)
    ]
    pairs = build_pairs(channels)
    assert count_pairs(channels) == len(pairs) == len(PairView(channels))
    assert list(PairView(channels)) == pairs
    assert {c.chan_id for c in sources(channels)} == {c.chan_id for c in channels if is_source(c)}
    assert {c.chan_id for c in targets(channels)} == {c.chan_id for c in channels if is_target(c)}
    for pair in pairs:
        assert 0 <= pair.pfrom <= 100
        assert 0 <= pair.pto <= 100
        assert role_problem(pair.source) is None
        assert role_problem(pair.target) is None
