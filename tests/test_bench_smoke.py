"""`python -m bench --quick` runs and prints every figure (values are not asserted)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.subprocess  # runs `python -m bench` as a child process

REPO = Path(__file__).resolve().parents[1]

# One pattern per figure the issue asks for; each must be printed.
FIGURES = [
    r"^earn 40 channels \(1 node, route success per pair\), 1.5 h: net earnings "
    r"\(sat, mean ± sd\): "
    r"daemon -?[\d,]+ ± [\d,]+; daemon with history .*; daemon, EARNINGS_BUDGET_RATIO=1 .*; "
    r"original \(current\) .*; LNDg AR .*; original \(early\) -?[\d,]+ ± [\d,]+$",
    r"^earn 150 channels .*, 1.5 h: revenue lost to depleted channels \(sat, mean ± sd\): daemon ",
    r"^earn 150 channels .*, 1.5 h: rebalancing fees paid \(sat, mean ± sd\): daemon ",
    r"^earn 150 channels .*, 1.5 h: sats moved into deficits \(sat, mean ± sd\): daemon ",
    r"^earn 500 channels .*, 1.5 h: worker-hours on runs that moved nothing \(h, mean ± sd\): ",
    r"^earn 500 channels .*: time until every target was within its band \(median, within 1.5 h\)",
    r"^earn 150 channels .*: net earnings over 1.5 h, cold start, daemon -?[\d,]+ sat vs the best "
    r"baseline \(.+\) -?[\d,]+ sat: [\d.]+x",
    r"^earn 150 channels .*: revenue lost over 1.5 h, daemon [\d,]+ sat vs the best baseline ",
    r"^earn 500 channels .*: EARNINGS_BUDGET_RATIO=1, channels whose rebalancing fees exceed "
    r"their revenue over the last 7 days at the end: \d+ on 1 node",
    r"^order 40 channels \(1 node\), cold start:",
    r"^  earnings  net +-?[\d,]+ sat = revenue [\d,]+ - fees [\d,]+; revenue lost [\d,]+",
    r"^  depletion net +-?[\d,]+ sat = revenue [\d,]+ - fees [\d,]+; revenue lost [\d,]+",
    r"^  earnings - depletion: [+-][\d,]+ sat net per node.*; earnings ahead on \d+ of 1 nodes",
    r"^planning 20 channels .*: cycle start [\d.]+ ms",
    r"^planning 150 channels ",
    r"^planning 500 channels ",
    r"^planning 1500 channels .*next pairs [\d.]+ ms.*\[target <= 20 ms: (PASS|FAIL)\]",
    r"^fetch 1500 channels from the loopback LNDg: \d+ ms",
    r"^fetch \+ plan 1500 channels: \d+ ms.*\[target <= 300 ms: (PASS|FAIL)\]",
    r"^lndg 1500 channels idle \(\d+ runs, \d+ successes per h\): before \d+ requests \(\d+ list, "
    r"\d+ detail, \d+ forwards\), [\d.]+ MB per h; after \d+ requests \(\d+ list, \d+ detail, "
    r"\d+ forwards\), [\d.]+ MB per h",
    r"^lndg 1500 channels under load .*: before .* MB per h; after .* MB per h; [\d.]+x fewer "
    r"bytes  \[target >= 10x: (PASS|FAIL)\]",
    r"^report 30d at [\d,]+ ledger rows \([\d,]+ LNDg payments\), 29 closed days stored: "
    r"[\d.]+ s .*nothing stored yet .*: [\d.]+ s.*\[target < 1 s: (PASS|FAIL)\]",
    r"^report 30d at [\d,]+ ledger rows: longest event-loop stall while it ran \d+ ms",
    r"^stat line -> chat message \(6 lines\): p50 [\d.]+ s, p95 [\d.]+ s",
    r"^idle resident memory .*: [\d.]+ MB",
    r"^idle CPU: [\d.]+ % of one core",
    r"^resident memory under load .*: \d+ MB .*CPU [\d.]+ % of one core",
    r"^summary: \d+ PASS, \d+ FAIL",
]


@pytest.mark.timeout(110)
def test_quick_bench_prints_every_figure(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    missing = [f for f in FIGURES if not re.search(f, result.stdout, re.MULTILINE)]
    assert missing == [], result.stdout
    # every target line carries a verdict
    verdicts = re.findall(r"\[target [^\]]+: (PASS|FAIL)\]", result.stdout)
    assert len(verdicts) >= 5
