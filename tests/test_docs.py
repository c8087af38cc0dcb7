"""The README is a short front door, and no link in it or in the docs is broken or
leaves the repository (building the site itself is ``make docs``)."""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README_LIMIT = 10 * 1024
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


@functools.cache
def reference_hook() -> ModuleType:
    """The MkDocs hook that writes the reference pages (docs/gen is not a package)."""
    spec = importlib.util.spec_from_file_location("docs_reference_hook", DOCS / "gen" / "reference.py")
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    return hook


def generated_pages() -> set[Path]:
    """The pages the docs hook writes into the built site only."""
    return {DOCS / page for page in reference_hook().GENERATED_PAGES}


def links(markdown: str) -> list[str]:
    """Link targets of a Markdown text, outside code blocks and inline code."""
    return LINK.findall(INLINE_CODE.sub("", FENCE.sub("", markdown)))


def broken_links(markdown: str, folder: Path, generated: set[Path]) -> list[str]:
    """Each link of a page in ``folder`` that leaves the repository or names a file that is not there."""
    problems = []
    for target in links(markdown):
        path = target.partition("#")[0]
        if SCHEME.match(target) or target.startswith("/"):
            problems.append(f"{target}: points outside the repository")
        elif path:
            resolved = (folder / path).resolve()
            if not resolved.is_relative_to(ROOT):
                problems.append(f"{target}: leaves the repository")
            elif not (resolved.exists() or resolved in generated):
                problems.append(f"{target}: no such file")
    return problems


def test_readme_is_a_short_front_door() -> None:
    assert (ROOT / "README.md").stat().st_size < README_LIMIT


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_link_points_at_a_file_of_the_repository(page: Path) -> None:
    assert broken_links(page.read_text(), page.parent, generated_pages()) == []


def test_the_generated_pages_count_as_files() -> None:
    assert broken_links("[c](reference/configuration.md)", DOCS, generated_pages()) == []
    assert broken_links("[c](reference/configuration.md)", DOCS, set()) == ["reference/configuration.md: no such file"]


def test_broken_and_escaping_links_are_found_outside_code_only() -> None:
    text = "[a](missing.md) [b](../../outside.md) [c](https://example.org) [d](index.md#x) `[e](no.md)`\n```\n[f](no.md)\n```\n"
    assert broken_links(text, DOCS, set()) == [
        "missing.md: no such file",
        "../../outside.md: leaves the repository",
        "https://example.org: points outside the repository",
    ]


def test_the_configuration_page_has_every_key_with_its_default_and_help() -> None:
    from relatlas.server.config import RunConfig
    from relatlas.server.option_help import HELP

    rows = {line.split(" | ")[0]: line for line in reference_hook().configuration_page().splitlines() if line.startswith("| `")}
    for field in dataclasses.fields(RunConfig):
        key = field.name.replace("_", "-")
        row = rows[f"| `{key}`"]
        assert f"`--{key}`" in row and f"`{field.default!r}`" in row and HELP[key].replace("|", "\\|") in row


def test_the_cli_page_has_every_command_and_run_option() -> None:
    from relatlas.server.config import RunConfig

    page = reference_hook().cli_page()
    for command in ("relatlas run", "relatlas bench perf", "relatlas deploy up", "relatlas state clear"):
        assert f"## `{command}`" in page
    run_help = page.split("## `relatlas run`")[1].split("## `")[0]
    assert all(f"--{field.name.replace('_', '-')}" in run_help for field in dataclasses.fields(RunConfig))


def test_the_package_is_laid_out_for_griffe_as_pyproject_maps_it(tmp_path: Path) -> None:
    hook = reference_hook()
    stale = tmp_path / "relatlas" / "aggregation" / "removed_module.py"
    stale.parent.mkdir(parents=True)
    stale.write_text("")
    hook.lay_out_package(ROOT, tmp_path)
    assert (tmp_path / "relatlas" / "aggregation" / "aggregators.py").resolve() == ROOT / "aggregation" / "aggregators.py"
    assert (tmp_path / "relatlas" / "registry.py").resolve() == ROOT / "relatlas" / "registry.py"
    assert not stale.exists()
