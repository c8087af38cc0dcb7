"""What is checked of Ray before ``ray.init``: the resources a new local instance
will have, and whether a cluster to join answers at all.

``ray.init`` of an address where nothing listens waits for its GCS for minutes,
and a local instance started only to find it lacks the clients' CPUs or GPUs
costs a start and a shutdown; both are refused here, in one line, before Ray starts.
"""

from __future__ import annotations

import urllib.parse

import grpc
from ray.core.generated.gcs_service_pb2 import GetClusterIdRequest
from ray.core.generated.gcs_service_pb2_grpc import NodeInfoGcsServiceStub

from relatlas.server.config import ConfigError

REACH_SECONDS = 5.0  # how long the check waits for a cluster's head to answer
GCS_PORT = 6379  # Ray's default head port, where an address gives none
CLIENT_PORT = 10001  # Ray Client's default port (ray://HOST)


def local_node_resources() -> dict[str, float]:
    """The CPUs and GPUs a new local Ray instance will have, found as Ray finds them
    (cgroup limits, ``CUDA_VISIBLE_DEVICES``, the GPUs' driver), without starting it."""
    from ray._private.resource_and_label_spec import ResourceAndLabelSpec  # Ray's own detection; no public API

    spec = ResourceAndLabelSpec().resolve(is_head=True)
    return {"CPU": float(spec.num_cpus), "GPU": float(spec.num_gpus)}


def check_ray_address(address: str) -> None:
    """Refuse a cluster address whose head does not answer within ``REACH_SECONDS``:
    ``HOST[:PORT]`` must answer Ray's own GCS call (``GetClusterId``: anything else
    that listens there, a proxy included, leaves ``ray.init`` retrying for ever);
    ``ray://HOST[:PORT]`` must accept a gRPC connection (Ray Client then gives up by
    itself within 30 s). ``local`` and ``auto`` are found by Ray on this machine."""
    if address in ("local", "auto"):
        return
    client = address.startswith("ray://")
    try:
        where = urllib.parse.urlsplit(address if client else f"//{address}")
        host, port = where.hostname, where.port or (CLIENT_PORT if client else GCS_PORT)
    except ValueError:
        host = None
    if not host:
        raise ConfigError(f"ray-address {address!r} is not HOST:PORT, ray://HOST:PORT, auto or local")
    with grpc.insecure_channel(f"{host}:{port}") as channel:
        try:
            if client:
                grpc.channel_ready_future(channel).result(timeout=REACH_SECONDS)
            else:
                NodeInfoGcsServiceStub(channel).GetClusterId(GetClusterIdRequest(), timeout=REACH_SECONDS)
        except (grpc.RpcError, grpc.FutureTimeoutError) as err:
            reason = f"{err.code().name}: {err.details()}" if isinstance(err, grpc.RpcError) else "no connection"
            raise ConfigError(
                f"ray-address {address}: no Ray cluster answers at {host}:{port} ({reason[:120]}); start its head there "
                "(`ray start --head`) or leave ray-address empty for a local instance"
            ) from None
