"""The Docker files agree with each other and with the deployment they describe
(hadolint and the compose schema run in `make lint`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from flwr.common.config import parse_config_args

DOCKER = Path(__file__).resolve().parent.parent / "docker"
COMPOSE = yaml.safe_load((DOCKER / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]


def _flags(service: dict) -> dict[str, str]:
    return dict(item.removeprefix("--").partition("=")[::2] for item in service.get("command", []) if item.startswith("--"))


@pytest.mark.parametrize("dockerfile", sorted(DOCKER.glob("*.Dockerfile")), ids=lambda p: p.name)
def test_every_image_runs_as_a_numeric_non_root_user(dockerfile):
    users = re.findall(r"^USER\s+(\S+)", dockerfile.read_text(), flags=re.MULTILINE)
    assert users and re.fullmatch(r"[1-9]\d*:[1-9]\d*", users[-1])


@pytest.mark.parametrize("dockerfile", sorted(DOCKER.glob("*.Dockerfile")), ids=lambda p: p.name)
def test_every_image_builds_on_a_base_named_by_a_build_argument_with_the_public_default(dockerfile):
    """`--build-arg BASE_IMAGE=...` (or APP_IMAGE) swaps the base: tests/test_docker_federation.py uses a debootstrapped one."""
    text = dockerfile.read_text()
    base = re.search(r"^FROM \$\{(\w+)\}$", text, flags=re.MULTILINE)
    assert base, "FROM names its image through an ARG"
    default = re.search(rf"^ARG {base[1]}=(\S+)$", text[: base.start()], flags=re.MULTILINE)
    assert default and default[1] in ("python:3.11.11-slim-bookworm", "relatlas-app:0.1.0")


def test_every_built_service_has_its_dockerfile():
    built = [service["build"]["dockerfile"] for service in SERVICES.values() if "build" in service]
    assert built and all((DOCKER.parent / path).is_file() for path in built)


def test_the_superlink_requires_tls_and_registered_supernodes():
    superlink = _flags(SERVICES["superlink"])
    assert {"ssl-ca-certfile", "ssl-certfile", "ssl-keyfile", "enable-supernode-auth"} <= set(superlink)
    assert superlink["isolation"] == "process"  # the ServerApp runs in the serverapp service
    assert not any("insecure" in " ".join(s.get("command", [])) for s in SERVICES.values())


def test_three_supernodes_each_with_its_key_state_folder_and_own_data():
    superlink_port = _flags(SERVICES["superlink"])["port"]
    nodes = [_flags(SERVICES[f"supernode-{i}"]) for i in range(3)]
    for index, node in enumerate(nodes):
        assert node["superlink"] == f"superlink:{superlink_port}"
        assert node["auth-supernode-private-key"] == f"/certificates/supernode-{index}"
        node_config = parse_config_args([node["node-config"]])  # as flower-supernode reads it
        assert node_config == {"state-dir": "/home/app/client-state", "data": "npz:/data/train.npz"}
        volumes = SERVICES[f"supernode-{index}"]["volumes"]
        assert volumes == ["./certificates:/certificates:ro", f"./data/supernode-{index}:/data:ro"]  # its own, read-only
    assert _flags(SERVICES["serverapp"])["runtime-api-address"] == f"superlink:{superlink_port}"


def test_the_superlink_its_superexec_and_every_supernode_share_the_superexec_secret():
    for name in ("superlink", "serverapp", "supernode-0", "supernode-1", "supernode-2"):
        assert _flags(SERVICES[name])["superexec-auth-secret-file"] == "/certificates/superexec.secret", name


def test_credentials_never_enter_an_image():
    ignored = (DOCKER.parent / ".dockerignore").read_text().splitlines()
    assert ignored[1] == "*" and "!docker/" not in ignored
