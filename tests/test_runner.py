"""RegolancerRunner against the fake regolancer: real child processes, real files."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from core.models import Channel, Outcome, Pair
from core.runner import (
    RegolancerRunner,
    child_environment,
    classify,
    find_binary,
    group_alive,
    last_meaningful_line,
)
from tests.test_pairing import channel as node_channel

HERE = Path(__file__).resolve().parent
FAKE = HERE.parent / "sim" / "regolancer.py"
SAMPLES = HERE / "samples" / "regolancer"
SOURCE, TARGET = "879609302301671425", "879609302301671426"

GRACE = (0.3, 0.3)
PANIC = [
    "2026/11/24 21:30:00 Attempt #1, amount: 50000 (max fee: 25 sat | 500 ppm )",
    "panic: runtime error: invalid memory address or nil pointer dereference",
    "[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x8f1c2a]",
    "",
    "goroutine 1 [running]:",
    "main.(*regolancer).pay(0xc0001a2000, {0xb5c1e8, 0xc000124000}, 0xc350, 0x0)",
    "\t/build/regolancer/payment.go:57 +0x2aa",
    "main.main()",
    "\t/build/regolancer/main.go:512 +0x1c45",
]


def channel(chan_id: str, alias: str, pubkey: str) -> Channel:
    return node_channel(
        int(chan_id),
        alias=alias,
        remote_pubkey=pubkey,
        auto_rebalance=True,
        ar_out_target=50,
        ar_in_target=50,
    )


def make_pair(source: str = SOURCE, target: str = TARGET) -> Pair:
    return Pair(
        channel(source, "Src", "02" + "a" * 64), channel(target, "Tgt", "03" + "b" * 64), 60, 40
    )


def sample(name: str) -> list[str]:
    return (SAMPLES / name).read_text().splitlines()


def records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def started_pid(log_dir: Path, worker: int) -> int:
    text = (log_dir / f"worker-{worker}.log").read_text()
    return int(re.findall(r"started pid (\d+)", text)[-1])


def wait_group_gone(pgid: int, timeout: float = 5.0) -> None:
    """killpg(pgid, 0) must end in ProcessLookupError; allow init time to reap zombies."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"process group {pgid} still exists")
        time.sleep(0.05)


class Env:
    """A runner wired to the fake, a scenario file and a record file under tmp_path."""

    def __init__(self, tmp_path: Path, fake_bin: Path) -> None:
        self.tmp = tmp_path
        self.fake_bin = fake_bin
        self.scenario_path = tmp_path / "scenario.json"
        self.record_path = tmp_path / "record.jsonl"
        self.stat_path = tmp_path / "data" / "stat.csv"
        self.work_dir = tmp_path / "work"
        self.log_dir = tmp_path / "logs"
        self.scenario({"outcome": "success", "delay": 0.01})

    def scenario(self, default: dict[str, Any], pairs: dict[str, Any] | None = None) -> None:
        data = {"default": default, "pairs": pairs or {}}
        self.scenario_path.write_text(json.dumps(data))

    def runner(self, **overrides: Any) -> RegolancerRunner:
        options: dict[str, Any] = {
            "binary": str(self.fake_bin),
            "template": {"amount": 50000, "timeout_rebalance": 25},
            "stat_path": self.stat_path,
            "work_dir": self.work_dir,
            "log_dir": self.log_dir,
            "timeout_seconds": 20.0,
            "log_max_bytes": 100_000,
            "kill_grace_seconds": GRACE,
            "stop_grace_seconds": (0.2, 0.2),
            "extra_env": {
                "FAKE_REGOLANCER_SCENARIO": str(self.scenario_path),
                "FAKE_REGOLANCER_RECORD": str(self.record_path),
            },
        }
        options.update(overrides)
        return RegolancerRunner(**options)

    def records(self) -> list[dict[str, Any]]:
        return records(self.record_path)

    def leftover_configs(self) -> list[Path]:
        return list(self.work_dir.glob("*")) if self.work_dir.exists() else []


@pytest.fixture(scope="session")
def fake_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # A private executable copy: the suite must not depend on the checkout's file mode.
    path = tmp_path_factory.mktemp("bin") / "regolancer"
    shutil.copyfile(FAKE, path)
    path.chmod(0o755)
    return path


@pytest.fixture
def env(tmp_path: Path, fake_bin: Path) -> Env:
    return Env(tmp_path, fake_bin)


# --- classify and last_meaningful_line -------------------------------------------------


@pytest.mark.parametrize(
    ("exit_code", "lines", "killed", "stopped", "expected"),
    [
        (0, sample("stderr-success.txt"), False, False, Outcome.SUCCESS),
        (1, sample("stderr-no-route.txt"), False, False, Outcome.NO_ROUTE),
        (2, sample("stderr-timeout.txt"), False, False, Outcome.REBALANCE_TIMEOUT),
        (1, ["2026/11/24 21:20:09 no channelpairs available"], False, False, Outcome.NOT_QUALIFIED),
        (
            1,
            ["2026/11/24 21:20:09 Timed out looking for a route"],
            False,
            False,
            Outcome.ROUTE_TIMEOUT,
        ),
        (1, ["2026/11/24 21:20:09 rpc error: code = Unavailable"], False, False, Outcome.LND_ERROR),
        (1, [], False, False, Outcome.LND_ERROR),
        (2, PANIC, False, False, Outcome.CRASHED),
        (2, ["Rebalancing timed out", *PANIC], False, False, Outcome.CRASHED),
        (2, ["something else"], False, False, Outcome.CRASHED),
        (-11, [], False, False, Outcome.CRASHED),
        (-9, [], False, False, Outcome.CRASHED),
        (3, ["Error during picking channel: no routes"], False, False, Outcome.CRASHED),
        (None, [], False, False, Outcome.CRASHED),
        (1, sample("stderr-no-route.txt"), True, False, Outcome.KILLED),
        (-9, [], True, False, Outcome.KILLED),
        (0, [], False, True, Outcome.STOPPED),
        (-9, [], True, True, Outcome.STOPPED),
    ],
)
def test_classify(exit_code, lines, killed, stopped, expected):
    assert classify(exit_code, lines, killed_at_limit=killed, stopped=stopped) is expected


def test_classify_last_marker_wins():
    lines = ["Timed out looking for a route", "Error during picking channel: no routes"]
    assert classify(1, lines, killed_at_limit=False, stopped=False) is Outcome.NO_ROUTE
    assert classify(1, lines[::-1], killed_at_limit=False, stopped=False) is Outcome.ROUTE_TIMEOUT


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (sample("stderr-success.txt"), "Saving node cache to /data/cache.dat"),
        (sample("stderr-no-route.txt"), "Error during picking channel: no routes"),
        (sample("stderr-timeout.txt"), "Rebalancing timed out"),
        (PANIC, "panic: runtime error: invalid memory address or nil pointer dereference"),
        (["2026/11/24 21:30:00 real line", "", "   ", "goroutine 7 [select]:"], "real line"),
        (["\x1b[31m2026/11/24 21:30:00 coloured\x1b[0m"], "coloured"),
        (["", "\t/x.go:1 +0x1"], ""),
        ([], ""),
    ],
)
def test_last_meaningful_line(lines, expected):
    assert last_meaningful_line(lines) == expected


def test_child_environment_drops_secrets():
    base = {
        "PATH": "/bin",
        "HOME": "/root",
        "TELEGRAM_TOKEN": "x",
        "LNDG_PASS": "x",
        "LNDG_USER": "x",
        "my_api_token": "x",
        "DB_PASSWORD": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "NO_COLOR": "0",
    }
    env = child_environment(base, {"EXTRA": "1"})
    assert env == {"PATH": "/bin", "HOME": "/root", "EXTRA": "1", "NO_COLOR": "1"}


def test_find_binary(tmp_path, fake_bin):
    assert find_binary(str(fake_bin)) == str(fake_bin)
    assert find_binary(str(tmp_path / "missing")) is None
    plain = tmp_path / "plain"
    plain.write_text("#!/bin/sh\n")
    assert find_binary(str(plain)) is None  # not executable
    assert find_binary("sh") is not None
    assert find_binary("no-such-regolancer-binary") is None


# --- real runs -------------------------------------------------------------------------


@pytest.mark.subprocess
async def test_success_writes_stat_lines_and_cleans_up(env, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("TELEGRAM_TOKEN", "123:secret")
    monkeypatch.setenv("LNDG_PASS", "hunter2")
    monkeypatch.setenv("LNDG_USER", "admin")
    monkeypatch.setenv("SOME_SECRET", "s")
    env.scenario({"outcome": "success", "steps": 2, "delay": 0.01, "fee_sat": 10})
    template = {"amount": 50000, "macaroon_dir": "/very/secret/macaroons", "tlscert": "/t.cert"}
    before = time.time()
    result = await env.runner(template=template, echo_output=True).run(make_pair(), worker=1)

    assert result.outcome is Outcome.SUCCESS
    assert result.exit_code == 0
    assert (result.source, result.target) == (SOURCE, TARGET)
    assert before <= result.started_at <= result.ended_at <= time.time()
    assert result.last_line == "Finished rapid rebalancing"
    lines = env.stat_path.read_text().splitlines()
    assert lines[0] == "timestamp,from_channel,to_channel,amount_msat,fees_msat"
    assert [line.split(",")[1:] for line in lines[1:]] == [
        [SOURCE, TARGET, "50000000", "10000"],
        [SOURCE, TARGET, "100000000", "20000"],
    ]
    assert env.leftover_configs() == []

    (record,) = env.records()
    config = record["config"]
    assert config["from"] == [SOURCE]
    assert config["to"] == [TARGET]
    assert config["pfrom"] == 60
    assert config["pto"] == 40
    assert config["stat"] == str(env.stat_path)
    assert record["argv"][1] == "-f"
    assert record["argv"][2].endswith(".json")
    assert record["pgid"] == record["pid"]  # its own process group
    for name in ("TELEGRAM_TOKEN", "LNDG_PASS", "LNDG_USER", "SOME_SECRET"):
        assert name not in record["env_keys"]
    assert record["no_color"] == "1"

    log_text = (env.log_dir / "worker-1.log").read_text()
    assert "[Src -> Tgt] err: " in log_text
    assert "Success! Paid 10 in fees" in log_text
    assert "[Src -> Tgt] out: " in log_text
    assert "macaroon" not in log_text
    assert '"amount"' not in log_text
    assert config["macaroon_dir"] == "/very/secret/macaroons"  # it did reach regolancer
    assert caplog.records  # echoed output and debug lines...
    assert "macaroon" not in caplog.text  # ...but never the config


@pytest.mark.subprocess
async def test_config_is_private_while_running(env):
    env.scenario({"outcome": "slow", "sleep": 1.0})
    task = asyncio.create_task(env.runner().run(make_pair(), worker=1))
    for _ in range(100):
        configs = env.leftover_configs()
        if configs:
            break
        await asyncio.sleep(0.01)
    (config,) = configs
    assert config.stat().st_mode & 0o777 == 0o600
    assert (await task).outcome is Outcome.SUCCESS
    assert not config.exists()


@pytest.mark.parametrize(
    ("outcome", "expected", "exit_code", "last"),
    [
        ("no_route", Outcome.NO_ROUTE, 1, "Error during picking channel: no routes"),
        ("route_timeout", Outcome.ROUTE_TIMEOUT, 1, "Timed out looking for a route"),
        ("rebalance_timeout", Outcome.REBALANCE_TIMEOUT, 2, "Rebalancing timed out"),
        ("lnd_error", Outcome.LND_ERROR, 1, "rpc error: code = Unavailable"),
        ("crash", Outcome.CRASHED, 2, "panic: runtime error"),
        ("half_line", Outcome.SUCCESS, 0, "Success!"),
    ],
)
@pytest.mark.subprocess
async def test_outcomes(env, outcome, expected, exit_code, last):
    env.scenario({"outcome": "success"}, {f"{SOURCE}>{TARGET}": {"outcome": outcome}})
    result = await env.runner().run(make_pair(), worker=2)
    assert result.outcome is expected
    assert result.exit_code == exit_code
    assert result.last_line.startswith(last)
    assert env.leftover_configs() == []


@pytest.mark.subprocess
async def test_bad_template_value_is_lnd_error(env):
    # regolancer's own refusal of a float integer key surfaces as a config error.
    runner = env.runner(template={"amount": 50000.0})
    result = await runner.run(make_pair(), worker=1)
    assert result.outcome is Outcome.LND_ERROR
    assert "cannot unmarshal number 50000.0" in result.last_line


@pytest.mark.subprocess
async def test_hang_is_killed_at_limit(env):
    env.scenario({"outcome": "hang"})
    start = time.monotonic()
    result = await env.runner(timeout_seconds=1.0).run(make_pair(), worker=1)
    assert result.outcome is Outcome.KILLED
    assert result.exit_code == 1  # it honoured SIGINT, like regolancer
    assert 1.0 <= time.monotonic() - start < 3.0
    pid = started_pid(env.log_dir, 1)
    wait_group_gone(pid)
    assert env.records()[0]["outcome"] == "hang+sigint"
    assert env.leftover_configs() == []
    assert "time limit reached" in (env.log_dir / "worker-1.log").read_text()


@pytest.mark.parametrize(
    ("ignored", "exit_code"),
    [(["SIGINT"], -signal.SIGTERM), (["SIGINT", "SIGTERM"], -signal.SIGKILL)],
)
@pytest.mark.subprocess
async def test_ignored_signals_escalate(env, ignored, exit_code):
    env.scenario({"outcome": "hang", "ignore_signals": ignored})
    start = time.monotonic()
    result = await env.runner(timeout_seconds=1.0).run(make_pair(), worker=1)
    elapsed = time.monotonic() - start
    assert result.outcome is Outcome.KILLED
    assert result.exit_code == exit_code
    assert elapsed < 1.0 + GRACE[0] + GRACE[1] + 1.5
    wait_group_gone(started_pid(env.log_dir, 1))
    assert env.leftover_configs() == []


@pytest.mark.subprocess
async def test_grandchild_is_killed_with_the_group(env):
    env.scenario({"outcome": "spawn_grandchild"})
    result = await env.runner(timeout_seconds=1.0).run(make_pair(), worker=1)
    assert result.outcome is Outcome.KILLED
    pid = started_pid(env.log_dir, 1)
    (record,) = env.records()
    grandchild = record["grandchild_pid"]
    assert grandchild
    assert record["pgid"] == pid
    # The leader left at SIGINT; the SIGINT-proof grandchild still had to go.
    assert not group_alive(pid)
    wait_group_gone(pid)
    with pytest.raises(ProcessLookupError):
        os.kill(grandchild, 0)


@pytest.mark.subprocess
async def test_group_left_behind_by_exited_leader_is_stopped(env):
    env.scenario({"outcome": "spawn_grandchild", "exit_after": 0.2})
    start = time.monotonic()
    result = await env.runner(timeout_seconds=10.0).run(make_pair(), worker=1)
    assert time.monotonic() - start < 5.0  # the grandchild held the pipes open
    assert result.outcome is Outcome.SUCCESS
    assert result.exit_code == 0
    wait_group_gone(started_pid(env.log_dir, 1))
    assert "outlived regolancer" in (env.log_dir / "worker-1.log").read_text()


@pytest.mark.subprocess
async def test_cancel_stops_the_group_and_reraises(env):
    env.scenario({"outcome": "spawn_grandchild"})
    task = asyncio.create_task(env.runner(timeout_seconds=30.0).run(make_pair(), worker=1))
    await asyncio.sleep(0.5)
    pid = started_pid(env.log_dir, 1)
    start = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - start < 2.0
    assert not group_alive(pid)
    wait_group_gone(pid)
    assert env.leftover_configs() == []


@pytest.mark.subprocess
async def test_stop_all_returns_stopped(env):
    env.scenario({"outcome": "hang", "ignore_signals": ["SIGINT"]})
    runner = env.runner(timeout_seconds=30.0, kill_grace_seconds=(10.0, 10.0))
    other = make_pair("879609302301671427", "879609302301671428")
    tasks = [
        asyncio.create_task(runner.run(make_pair(), worker=1)),
        asyncio.create_task(runner.run(other, worker=2)),
    ]
    await asyncio.sleep(0.5)
    assert runner.running == 2
    pids = [started_pid(env.log_dir, 1), started_pid(env.log_dir, 2)]
    start = time.monotonic()
    await runner.stop_all()
    results = await asyncio.gather(*tasks)
    assert time.monotonic() - start < 2.0  # the stop grace, not the 10 s kill grace
    assert [r.outcome for r in results] == [Outcome.STOPPED, Outcome.STOPPED]
    assert runner.running == 0
    for pid in pids:
        wait_group_gone(pid)
    # Shutting down: no new process is started.
    late = await runner.run(make_pair(), worker=1)
    assert late.outcome is Outcome.STOPPED
    assert len(re.findall("started pid", (env.log_dir / "worker-1.log").read_text())) == 1
    assert env.leftover_configs() == []


async def test_binary_missing(env, tmp_path):
    plain = tmp_path / "not-executable"
    plain.write_text("#!/bin/sh\nexit 0\n")
    for binary in (str(tmp_path / "nope"), "no-such-regolancer-binary", str(plain)):
        result = await env.runner(binary=binary).run(make_pair(), worker=1)
        assert result.outcome is Outcome.BINARY_MISSING
        assert result.exit_code is None
        assert "REGOLANCER_BIN" in result.last_line
    assert env.leftover_configs() == []
    assert env.records() == []


@pytest.mark.subprocess
async def test_unexecutable_format_is_binary_missing(env, tmp_path):
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x00\x01\x02 not a program")
    junk.chmod(0o755)
    result = await env.runner(binary=str(junk)).run(make_pair(), worker=1)
    assert result.outcome is Outcome.BINARY_MISSING
    assert env.leftover_configs() == []


@pytest.mark.subprocess
async def test_worker_log_is_bounded(env):
    env.scenario({"outcome": "success", "steps": 30, "delay": 0})
    runner = env.runner(log_max_bytes=3000)
    for _ in range(3):
        assert (await runner.run(make_pair(), worker=4)).outcome is Outcome.SUCCESS
    current = env.log_dir / "worker-4.log"
    rotated = env.log_dir / "worker-4.log.1"
    assert rotated.exists()
    assert current.stat().st_size <= 3000
    assert rotated.stat().st_size <= 3000
    assert sorted(p.name for p in env.log_dir.iterdir()) == ["worker-4.log", "worker-4.log.1"]


@pytest.mark.subprocess
async def test_echo_output(env, caplog):
    caplog.set_level(logging.INFO, logger="regolancer")
    await env.runner(echo_output=True).run(make_pair(), worker=3)
    messages = [r.getMessage() for r in caplog.records if r.name == "regolancer"]
    assert any(m.startswith("[worker 3] ") and "Success! Paid" in m for m in messages)


@pytest.mark.subprocess
async def test_no_echo_by_default(env, caplog):
    caplog.set_level(logging.INFO, logger="regolancer")
    await env.runner().run(make_pair(), worker=3)
    assert not [r for r in caplog.records if r.name == "regolancer"]


@pytest.mark.subprocess
async def test_concurrent_runs_overlap(env):
    env.scenario({"outcome": "success", "steps": 3, "delay": 0.2})
    runner = env.runner()
    pairs = [make_pair(str(100 + i), str(200 + i)) for i in range(3)]
    results = await asyncio.gather(*(runner.run(p, worker=i) for i, p in enumerate(pairs)))
    assert all(r.outcome is Outcome.SUCCESS for r in results)
    recs = env.records()
    assert max(r["start"] for r in recs) < min(r["end"] for r in recs)
    lines = env.stat_path.read_text().splitlines()
    assert lines.count(lines[0]) == 1
    assert len(lines) == 1 + 9
