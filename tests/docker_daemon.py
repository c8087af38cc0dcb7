"""A private Docker daemon and a base image made from Debian packages, for
`pytest -m docker` on machines that reach package indexes but no image registry.

The daemon runs as such machines allow: no iptables, no bridge (containers use
``--network host`` or ``none``), and its own data root, exec root, pid file and
socket under one folder, so a system Docker is never touched; it is stopped by
its pid. The base image is a debootstrapped Debian with Python and pip, so the
Dockerfiles build from it with ``--build-arg BASE_IMAGE=...``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from relatlas.server.process_record import stop_processes

SUITE = "bookworm"  # the python:3.11 images' Debian, whose python3 is 3.11
BASE_PACKAGES = "python3,python3-pip,python-is-python3,ca-certificates"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")  # pip in the image trusts what this machine trusts
TOOLS = ("dockerd", "docker", "debootstrap", "tar")
START_SECONDS = 60.0


class DockerError(RuntimeError):
    """A docker command or the daemon failed; one line, with the end of its output."""


def unavailable() -> str | None:
    """Why the Docker test cannot run here, or ``None`` if it can."""
    if os.geteuid() != 0:
        return "needs root to start dockerd and debootstrap a base image"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not installed (apt-get install -y docker.io debootstrap)"
    return None


@dataclass(frozen=True)
class Daemon:
    """A running ``dockerd`` whose files all lie under ``root``."""

    root: Path
    pid: int

    @property
    def socket(self) -> Path:
        return self.root / "docker.sock"

    def env(self) -> dict[str, str]:
        # the classic builder: BuildKit would need the buildx plugin, which Debian's docker.io lacks
        return os.environ | {"DOCKER_HOST": f"unix://{self.socket}", "DOCKER_BUILDKIT": "0"}

    def docker(self, *args: str, timeout: float = 600.0, check: bool = True, **kwargs) -> str:
        """Run the docker client against this daemon; its standard output."""
        done = subprocess.run(
            ["docker", *args], env=self.env(), capture_output=True, text=True, timeout=timeout, check=False, **kwargs
        )
        if check and done.returncode != 0:
            output = (done.stdout + done.stderr).strip().replace("\n", " | ")
            raise DockerError(f"docker {' '.join(args[:2])} exited with {done.returncode}: {output[-600:]}")
        return done.stdout

    def logs(self, container: str) -> str:
        """What ``container`` wrote, its standard error included."""
        done = subprocess.run(["docker", "logs", container], env=self.env(), capture_output=True, text=True, timeout=60)
        return done.stdout + done.stderr


def start_daemon(root: Path, storage_driver: str = "overlay2", timeout: float = START_SECONDS) -> Daemon:
    """Start ``dockerd`` with everything under ``root`` (its log: ``root/dockerd.log``)."""
    root.mkdir(parents=True, exist_ok=True)
    socket = root / "docker.sock"
    command = [
        "dockerd", "--iptables=false", "--bridge=none", f"--storage-driver={storage_driver}",
        "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
        "--pidfile", str(root / "dockerd.pid"), "-H", f"unix://{socket}",
    ]  # fmt: skip
    with (root / "dockerd.log").open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    daemon = Daemon(root, process.pid)
    deadline = time.monotonic() + timeout
    while subprocess.run(["docker", "version"], env=daemon.env(), capture_output=True, timeout=10).returncode != 0:
        if process.poll() is not None or time.monotonic() > deadline:
            stop_processes([process.pid])
            raise DockerError(f"dockerd ({storage_driver}) did not start; see {root / 'dockerd.log'}")
        time.sleep(0.5)
    return daemon


def stop_daemon(daemon: Daemon) -> None:
    """Remove every container (their shims are not dockerd's children), then stop
    dockerd and its containerd, by pid."""
    try:
        containers = daemon.docker("ps", "--all", "--quiet", timeout=60).split()
        if containers:
            daemon.docker("rm", "--force", *containers, timeout=120, check=False)
    except (DockerError, subprocess.TimeoutExpired):
        pass
    finally:
        stop_processes([daemon.pid], timeout=30.0)


def remove_daemon_files(root: Path) -> None:
    """Unmount what a killed daemon may have left mounted under ``root``, then delete it."""
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(f"{root}/")), key=len, reverse=True):
        subprocess.run(["umount", "--lazy", mount], check=False)
    shutil.rmtree(root, ignore_errors=True)


def import_debian_base(daemon: Daemon, name: str, workdir: Path) -> str:
    """``name``: a minimal Debian with Python 3.11 and pip, from Debian's packages
    (``debootstrap``), where pip may install system-wide as in the python images."""
    rootfs = workdir / "rootfs"
    command = ["debootstrap", "--variant=minbase", f"--include={BASE_PACKAGES}", SUITE, str(rootfs)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False)
    if done.returncode != 0:
        raise DockerError(f"debootstrap exited with {done.returncode}: {done.stdout[-400:]} {done.stderr[-400:]}")
    for marker in rootfs.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
        marker.unlink()
    shutil.copyfile(HOST_CA_BUNDLE, rootfs / "etc/ssl/certs/ca-certificates.crt")
    for package_file in [*rootfs.glob("var/cache/apt/archives/*.deb"), *rootfs.glob("var/lib/apt/lists/*_Packages")]:
        package_file.unlink()
    with subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE) as tar:
        daemon.docker("import", "-", name, stdin=tar.stdout)
    shutil.rmtree(rootfs)
    return name
