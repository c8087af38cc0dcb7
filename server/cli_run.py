"""``relatlas run``: one option per run-config key, then ``relatlas.run``.

Importing this module costs no torch, Ray, Flower or MLflow: the options and their
allowed values come from ``RunConfig`` and the registries' names, so ``relatlas run
--help`` answers at once; what runs the federation is imported by the handler.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from relatlas.sections import TrackingSection
from relatlas.server.config import CHOICES, SPECS, RunConfig
from relatlas.server.interruption import Interrupted
from relatlas.server.option_help import HELP

ALIASES = {
    "num-clients": ["--clients"], "out-dir": ["--out"], "learning-rate": ["--lr"],
    "num-cpus": ["--client-cpus"], "num-gpus": ["--client-gpus"],
}  # fmt: skip


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """One option per run-config key, with the same name and the same default."""
    for field in dataclasses.fields(RunConfig):
        key = field.name.replace("_", "-")
        kind = type(field.default)
        parser.add_argument(
            f"--{key}",
            *ALIASES.get(key, []),
            dest=field.name,
            type=str if kind is bool else kind,
            default=None,
            metavar=kind.__name__.upper(),
            help=_help(field),
        )


def _help(field: dataclasses.Field) -> str:
    """The option's line: what it does, its allowed values, its default."""
    allowed, registered = CHOICES.get(field.name), SPECS.get(field.name)
    one_of = f"; one of {', '.join(allowed)}" if allowed else f"; registered: {', '.join(registered)}" if registered else ""
    return f"{HELP[field.name.replace('_', '-')]}{one_of} (default: {field.default!r})".replace("%", "%%")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The options given (``RunConfig`` imports their ``--plugins`` before it checks
    names); with ``--resume DIR``, on top of that run's checkpointed config."""
    given = {f.name.replace("_", "-"): getattr(args, f.name) for f in dataclasses.fields(RunConfig)}
    given = {key: value for key, value in given.items() if value is not None}
    if given.get("resume"):
        TrackingSection.from_values(given)  # its paths' lengths checked before the checkpoint is read
        from relatlas.server.checkpoint import resume_config

        return resume_config(Path(given.pop("resume")), given)
    return RunConfig.from_mapping(given)


def already_complete(config: RunConfig) -> bool:
    """Whether ``--resume`` names a run that completed; if so, say so in one line: there is nothing to do."""
    from relatlas.server.checkpoint import Checkpoint, check_resumable, completed_results

    done = completed_results(Path(config.resume)) if config.resume else None
    if done is not None:
        check_resumable(config, Checkpoint.load(Path(config.resume)))  # a changed config is refused all the same
        print(f"the run in {config.resume} is already complete; results in {done}")
    return done is not None


def _run(args: argparse.Namespace) -> int:
    from relatlas.api import run
    from relatlas.server.cli_report import print_report, print_run_failure
    from relatlas.server.preflight import BAD_INPUT

    config = config_from_args(args)
    if already_complete(config):
        return 0
    try:
        results = run(config)
    except BAD_INPUT:
        raise  # refused before Ray starts, or resources no Ray node has: one line, exit 2, like any bad config
    except Interrupted as err:
        print_run_failure(f"{err}; {_what_is_kept(Path(config.out_dir))}")
        if err.engine_running:  # its threads, still waiting for clients, would hold the exit
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(err.exit_code)
        return err.exit_code
    except Exception as err:  # noqa: BLE001 - reported in one line; results.json keeps finished rounds
        cause = err.__cause__ or err
        print_run_failure(f"run failed: {type(cause).__name__}: {cause}{_after_disk_full(cause, config)}")
        return 1
    return print_report(results, config.tracking_uri)


def _checkpointed(out_dir: Path) -> bool:
    """Whether a round of the run in ``out_dir`` finished and was checkpointed."""
    from relatlas.server.checkpoint import CHECKPOINT_DIR, STATE_FILE

    return (out_dir / CHECKPOINT_DIR / STATE_FILE).exists()


def _after_disk_full(cause: BaseException, config: RunConfig) -> str:
    """What to do after a full disk: free space, then go on from the last checkpoint if one was written."""
    from relatlas.safe_files import DiskFullError

    if not isinstance(cause, DiskFullError):
        return ""
    if _checkpointed(Path(config.out_dir)):
        return f"; free space, then go on with --resume {config.out_dir}"
    return "; free space, then run again"


def _what_is_kept(out_dir: Path) -> str:
    """Where an interrupted run's finished rounds are, if a round finished."""
    if not _checkpointed(out_dir):
        return "no round had finished"
    return f"finished rounds in {out_dir / 'results.json'}; go on with --resume {out_dir}"


def add_run_command(parser: argparse.ArgumentParser) -> None:
    add_config_options(parser)
    parser.set_defaults(handler=_run)
