"""Loading user code that registers entries: modules named with ``--plugins``
(or the ``plugins`` run-config key, so that Ray workers and SuperNodes import
them too) and the ``relatlas.plugins`` entry-point group of installed packages.

A ``RunConfig`` and a client's ``Task`` load the plug-ins they name before they
check their names, however they are built, so every process registers the
user's entries before it meets them."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Iterable
from importlib.metadata import entry_points

from relatlas.registry import RegistryError

ENTRY_POINT_GROUP = "relatlas.plugins"


def parse_plugins(text: str) -> tuple[str, ...]:
    """``"a.b, c"`` -> ``("a.b", "c")``: the run-config form of a module list."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


def load_plugins(modules: Iterable[str] = ()) -> None:
    """Import every installed entry point of ``relatlas.plugins`` and then ``modules``;
    importing a module twice is a no-op, so every process may call this freely."""
    _load_entry_points()
    for module in modules:
        _import(module, "plugin")


@functools.cache
def _load_entry_points() -> None:
    """Once per process (a failure is not cached): reading the installed packages' metadata is not free."""
    for point in entry_points(group=ENTRY_POINT_GROUP):
        _import(point.value.partition(":")[0], f"entry point {point.name!r}")


def _import(module: str, what: str) -> None:
    try:
        importlib.import_module(module)
    except Exception as err:  # a plugin's own bug must read as one line, not a traceback
        raise RegistryError(f"{what} module {module!r} could not be imported: {type(err).__name__}: {err}") from None
