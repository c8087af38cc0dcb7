"""A subcommand's parser whose options are added when it is first used, to parse or
to print its help: ``relatlas bench perf`` then imports the perf suite's modules and
not every suite's (Avalanche, JAX and the QP solvers of the continual suite took 5 s
of the 12 s of ``relatlas bench perf --help``), and ``relatlas bench --help`` none."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

AddOptions = Callable[[argparse.ArgumentParser], None]


class LazyOptionsParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with ``add_options(self)`` run once, before its first parse or help.
    Pass it as ``parser_class`` of ``add_subparsers`` and ``add_options=`` to each ``add_parser``."""

    def __init__(self, *args: Any, add_options: AddOptions | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._add_options = add_options

    def with_options(self) -> None:
        """Add this parser's options, once."""
        if self._add_options is not None:
            add, self._add_options = self._add_options, None
            add(self)

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:
        self.with_options()
        return super().parse_known_args(args, namespace)

    def format_usage(self) -> str:
        self.with_options()
        return super().format_usage()

    def format_help(self) -> str:
        self.with_options()
        return super().format_help()
