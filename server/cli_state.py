"""``relatlas state``: the clients' saved state on this machine."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from relatlas.clients.checkpoint import default_state_root


def add_state_command(state: argparse.ArgumentParser) -> None:
    clear = state.add_subparsers(dest="action", required=True).add_parser(
        "clear", help="remove every run's client state (a finished run removes its own)"
    )
    clear.add_argument("--dir", default=str(default_state_root()), help="the state-dir (default: %(default)s)")
    clear.set_defaults(handler=_state_clear)


def _state_clear(args: argparse.Namespace) -> int:
    root = Path(args.dir)
    runs = sorted(path.name for path in root.iterdir() if path.is_dir()) if root.is_dir() else []
    for run in runs:
        if (root / run).is_symlink():
            (root / run).unlink()  # a planted link: removed, its target left alone
        else:
            shutil.rmtree(root / run)
    print(f"removed the client state of {len(runs)} runs from {root}")
    return 0
