"""The run configuration: one validated dataclass shared by the CLI, the
ServerApp and ``[tool.flwr.app.config]``, whose keys are the field names with
hyphens. Its fields come in sections (``relatlas/sections.py``) that check
themselves; ``RunConfig`` checks what spans them."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from relatlas.plugins import load_plugins, parse_plugins
from relatlas.registries import ANCHOR_MODES
from relatlas.section_base import ConfigError, check_text, config_key
from relatlas.sections import (
    SECTIONS,
    AnchorsSection,
    ContinualSection,
    DataSection,
    EvaluationSection,
    MergeSection,
    ModelSection,
    RuntimeSection,
    TrackingSection,
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
        self._check_sampling()
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

    def _check_sampling(self) -> None:
        """A round's sample (``clients_per_round``) fits the clients and gives min-clients replies;
        continual clients are not sampled: each one's stream is one experience a round, none skipped."""
        if self.min_train_nodes > self.num_clients:
            raise ConfigError(f"min-train-nodes ({self.min_train_nodes}) cannot exceed num-clients ({self.num_clients})")
        sampled = self.clients_per_round()
        if sampled < self.min_clients:
            raise ConfigError(
                f"fraction-train {self.fraction_train:g} of {self.num_clients} clients trains {sampled} a round, "
                f"below min-clients ({self.min_clients}): raise fraction-train or min-train-nodes"
            )
        if sampled < self.num_clients and self.scenario == "continual":
            raise ConfigError(
                "a continual client learns every experience, one a round: leave fraction-train at 1 (every client, every round)"
            )

    def clients_per_round(self, connected: int | None = None) -> int:
        """The clients trained each round, of ``connected`` (num-clients if not given): as Flower's
        strategies, ``connected x fraction-train`` rounded down, at least ``min-train-nodes``, at most all."""
        clients = self.num_clients if connected is None else connected
        share = math.floor(clients * self.fraction_train + 1e-9)  # 0.29 of 100 is 29, not 28.999...
        return min(max(share, self.min_train_nodes), clients)

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
        """The aggregation withstands the hostile clients declared among a round's
        clients (each round checks again against the replies it received)."""
        from relatlas.aggregation.aggregators import check_withstands, hostile_count

        if not self.max_hostile:
            return
        try:
            clients = self.clients_per_round()
            hostile = hostile_count(self.max_hostile, clients)
            check_withstands(self.aggregation, clients, hostile, f"max-hostile {self.max_hostile:g}")
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
            clients = self.clients_per_round()  # the atlas merges one round's
            check_one_client_width(self.aggregation, self.anchors, clients)
            if self.atlas_leave_one_out and self.max_hostile:  # each client's atlas merges the others: one fewer
                hostile = hostile_count(self.max_hostile, clients)
                declared = f"atlas-leave-one-out with max-hostile {self.max_hostile:g}"
                check_withstands(self.aggregation, clients - 1, hostile, declared)
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
