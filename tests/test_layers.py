"""The layers import downward only: core, math, data, client, server, suites,
entry points (docs/reference/layout.md). Imports under ``if TYPE_CHECKING:`` are
type hints, not imports, and are not counted; imports inside functions are."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = {"registry", "registries", "plugins", "section_base", "sections", "encoder_spec", "library_noise", "safe_files"}
DATA = {
    "datasets",
    "builtin_datasets",
    "splits",
    "streams",
    "casper",
    "balanced_reservoir",
    "rehearsal",
    "continual_metrics",
    "mlflow_logger",
    "sources",
    "image_folder",
    "text_tables",
    "torch_source",
    "own_data",
}
FOLDERS = ("aggregation", "benchmarks", "clients", "server", "relatlas")


def layer(module: str) -> int:
    """0 core, 1 math, 2 data and learning parts, 3 client, 4 server, 5 suites, 6 entry points."""
    parts = module.split(".")[1:]  # relatlas.<package>[.<module>]
    package, name = (parts + ["", ""])[:2]
    if package in CORE:
        return 0
    if package == "server" and (name == "cli" or name.startswith("cli_")):
        return 6  # the CLI is an entry point, though it lives in server/
    ranks = {"aggregation": 1, "clients": 3, "server": 4}
    if package in ranks:
        return ranks[package]
    if package == "benchmarks":
        return 2 if name in DATA else 5
    return 6


def module_name(path: Path) -> str:
    folder, stem = path.parent.name, path.stem
    inner = [] if stem == "__init__" else [stem]
    return ".".join(["relatlas", *inner] if folder == "relatlas" else ["relatlas", folder, *inner])


def runtime_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every ``relatlas`` import outside ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(path.read_text())
    hints = {id(node) for block in ast.walk(tree) if _type_checking(block) for stmt in block.body for node in ast.walk(stmt)}
    found = []
    for node in ast.walk(tree):
        if id(node) in hints:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("relatlas"):
            found += [(node.lineno, node.module)]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.startswith("relatlas")]
    return found


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


SOURCES = sorted(path for folder in FOLDERS for path in (ROOT / folder).glob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_a_module_imports_no_layer_above_its_own(path):
    own = layer(module_name(path))
    upward = [f"line {line}: {module}" for line, module in runtime_imports(path) if layer(module) > own]
    assert not upward, f"{module_name(path)} (layer {own}) imports upward: {upward}"


def test_the_rule_sees_an_upward_import(tmp_path):
    module = tmp_path / "clients" / "leaky.py"
    module.parent.mkdir()
    module.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from relatlas.server.config import RunConfig\n"
        "def f():\n    from relatlas.server.replies import ReplyError\n"
    )
    assert [(layer(m), m) for _, m in runtime_imports(module)] == [(4, "relatlas.server.replies")]
    assert layer(module_name(module)) == 3
