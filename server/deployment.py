"""A deployed federation on one machine: a Flower SuperLink and N SuperNodes as
separate processes on loopback, with TLS and SuperNode authentication, and the
app submitted by ``flwr run`` (Flower's deployment engine, as across machines).

``relatlas deploy up`` generates the credentials, starts the SuperLink, registers
each SuperNode's public key with ``flwr supernode register`` and starts the
SuperNodes (the server assigns their partitions); every process id is
recorded in ``DIR/processes.json``. ``relatlas deploy run`` submits a run and
waits for it; ``relatlas deploy down`` stops exactly the recorded processes and
their children.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relatlas.benchmarks.datasets import first_few
from relatlas.server.credentials import (
    CA_CERT,
    SERVER_CERT,
    SERVER_KEY,
    SUPEREXEC_SECRET,
    check_not_expired,
    check_supernode_count,
    credential_files,
    existing_credentials,
    generate_credentials,
    supernode_key_paths,
)
from relatlas.server.process_record import checked_record, identity, same_process, stop_processes

CONNECTION = "relatlas-deployment"  # the SuperLink connection's name in FLWR_HOME/config.toml


class DeploymentError(RuntimeError):
    """The local federation could not start or run; one line, with the log to read."""


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))  # a TOML basic string


def write_run_config(path: Path, values: Mapping[str, Any]) -> Path:
    """Run-config overrides as the TOML file ``flwr run --run-config`` reads."""
    path.write_text("".join(f"{key} = {_toml_value(value)}\n" for key, value in values.items()))
    return path


def port_in_use(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@dataclass(frozen=True)
class LocalDeployment:
    """Where a local federation keeps its credentials, logs and state, and its ports."""

    directory: Path
    supernodes: int = 3
    port: int = 9093  # the SuperLink's one HTTPS port: Fleet, Control and Runtime APIs
    supernode_port: int = 9094  # SuperNode i serves its ClientApps on supernode_port + i
    node_configs: tuple[str, ...] = ()  # SuperNode i's --node-config (e.g. "data='npz:/srv/mine.npz'"); none if absent

    def __post_init__(self) -> None:
        check_supernode_count(self.supernodes)
        last = self.supernode_port + self.supernodes - 1
        if not (1 <= self.port <= 65535 and 1 <= self.supernode_port <= last <= 65535):
            raise DeploymentError(f"port {self.port} and SuperNode ports {self.supernode_port}..{last} must be in 1..65535")
        if len(self.node_configs) > self.supernodes:
            raise DeploymentError(f"{len(self.node_configs)} node configs for {self.supernodes} SuperNodes: one each at most")

    @property
    def certificates(self) -> Path:
        return self.directory / "certificates"

    @property
    def home(self) -> Path:
        return self.directory / "flwr-home"

    @property
    def processes_file(self) -> Path:
        return self.directory / "processes.json"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """Flower's CLI and daemons: this federation's FLWR_HOME, this Python's
        executables first, no telemetry, no reinstalling the app's dependencies."""
        bin_dir = str(Path(sys.executable).parent)
        return os.environ | {
            "FLWR_HOME": str(self.home),
            "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")]),
            "FLWR_TELEMETRY_ENABLED": "0",
            "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
        }

    def flwr(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Run the ``flwr`` CLI against this federation's SuperLink."""
        command = [self.executable("flwr"), *args]
        return subprocess.run(command, env=self.env(), capture_output=True, text=True, timeout=timeout, check=False)

    @staticmethod
    def executable(name: str) -> str:
        """A Flower executable of this Python environment."""
        return str(Path(sys.executable).parent / name)

    def up(self, timeout: float = 90.0) -> list[int]:
        """Start the SuperLink and the SuperNodes; return their process ids.

        Credentials already in ``certificates`` are reused (keys may have been
        handed out); anything started is stopped again if a later step fails.
        """
        if self.processes_file.exists():
            raise DeploymentError(f"a federation from {self.directory} may still run: `relatlas deploy down` first")
        busy = [p for p in (self.port, *range(self.supernode_port, self.supernode_port + self.supernodes)) if port_in_use(p)]
        if busy:
            raise DeploymentError(f"ports {busy} are in use on 127.0.0.1: choose others with --port / --supernode-port")
        self._credentials()
        check_not_expired(self.certificates)
        self.write_connection()
        pids: list[int] = []
        try:
            pids.append(self._start_superlink())
            self._wait(lambda: port_in_use(self.port), timeout, "the SuperLink to listen", "superlink")
            for index in range(self.supernodes):
                self.register(index)
            pids += [self._start_supernode(index) for index in range(self.supernodes)]
            self._record(pids)
            self._wait(lambda: self.online_nodes() >= self.supernodes, timeout, "the SuperNodes to connect", "supernode-0")
        except BaseException:
            stop_processes(pids)
            self.processes_file.unlink(missing_ok=True)
            raise
        return pids

    def run(self, app: Path, run_config: Mapping[str, Any], timeout: float = 3600.0) -> None:
        """Submit ``app`` with ``run_config`` overrides to the federation ``up`` started; return when the run ends."""
        self.recorded()
        self.submit(app, run_config, timeout)

    def submit(self, app: Path, run_config: Mapping[str, Any], timeout: float = 3600.0) -> None:
        """Submit ``app`` to the SuperLink at ``address``, however it was started
        (here by ``up``, or in a container); return when the run ends."""
        overrides = write_run_config(self.directory / "run-config.toml", run_config)
        command = [self.executable("flwr"), "run", str(app), CONNECTION, "--stream", "--run-config", str(overrides)]
        last: deque[str] = deque(maxlen=20)
        with subprocess.Popen(command, env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as flwr:
            for line in flwr.stdout:  # streamed to the user, the end kept for the error
                sys.stdout.write(line)
                if line.strip():
                    last.append(line.strip())
            status = flwr.wait(timeout)
        if status != 0:
            raise DeploymentError(f"flwr run exited with status {status}: {last[-1] if last else 'no output'}")

    def down(self) -> list[int]:
        """Stop the recorded processes that are still the ones ``up`` started (same
        start time and command line: a pid may have been reused) and their children;
        return the ids stopped."""
        if not self.processes_file.exists():
            return []
        pids = [entry["pid"] for entry in self.recorded()["processes"] if same_process(entry)]
        stop_processes(pids)
        self.processes_file.unlink()
        return pids

    def recorded(self) -> dict[str, Any]:
        """What ``up`` recorded: the process ids, the address, the SuperNode count;
        a file that is not such a record is refused in one line naming it."""
        if not self.processes_file.exists():
            raise DeploymentError(f"no federation runs from {self.directory}: `relatlas deploy up` first")
        try:
            return checked_record(json.loads(self.processes_file.read_text()))
        except (ValueError, KeyError, TypeError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise DeploymentError(
                f"{self.processes_file} is not a record of `relatlas deploy up` ({type(err).__name__}: {str(err)[:100]}); "
                "stop what it started by hand (see its *.log files) and remove the file"
            ) from None

    def online_nodes(self) -> int:
        """SuperNodes the SuperLink lists as online (0 while it cannot answer)."""
        listed = self.flwr("supernode", "list", CONNECTION, "--format", "json")
        try:
            nodes = json.loads(listed.stdout).get("nodes", []) if listed.returncode == 0 else []
        except ValueError:
            return 0
        return sum(1 for node in nodes if node.get("status") == "online")

    def _credentials(self) -> None:
        """Make the credentials where there are none; reuse complete ones (their keys
        may be registered or handed out); refuse to guess about a partial set."""
        if not existing_credentials(self.certificates):
            generate_credentials(self.certificates, self.supernodes)
            return
        missing = [path.name for path in credential_files(self.certificates, self.supernodes) if not path.exists()]
        if missing:
            raise DeploymentError(
                f"credentials in {self.certificates} lack {first_few(missing)}: `relatlas deploy credentials --dir "
                f"{self.certificates} --supernodes {self.supernodes} --force` replaces them all (SuperNodes then re-register)"
            )

    def write_connection(self) -> None:
        """The ``flwr`` CLI's connection to ``address``, trusting the federation's CA."""
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
            f'address = "{self.address}"\nroot-certificates = "{self.certificates / CA_CERT}"\n'
        )

    def _spawn(self, command: list[str], log_name: str) -> int:
        """Start a daemon in its own session, its output appended to ``DIR/<log_name>.log``."""
        with (self.directory / f"{log_name}.log").open("ab") as log:  # the child keeps its own handle
            process = subprocess.Popen(
                command, env=self.env(), stdout=log, stderr=subprocess.STDOUT, cwd=self.directory, start_new_session=True
            )
        return process.pid

    def _start_superlink(self) -> int:
        certs = self.certificates
        return self._spawn(
            [
                self.executable("flower-superlink"),
                "--ssl-ca-certfile", str(certs / CA_CERT), "--ssl-certfile", str(certs / SERVER_CERT),
                "--ssl-keyfile", str(certs / SERVER_KEY), "--enable-supernode-auth",
                "--superexec-auth-secret-file", str(certs / SUPEREXEC_SECRET),
                "--host", "127.0.0.1", "--port", str(self.port), "--disable-runtime-dependency-installation",
            ],
            "superlink",
        )  # fmt: skip

    def register(self, index: int) -> None:
        """Register SuperNode ``index``'s public key with the SuperLink."""
        _, public = supernode_key_paths(self.certificates, index)
        registered = self.flwr("supernode", "register", str(public), CONNECTION)
        if registered.returncode != 0:
            output = (registered.stdout + registered.stderr).strip()
            raise DeploymentError(f"registering SuperNode {index} failed: {output[-300:]}")

    def _start_supernode(self, index: int) -> int:
        private, _ = supernode_key_paths(self.certificates, index)
        return self._spawn(
            [
                self.executable("flower-supernode"),
                "--superlink", self.address, "--root-certificates", str(self.certificates / CA_CERT),
                "--auth-supernode-private-key", str(private),
                "--superexec-auth-secret-file", str(self.certificates / SUPEREXEC_SECRET),
                "--port", str(self.supernode_port + index),
                *(["--node-config", self.node_configs[index]] if index < len(self.node_configs) else []),
            ],
            f"supernode-{index}",
        )  # fmt: skip

    def _record(self, pids: list[int]) -> None:
        processes = [identity(pid) for pid in pids]
        record = {"processes": processes, "address": self.address, "supernodes": self.supernodes}
        self.processes_file.write_text(json.dumps(record))

    def _wait(self, ready, timeout: float, what: str, log_name: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                raise DeploymentError(f"timed out after {timeout:g} s waiting for {what}; see {self.directory / log_name}.log")
            time.sleep(0.5)
