"""What every run-config section is built on: ``Section``, which checks its own
fields when built (the choices, bounds and text lengths its class declares, then
its ``validate``), the one error a bad value raises, and the coercion of a value
read from a run config or a client's task to a field's type.

The sections themselves are in ``relatlas/sections.py``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar


class ConfigError(ValueError):
    """A run-config value that is missing, of the wrong type or out of range."""


def config_key(field_name: str) -> str:
    """A field's run-config key and CLI option: its name with hyphens."""
    return field_name.replace("_", "-")


@dataclass(frozen=True)
class Section:
    """A group of settings that checks itself when built: the choices, positive and
    non-negative numbers its class declares, then its own ``validate``. A class
    made of several sections (``RunConfig``) runs each one's checks, then its own."""

    choices: ClassVar[dict[str, Collection[str]]] = {}
    specs: ClassVar[dict[str, Collection[str]]] = {}  # NAME[:ARGUMENT] values; their entry checks the rest
    positive: ClassVar[tuple[str, ...]] = ()
    non_negative: ClassVar[tuple[str, ...]] = ()
    longest: ClassVar[dict[str, int]] = {}  # text fields with a bound of their own, below the one of every text

    def __post_init__(self) -> None:
        check_text(self)
        for cls in reversed(type(self).__mro__):
            if issubclass(cls, Section) and cls is not Section:
                _check_declared(self, cls)
                if "validate" in vars(cls):
                    vars(cls)["validate"](self)

    @classmethod
    def of(cls, source: object) -> Section:
        """This section's fields read off ``source`` (a ``RunConfig`` holds every section's)."""
        return cls(**{field.name: getattr(source, field.name) for field in dataclasses.fields(cls)})

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> Section:
        """This section's fields from hyphenated keys (a run config, a client's task),
        each of its field's type; keys of other sections are ignored."""
        fields = [field for field in dataclasses.fields(cls) if config_key(field.name) in values]
        return cls(**{f.name: coerce(config_key(f.name), values[config_key(f.name)], type(getattr(cls, f.name))) for f in fields})


def _check_declared(values: Section, section: type[Section]) -> None:
    """The rules ``section`` itself declares (not those it inherits) on ``values``."""
    for name, allowed in vars(section).get("choices", {}).items():
        if getattr(values, name) not in allowed:
            raise ConfigError(f"{config_key(name)} must be one of {', '.join(allowed)}; got {getattr(values, name)!r}")
    for name in vars(section).get("positive", ()):
        if getattr(values, name) <= 0:
            raise ConfigError(f"{config_key(name)} must be positive; got {getattr(values, name)}")
    for name in vars(section).get("non_negative", ()):
        if getattr(values, name) < 0:
            raise ConfigError(f"{config_key(name)} must be zero or more; got {getattr(values, name)}")


@functools.cache
def path_limits() -> tuple[int, int]:
    """The longest path and the longest file name this system takes (``PATH_MAX``,
    ``NAME_MAX`` of its root file system; 4096 and 255, Linux's, where it does not say)."""
    try:
        return os.pathconf("/", "PC_PATH_MAX"), os.pathconf("/", "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # no pathconf (Windows), or no such limit
        return 4096, 255


def check_text(values: Section) -> None:
    """Every text field at most a path long, and no part of it between slashes (or
    colons, or commas) longer than a file name: a path, an ``npz:`` file, a plug-in list or a
    name that no file system or store takes is refused here, in one line, before
    anything is created, not as ``File name too long`` deep in a run."""
    longest_path, longest_name = path_limits()
    own = {name: most for cls in type(values).__mro__ for name, most in vars(cls).get("longest", {}).items()}
    for field in dataclasses.fields(values):
        text = getattr(values, field.name)
        if not isinstance(text, str):
            continue
        most = own.get(field.name, longest_path)
        if len(text) > most:
            raise ConfigError(f"{config_key(field.name)} has {len(text)} characters; at most {most}")
        if field.name in own:
            continue
        part = max(re.split("[/:,]", text), key=len)  # a path's parts, an npz: file's, a list's items
        if len(part) > longest_name:
            raise ConfigError(
                f"{config_key(field.name)} has a part of {len(part)} characters ({part[:20]}...); "
                f"a file name has at most {longest_name}"
            )


def coerce(key: str, value: Any, kind: type) -> Any:
    """Accept a value of the field's type (ints for floats too); refuse anything else."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    elif isinstance(value, str):
        return value
    raise ConfigError(f"{key} must be {kind.__name__}; got {value!r}")
