"""Named extension points: one ``Registry`` per kind of plug-in.

Built-ins and user code register the same way, either on the object itself::

    @ENCODERS.register("theirs")
    def theirs(input_shape, embedding_dim, **options): ...

or by a ``"package.module:attribute"`` path, imported only when the entry is
first used, so listing the names (``relatlas run --help``) imports nothing heavy.
The registries themselves are declared in ``relatlas.registries``.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class RegistryError(ValueError):
    """An unknown name, a clash of names, or an entry that cannot be loaded."""


def split_spec(spec: str) -> tuple[str, str]:
    """``"topk:8:2"`` -> ``("topk", "8:2")``: an entry's name and the argument it parses."""
    name, _, argument = spec.partition(":")
    return name, argument


def refuse_argument(kind: str, name: str, argument: str, error: type[ValueError] = ValueError) -> None:
    """Refuse ``NAME:ARGUMENT`` where the entry ``name`` of ``kind`` takes no argument."""
    if argument:
        raise error(f"{kind} {name} takes no argument; got {name}:{argument}")


class Registry(Generic[T]):
    """Names of one kind (``kind``: "encoder", "aggregation", ...) mapped to entries."""

    def __init__(self, kind: str, builtins: dict[str, str] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, T | str] = dict(builtins or {})

    def register(self, name: str, entry: T | str | None = None, *, replace: bool = False) -> Any:
        """Register ``entry`` (an object or a lazy ``"module:attr"``) under ``name``;
        without ``entry``, a decorator that registers what it decorates."""
        if not name or not isinstance(name, str) or ":" in name or "," in name:
            raise RegistryError(f"a {self.kind} name must be a non-empty string without ':' or ','; got {name!r}")
        if entry is None:

            def decorate(obj: T) -> T:
                self.register(name, obj, replace=replace)
                return obj

            return decorate
        current = self._entries.get(name)
        if current is not None and current is not entry and not replace:
            raise RegistryError(f"{self.kind} {name!r} is already registered; pass replace=True to override it")
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> T:
        """The entry named ``name``, imported on first use; a one-line error lists the registered names."""
        if name not in self._entries:
            raise RegistryError(f"unknown {self.kind} {name!r}; registered: {', '.join(self._entries)}")
        entry = self._entries[name]
        if isinstance(entry, str):
            entry = self._entries[name] = _load(self.kind, name, entry)
        return entry

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        """Every entry, loaded."""
        return ((name, self.get(name)) for name in self.names())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self._entries)})"


def _load(kind: str, name: str, path: str) -> Any:
    module_name, _, attribute = path.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as err:
        raise RegistryError(f"{kind} {name!r} could not be loaded from {path!r}: {type(err).__name__}: {err}") from None
