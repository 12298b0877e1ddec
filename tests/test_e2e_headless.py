"""The real daemon as a child process, headless, against loopback LNDg and regolancer."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sim.lndg import FakeLndg, channel_row, payment_row, sample_channels
from tests.daemon_process import Node, busy_overlaps, run_cli, running, wait_until

pytestmark = pytest.mark.subprocess  # every test starts the daemon or a CLI run

SOURCES = ["800000x1x0", "800000x2x0", "800000x3x0"]
TARGETS = ["800000x11x0", "800000x12x0", "800000x13x0", "800000x14x0"]


def node_channels() -> list[dict[str, object]]:
    rows = [
        channel_row(cid, alias=f"Src{i}", local_balance=900_000 - i * 10_000, ar_out_target=60)
        for i, cid in enumerate(SOURCES)
    ]
    rows += [
        channel_row(
            cid,
            alias=f"Tgt{i}",
            local_balance=20_000 + i * 10_000,
            auto_rebalance=True,
            ar_in_target=80,
        )
        for i, cid in enumerate(TARGETS)
    ]
    return rows


@pytest.fixture
def lndg() -> Iterator[FakeLndg]:
    with FakeLndg(channels=node_channels()) as fake:
        yield fake


@pytest.fixture
def node(tmp_path: Path, lndg: FakeLndg) -> Node:
    return Node(tmp_path, lndg.url)


def test_pairs_command_prints_the_sample_pair(tmp_path: Path) -> None:
    with FakeLndg() as sample_lndg:
        result = run_cli(Node(tmp_path, sample_lndg.url), "pairs")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "SRC SourceA (LOCAL 90%) -> TGT TargetB (LOCAL 5%) pfrom=25 pto=20\n"
    with FakeLndg() as sample_lndg:
        as_json = run_cli(Node(tmp_path, sample_lndg.url), "pairs", "--json")
    rows = json.loads(as_json.stdout)
    assert rows == [
        {
            "source": {"chan_id": "879609302301671425", "alias": "SourceA"},
            "target": {"chan_id": "879609302301671426", "alias": "TargetB"},
            "source_local_pct": 90,
            "target_local_pct": 5,
            "pfrom": 25,
            "pto": 20,
            "skip": None,
        }
    ]


def test_pairs_command_says_why_a_target_is_skipped(tmp_path: Path) -> None:
    channels = sample_channels()
    target = next(c for c in channels if c["alias"] == "TargetB")
    target.update(local_fee_rate=100, ar_max_cost=50, remote_fee_rate=600)
    with FakeLndg(channels=channels) as lndg:
        text = run_cli(Node(tmp_path, lndg.url), "pairs")
        as_json = run_cli(Node(tmp_path, lndg.url), "pairs", "--json")
    assert text.returncode == 0, text.stderr
    assert text.stdout == (
        "SRC SourceA (LOCAL 90%) -> TGT TargetB (LOCAL 5%) pfrom=25 pto=20"
        "  skipped: cap 50 ppm <= peer's fee 600 ppm\n"
    )
    assert [row["skip"] for row in json.loads(as_json.stdout)] == [
        {"reason": "uneconomic", "text": "cap 50 ppm <= peer's fee 600 ppm"}
    ]


def test_check_with_a_wrong_password_says_credentials_rejected(node: Node) -> None:
    result = run_cli(node, "check", env={"LNDG_PASS": "wrong-password-123"})
    assert result.returncode == 1
    lndg_line = next(line for line in result.stdout.splitlines() if " LNDg:" in line)
    assert lndg_line.startswith("FAIL LNDg:")
    assert "credentials rejected" in lndg_line
    assert "Traceback" not in result.stdout + result.stderr
    assert "wrong-password-123" not in result.stdout + result.stderr


def test_check_passes_on_a_good_setup(node: Node) -> None:
    result = run_cli(node, "check")
    assert result.returncode == 0, result.stdout
    assert "7 open active public channels" in result.stdout
    assert result.stdout.splitlines()[-1] == "all checks passed"


def test_bad_configuration_is_one_line_per_problem(node: Node) -> None:
    result = run_cli(node, "run", env={"MAX_WORKERS": "lots", "LNDG_BASE_URL": "nowhere"})
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "configuration error: LNDG_BASE_URL: must be an http:// or https:// URL, "
        "e.g. http://localhost:8889",
        "configuration error: MAX_WORKERS: Input should be a valid integer, "
        "unable to parse string as an integer",
    ]


def test_daemon_runs_the_pairs_with_right_configs_never_sharing_a_channel(node: Node) -> None:
    node.set_scenario({"outcome": "success", "amount_sat": 40_000, "fee_sat": 10, "delay": 0.4})
    with running(node) as daemon:
        wait_until(lambda: len(node.runs_recorded()) >= 8, 40, "8 regolancer runs")
        code, seconds = daemon.stop()
    assert code == 0
    assert seconds < 10
    # SLEEP_SECONDS is 2 here: one line at start says why that loads LNDg
    assert daemon.output.count("SLEEP_SECONDS=2 is below 60: LNDg syncs with LND only") == 1
    runs = node.runs_recorded()
    first_cycle = {(r["config"]["from"][0], r["config"]["to"][0]) for r in runs[:4]}
    # one run per target; sources spread over the targets, most surplus first
    src = [str(int(c.split("x")[0]) << 40 | int(c.split("x")[1]) << 16) for c in SOURCES]
    tgt = [str(int(c.split("x")[0]) << 40 | int(c.split("x")[1]) << 16) for c in TARGETS]
    assert first_cycle == {(src[0], tgt[0]), (src[1], tgt[1]), (src[2], tgt[2]), (src[0], tgt[3])}
    for run in runs:
        config = run["config"]
        assert all(isinstance(c, str) for c in config["from"] + config["to"])
        assert (config["pfrom"], config["pto"]) == (40, 20)
        assert isinstance(config["pfrom"], int)
        assert config["stat"] == str(node.stat.resolve())
        assert config["connect"] == "127.0.0.1:10009"  # from the template
        assert "LNDG_PASS" not in run["env_keys"]
        assert run["no_color"]
    assert busy_overlaps(runs) == []
    assert max(_concurrency(runs)) >= 2  # disjoint pairs did run side by side
    # every stat line is exactly one ledger row
    assert node.ledger() == node.stat_lines()
    assert len(node.ledger()) == sum(1 for r in runs if r["exit_code"] == 0)
    assert node.leftover_processes() == []
    # generated configs are gone and the data dir is private
    assert list(node.data.glob("*.json")) == []
    assert stat.S_IMODE(node.data.stat().st_mode) == 0o700


def _concurrency(runs: list[dict[str, Any]]) -> list[int]:
    return [sum(1 for b in runs if b["start"] <= a["start"] < b["end"]) for a in runs]


def test_hanging_run_is_killed_at_the_limit_leaving_nothing_behind(node: Node) -> None:
    # regolancer exits on SIGINT, but a grandchild in its group ignores SIGINT: the group
    # must still be gone after the escalation.
    node.set_scenario({"outcome": "spawn_grandchild"})
    env = {"RUN_TIMEOUT_SECONDS": "2", "MAX_WORKERS": "1"}
    with running(node, env=env) as daemon:
        daemon.wait_for_log(r"killed at our time limit", timeout=30)
        first = node.runs_recorded()[0]
        assert first["exit_code"] == 1  # regolancer's answer to SIGINT
        for pid in (first["pid"], first["grandchild_pid"]):
            assert not _alive(pid), f"process {pid} of the killed run is still alive"
        code, _ = daemon.stop()
    assert code == 0
    outcomes = [row[0] for row in node.query("SELECT outcome FROM runs")]
    assert outcomes[0] == "killed"
    assert node.leftover_processes() == []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize(
    "stubborn", [False, True], ids=["regolancer-exits-on-sigint", "ignores-sigint-and-sigterm"]
)
def test_sigterm_during_a_run_exits_within_10s_without_children(node: Node, stubborn: bool) -> None:
    scenario: dict[str, object] = {"outcome": "hang"}
    if stubborn:
        scenario["ignore_signals"] = ["SIGINT", "SIGTERM"]
    node.set_scenario(scenario)
    with running(node, env={"RUN_TIMEOUT_SECONDS": "600"}) as daemon:
        daemon.wait_for_log(r"worker \d: started SRC", timeout=20)
        wait_until(lambda: node.leftover_processes(), 10, "regolancer processes")
        code, seconds = daemon.stop(signal.SIGTERM)
    assert code == 0
    assert seconds < 10
    assert node.leftover_processes() == []
    assert "stopped" in daemon.output


def test_every_stat_line_is_one_ledger_row_across_restart_and_rotation(node: Node) -> None:
    node.env["DRY_RUN"] = "true"  # the lines are written by hand here, at chosen moments
    node.data.mkdir(mode=0o700)
    header = "timestamp,from_channel,to_channel,amount_msat,fees_msat\n"
    node.stat.write_text(header + "1764021421,1,11,50000000,12500\n")
    with running(node) as daemon:
        wait_until(lambda: len(node.ledger()) == 1, 15, "first row")
        assert daemon.stop()[0] == 0
    with node.stat.open("a") as f:  # appended while the daemon was down
        f.write("1764021433,1,11,100000000,25000\n1764021440,2,12,")  # and half a line
    with running(node) as daemon:
        wait_until(lambda: len(node.ledger()) == 2, 15, "row written while down")
        with node.stat.open("a") as f:
            f.write("30000000,0\n")  # the half line completed
        wait_until(lambda: len(node.ledger()) == 3, 15, "completed half line")
        os.rename(node.stat, node.stat.with_suffix(".csv.1"))  # rotation
        node.stat.write_text(header + "1764022980,3,13,30000000,0\n")
        wait_until(lambda: len(node.ledger()) == 4, 15, "row from the rotated file")
        daemon.wait_for_log("reading it from the start")
        assert daemon.stop()[0] == 0
    with running(node) as daemon:  # a restart reads nothing twice
        daemon.wait_for_log("cycle finish", timeout=20)
        assert daemon.stop()[0] == 0
    assert node.ledger() == node.stat_lines(node.stat.with_suffix(".csv.1"), node.stat)


def test_report_command_splits_the_node_total_into_shares(tmp_path: Path) -> None:
    # Samples: one LNDg rebalance (30,000 sat, 3.2 fee). Add one payment made by this daemon
    # (matched by its stat line) and one by another tool, all on 2026-11-24 UTC.
    with FakeLndg() as lndg:
        lndg.payments.append(
            payment_row(
                "ab" * 32,
                creation_date="2026-11-24T10:00:00.000000",
                value=50_000.0,
                fee=12.5,
                chan_out="879609302301671425",
                rebal_chan="879609302301671426",
            )
        )
        lndg.payments.append(
            payment_row(
                "ee" * 32,
                creation_date="2026-11-24T23:30:00.000000",
                value=20_000.0,
                fee=4.0,
                chan_out="879609302301671427",
                rebal_chan="879609302301671426",
            )
        )
        node = Node(tmp_path, lndg.url, dry_run="true")
        node.data.mkdir(mode=0o700)
        # 10:01:00 UTC, a minute after the payment started
        node.stat.write_text("1795514460,879609302301671425,879609302301671426,50000000,12500\n")
        assert run_cli(node, "cycle").returncode == 0  # reads the stat line into the ledger
        result = run_cli(node, "report", "--date", "2026-11-24")
        # a report needs LNDg and the ledger, not regolancer's template
        absent = {"REGOLANCER_TEMPLATE": str(tmp_path / "absent.json")}
        without_template = run_cli(node, "report", "--date", "2026-11-24", env=absent)
        berlin = run_cli(node, "report", "--date", "2026-11-24", env={"TIMEZONE": "Europe/Berlin"})
    assert without_template.returncode == 0, without_template.stderr
    assert without_template.stdout.startswith("Rebalancing on Tue 2026-11-24 (UTC)\nNode: 3 ·")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "Rebalancing on Tue 2026-11-24 (UTC)",
        "Node: 3 · 100,000 sat · 19.7 sat fees (197 ppm)",
        "This daemon: 1 · 50,000 sat · 12.5 sat fees (250 ppm) — share 33.3% of rebalances, "
        "50.0% of sats",
        "LNDg: 1 · 30,000 sat · 3.2 sat fees (106 ppm)",
        "Other tools: 1 · 20,000 sat · 4 sat fees (200 ppm)",
        "Runs: none",
        # no forwards in LNDg; all three payments went into TargetB: 12.5 + 3.2 + 4 sat
        "Routing revenue: 0 sat from 0 forwards; rebalancing cost 19.7 sat, with no revenue to "
        "set it against",
        "Worst net 7 d: TargetB -19.7 sat",
        "Best net 7 d: none",
    ]
    # in Berlin (UTC+1) the other tool's 23:30 UTC payment falls on the 25th
    assert "Other tools: 0" in berlin.stdout.splitlines()
    csv_lines = (node.data / "daily-report.csv").read_text().splitlines()
    assert csv_lines[0].startswith("date,node_rebalances,daemon_rebalances,daemon_share_pct")
    assert csv_lines[1].startswith("2026-11-24,2,1,50.00")  # the Berlin run rewrote the row
    assert len(csv_lines) == 2
    assert (node.data / "daily-report.png").read_bytes().startswith(b"\x89PNG")


def test_a_run_cut_short_after_two_rapid_rebalances_is_one_line_in_the_log(node: Node) -> None:
    # 44,000 sat (fee 10) then 88,000 sat (fee 20), then regolancer's deadline (exit 2):
    # 132,000 sat, fee 30 sat, 30 / 132,000 = 227.3 ppm.
    node.set_scenario(
        {"outcome": "rebalance_timeout", "steps": 2, "amount_sat": 44_000, "fee_sat": 10}
    )
    with running(node) as daemon:
        out = daemon.wait_for_log(r"rebalanced 132,000 sat \S+ -> \S+ in 2 payments")
        code, _ = daemon.stop()
    assert code == 0
    assert re.search(
        r"rebalanced 132,000 sat Src\d -> Tgt\d in 2 payments, fee 30 sat \(227 ppm\)", out
    )
    # Each line once: a run stopped at shutdown after one step is a line of one payment.
    shown = re.findall(
        r"rebalanced [\d,]+ sat \S+ -> \S+?(?: in (\d) payments)?, fee", daemon.output
    )
    assert sum(int(n or 1) for n in shown) == len(node.ledger()) == len(node.stat_lines())
