"""MkDocs hook: the reference pages that must not drift from the code.

``reference/configuration.md`` is written from ``RunConfig``'s fields and
defaults, ``option_help.HELP``, the allowed values the CLI checks and every
registry of ``relatlas.registries``; ``reference/cli.md`` from the ``relatlas``
parser's own help. Both exist only in the built site. The hook also lays the
``relatlas`` package out for mkdocstrings (``build/api-src``): its layers are
folders mapped into it by pyproject.toml, which griffe cannot follow.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
API_SOURCE = ROOT / "build" / "api-src"
HELP_WIDTH = 100
# Pages that exist only in the built site (tests/test_docs.py accepts links to them).
GENERATED_PAGES = ("reference/configuration.md", "reference/cli.md")


def on_startup(**_: Any) -> None:
    lay_out_package(ROOT, API_SOURCE)


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    for page, write in zip(GENERATED_PAGES, (configuration_page, cli_page), strict=True):
        files.append(File.generated(config, page, content=write()))
    return files


def lay_out_package(root: Path, target: Path) -> None:
    """Symlink every package of ``[tool.setuptools.package-dir]`` to its dotted place under ``target``."""
    package_dirs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    shutil.rmtree(target, ignore_errors=True)  # no link may outlive a removed module
    for package, folder in sorted(package_dirs.items()):
        place = target.joinpath(*package.split("."))
        place.mkdir(parents=True, exist_ok=True)
        for source in sorted((root / folder).glob("*.py")):
            (place / source.name).symlink_to(source)


def configuration_page() -> str:
    from relatlas import registries
    from relatlas.registry import Registry
    from relatlas.sections import SECTIONS
    from relatlas.server.cli import build_parser
    from relatlas.server.config import CHOICES, SPECS
    from relatlas.server.option_help import HELP

    run_options = _option_strings(dict(_commands("relatlas", build_parser()))["relatlas run"])
    lines = [
        "# Configuration",
        "",
        "Every setting of a run is a field of `relatlas.server.config.RunConfig`. The same key is a `relatlas run` option",
        "(`--key`), a Flower run-config key (`--run-config 'key=value'`, `[tool.flwr.app.config]` in pyproject.toml) and a",
        "keyword of `RunConfig(...)` with underscores. The fields come in sections (`relatlas.sections`), each",
        "checking its own values when built. This page is generated from the code when the site is built.",
    ]
    for section in SECTIONS:
        lines += [
            "",
            f"## {section.__name__.removesuffix('Section')}",
            "",
            section.__doc__ or "",
            "",
            "| key | option | type | default | allowed values | meaning |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for field in dataclasses.fields(section):
            key = field.name.replace("_", "-")
            options = ", ".join(f"`{option}`" for option in run_options[field.name])
            allowed = ", ".join(f"`{name}`" for name in CHOICES.get(field.name, SPECS.get(field.name, ())))
            kind = type(field.default).__name__
            lines.append(f"| `{key}` | {options} | {kind} | `{field.default!r}` | {allowed} | {_cell(HELP[key])} |")
    lines += [
        "",
        "## Extension points",
        "",
        "Each registry of `relatlas.registries` with the names registered when the site was built; a plugin module",
        "([how-to](../howto/encoder.md)) adds its own.",
        "",
        "| registry | kind | names |",
        "| --- | --- | --- |",
    ]
    for name, registry in vars(registries).items():
        if isinstance(registry, Registry):
            lines.append(f"| `{name}` | {registry.kind} | {', '.join(f'`{entry}`' for entry in registry.names())} |")
    return "\n".join(lines) + "\n"


def cli_page() -> str:
    from relatlas.server.cli import build_parser

    lines = [
        "# Command line",
        "",
        "The help of every `relatlas` command, generated from its parser when the site was built. Every `run` option is",
        "described with its allowed values on the [configuration](configuration.md) page.",
        "",
    ]
    for command, parser in _commands("relatlas", build_parser()):
        parser.formatter_class = _fixed_width
        lines += [f"## `{command}`", "", "```text", parser.format_help().rstrip(), "```", ""]
    return "\n".join(lines)


def _commands(name: str, parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    """``parser`` and every subcommand under it, depth first."""
    found = [(name, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child, subparser in action.choices.items():
                found += _commands(f"{name} {child}", subparser)
    return found


def _option_strings(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    """Each option's destination -> its spellings (``--num-clients``, ``--clients``)."""
    return {action.dest: list(action.option_strings) for action in parser._actions}


def _fixed_width(prog: str) -> argparse.HelpFormatter:
    return argparse.HelpFormatter(prog, width=HELP_WIDTH)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
