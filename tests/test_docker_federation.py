"""The images in docker/ built from a Debian base made here, and a federation of
containers (SuperLink, a SuperExec for the ServerApp, 3 SuperNodes) run to the
end with TLS and node authentication; each SuperNode trains on its own file, in
a data folder only its container mounts (read-only), and keeps its state in
another folder of its own. The containers are compose.yaml's services as
`docker run`s on the host network (Debian's Docker has no compose plugin, and
the daemon here runs without a bridge). Slow (images of several GB): only with `-m docker`."""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from relatlas.benchmarks.datasets import load_dataset
from relatlas.server.credentials import CA_CERT, SERVER_CERT, SERVER_KEY, SUPEREXEC_SECRET, generate_credentials
from relatlas.server.deployment import LocalDeployment, port_in_use
from tests.docker_daemon import Daemon, import_debian_base, remove_daemon_files, start_daemon, stop_daemon, unavailable
from tests.test_deployment import _free_port_block
from tests.test_deployment_node_data import digits_npz

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parent.parent
APP_USER = 10001  # every image's USER
TAG = "0.1.0"
SUPERNODES = 3
NODE_STATE = "/home/app/client-state"
NODE_DATA = "/data/train.npz"  # the same path in every SuperNode container, a different file behind it
NODE_ROWS = (slice(0, 500), slice(500, 1100), slice(1100, None))  # of scikit-learn's digits: sizes tell the nodes apart
DIGIT_NAMES = "zero,one,two,three,four,five,six,seven,eight,nine"  # the run's label list (digits names none)


@pytest.fixture(scope="module")
def daemon():
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="relatlas-docker-"))  # short: the socket's path is limited to 107 bytes
    try:
        running = start_daemon(root, os.environ.get("RELATLAS_DOCKER_STORAGE_DRIVER", "overlay2"))
        try:
            yield running
        finally:
            stop_daemon(running)
    finally:
        remove_daemon_files(root)


def _build(daemon: Daemon, role: str, **build_args: str) -> None:
    options = [f"--build-arg={name}={value}" for name, value in build_args.items()]
    dockerfile = str(ROOT / "docker" / f"{role}.Dockerfile")
    daemon.docker(
        "build", "--network=host", *options, "--file", dockerfile, "--tag", f"relatlas-{role}:{TAG}", str(ROOT), timeout=3600
    )


def _owned_by_app(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chown(path, APP_USER, APP_USER)
    return path


def _mounts(certificates: Path, *names: str) -> list[str]:
    """Only the credentials a container needs, read-only."""
    return [option for name in names for option in ("--volume", f"{certificates / name}:/certificates/{name}:ro")]


def _start(daemon: Daemon, name: str, image: str, mounts: list[str], *args: str, entrypoint: str = "") -> None:
    chosen = ["--entrypoint", entrypoint] if entrypoint else []
    daemon.docker("run", "--detach", "--name", name, "--network", "host", *mounts, *chosen, f"{image}:{TAG}", *args)


def _wait(ready: Callable[[], bool], what: str, daemon: Daemon, container: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, f"no {what} after {timeout:g} s; {container}: {daemon.logs(container)[-800:]}"
        time.sleep(0.5)


def _own_data(folder: Path, rows: slice) -> tuple[Path, int]:
    """A SuperNode's data folder holding its own file, readable by the containers'
    user; and how many training rows that node reads from it (run seed 0)."""
    file = digits_npz(_owned_by_app(folder) / Path(NODE_DATA).name, rows)
    return folder, len(load_dataset(f"npz:{file}", None, 0).y_train)


def _watch_states(folders: list[Path], seen: list[set[str]], done: threading.Event) -> None:
    """Record which partition's saved round each SuperNode's folder holds while the run goes."""
    while not done.wait(0.2):
        for folder, partitions in zip(folders, seen):
            partitions.update(path.parent.name for path in folder.glob("*/partition-*/round-*.pt"))


def test_the_images_build_and_a_containerised_federation_completes(daemon, tmp_path):
    base = import_debian_base(daemon, "relatlas-debian-base:bookworm", tmp_path)
    _build(daemon, "superlink", BASE_IMAGE=base)
    _build(daemon, "app", BASE_IMAGE=base, TORCH_INDEX_URL=os.environ.get("TORCH_INDEX_URL", ""))
    _build(daemon, "supernode")
    _build(daemon, "ray")
    _build(daemon, "mlflow", BASE_IMAGE=base)  # built, not run: the federation tracks to SQLite in the runs folder

    port = _free_port_block(SUPERNODES + 1)
    deployment = LocalDeployment(tmp_path / "federation", SUPERNODES, port=port, supernode_port=port + 1)
    certificates = generate_credentials(deployment.certificates, SUPERNODES)
    for credential in certificates.iterdir():
        os.chown(credential, APP_USER, APP_USER)  # the keys stay 0600, readable by the containers' user
    secret = _mounts(certificates, CA_CERT, SUPEREXEC_SECRET)
    tls = [f"--ssl-ca-certfile=/certificates/{CA_CERT}", f"--ssl-certfile=/certificates/{SERVER_CERT}"]
    _start(
        daemon, "superlink", "relatlas-superlink",
        [*secret, *_mounts(certificates, SERVER_CERT, SERVER_KEY), "--volume", f"{_owned_by_app(tmp_path / 'link')}:/state"],
        *tls, f"--ssl-keyfile=/certificates/{SERVER_KEY}", "--enable-supernode-auth",
        f"--superexec-auth-secret-file=/certificates/{SUPEREXEC_SECRET}", "--isolation=process",
        "--host=127.0.0.1", f"--port={port}", "--database=/state/superlink.db", "--disable-runtime-dependency-installation",
    )  # fmt: skip
    runs = _owned_by_app(tmp_path / "runs")
    _start(
        daemon, "serverapp", "relatlas-app", [*secret, "--volume", f"{runs}:/app/runs"],
        f"--runtime-api-address=127.0.0.1:{port}", f"--root-certificates=/certificates/{CA_CERT}",
        f"--superexec-auth-secret-file=/certificates/{SUPEREXEC_SECRET}", entrypoint="flower-superexec",
    )  # fmt: skip
    deployment.write_connection()
    _wait(lambda: port_in_use(port), "the SuperLink to listen", daemon, "superlink")
    nodes = [_owned_by_app(tmp_path / f"node-{index}") for index in range(SUPERNODES)]
    data = [_own_data(tmp_path / f"node-{index}-data", rows) for index, rows in enumerate(NODE_ROWS)]
    for index, (folder, (own, _)) in enumerate(zip(nodes, data)):
        deployment.register(index)
        _start(
            daemon, f"supernode-{index}", "relatlas-supernode",
            [*secret, *_mounts(certificates, f"supernode-{index}"), "--volume", f"{folder}:{NODE_STATE}",
             "--volume", f"{own}:{Path(NODE_DATA).parent}:ro"],
            f"--superlink=127.0.0.1:{port}", f"--root-certificates=/certificates/{CA_CERT}",
            f"--auth-supernode-private-key=/certificates/supernode-{index}",
            f"--superexec-auth-secret-file=/certificates/{SUPEREXEC_SECRET}",
            f"--node-config=state-dir=\"{NODE_STATE}\" data='npz:{NODE_DATA}'", f"--port={port + 1 + index}",
        )  # fmt: skip
    _wait(lambda: deployment.online_nodes() == SUPERNODES, "the SuperNodes to connect", daemon, "supernode-0")

    seen: list[set[str]] = [set() for _ in nodes]
    done = threading.Event()
    watcher = threading.Thread(target=_watch_states, args=(nodes, seen, done))
    watcher.start()
    overrides = {"rounds": 2, "epochs": 1, "probe-epochs": 5, "out-dir": "/app/runs/docker"}
    own_data = {"client-data": "node", "class-names": DIGIT_NAMES}  # each node's data='...'; the pool: digits
    try:
        deployment.submit(ROOT, overrides | own_data | {"tracking-uri": "sqlite:////app/runs/mlflow.db"}, timeout=1800)
    finally:
        done.set()
        watcher.join()
        for name in ["superlink", "serverapp", *(f"supernode-{index}" for index in range(SUPERNODES))]:
            (tmp_path / f"{name}.log").write_text(daemon.logs(name))

    results = json.loads((runs / "docker" / "results.json").read_text())
    assert results["status"] == "completed" and results["failures"] == []
    assert results["client_partitions"] == [0, 1, 2] and results["classes"] == DIGIT_NAMES.split(",")
    assert [entry["round"] for entry in results["rounds"]] == [1, 2]
    # every node trained on all of its own file's training rows, each on another file (no two are the same size)
    sizes = sorted(rows for _, rows in data)
    assert all(sorted(entry["client_num_examples"]) == sizes for entry in results["rounds"]), sizes
    # each SuperNode saved one partition's round-1 state in its own folder, and cleared it at the end
    assert sorted(partition for partitions in seen for partition in partitions) == ["partition-0", "partition-1", "partition-2"]
    assert all(len(partitions) == 1 for partitions in seen) and not any(any(folder.iterdir()) for folder in nodes)
