"""The ``relatlas`` command line: each command lives in its own module, imported
only when that command is named, so ``relatlas --help`` and ``relatlas run --help``
start without torch, Ray, Flower or MLflow."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import sys
from collections.abc import Sequence

from relatlas.server.interruption import on_signals

# command -> (the module whose ``add_<command>_command`` fills its parser, its one-line help)
COMMANDS = {
    "run": ("relatlas.server.cli_run", "run a federation on Flower's simulation engine"),
    "bench": ("relatlas.server.cli_bench", "run an MLflow-tracked benchmark suite, its trials in parallel on Ray"),
    "deploy": ("relatlas.server.cli_deploy", "separate Flower processes on this machine: TLS, node authentication"),
    "state": ("relatlas.server.cli_state", "clients' saved state on this machine"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Every command, with the options of ``only`` (all of them if None): the
    others are listed by name and help, without importing their modules."""
    parser = argparse.ArgumentParser(prog="relatlas", description="Federated aggregation of relative latent spaces.")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (module, summary) in COMMANDS.items():
        command = commands.add_parser(name, help=summary)
        if only is None or only == name:
            getattr(importlib.import_module(module), f"add_{name}_command")(command)
    return parser


def _log_to_console() -> None:
    from rich.logging import RichHandler

    logger = logging.getLogger("relatlas")
    logger.addHandler(RichHandler(show_path=False))
    logger.setLevel(logging.INFO)
    logger.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    named = argv[0] if argv and argv[0] in COMMANDS else ""  # "": `relatlas --help`, or a bad command
    # `relatlas run` records SIGINT and SIGTERM from here on, through its imports, checks and Ray's start
    # (server/interruption.py); the other commands stop on a Ctrl-C as Python does
    with on_signals() if named == "run" else contextlib.nullcontext():
        try:
            return _handle(build_parser(named).parse_args(argv))
        except KeyboardInterrupt:  # a second Ctrl-C, or one to another command: no traceback
            print("relatlas: interrupted by SIGINT", file=sys.stderr)
            return 130


def _handle(args: argparse.Namespace) -> int:
    """The command's handler; bad input is one line on stderr and exit code 2."""
    _log_to_console()
    from relatlas.benchmarks.datasets import DatasetError
    from relatlas.benchmarks.splits import SplitError
    from relatlas.registry import RegistryError
    from relatlas.server.config import ConfigError
    from relatlas.server.credentials import CredentialsError
    from relatlas.server.deployment import DeploymentError

    try:
        return args.handler(args)
    except (ConfigError, DatasetError, SplitError, DeploymentError, CredentialsError, RegistryError) as err:
        print(f"relatlas: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
