"""``relatlas deploy``: separate Flower processes on this machine, with TLS and node authentication."""

from __future__ import annotations

import argparse
from pathlib import Path

from relatlas.api import Results
from relatlas.sections import NODE_DATA_KEY
from relatlas.server.cli_report import print_report
from relatlas.server.cli_run import add_config_options, already_complete, config_from_args
from relatlas.server.config import ConfigError
from relatlas.server.credentials import DEFAULT_HOSTS, generate_credentials
from relatlas.server.deployment import DeploymentError, LocalDeployment
from relatlas.server.tracking import absolute_tracking_uri

DEPLOY_DIR = ".flwr/deployment"


def _deployment(args: argparse.Namespace) -> LocalDeployment:
    own = tuple(f"{NODE_DATA_KEY}='{spec}'" for spec in getattr(args, "node_data", None) or ())
    return LocalDeployment(Path(args.dir).resolve(), args.supernodes, args.port, args.supernode_port, own)


def _deploy_credentials(args: argparse.Namespace) -> int:
    print(f"credentials in {generate_credentials(Path(args.dir), args.supernodes, tuple(args.hosts), force=args.force)}")
    return 0


def _deploy_up(args: argparse.Namespace) -> int:
    deployment = _deployment(args)
    deployment.directory.mkdir(parents=True, exist_ok=True)
    pids = deployment.up()
    print(f"SuperLink on {deployment.address} (TLS, SuperNode authentication) and {args.supernodes} SuperNodes; pids {pids}")
    print(f"logs and state in {deployment.directory}; stop with `relatlas deploy down --dir {deployment.directory}`")
    return 0


def _deploy_run(args: argparse.Namespace) -> int:
    """Submit a run to the local federation; paths are resolved here, not where the SuperLink runs."""
    deployment = _deployment(args)
    config = config_from_args(args)
    if already_complete(config):
        return 0
    recorded = deployment.recorded()
    if config.num_clients != recorded["supernodes"]:
        raise ConfigError(f"num-clients is {config.num_clients}, but the federation has {recorded['supernodes']} SuperNodes")
    from relatlas.server.preflight import refuse_bad_input  # torch: only when a run is submitted

    refuse_bad_input(config)
    paths = {"out-dir": str(Path(config.out_dir).resolve()), "tracking-uri": absolute_tracking_uri(config.tracking_uri)}
    if config.resume:
        paths["resume"] = str(Path(config.resume).resolve())
    deployment.run(Path(__file__).resolve().parent.parent, config.to_mapping() | paths)
    if not (Path(paths["out-dir"]) / "results.json").exists():
        raise DeploymentError(f"the run wrote no results; see {deployment.directory}/superlink.log")
    return print_report(Results.from_file(Path(paths["out-dir"]) / "results.json"), paths["tracking-uri"])


def _deploy_down(args: argparse.Namespace) -> int:
    print(f"stopped {_deployment(args).down() or 'nothing'}")
    return 0


def add_deploy_command(deploy: argparse.ArgumentParser) -> None:
    actions = deploy.add_subparsers(dest="action", required=True)
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--dir", default=DEPLOY_DIR, help=f"credentials, logs and process ids (default: {DEPLOY_DIR})")
    where.add_argument("--supernodes", type=int, default=3)
    where.add_argument("--port", type=int, default=LocalDeployment.port, help="the SuperLink's HTTPS port")
    where.add_argument("--supernode-port", type=int, default=LocalDeployment.supernode_port, help="SuperNode i's: this + i")

    credentials = actions.add_parser("credentials", parents=[where], help="a CA, the SuperLink's certificate, SuperNode keys")
    credentials.add_argument("--hosts", nargs="+", default=list(DEFAULT_HOSTS), help="names the certificate is valid for")
    credentials.add_argument("--force", action="store_true", help="replace existing credentials (SuperNodes must re-register)")
    credentials.set_defaults(handler=_deploy_credentials)
    up = actions.add_parser("up", parents=[where], help="start the SuperLink and the SuperNodes")
    up.add_argument(
        "--node-data", nargs="+", metavar="SPEC",
        help="SuperNode i's own training data (its --node-config data=SPEC), in order; runs then need --client-data node",
    )  # fmt: skip
    up.set_defaults(handler=_deploy_up)
    run = actions.add_parser("run", parents=[where], help="submit a run with `flwr run` and wait for it")
    add_config_options(run)
    run.set_defaults(handler=_deploy_run)
    actions.add_parser("down", parents=[where], help="stop what `up` started").set_defaults(handler=_deploy_down)
