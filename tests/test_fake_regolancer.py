"""The fake regolancer itself: it must keep the contract the runner and ledger rely on."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

FAKE = Path(__file__).resolve().parents[1] / "sim" / "regolancer.py"
PREFIX = re.compile(r"^\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2} ")
HEADER = "timestamp,from_channel,to_channel,amount_msat,fees_msat"


class Fake:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.stat = tmp_path / "stat.csv"
        self.scenario_path = tmp_path / "scenario.json"
        self.record_path = tmp_path / "record.jsonl"
        self.env = {
            **os.environ,
            "FAKE_REGOLANCER_SCENARIO": str(self.scenario_path),
            "FAKE_REGOLANCER_RECORD": str(self.record_path),
        }
        self.groups: list[int] = []  # process groups of background fakes, killed at teardown
        self.scenario({"outcome": "success", "delay": 0})

    def scenario(self, default: dict[str, Any], pairs: dict[str, Any] | None = None) -> None:
        self.scenario_path.write_text(json.dumps({"default": default, "pairs": pairs or {}}))

    def config(self, name: str = "config.json", **values: Any) -> Path:
        data: dict[str, Any] = {
            "amount": 50000,
            "from": ["111"],
            "to": ["222"],
            "pfrom": 60,
            "pto": 40,
            "stat": str(self.stat),
        }
        data.update(values)
        path = self.tmp / name
        path.write_text(json.dumps(data))
        return path

    def argv(self, *args: str) -> list[str]:
        return [str(FAKE), *args]

    def run(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args), env=env or self.env, capture_output=True, text=True, timeout=20
        )

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.record_path.read_text().splitlines()]


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[Fake]:
    fake = Fake(tmp_path)
    yield fake
    for pgid in fake.groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


def stat_lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_is_a_standalone_executable():
    assert os.access(FAKE, os.X_OK), "chmod +x sim/regolancer.py"
    source = FAKE.read_text()
    assert source.startswith("#!/usr/bin/env python3\n")
    assert not re.search(r"^\s*(from|import)\s+(core|tests|bot)\b", source, re.M)


@pytest.mark.subprocess
def test_success_appends_stat_lines(fake):
    fake.scenario({"outcome": "success", "steps": 3, "delay": 0, "fee_sat": 5})
    before = int(time.time())
    done = fake.run("-f", str(fake.config()))
    assert done.returncode == 0, done.stderr
    lines = stat_lines(fake.stat)
    assert lines[0] == HEADER
    rows = [line.split(",") for line in lines[1:]]
    assert [row[1:] for row in rows] == [
        ["111", "222", "50000000", "5000"],
        ["111", "222", "100000000", "10000"],
        ["111", "222", "200000000", "20000"],
    ]
    assert all(before <= int(row[0]) <= time.time() for row in rows)
    assert fake.stat.read_text().endswith("\n")
    assert all(PREFIX.match(line) for line in done.stderr.splitlines())
    assert "Finished rapid rebalancing" in done.stderr
    assert done.stdout  # routes go to stdout

    # A second run appends without a second header.
    assert fake.run("-f", str(fake.config())).returncode == 0
    assert stat_lines(fake.stat).count(HEADER) == 1
    assert len(stat_lines(fake.stat)) == 1 + 3 + 3


@pytest.mark.subprocess
def test_precreated_stat_file_gets_no_header(fake):
    fake.stat.touch()
    assert fake.run("--config", str(fake.config())).returncode == 0
    (line,) = stat_lines(fake.stat)
    assert line.split(",")[1:] == ["111", "222", "50000000", "12000"]


@pytest.mark.subprocess
def test_record(fake):
    done = fake.run("-f", str(fake.config()), env={**fake.env, "LNDG_PASS": "p", "NO_COLOR": "1"})
    assert done.returncode == 0
    (record,) = fake.records()
    assert record["config"]["from"] == ["111"]
    assert record["outcome"] == "success"
    assert record["exit_code"] == 0
    assert record["start"] <= record["end"]
    assert "LNDG_PASS" in record["env_keys"]
    assert "p" not in json.dumps(record["env_keys"])
    assert record["no_color"] == "1"
    assert record["argv"][1:] == ["-f", str(fake.tmp / "config.json")]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"from": [111]},
            "json: cannot unmarshal number into Go struct field configParams.from of type string",
        ),
        (
            {"to": ["1", 2]},
            "json: cannot unmarshal number into Go struct field configParams.to of type string",
        ),
        (
            {"amount": 50000.0},
            "json: cannot unmarshal number 50000.0 into Go struct field configParams.amount "
            "of type int64",
        ),
        ({"pfrom": 60.0}, "cannot unmarshal number 60.0 into Go struct field configParams.pfrom"),
        ({"timeout_rebalance": 1.5}, "configParams.timeout_rebalance of type int"),
        ({"allow_rapid_rebalance": "yes"}, "cannot unmarshal string into Go struct field"),
        ({"amount": 0}, "no amount specified"),
        ({"econ_ratio_max_ppm": 100, "fee_limit_ppm": 200}, "not both"),
        ({"min_amount": 60000}, "minimum amount should be less than amount"),
    ],
)
@pytest.mark.subprocess
def test_config_errors_are_fatal(fake, values, message):
    done = fake.run("-f", str(fake.config(**values)))
    assert done.returncode == 1
    assert message in done.stderr
    assert PREFIX.match(done.stderr.splitlines()[-1])
    assert not fake.stat.exists()
    assert fake.records()[0]["outcome"] == "config_error"


@pytest.mark.subprocess
def test_unknown_keys_are_ignored(fake):
    assert fake.run("-f", str(fake.config(made_up_key=1.5))).returncode == 0


@pytest.mark.parametrize(
    "args",
    [
        ["-f", "/nonexistent/config.json"],
        ["--bogus"],
        [],
        ["-f"],
    ],
)
@pytest.mark.subprocess
def test_bad_invocations(fake, args):
    done = fake.run(*args)
    assert done.returncode == 1


@pytest.mark.subprocess
def test_toml_path_is_not_json(fake):
    path = fake.config("config.toml.json")
    done = fake.run("-f", str(path))
    assert done.returncode == 1
    assert "toml" in done.stderr


@pytest.mark.subprocess
def test_not_json(fake, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{nope")
    done = fake.run("-f", str(path))
    assert done.returncode == 1
    assert "Error reading config file" in done.stderr


@pytest.mark.subprocess
def test_info_pays_nothing(fake):
    done = fake.run("-f", str(fake.config()), "--info")
    assert done.returncode == 0
    assert "111" in done.stdout
    assert "222" in done.stdout
    assert not fake.stat.exists()


@pytest.mark.subprocess
def test_info_fails_like_a_run_when_lnd_does(fake):
    # regolancer reaches LND before it looks at --info: an LND error ends --info too.
    fake.scenario({"outcome": "lnd_error"})
    done = fake.run("-f", str(fake.config()), "--info")
    assert done.returncode == 1
    assert PREFIX.match(done.stderr)
    assert "rpc error: code = Unavailable" in done.stderr.splitlines()[-1]
    assert not fake.stat.exists()
    # ...while an outcome LND would only reach later (a route) leaves --info alone.
    fake.scenario({"outcome": "no_route"})
    assert fake.run("-f", str(fake.config()), "--info").returncode == 0


@pytest.mark.parametrize(
    ("outcome", "code", "needle"),
    [
        ("not_qualified", 1, "no channelpairs available"),
        ("no_route", 1, "Error during picking channel: no routes"),
        ("route_timeout", 1, "Timed out looking for a route"),
        ("rebalance_timeout", 2, "Rebalancing timed out"),
        ("lnd_error", 1, "rpc error: code = Unavailable"),
        ("crash", 2, "panic: runtime error"),
    ],
)
@pytest.mark.subprocess
def test_failure_outcomes(fake, outcome, code, needle):
    fake.scenario({"outcome": outcome, "delay": 0})
    done = fake.run("-f", str(fake.config()))
    assert done.returncode == code
    assert needle in done.stderr
    assert not fake.stat.exists()  # failures write nothing
    if outcome == "crash":
        assert "goroutine 1 [running]:" in done.stderr


@pytest.mark.subprocess
def test_rebalance_timeout_after_rapid_steps(fake):
    fake.scenario({"outcome": "rebalance_timeout", "steps": 2, "delay": 0})
    done = fake.run("-f", str(fake.config()))
    assert done.returncode == 2
    assert len(stat_lines(fake.stat)) == 1 + 2


@pytest.mark.subprocess
def test_pairs_override_default_and_scenario_is_reread(fake):
    fake.scenario({"outcome": "success", "delay": 0}, {"111>222": {"outcome": "no_route"}})
    assert fake.run("-f", str(fake.config())).returncode == 1
    assert fake.run("-f", str(fake.config(to=["333"]))).returncode == 0
    fake.scenario({"outcome": "crash"})
    assert fake.run("-f", str(fake.config())).returncode == 2


@pytest.mark.subprocess
def test_short_channel_ids(fake):
    assert fake.run("-f", str(fake.config(**{"from": ["800000x1234x1"]}))).returncode == 0
    (line,) = stat_lines(fake.stat)[1:]
    assert line.split(",")[1] == str(800000 << 40 | 1234 << 16 | 1)


@pytest.mark.subprocess
def test_half_line(fake):
    fake.scenario({"outcome": "half_line"})
    assert fake.run("-f", str(fake.config())).returncode == 0
    text = fake.stat.read_text()
    assert text.startswith(HEADER + "\n")
    assert not text.endswith("\n")
    assert text.count("\n") == 1


@pytest.mark.subprocess
def test_slow(fake):
    fake.scenario({"outcome": "slow", "sleep": 0.3})
    start = time.monotonic()
    assert fake.run("-f", str(fake.config())).returncode == 0
    assert time.monotonic() - start >= 0.3
    assert len(stat_lines(fake.stat)) == 2


@pytest.mark.subprocess
def test_concurrent_writers_share_the_file(fake):
    fake.scenario({"outcome": "success", "steps": 5, "delay": 0})
    procs = [
        subprocess.Popen(
            fake.argv("-f", str(fake.config(f"c{i}.json", **{"from": [str(i + 1)]}))),
            env=fake.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i in range(6)
    ]
    assert [p.wait(timeout=20) for p in procs] == [0] * 6
    lines = stat_lines(fake.stat)
    assert lines.count(HEADER) == 1
    assert lines[0] == HEADER
    assert len(lines) == 1 + 30
    assert all(re.fullmatch(r"\d+,\d+,222,\d+,\d+", line) for line in lines[1:])
    assert len(fake.records()) == 6


def start(fake: Fake, **scenario: Any) -> tuple[subprocess.Popen[str], str]:
    """Start a fake in its own group; return it with its first stderr line."""
    fake.scenario(scenario)
    proc = subprocess.Popen(
        fake.argv("-f", str(fake.config())),
        env=fake.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    fake.groups.append(proc.pid)
    assert proc.stderr is not None
    # After the first log line the signal handlers are in place.
    return proc, proc.stderr.readline()


@pytest.mark.subprocess
def test_hang_exits_1_on_sigint(fake):
    proc, _ = start(fake, outcome="hang")
    time.sleep(0.2)
    assert proc.poll() is None
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=5) == 1
    assert fake.records()[0]["outcome"] == "hang+sigint"


@pytest.mark.subprocess
def test_hang_can_ignore_sigint(fake):
    proc, _ = start(fake, outcome="hang", ignore_signals=["SIGINT"])
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=5) == -signal.SIGTERM
    assert fake.records()[0]["outcome"] == "hang+sigterm"


@pytest.mark.subprocess
def test_spawn_grandchild_shares_the_group(fake):
    proc, line = start(fake, outcome="spawn_grandchild")
    grandchild = int(line.rsplit(" ", 1)[1])
    assert os.getpgid(grandchild) == proc.pid
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=5) == 1
    # The grandchild ignores SIGINT: still there until the group gets SIGKILL.
    time.sleep(0.2)
    os.kill(grandchild, 0)
    os.killpg(proc.pid, signal.SIGKILL)
    (record,) = fake.records()
    assert record["grandchild_pid"] == grandchild


@pytest.mark.subprocess
def test_stdlib_only():
    # Runs under a bare interpreter with no site-packages.
    done = subprocess.run(
        [
            sys.executable,
            "-S",
            "-c",
            f"import runpy; runpy.run_path({str(FAKE)!r}, run_name='__main__')",
        ],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert done.returncode == 1  # no config given: regolancer's "no amount" fatal
    assert "no amount specified" in done.stderr
