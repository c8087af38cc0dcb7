"""``relatlas bench attacks``: the robust merges against the poisoning attacks of
``benchmarks/attacks.py``, at each fraction of hostile clients, on Flower's
simulation engine.

One honest federation is run; every row attack is then applied to the replies
its clients sent, as omniscient colluders would send them, and every merge
scores the same replies on the run's probe split, twice: with a probe fitted on
the attacked merge (what the run reports), and with the probe fitted on the
clean merge (a head trained before the attack, which a shifted space misleads).
Label flipping changes training, so it runs a federation of its own per
fraction, its hostile clients training on flipped labels. The declared hostile
count (``--max-hostile``) is the true one: F of n.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from torch import Tensor

from relatlas.aggregation.aggregators import ClientSpace, aggregate
from relatlas.aggregation.screening import screen
from relatlas.benchmarks.attacks import ATTACKS, LABEL_FLIP, ROW_ATTACKS, attacked, flip_labels, hostile_positions
from relatlas.clients import protocol
from relatlas.clients.client_app import train_relabelled
from relatlas.clients.handler_scope import in_task_scope
from relatlas.server.config import RunConfig
from relatlas.server.evaluation import Probe, ProbeSplit
from relatlas.server.exchange import exchange
from relatlas.server.simulation import run_simulation
from relatlas.server.strategy import RelativeStrategy

SCREEN_THRESHOLD = 3.0  # the outlier screen's threshold in the table (docs/robustness.md's)
CLEAN = "clean"
# A merge of the table: (the clients' cosine spaces, the hostile count declared) -> the merged space
Merge = Callable[[Sequence[ClientSpace], int], Tensor]


def _screened_mean(spaces: Sequence[ClientSpace], hostile: int) -> Tensor:
    _, dropped = screen(spaces, SCREEN_THRESHOLD)
    return aggregate("mean", [space for i, space in enumerate(spaces) if i not in dropped])


MERGES: dict[str, Merge] = {
    "mean": lambda spaces, hostile: aggregate("mean", spaces),
    f"mean + screen {SCREEN_THRESHOLD:g}": _screened_mean,
    "median": lambda spaces, hostile: aggregate("median", spaces, hostile=hostile),
    "trimmed-mean (20 %)": lambda spaces, hostile: aggregate("trimmed-mean", spaces),
    "trimmed-mean (F)": lambda spaces, hostile: aggregate("trimmed-mean", spaces, hostile=hostile),
    "krum (F)": lambda spaces, hostile: aggregate("krum", spaces, hostile=hostile),
    "multi-krum (F)": lambda spaces, hostile: aggregate("multi-krum", spaces, hostile=hostile),
}


@dataclass(frozen=True)
class AttackSuiteConfig:
    """The federation (every other run-config value at its default) and the grid."""

    dataset: str = "digits"
    data_root: str = ""
    num_clients: int = 5
    fractions: tuple[float, ...] = (0.2, 0.4)
    attacks: tuple[str, ...] = ATTACKS
    epochs: int = 3
    rounds: int = 1
    seed: int = 0
    out_dir: str = "runs/bench-attacks"

    def __post_init__(self) -> None:
        unknown = sorted(set(self.attacks) - set(ATTACKS))
        if unknown:
            raise ValueError(f"unknown attacks {unknown}; choose from {', '.join(ATTACKS)}")
        for fraction in self.fractions:
            if not 0 < fraction < 1:
                raise ValueError(f"a fraction of hostile clients is in (0, 1); got {fraction:g}")
            hostile_positions(self.num_clients, fraction)

    def run_config(self, name: str) -> RunConfig:
        return RunConfig(
            dataset=self.dataset, data_root=self.data_root, num_clients=self.num_clients, min_clients=self.num_clients,
            epochs=self.epochs, rounds=self.rounds, seed=self.seed, simulation_baselines=False, client_scores=False,
            out_dir=str(Path(self.out_dir) / name),
        )  # fmt: skip


@dataclass
class Federation:
    """What the server received in the last round: the clients' cosine spaces [K, N, m]
    in partition order, and the probe split the run scores with."""

    spaces: Tensor | None = None
    probes: ProbeSplit | None = None


def _capturing_server(federation: Federation) -> ServerApp:
    """relatlas's strategy, round by round, keeping the last round's valid replies."""
    app = ServerApp()

    def keep(replies: list, round_number: int) -> None:
        ordered = sorted(replies, key=lambda reply: reply.partition_id)
        federation.spaces = torch.stack([reply.spaces["cosine"] for reply in ordered])

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        config = RunConfig.from_mapping(context.run_config)
        strategy = RelativeStrategy(config, on_valid_replies=keep)
        federation.probes = strategy.setup.probes
        for round_number in range(1, config.num_rounds + 1):
            messages = strategy.configure_train(round_number, ArrayRecord(), ConfigRecord(), grid)
            strategy.aggregate_train(round_number, exchange(grid, list(messages), config.round_timeout))

    return app


def _label_flipping_app(hostile: Sequence[int]) -> ClientApp:
    """relatlas's ClientApp, the ``hostile`` partitions training on flipped labels."""
    app = ClientApp()
    flipped = frozenset(hostile)

    @app.train()
    @in_task_scope  # as relatlas's own handlers run: the task's threads and precision
    def train(msg: Message, context: Context) -> Message:
        partition = int(msg.content[protocol.TASK]["partition-id"])
        return train_relabelled(msg, context, flip_labels if partition in flipped else None)

    return app


def run_federation_of(config: RunConfig, client_app: ClientApp | None = None) -> Federation:
    federation = Federation()
    run_simulation(config, client_app=client_app, server_app=_capturing_server(federation))
    if federation.spaces is None or len(federation.spaces) != config.num_clients:
        raise RuntimeError(f"{config.out_dir}: not every client answered; the table compares whole federations only")
    return federation


def score_merges(spaces: Tensor, probes: ProbeSplit, hostile: int, reference: dict[str, Probe]) -> dict[str, Any]:
    """Every merge of ``spaces`` [K, N, m] scored twice: by a probe fitted on it, and by
    ``reference[merge]``, the probe fitted on the clean merge (what a head trained
    before the attack still scores; a merge's first call fills it). None where the
    merge cannot withstand ``hostile``."""
    clients = [{"cosine": space} for space in spaces]
    scores: dict[str, Any] = {}
    for name, merge in MERGES.items():
        try:
            merged = merge(clients, hostile)
        except ValueError:  # the merge refuses F of n hostile clients (aggregators.check_withstands)
            scores[name] = None
            continue
        probe = probes.fit(merged)
        scores[name] = [probes.score(probe, merged), probes.score(reference.setdefault(name, probe), merged)]
    scores["screen drops"] = sorted(screen(clients, SCREEN_THRESHOLD)[1])
    return scores


def run_attack_suite(suite: AttackSuiteConfig, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Every (attack, fraction) row; writes ``attacks.json`` and ``table.md`` under ``out_dir``."""
    log(f"honest federation: {suite.num_clients} clients, {suite.dataset}, seed {suite.seed}")
    clean = run_federation_of(suite.run_config("clean"))
    rows = []
    for fraction in suite.fractions:
        hostile = hostile_positions(suite.num_clients, fraction)
        rows_attacked = [attack for attack in suite.attacks if attack in ROW_ATTACKS]
        cells = {CLEAN: clean.spaces} | {attack: attacked(clean.spaces, hostile, attack, suite.seed) for attack in rows_attacked}
        if LABEL_FLIP in suite.attacks:
            log(f"label-flipping federation: partitions {hostile} flip their labels")
            flipping = run_federation_of(suite.run_config(f"label-flip-{fraction:g}"), _label_flipping_app(hostile))
            cells[LABEL_FLIP] = flipping.spaces
        reference: dict[str, Probe] = {}  # filled by the clean row, the first
        for attack, spaces in cells.items():
            scores = score_merges(spaces, clean.probes, len(hostile), reference)
            rows.append({"attack": attack, "fraction": fraction, "hostile": hostile} | scores)
            log(attack_table(rows[-1:]).splitlines()[-1])
    out = Path(suite.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "attacks.json").write_text(json.dumps(rows, indent=1))
    (out / "table.md").write_text(attack_table(rows) + "\n")
    return rows


def attack_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown: one row per (attack, hostile fraction), one column per merge: the accuracy
    of a probe fitted on the merge / of the clean merge's probe; "refused" where the
    merge cannot withstand the hostile count (2F >= n, or n < 2F + 3 for Krum)."""
    header = ["attack", "hostile", *MERGES, "screen drops"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = ["refused" if row[name] is None else f"{row[name][0]:.3f} / {row[name][1]:.3f}" for name in MERGES]
        hostile = f"{len(row['hostile'])} ({row['fraction']:.0%})"
        drops = ", ".join(str(i) for i in row["screen drops"]) or "-"
        lines.append("| " + " | ".join([row["attack"], hostile, *cells, drops]) + " |")
    return "\n".join(lines)
