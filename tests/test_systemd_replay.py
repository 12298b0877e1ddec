"""README's systemd steps, replayed literally into a temporary root, then `check` as the unit runs.

The block under README's "### systemd" is parsed line by line (so the README and this test
cannot drift: a step this replay does not know fails it). Paths under /etc, /opt, /usr/local,
/var/lib and /home map into a temporary root. What each step does here:

- `useradd NAME`: the service user; it must be the unit's User=.
- `install`, `cp`: real copies from the checkout, with the modes and groups the step gives.
  `"$(go env GOPATH)/bin/regolancer"` is the operator's build: the regolancer stand-in.
- `python3 -m venv`, `pip install .`: not replayed (tests/test_deployment.py replays a pip
  install); the venv must be the one ExecStart names, whose console script is this venv's.
- `sudoedit`: the operator's edits: LNDg's URL and password in the env file, LND's paths in
  the template, each line edited in place as an editor would.
- `usermod -aG GROUP USER`: USER's supplementary groups.
- `sudo -u USER cat FILES`: run as USER; must succeed.
- `systemctl enable --now`: the unit file must be where the step put it; then
  `regolancer-orchestrator check` runs as the unit would run the daemon: the environment
  systemd builds (defaults, Environment=, then the env file read with systemd's own rules,
  tests/systemd_env.py), in WorkingDirectory, as the service user.

Running as that user: where the tests run as root (CI does), the replay gives the test process
the user's groups and drops the capabilities that let root ignore file modes; the service user
is then this uid and every file the steps create for "root" belongs to a stand-in uid, so a
file the service user could not read cannot be read here either. Not as root, modes are kept
but ownership cannot be, and the groups step is not checked.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dotenv import dotenv_values

from sim.lndg import FakeLndg, channel_row
from tests.daemon_process import FAKE_REGOLANCER, REPO, honour_file_modes
from tests.systemd_env import parse_env_file, service_environment
from tests.test_deployment import unit_settings

MAPPED = ("/etc/", "/opt/", "/usr/local/", "/var/lib/", "/home/")
# systemd's default PATH for services (path-util.h, DEFAULT_PATH_NORMAL).
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Stand-in numeric ids for the accounts the steps name ("regolancer" is this process's uid).
ROOT_ID = 61000
LND_ID = 61001
SERVICE_GID = 61002


def readme_steps(readme: str, heading: str = "### systemd") -> list[str]:
    """The command lines of the first ```sh block under `heading`, comments dropped."""
    section = readme.split(f"\n{heading}\n", 1)[1]
    block = section.split("```sh\n", 1)[1].split("\n```", 1)[0]
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def commands(line: str) -> list[list[str]]:
    """`a && b` as [[a...], [b...]], each without a leading sudo or a trailing redirection."""
    result: list[list[str]] = [[]]
    for word in shlex.split(line, comments=True):
        if word == "&&":
            result.append([])
        elif not word.startswith((">", "2>")):
            result[-1].append(word)
    return [words[1:] if words[:1] == ["sudo"] else words for words in result]


def options(words: list[str], with_value: str) -> tuple[dict[str, str], list[str]]:
    """Short options (`-m 0640`, `-aG bitcoin`, `-d`) and the remaining operands."""
    found: dict[str, str] = {}
    operands: list[str] = []
    rest = iter(words)
    for word in rest:
        if word.startswith("--"):
            name, sep, value = word[2:].partition("=")
            found[name] = value if sep else next(rest) if name in {"home-dir", "shell"} else ""
        elif word.startswith("-") and len(word) > 1:
            letters = word[1:]
            for i, letter in enumerate(letters):
                if letter in with_value:
                    found[letter] = letters[i + 1 :] or next(rest)
                    break
                found[letter] = ""
        else:
            operands.append(word)
    return found, operands


@dataclass
class Replay:
    root: Path
    lndg_url: str
    lndg_password: str
    checkout: Path = REPO
    as_root: bool = field(default_factory=lambda: os.geteuid() == 0)
    user: str | None = None
    groups: dict[str, list[str]] = field(default_factory=dict)
    venvs: list[str] = field(default_factory=list)
    lnd_paths: list[str] = field(default_factory=list)
    check: subprocess.CompletedProcess[str] | None = None

    # --- the file system -----------------------------------------------------------------

    def host(self, path: str) -> Path:
        assert path.startswith(MAPPED), f"a step writes outside the mapped roots: {path}"
        return self.root / path.lstrip("/")

    def uid(self, account: str) -> int:
        return {"root": ROOT_ID, self.user or "": os.getuid()}.get(account, LND_ID)

    def gid(self, group: str) -> int:
        return {"root": ROOT_ID, self.user or "": SERVICE_GID}.get(group, LND_ID)

    def own(self, path: Path, owner: str = "root", group: str = "root") -> None:
        if self.as_root:
            os.chown(path, self.uid(owner), self.gid(group))

    def lay_out_host(self, steps: list[str]) -> None:
        """What the operator's machine already has: the top directories, LND's files."""
        for directory in (*MAPPED, "/usr/local/bin/", "/etc/systemd/system/"):
            self.host(directory).mkdir(parents=True, exist_ok=True)
        lnd_files = {w for line in steps for w in shlex.split(line) if w.startswith("/home/")}
        self.lnd_paths = sorted(lnd_files)
        for path in self.lnd_paths:
            target = self.host(path)
            parent = target.parent
            parent.mkdir(parents=True, exist_ok=True)
            target.write_text("stand-in for LND's " + target.name)
            target.chmod(0o640)  # LND's group may read: what the README's usermod relies on
            self.own(target, "bitcoin", "bitcoin")
            while parent != self.host("/home/"):
                parent.chmod(0o750)
                self.own(parent, "bitcoin", "bitcoin")
                parent = parent.parent

    # --- the steps -------------------------------------------------------------------------

    def run(self, steps: list[str]) -> None:
        self.lay_out_host(steps)
        for line in steps:
            for words in commands(line):
                self.step(words, line)

    def step(self, words: list[str], line: str) -> None:
        name = words[0]
        if name == "useradd":
            self.user = options(words[1:], "")[1][-1]
        elif name == "usermod":
            opts, operands = options(words[1:], "G")
            assert "a" in opts, f"usermod without -a replaces the user's groups: {line}"
            self.groups.setdefault(operands[-1], []).extend(opts["G"].split(","))
        elif name == "install":
            self.install(words[1:])
        elif name == "cp":
            source, destination = words[1:]
            target = self.host(destination)
            target = target / Path(source).name if destination.endswith("/") else target
            shutil.copyfile(self.checkout / source, target)
            target.chmod(0o644)
            self.own(target)
        elif words[:3] == ["python3", "-m", "venv"]:
            self.venvs.append(words[3])
        elif name.endswith("/bin/pip"):
            assert words[1:] == ["install", "."], f"pip installs something else: {line}"
            assert name.removesuffix("/bin/pip") in self.venvs, f"no venv made for {line}"
        elif name == "sudoedit":
            for path in words[1:]:
                self.edit(path)
        elif words[:2] == ["-u", self.user]:
            self.read_as_service_user(words[2:], line)
        elif name == "echo":
            pass  # the `&& echo readable` of the line above
        elif name == "systemctl":
            if words[1:3] == ["enable", "--now"]:
                self.start(words[3])
        elif name != "journalctl":
            raise AssertionError(f"the README has a step this replay does not know: {line}")

    def install(self, args: list[str]) -> None:
        opts, operands = options(args, "mogt")
        mode = int(opts.get("m", "755"), 8)
        owner, group = opts.get("o", "root"), opts.get("g", "root")
        if "d" in opts:
            for directory in operands:
                target = self.host(directory)
                target.mkdir(parents=True, exist_ok=True)
                target.chmod(mode)
                self.own(target, owner, group)
            return
        source, destination = operands
        origin = FAKE_REGOLANCER if "$(" in source else self.checkout / source
        assert origin.is_file(), f"install copies a file the checkout lacks: {source}"
        target = self.host(destination)
        shutil.copyfile(origin, target)
        target.chmod(mode)
        self.own(target, owner, group)

    def edit(self, path: str) -> None:
        """The operator's edits, in place as in an editor."""
        target = self.host(path)
        if target.name.endswith(".json"):
            cert, macaroon = self.lnd_files()
            template = json.loads(target.read_text())
            template["tlscert"] = str(cert)
            template["macaroon_dir"] = str(macaroon.parent)
            template["macaroon_filename"] = macaroon.name
            target.write_text(json.dumps(template, indent=2) + "\n")
            return
        wanted = {"LNDG_BASE_URL": self.lndg_url, "LNDG_PASS": self.lndg_password}
        lines = target.read_text().splitlines()
        for i, text in enumerate(lines):
            key = text.partition("=")[0]
            if key in wanted:
                lines[i] = f"{key}={wanted.pop(key)}"
        assert not wanted, f"the env file has no line for {sorted(wanted)}"
        target.write_text("\n".join(lines) + "\n")

    def lnd_files(self) -> tuple[Path, Path]:
        (cert,) = [p for p in self.lnd_paths if p.endswith("tls.cert")]
        (macaroon,) = [p for p in self.lnd_paths if p.endswith(".macaroon")]
        return self.host(cert), self.host(macaroon)

    def as_service_user(self) -> dict[str, object]:
        """subprocess arguments that make the child see files as the service user would."""
        if not self.as_root:
            return {}
        extra = [self.gid(group) for group in self.groups.get(self.user or "", [])]
        return {"group": SERVICE_GID, "extra_groups": extra, "preexec_fn": honour_file_modes}

    def read_as_service_user(self, words: list[str], line: str) -> None:
        assert words[0] == "cat", line
        result = subprocess.run(
            ["cat", *[str(self.host(p)) for p in words[1:]]],
            capture_output=True,
            text=True,
            check=False,
            **self.as_service_user(),  # type: ignore[call-overload]
        )
        assert result.returncode == 0, f"{line}\n{result.stderr}"

    # --- the unit --------------------------------------------------------------------------

    def start(self, name: str) -> None:
        unit_file = self.host(f"/etc/systemd/system/{name}.service")
        assert unit_file.is_file(), "systemctl starts a unit no step installed"
        service = unit_settings(unit_file.read_text())["Service"]
        assert service["User"] == [self.user], "the unit runs as another user than useradd's"
        env_files = []
        for entry in service.get("EnvironmentFile", []):
            path = self.host(entry.lstrip("-"))
            if entry.startswith("-") and not path.exists():
                continue
            assert path.is_file(), f"EnvironmentFile={entry} was not made by a step"
            env_files.append(parse_env_file(path.read_text()))
        environment = service_environment(service.get("Environment", []), env_files)

        state_dir = "/var/lib/" + service["StateDirectory"][0]
        self.host(state_dir).mkdir(parents=True, exist_ok=True)  # systemd makes it at start
        self.host(state_dir).chmod(int(service.get("StateDirectoryMode", ["0755"])[0], 8))
        self.own(self.host(state_dir), self.user or "", self.user or "")
        workdir = self.host(service["WorkingDirectory"][0])

        exec_start = shlex.split(service["ExecStart"][0])
        venv = exec_start[0].rsplit("/bin/", 1)[0]
        assert venv in self.venvs, f"ExecStart's {exec_start[0]} is not in the venv a step made"
        assert exec_start[1:] == ["run"]

        env = {
            # What systemd sets for every service of a User= (systemd.exec, "Environment").
            "PATH": ":".join(
                str(self.host(d)) if d.startswith("/usr/local/") else d
                for d in SYSTEMD_PATH.split(":")
            )
            + os.pathsep
            + str(Path(sys.executable).parent),  # a python3 for the regolancer stand-in
            "HOME": str(self.host(state_dir)),
            "USER": self.user or "",
            "LOGNAME": self.user or "",
            "SHELL": "/usr/sbin/nologin",
            "STATE_DIRECTORY": str(self.host(state_dir)),
        }
        for key, value in environment.items():
            env[key] = str(self.host(value)) if value.startswith(MAPPED) else value
        self.check = subprocess.run(
            [sys.executable, "-m", "bot", "check"],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            **self.as_service_user(),  # type: ignore[call-overload]
        )


@pytest.fixture
def lndg() -> Iterator[FakeLndg]:
    rows = [channel_row(101, alias="Source", local_balance=900_000), channel_row(102, alias="Sink")]
    with FakeLndg(channels=rows, payments=[], rebalancer=[], password="pw") as fake:
        yield fake


def replay(tmp_path: Path, lndg: FakeLndg, checkout: Path = REPO) -> Replay:
    done = Replay(tmp_path / "root", lndg.url, "pw", checkout)
    done.run(readme_steps((checkout / "README.md").read_text()))
    return done


@pytest.mark.subprocess
def test_readme_systemd_steps_give_a_passing_check(tmp_path: Path, lndg: FakeLndg) -> None:
    done = replay(tmp_path, lndg)
    assert done.check is not None, "no step started the service"
    output = done.check.stdout + done.check.stderr
    assert done.check.returncode == 0, output
    lines = done.check.stdout.splitlines()
    assert not [line for line in lines if line.startswith("FAIL")], output
    by_name = {line.split(":", 1)[0]: line for line in lines if line.startswith("ok")}
    # The files the unit names, found where the README's steps put them.
    root = done.root
    assert f"{root}/var/lib/regolancer-orchestrator" in by_name["ok   data"]
    assert f"{root}/usr/local/bin/regolancer is executable" in by_name["ok   regolancer"]
    assert f"{root}/etc/regolancer-orchestrator/config.template.json" in by_name["ok   template"]
    assert "credentials accepted, 2 open active public channels" in by_name["ok   LNDg"]
    # The replay really went through LNDg with the password the operator wrote.
    assert any(r.path.startswith("/api/channels") for r in lndg.requests)


@pytest.mark.subprocess
def test_the_replay_catches_a_path_set_in_the_env_file(tmp_path: Path, lndg: FakeLndg) -> None:
    # The old .env.example set REGOLANCER_TEMPLATE=config.template.json: the env file wins
    # over the unit's Environment=, and the relative path resolves in the state directory.
    checkout = tmp_path / "checkout"
    for name in ("README.md", "config.template.json", "systemd/regolancer-orchestrator.service"):
        (checkout / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / name, checkout / name)
    example = (REPO / ".env.example").read_text()
    old = re.sub(r"^#(REGOLANCER_TEMPLATE|DATA_DIR)=", r"\1=", example, flags=re.M)
    assert old != example
    (checkout / ".env.example").write_text(old)
    done = replay(tmp_path, lndg, checkout)
    assert done.check is not None
    assert done.check.returncode == 1
    assert "FAIL template: regolancer template config.template.json not found" in (
        done.check.stdout
    )


def test_commands_split_sudo_chains_and_redirections() -> None:
    assert commands("sudo systemctl daemon-reload && sudo systemctl enable --now x") == [
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", "--now", "x"],
    ]
    assert commands('sudo install -m 0755 "$(go env GOPATH)/bin/r" /usr/local/bin/r') == [
        ["install", "-m", "0755", "$(go env GOPATH)/bin/r", "/usr/local/bin/r"]
    ]
    assert commands("sudo -u svc cat /a /b >/dev/null && echo readable") == [
        ["-u", "svc", "cat", "/a", "/b"],
        ["echo", "readable"],
    ]
    assert options(["-aG", "bitcoin", "svc"], "G") == ({"a": "", "G": "bitcoin"}, ["svc"])
    assert options(["-d", "-m", "0750", "-g", "x", "/etc/y"], "mog") == (
        {"d": "", "m": "0750", "g": "x"},
        ["/etc/y"],
    )


def test_env_file_is_read_as_systemd_reads_it() -> None:
    text = (
        "# a comment\n"
        "; another\n"
        "no equals sign\n"
        "A=1\n"
        "A=2\n"
        "INLINE=x # stays part of the value\n"
        "  SPACED  =  two words  \n"
        'DOUBLE="say \\"hi\\" for \\$5 \\n"\n'
        "SINGLE='kept \\ verbatim'\n"
        'MID=a"b"c\n'
        "CONT=one\\\n"
        "two\n"
        'MULTI="first\n'
        'second"\n'
        "EMPTY=\n"
        "1BAD=x\n"
    )
    assert parse_env_file(text) == {
        "A": "2",
        "INLINE": "x # stays part of the value",
        "SPACED": "two words",
        "DOUBLE": 'say "hi" for $5 \\n',
        "SINGLE": "kept \\ verbatim",
        "MID": 'a"b"c',
        "CONT": "onetwo",
        "MULTI": "first\nsecond",
        "EMPTY": "",
    }
    # Environment= first, then the files in order: the file wins.
    merged = service_environment(
        ['DATA_DIR=/var/lib/x "NAME=two words"'], [{"DATA_DIR": "data"}, {"B": "1"}]
    )
    assert merged == {"DATA_DIR": "data", "NAME": "two words", "B": "1"}


def test_env_example_means_the_same_to_systemd_and_to_the_daemon() -> None:
    # The daemon reads a .env with python-dotenv, systemd reads the env file itself: a value
    # both read differently (a comment after it, quotes) would differ between the installs.
    example = (REPO / ".env.example").read_text()
    assert parse_env_file(example) == {
        k: v or "" for k, v in dotenv_values(stream=io.StringIO(example)).items()
    }
    # The deployment paths stay commented out (see the test above that catches them).
    assert (
        not {"DATA_DIR", "REGOLANCER_BIN", "REGOLANCER_TEMPLATE"} & parse_env_file(example).keys()
    )
