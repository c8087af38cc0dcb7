"""The run configuration: one validated dataclass shared by the CLI, the
ServerApp and ``[tool.flwr.app.config]``, whose keys are the field names with
hyphens. Its fields come in sections (``relatlas/sections.py``) that check
themselves; ``RunConfig`` checks what spans them."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from relatlas.plugins import load_plugins, parse_plugins
from relatlas.registries import ANCHOR_MODES
from relatlas.sections import (
    SECTIONS,
    AnchorsSection,
    ConfigError,
    ContinualSection,
    DataSection,
    EvaluationSection,
    MergeSection,
    ModelSection,
    RuntimeSection,
    TrackingSection,
    check_text,
    config_key,
)

__all__ = ["CHOICES", "SPECS", "ConfigError", "RunConfig"]

# The allowed values of the fields that name a choice: registries grow as plugins register.
CHOICES: dict[str, Collection[str]] = {name: allowed for section in SECTIONS for name, allowed in section.choices.items()}
# The registered names of the fields whose value is NAME[:ARGUMENT] (a dataset, an encoder list, a payload).
SPECS: dict[str, Collection[str]] = {name: registry for section in SECTIONS for name, registry in section.specs.items()}


@dataclass(frozen=True)
class RunConfig(
    TrackingSection, EvaluationSection, RuntimeSection, ContinualSection, MergeSection, AnchorsSection, ModelSection,
    DataSection,
):  # fmt: skip
    """Every setting of a federated run, section by section (data first); see the
    configuration reference in the docs for what each one does.

    The ``plugins`` it names are imported before any name is checked, however it
    is built (``RunConfig(plugins="my_pkg", encoder="mine")``, ``from_mapping``):
    they register the names the sections then allow."""

    def __post_init__(self) -> None:
        check_text(self)  # before a plug-in list of any length is imported
        load_plugins(parse_plugins(self.plugins))
        super().__post_init__()

    def validate(self) -> None:
        """What spans sections; each section has checked its own fields already."""
        if self.min_clients > self.num_clients:
            raise ConfigError(f"min-clients ({self.min_clients}) cannot exceed num-clients ({self.num_clients})")
        self._check_anchors_mode()
        self._check_payload()
        self._check_hostile()
        self._check_atlas()
        if self.class_names and not self.client_data:
            raise ConfigError("class-names is the label list clients with their own data map onto: set client-data too")
        if self.scenario == "continual" and self.local_test_fraction:
            raise ConfigError("local-test-fraction holds back static clients' data; continual clients are scored per experience")
        if self.scenario == "continual" and self.client_data:
            raise ConfigError("client-data gives clients their own data; the continual scenario streams a split of --dataset")
        if self.scenario == "continual" and self.rounds not in (1, self.experiences):
            raise ConfigError(
                f"in the continual scenario each round is one experience: leave rounds at 1 or set it to {self.experiences}"
            )
        graph_batch = self.casper_batch or self.batch_size
        if self.regularizer == "casper" and not self.casper_k < graph_batch >= self.casper_classes + 2:
            raise ConfigError(
                f"a CaSpeR graph batch of {graph_batch} (casper-batch, or batch-size if 0) needs casper-k below it "
                f"and casper-classes + 2 at most; got casper-k {self.casper_k}, casper-classes {self.casper_classes}"
            )

    def _check_payload(self) -> None:
        """The payload parses and suits the aggregation; imported here, not at module
        level, because they pull in torch, which ``relatlas --help`` must not."""
        from relatlas.aggregation.aggregators import required_similarities
        from relatlas.clients.payload import payload_codec

        try:
            payload_codec(self.payload).check(required_similarities(self.aggregation), self.anchors)
        except ValueError as err:
            raise ConfigError(str(err)) from None

    def _check_hostile(self) -> None:
        """The aggregation withstands the hostile clients declared among num-clients
        (each round checks again against the replies it received)."""
        from relatlas.aggregation.aggregators import check_withstands, hostile_count

        if not self.max_hostile:
            return
        try:
            hostile = hostile_count(self.max_hostile, self.num_clients)
            check_withstands(self.aggregation, self.num_clients, hostile, f"max-hostile {self.max_hostile:g}")
        except ValueError as err:
            raise ConfigError(str(err)) from None

    def _check_atlas(self) -> None:
        """A public pool big enough for the anchors and a batch; atlas feedback where it applies."""
        if self.public_pool and self.public_pool < max(self.anchors, self.batch_size):
            raise ConfigError(
                f"public-pool {self.public_pool} is too small: at least the anchors ({self.anchors}) and one batch "
                f"(batch-size {self.batch_size})"
            )
        if not self.atlas_weight:
            if self.atlas_leave_one_out:
                raise ConfigError("atlas-leave-one-out needs atlas-weight > 0: without feedback no atlas is sent")
            return
        if not self.public_pool:
            raise ConfigError(f"atlas-weight {self.atlas_weight:g} needs a public pool to make the atlas of: set public-pool")
        where = {
            "scenario static": self.scenario == "static", "anchors-mode shared": self.anchors_mode == "shared",
            "no client-data": not self.client_data,
        }  # fmt: skip
        missing = [condition for condition, holds in where.items() if not holds]
        if missing:
            raise ConfigError(f"atlas-weight > 0 needs {', '.join(missing)}")
        from relatlas.aggregation.aggregators import check_withstands, hostile_count
        from relatlas.server.atlas import check_one_client_width

        try:
            check_one_client_width(self.aggregation, self.anchors, self.num_clients)
            if self.atlas_leave_one_out and self.max_hostile:  # each client's atlas merges the others: one fewer
                hostile = hostile_count(self.max_hostile, self.num_clients)
                declared = f"atlas-leave-one-out with max-hostile {self.max_hostile:g}"
                check_withstands(self.aggregation, self.num_clients - 1, hostile, declared)
        except ValueError as err:
            raise ConfigError(str(err)) from None

    def _check_anchors_mode(self) -> None:
        """The anchor mode's own conditions on the run (``AnchorMode.check``)."""
        try:
            ANCHOR_MODES.get(self.anchors_mode).check(self)
        except ValueError as err:
            raise ConfigError(str(err)) from None

    @property
    def num_rounds(self) -> int:
        """Rounds to run: one per experience in the continual scenario."""
        return self.experiences if self.scenario == "continual" else self.rounds

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> RunConfig:
        """Build from hyphenated keys (a Flower run config), checking names and types."""
        known = {config_key(field.name) for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown run-config keys {unknown}; known keys: {', '.join(sorted(known))}")
        return cls.from_values(values)

    def to_mapping(self) -> dict[str, Any]:
        """Hyphenated keys, as in a Flower run config."""
        return {config_key(name): value for name, value in dataclasses.asdict(self).items()}
