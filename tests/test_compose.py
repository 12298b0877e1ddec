"""The compose files, the Dockerfile and README's Docker steps agree (there is no Docker engine
where the tests run, so they are parsed: compose with PyYAML, the Dockerfile by its lines).

- every relative mount source and secret file is in the checkout or made by a README step, and
  the README step that chowns to the image's uid covers the writable ones and the secrets;
- absolute host sources are marked `# EDIT` for the operator;
- the secrets a service uses are declared, and each fills a secret setting;
- the environment names are settings; the image's paths (Dockerfile ENV) are the ones the
  compose files set and mount;
- README's logs command names a service or container that compose creates.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from core.settings import SECRET_FIELDS, Settings
from tests.test_deployment import DOCKER, FINAL, env_of, only

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILES = sorted(ROOT.glob("docker-compose*.yml"))
SETTINGS = {name.upper() for name in Settings.model_fields}
IMAGE_PATHS = ("DATA_DIR", "REGOLANCER_BIN", "REGOLANCER_TEMPLATE")


def readme_docker_steps() -> list[list[str]]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n### Docker\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("\n```", 1)[0]
    steps: list[list[str]] = []
    for line in block.splitlines():
        words: list[str] = []
        for word in [*shlex.split(line, comments=True), "&&"]:
            if word == "&&":
                if words:
                    steps.append(words[1:] if words[0] == "sudo" else words)
                words = []
            elif not re.match(r"[A-Z_]+=", word) or words:  # CGO_ENABLED=0 go ...
                words.append(word)
    return steps


def made_by_steps(steps: list[list[str]]) -> set[str]:
    """Paths (normalised, relative to the checkout) that the README's steps create."""
    made: set[str] = set()
    for words in steps:
        name, operands = words[0], [w for w in words[1:] if not w.startswith("-")]
        if name == "mkdir" or name == "$EDITOR":
            made.update(operands)
        elif name in {"cp", "install"}:
            made.add(operands[-1])
    return {str(PurePosixPath(path)) for path in made}


def chowned_to(steps: list[list[str]]) -> dict[str, str]:
    owners: dict[str, str] = {}
    for words in steps:
        if words[0] == "chown":
            owner, *paths = [w for w in words[1:] if not w.startswith("-")]
            owners.update({str(PurePosixPath(p)): owner for p in paths})
    return owners


def compose(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict)
    return loaded


def volumes(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(source, target, mode) of the short-syntax volumes."""
    found = []
    for entry in service.get("volumes", []):
        assert isinstance(entry, str), f"long volume syntax not checked here: {entry}"
        source, target, *mode = entry.split(":")
        found.append((source, target, mode[0] if mode else "rw"))
    return found


def in_checkout(path: str) -> bool:
    return (ROOT / path).exists()


@pytest.fixture(params=COMPOSE_FILES, ids=lambda p: p.name)
def compose_file(request: pytest.FixtureRequest) -> Path:
    path: Path = request.param
    return path


def test_there_are_two_compose_files() -> None:
    assert [p.name for p in COMPOSE_FILES] == ["docker-compose.bridge.yml", "docker-compose.yml"]


def test_every_mount_source_is_made_by_a_readme_step(compose_file: Path) -> None:
    steps = readme_docker_steps()
    made = made_by_steps(steps)
    owners = chowned_to(steps)
    image_user = only(FINAL, "USER")
    text = compose_file.read_text()
    (service,) = compose(compose_file)["services"].values()
    for source, target, mode in volumes(service):
        if source.startswith("/"):
            # The operator's own host paths: marked for editing in the comment above.
            lines = text.splitlines()
            at = next(i for i, t in enumerate(lines) if f"- {source}:" in t)
            above: list[str] = []
            while lines[at - 1 - len(above)].lstrip().startswith("#"):
                above.append(lines[at - 1 - len(above)])
            assert any("EDIT" in c for c in above), f"{source} is not marked EDIT"
            continue
        relative = str(PurePosixPath(source))
        assert relative in made or in_checkout(relative), (
            f"{compose_file.name} mounts {source} at {target}, but no README step makes it "
            "(Docker would create an empty directory there)"
        )
        if mode == "rw":
            assert owners.get(relative) == image_user, f"{source} is not chowned to {image_user}"
    for name, declared in compose(compose_file).get("secrets", {}).items():
        relative = str(PurePosixPath(declared["file"]))
        assert relative in made, f"secret {name}: no README step makes {declared['file']}"
        parent = str(PurePosixPath(relative).parent)
        assert owners.get(parent) == image_user, f"secret {name}: {parent} is not chowned"
    assert service["env_file"] == ".env"
    assert ".env" in made


def test_secrets_are_declared_and_fill_secret_settings(compose_file: Path) -> None:
    loaded = compose(compose_file)
    (service,) = loaded["services"].values()
    used = service.get("secrets", [])
    assert used, f"{compose_file.name} shows no secrets"
    for name in used:
        assert name in loaded.get("secrets", {}), f"secret {name} is not declared"
        assert name.lower() in SECRET_FIELDS, f"/run/secrets/{name} fills no setting"
    assert set(SECRET_FIELDS) <= set(used)


def test_environment_names_are_settings_and_image_paths_agree(compose_file: Path) -> None:
    (service,) = compose(compose_file)["services"].values()
    environment = service["environment"]
    assert set(environment) <= SETTINGS, set(environment) - SETTINGS
    image_env = env_of(FINAL)
    assert {k for k in image_env if not k.startswith(("PYTHON", "PIP_"))} <= SETTINGS
    targets = {target: mode for _source, target, mode in volumes(service)}
    for name in IMAGE_PATHS:
        assert environment[name] == image_env[name], name
        assert image_env[name] in targets, f"{name}={image_env[name]} is not mounted"
    assert targets[image_env["DATA_DIR"]] == "rw"
    assert targets[image_env["REGOLANCER_BIN"]] == "ro"
    assert targets[image_env["REGOLANCER_TEMPLATE"]] == "ro"
    # The Dockerfile's VOLUME and WORKDIR are that data directory.
    assert only(FINAL, "WORKDIR") == image_env["DATA_DIR"]
    # The template's LND paths the README and the header name are what is mounted.
    assert "/lnd/tls.cert" in targets
    assert "/lnd/macaroons" in targets
    header = compose_file.read_text().split("services:")[0]
    assert '"tlscert": "/lnd/tls.cert"' in header
    assert '"macaroon_dir": "/lnd/macaroons"' in header


def test_service_settings(compose_file: Path) -> None:
    (service,) = compose(compose_file)["services"].values()
    assert service["init"] is True
    assert service["stop_grace_period"] == "15s"
    assert service["restart"] == "unless-stopped"
    assert service["cap_drop"] == ["ALL"]
    assert "healthcheck" not in service, "the image's HEALTHCHECK is meant to be inherited"
    if compose_file.name == "docker-compose.yml":
        assert service["network_mode"] == "host"
    else:
        assert "network_mode" not in service
        assert "host.docker.internal:host-gateway" in service["extra_hosts"]
        assert "host.docker.internal" in service["environment"]["LNDG_BASE_URL"]


def test_readme_logs_command_names_what_compose_creates() -> None:
    services = {}
    for path in COMPOSE_FILES:
        for name, service in compose(path)["services"].items():
            services[name] = service
    containers = {s["container_name"] for s in services.values() if "container_name" in s}
    commands = [w for w in readme_docker_steps() if w[0] == "docker" and "logs" in w]
    assert commands, "the README's Docker steps show no logs command"
    for words in commands:
        operands = [w for w in words[words.index("logs") + 1 :] if not w.startswith("-")]
        if words[1] == "compose":
            assert all(o in services for o in operands), words  # `compose logs [SERVICE]`
        else:
            assert operands, words
            assert operands[0] in containers, f"{words}: no such container"


def test_readme_step_parsing() -> None:
    steps = readme_docker_steps()
    assert ["docker", "compose", "up", "-d", "--build"] in steps
    made = made_by_steps(steps)
    assert {"data", "secrets", "regolancer", ".env"} <= made
    assert chowned_to([["chown", "-R", "10001:10001", "data", "secrets"]]) == {
        "data": "10001:10001",
        "secrets": "10001:10001",
    }
    assert DOCKER  # the Dockerfile parsed
