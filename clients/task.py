"""The task of one ``train`` or ``query`` message, as the ClientApp decodes it:
the run's client-facing config sections, typed and checked, and this round's facts.

The server builds it from the ``RunConfig`` (``Task.of``) and sends it as one flat
``ConfigRecord`` of hyphenated keys (``Task.to_record``), the run config's own
keys for the sections; the client decodes it back (``Task.from_record``), so a key
that is missing, unknown or of the wrong type is refused in one line. Entries
of the anchor mode's own (``anchor-classes``, ...) are kept apart in ``anchoring``,
and only the keys the run's mode declares (``AnchorMode.task_keys``) are accepted.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from relatlas.plugins import load_plugins, parse_plugins
from relatlas.registries import ANCHOR_MODES
from relatlas.section_base import ConfigError, Section, coerce, config_key
from relatlas.sections import AnchorsSection, ContinualSection, DataSection, MergeSection, ModelSection, RuntimeSection


@dataclass(frozen=True)
class Task:
    """What one client is asked to do in one message."""

    data: DataSection
    model: ModelSection
    anchors: AnchorsSection
    merge: MergeSection
    continual: ContinualSection
    runtime: RuntimeSection
    round: int
    partition_id: int  # the partition the server bound this node to: its training rows
    similarities: tuple[str, ...]  # the relative spaces to send, one per similarity
    send_absolute: bool  # also send the raw embeddings (simulation-only baselines)
    run_key: str  # the config hash, naming the client's saved state
    keep_state: bool  # save the state: a later round may resume from it
    anchoring: Mapping[str, Any] = field(default_factory=dict)  # the anchor mode's own entries

    @classmethod
    def of(cls, config: object, **facts: Any) -> Task:
        """The task of a run config (a ``RunConfig``) and this round's ``facts``."""
        sections = {name: kind.of(config) for name, kind in _section_fields().items()}
        return cls(**sections, **facts)

    def to_record(self) -> dict[str, Any]:
        """Flat hyphenated keys, the values a Flower ``ConfigRecord`` holds."""
        record: dict[str, Any] = {}
        for name in _section_fields():
            record |= {config_key(key): value for key, value in dataclasses.asdict(getattr(self, name)).items()}
        for name in _fact_fields():
            value = getattr(self, name)
            record[config_key(name)] = list(value) if isinstance(value, tuple) else value
        return record | dict(self.anchoring)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Task:
        """Decode and check a message's task; a ``ConfigError`` in one line if it is
        malformed. The run's plug-ins (``plugins``) are imported first: a Ray worker
        or a SuperNode registers the user's entries, which the sections check names against."""
        values = dict(record)
        load_plugins(parse_plugins(plugins_of(values)))
        missing = sorted(_required_keys() - values.keys())
        if missing:
            raise ConfigError(f"task lacks key {', '.join(map(repr, missing))}")
        sections = {name: kind.from_values(values) for name, kind in _section_fields().items()}
        facts = {name: _fact(config_key(name), values[config_key(name)], kind) for name, kind in _fact_fields().items()}
        rest = {key: value for key, value in values.items() if key not in _required_keys()}
        mode = sections["anchors"].anchors_mode
        declared = ANCHOR_MODES.get(mode).task_keys
        unknown = sorted(set(rest) - set(declared))
        if unknown:
            raise ConfigError(f"task has unknown keys {unknown}; anchors-mode {mode} adds {list(declared)}")
        return cls(**sections, **facts, anchoring=rest)


def plugins_of(record: Mapping[str, Any]) -> str:
    """The run's plug-in modules, read before the task is decoded (they register names it uses)."""
    return str(record.get(config_key("plugins"), ""))


def _section_fields() -> dict[str, type[Section]]:
    return {name: kind for name, kind in _hints().items() if isinstance(kind, type) and issubclass(kind, Section)}


def _fact_fields() -> dict[str, Any]:
    sections = _section_fields()
    return {name: kind for name, kind in _hints().items() if name not in sections and name != "anchoring"}


@functools.cache
def _required_keys() -> frozenset[str]:
    """Every key of the sections and the round's facts: a section left without one
    would fall back to its default silently, which a task must not."""
    sections = {config_key(f.name) for kind in _section_fields().values() for f in dataclasses.fields(kind)}
    return frozenset(sections | {config_key(name) for name in _fact_fields()})


@functools.cache
def _hints() -> dict[str, Any]:
    return typing.get_type_hints(Task)


def _fact(key: str, value: Any, kind: Any) -> Any:
    """A round fact of its declared type; ``tuple[str, ...]`` arrives as a list of str."""
    if typing.get_origin(kind) is tuple:
        if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
            return tuple(value)
        raise ConfigError(f"{key} must be a list of str; got {value!r}")
    return coerce(key, value, kind)
