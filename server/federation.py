"""One federated run, round by round: send anchors and samples, collect and
validate replies, merge, evaluate, log.

Flow: ``run_federation`` -> ``Federation.prepare`` -> ``wait_for_nodes`` -> per
round ``Federation.collect`` (``round_messages`` -> ``exchange`` -> ``validate``,
i.e. ``replies.parse_reply``) -> ``Federation.evaluate``
(``evaluation.evaluate_round``); then MLflow and ``results.json``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import mlflow
import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid
from relatlas.aggregation.aggregators import required_similarities
from relatlas.aggregation.screening import screen
from relatlas.benchmarks.datasets import Dataset, load_dataset, stratified_split
from relatlas.benchmarks.splits import FederationPlan, plan_for_task
from relatlas.benchmarks.streams import class_schedule
from relatlas.clients import protocol
from relatlas.clients.training import TrainConfig
from relatlas.server import interruption
from relatlas.server.anchor_modes import AnchorMode, AnchorPlan
from relatlas.server.centralized import CentralizedReference
from relatlas.server.checkpoint import Checkpoint, check_resumable, config_hash, restore_rng_states, rng_states
from relatlas.server.config import RunConfig
from relatlas.server.continual import ClientRuns, ExperienceProbes, continual_summary, evaluate_experience, head_accuracy
from relatlas.server.evaluation import ProbeSplit, evaluate_round
from relatlas.server.interruption import Interrupted
from relatlas.server.plots import plot_accuracies, plot_accuracy_curves, plot_accuracy_matrix, plot_spaces
from relatlas.server.replies import AnchoringReply, ClientReply, Expected, ReplyError, parse_anchoring, parse_reply
from relatlas.server.tracking import mlflow_run, scalar_metrics, write_results
from torch import Tensor

from relatlas.registries import ANCHOR_MODES

log = logging.getLogger("relatlas")

PROBE_TEST_FRACTION = 0.3
POLL_SECONDS = 0.2
PAPER_PROTOCOL_NOTE = (
    "owner_accuracy follows the paper's owner protocol, which picks each sample's source client by its label "
    "(label leakage); owner_shuffled_accuracy, its control, picks by label a client that does not own the class; "
    "merged_accuracy is the label-free merge and the headline number"
)


Reply = TypeVar("Reply", ClientReply, AnchoringReply)


class FederationError(RuntimeError):
    """The run cannot go on (too few clients); finished rounds are kept."""


def wait_for_nodes(grid: Grid, wanted: int, minimum: int, timeout: float) -> list[int]:
    """Wait until ``wanted`` nodes are connected, or ``timeout`` seconds; then need ``minimum``."""
    deadline = time.monotonic() + timeout
    nodes = sorted(grid.get_node_ids())
    while len(nodes) < wanted and time.monotonic() < deadline:
        interruption.check()
        time.sleep(POLL_SECONDS)
        nodes = sorted(grid.get_node_ids())
    if len(nodes) < minimum:
        raise FederationError(f"only {len(nodes)} of the {minimum} clients needed (min-clients) connected within {timeout:g} s")
    return nodes[:wanted]


def exchange(
    grid: Grid, messages: Sequence[Message], timeout: float, while_waiting: Callable[[], None] | None = None
) -> tuple[list[Message], list[int]]:
    """Push ``messages``, run ``while_waiting``, pull replies until all came or ``timeout``.

    Returns the replies and the node ids that did not answer in time.
    """
    started = time.monotonic()
    ids = list(grid.push_messages(messages))
    destination = {mid: msg.metadata.dst_node_id for mid, msg in zip(ids, messages)}
    if while_waiting is not None:
        while_waiting()
    replies: dict[str, Message] = {}
    while True:
        pending = [mid for mid in ids if mid not in replies]
        for reply in grid.pull_messages(pending) if pending else ():
            replies[reply.metadata.reply_to_message_id] = reply
        if len(replies) == len(ids) or time.monotonic() - started > timeout:
            break
        interruption.check()
        time.sleep(POLL_SECONDS)
    return list(replies.values()), [destination[mid] for mid in ids if mid not in replies]


def validate(
    messages: Sequence[Message],
    expected: Expected,
    round_number: int,
    parse: Callable[[Message, Expected], Reply],
    partitions: Mapping[int, int],
) -> tuple[list[Reply], list[dict]]:
    """Keep the replies ``parse`` accepts from the node each partition is bound to
    (``partitions``: node -> partition), in partition order; list the rest as failures."""
    valid: dict[int, Reply] = {}
    failures = []
    for message in messages:
        try:
            reply = parse(message, expected)
            if partitions.get(reply.node_id) != reply.partition_id:
                raise ReplyError(
                    f"claims partition-id {reply.partition_id}; the server assigned it {partitions.get(reply.node_id)}"
                )
            if reply.partition_id in valid:
                raise ReplyError(f"partition-id {reply.partition_id} already answered this round")
            valid[reply.partition_id] = reply
        except ReplyError as err:
            failures.append({"node": message.metadata.src_node_id, "round": round_number, "reason": str(err)})
    return [valid[p] for p in sorted(valid)], failures


def _silent(nodes: Sequence[int], timeout: float, round_number: int) -> list[dict]:
    return [{"node": node, "round": round_number, "reason": f"no reply within round-timeout {timeout:g} s"} for node in nodes]


@dataclass
class RoundOutcome:
    metrics: dict[str, Any]
    merged: Tensor | None  # static scenario only, for the figures
    central: Tensor | None


@dataclass
class Federation:
    """What stays fixed over a run: the data plan, what is sent, how spaces are scored."""

    config: RunConfig
    dataset: Dataset
    plan: FederationPlan
    anchors: np.ndarray
    samples: np.ndarray  # the evaluation samples every client projects
    labels: np.ndarray  # theirs, for scoring only; never sent
    anchor_mode: AnchorMode
    anchor_plan: AnchorPlan
    sent: dict[str, Array]  # raw inputs as sent: the plan's anchors (if any) and the samples, serialised once
    expected: Expected
    probes: ProbeSplit
    central: CentralizedReference | None
    experiences: ExperienceProbes | None
    partitions: dict[int, int] = dataclasses.field(default_factory=dict)  # node -> the partition the server assigned it

    @classmethod
    def prepare(cls, config: RunConfig) -> Federation:
        dataset = load_dataset(config.dataset, config.data_root or None, config.seed)
        plan = plan_for_task(dataset.y_train, config.to_mapping())
        anchors, samples, labels = dataset.x_train[plan.anchor_indices], dataset.x_test, dataset.y_test
        if 0 < config.eval_samples < len(labels):
            _, subset = stratified_split(labels, config.eval_samples / len(labels), config.seed)
            samples, labels = samples[subset], labels[subset]
        anchor_mode = ANCHOR_MODES.get(config.anchors_mode)
        anchor_plan = anchor_mode.plan(config, dataset, plan)
        static = config.scenario == "static"
        baselines = config.simulation_baselines and static  # the continual baseline is `relatlas bench continual`
        expected = Expected(
            required_similarities(config.aggregation), len(samples), len(anchors), config.num_clients, baselines,
            config.anchors_mode, config.seed_anchors, config.embedding_dim,
            partition_sizes=tuple(len(rows) for rows in plan.client_indices), payload_noise=config.payload_noise,
        )  # fmt: skip
        train_part, test_part = stratified_split(labels, PROBE_TEST_FRACTION, config.seed)
        probes = ProbeSplit(train_part, test_part, labels, dataset.num_classes, config.probe_epochs, config.seed)
        experiences = None
        if not static:
            schedule = class_schedule(dataset.num_classes, config.experiences, config.stream, config.seed)
            experiences = ExperienceProbes.build(probes, schedule, config.stream, config.seed)
        central = None
        if baselines:
            train = TrainConfig(
                epochs=config.epochs, batch_size=config.batch_size, learning_rate=config.learning_rate, seed=config.seed
            )
            central = CentralizedReference(dataset, plan, embedding_dim=config.embedding_dim, encoder=config.encoder, train=train)
        sent = anchor_plan.inputs() | {protocol.SAMPLES: Array(np.ascontiguousarray(samples))}
        return cls(
            config, dataset, plan, anchors, samples, labels, anchor_mode, anchor_plan, sent, expected, probes, central,
            experiences,
        )  # fmt: skip

    @functools.cached_property
    def run_key(self) -> str:
        """The config hash: names the clients' saved state and the checkpoint's run."""
        return config_hash(self.config)

    def assign(self, nodes: Sequence[int]) -> None:
        """Bind the nodes, in id order, to partitions 0, 1, ...: a node trains on the
        partition its task names, and a reply claiming another is dropped."""
        self.partitions = {node: partition for partition, node in enumerate(sorted(nodes))}

    def _task(self, round_number: int) -> dict[str, Any]:
        values = self.config.to_mapping()
        task = {key: values[key] for key in protocol.TASK_KEYS} | self.anchor_plan.task()
        similarities = list(self.expected.similarities)
        return task | {
            "round": round_number,
            "similarities": similarities,
            "send-absolute": self.expected.absolute,
            "run-key": self.run_key,
            "keep-state": round_number < self.config.num_rounds,  # a resumed run may need it
        }

    def round_messages(self, nodes: Sequence[int], round_number: int) -> list[Message]:
        """One ``train`` message per node: the client's task, anchors and the samples to project."""
        inputs = self.anchor_mode.train_inputs(self.sent)
        task = self._task(round_number)
        return [
            Message(
                RecordDict(
                    {
                        protocol.TASK: ConfigRecord(task | {"partition-id": self.partitions[node]}),
                        protocol.INPUTS: ArrayRecord(inputs),
                    }
                ),
                dst_node_id=node,
                message_type=protocol.TRAIN,
                group_id=str(round_number),
            )
            for node in nodes
        ]

    def query_messages(self, paired: dict[int, tuple[dict, dict]], nodes: dict[int, int], round_number: int) -> list[Message]:
        """Second phase: one ``query`` message per paired partition (``nodes``: partition -> node)."""
        task = self._task(round_number)
        return [
            Message(
                RecordDict(
                    {
                        protocol.TASK: ConfigRecord(task | extra_task | {"partition-id": partition}),
                        protocol.INPUTS: ArrayRecord(self.sent | extra_inputs),
                    }
                ),
                dst_node_id=nodes[partition],
                message_type=protocol.QUERY,
                group_id=str(round_number),
            )
            for partition, (extra_task, extra_inputs) in paired.items()
        ]

    def collect(self, grid: Grid, nodes: Sequence[int], round_number: int) -> tuple[list[ClientReply], list[dict]]:
        """Send the round's messages and keep the valid replies; the rest become failures.

        The centralised reference trains while the clients do. Two-phase anchor
        modes pair the first replies' anchors, then ask the same clients to project.
        """
        timeout = self.config.round_timeout
        train_central = (lambda: self.central.train_round(round_number)) if self.central is not None else None
        answers, silent = exchange(grid, self.round_messages(nodes, round_number), timeout, train_central)
        failures = _silent(silent, timeout, round_number)
        if not self.anchor_mode.two_phase:
            replies, invalid = validate(answers, self.expected, round_number, parse_reply, self.partitions)
            return replies, invalid + failures
        return self._pair_and_project(grid, answers, failures, round_number)

    def _pair_and_project(
        self, grid: Grid, answers: list[Message], failures: list[dict], round_number: int
    ) -> tuple[list[ClientReply], list[dict]]:
        """Second half of a two-phase round: pair the first replies' anchors, send
        the ``query`` messages, keep the projections of the clients paired."""
        anchorings, invalid = validate(answers, self.expected, round_number, parse_anchoring, self.partitions)
        failures = failures + invalid
        if len(anchorings) < self.config.min_clients:
            return [], failures
        try:
            paired = self.anchor_mode.pair(anchorings, self.config)
        except ValueError as err:
            raise FederationError(f"round {round_number}: cannot pair the clients' anchors: {err}") from err
        first = {a.node_id: a for a in anchorings}
        owners = {a.partition_id: a.node_id for a in anchorings}
        answers, silent = exchange(grid, self.query_messages(paired, owners, round_number), self.config.round_timeout)
        projected, invalid = validate(answers, self.expected, round_number, parse_reply, self.partitions)
        failures += invalid + _silent(silent, self.config.round_timeout, round_number)
        # the payload counts both phases
        replies = [dataclasses.replace(r, payload_bytes=r.payload_bytes + first[r.node_id].payload_bytes) for r in projected]
        return replies, failures

    def evaluate(self, replies: Sequence[ClientReply], round_number: int) -> RoundOutcome:
        """Merge the replies and score the merged space against the references."""
        weights = [r.num_examples for r in replies] if self.config.merge_weights == "samples" else None
        if self.experiences is not None:
            metrics = evaluate_experience(
                self.config.aggregation, [r.spaces for r in replies], [r.partition_id for r in replies],
                self.experiences, round_number, weights,
            )  # fmt: skip
            metrics["client_head_accuracy"] = [head_accuracy(r, round_number) for r in replies]
            return RoundOutcome(metrics | self._round_facts(replies, round_number), None, None)
        centralized = None
        if self.central is not None:
            centralized = self.central.spaces(self.anchors, self.samples, self.expected.similarities)
        metrics, merged, central = evaluate_round(
            self.config.aggregation,
            [r.spaces for r in replies],
            [r.partition_id for r in replies],
            self.probes,
            self.plan,
            weights=weights,
            absolute=[r.absolute for r in replies] if self.expected.absolute else None,
            centralized=centralized,
            client_scores=self.config.client_scores,
        )
        return RoundOutcome(metrics | self._round_facts(replies, round_number), merged, central)

    def checkpoint(
        self, round_number: int, results: dict, run_id: str, client_runs: ClientRuns | None, outcome: RoundOutcome
    ) -> Checkpoint:
        """What ``restore`` and ``last_outcome`` need to go on after ``round_number``."""
        rng, tensors = rng_states()
        if self.central is not None:
            tensors |= {"central/" + name: value for name, value in self.central.model.state_dict().items()}
        for name in ("merged", "central"):
            if getattr(outcome, name) is not None:
                tensors[f"outcome/{name}"] = getattr(outcome, name)
        return Checkpoint(
            round_number, self.config.to_mapping(), self.run_key, run_id, results["rounds"], results["failures"],
            {str(p): logger.run_id for p, logger in client_runs.loggers.items()} if client_runs else {}, rng, tensors,
        )  # fmt: skip

    def restore(self, checkpoint: Checkpoint) -> None:
        """The centralised reference's weights and the RNG states after the checkpoint's round."""
        if self.central is not None:
            prefix = "central/"
            state = {name.removeprefix(prefix): t for name, t in checkpoint.tensors.items() if name.startswith(prefix)}
            self.central.model.load_state_dict(state)
        restore_rng_states(checkpoint.rng, checkpoint.tensors)

    def last_outcome(self, checkpoint: Checkpoint | None) -> RoundOutcome | None:
        """The checkpointed round's outcome, for the figures if no round is left to run."""
        if checkpoint is None or not checkpoint.rounds:
            return None
        tensors = checkpoint.tensors
        return RoundOutcome(checkpoint.rounds[-1], tensors.get("outcome/merged"), tensors.get("outcome/central"))

    @staticmethod
    def _round_facts(replies: Sequence[ClientReply], round_number: int) -> dict[str, Any]:
        return {
            "round": round_number,
            "clients_answered": len(replies),
            "payload_bytes_per_client": float(np.mean([r.payload_bytes for r in replies])),
            "client_train_seconds": [r.metrics.get("train-seconds", 0.0) for r in replies],
        }


def run_federation(grid: Grid, config: RunConfig) -> dict[str, Any]:
    """Run every round of ``config`` on ``grid`` (after the checkpoint's, with
    ``config.resume``); checkpoint after each; write and return the results.

    ``results.json`` is rewritten after every round and when a round fails, so
    finished rounds are never lost.
    """
    started = time.perf_counter()
    out_dir = Path(config.out_dir)
    federation = Federation.prepare(config)
    resumed = Checkpoint.load(Path(config.resume)) if config.resume else None
    if resumed is not None:
        check_resumable(config, resumed)
        federation.restore(resumed)
    results: dict[str, Any] = {
        "status": "running",
        "config": config.to_mapping(),
        "rounds": resumed.rounds if resumed else [],
        "failures": resumed.failures if resumed else [],
        "note": PAPER_PROTOCOL_NOTE,
    }
    outcome = federation.last_outcome(resumed)
    with mlflow_run(config, resumed.mlflow_run_id if resumed else None) as run_id:
        results["mlflow_run_id"] = run_id
        client_runs = None
        if config.scenario == "continual":
            client_runs = ClientRuns(run_id, {int(p): r for p, r in resumed.client_runs.items()} if resumed else None)
        try:
            first = len(results["rounds"]) + 1  # after a checkpoint's rounds
            nodes = []
            if first <= config.num_rounds:
                nodes = wait_for_nodes(grid, config.num_clients, config.min_clients, config.node_timeout)
                federation.assign(nodes)
                log.info("%d clients; rounds %d-%d, %d epochs each", len(nodes), first, config.num_rounds, config.epochs)
            for round_number in range(first, config.num_rounds + 1):
                outcome = _run_round(grid, federation, nodes, round_number, results, client_runs)
                federation.checkpoint(round_number, results, run_id, client_runs, outcome).save(out_dir)
                write_results(out_dir, results)
            if outcome is not None and outcome.merged is not None:
                title = f"{config.dataset}, {config.aggregation} merge, round {outcome.metrics['round']}"
                _log_figures(out_dir, outcome, federation.labels, title)
            results["status"] = "completed"
        except Interrupted as err:  # the round in progress is not recorded; --resume goes on after the last whole one
            results |= {"status": "interrupted", "error": str(err)}
            raise
        except Exception as err:
            results |= {"status": "failed", "error": f"{type(err).__name__}: {err}"}
            raise
        finally:
            if results["rounds"]:
                results |= results["rounds"][-1]
            if client_runs is not None:
                _finish_continual(results, config, client_runs, out_dir)
            results["wall_seconds"] = time.perf_counter() - started
            mlflow.log_artifact(str(write_results(out_dir, results)))
    log.info("results in %s, MLflow run %s", out_dir / "results.json", run_id)
    return results


def _run_round(
    grid: Grid, federation: Federation, nodes: Sequence[int], round_number: int, results: dict, client_runs: ClientRuns | None
) -> RoundOutcome:
    """One round: collect, drop what failed, merge and evaluate, log to MLflow."""
    config = federation.config
    log.info("round %d/%d: training on %d clients", round_number, config.num_rounds, len(nodes))
    round_started = time.perf_counter()
    replies, failures = federation.collect(grid, nodes, round_number)
    scores, outliers = screen([r.spaces for r in replies], config.outlier_threshold)
    for position, reason in outliers.items():
        failures.append({"node": replies[position].node_id, "round": round_number, "reason": reason})
    scores = [score for i, score in enumerate(scores) if i not in outliers]
    replies = [reply for i, reply in enumerate(replies) if i not in outliers]
    results["failures"] += failures
    for failure in failures:
        log.warning("round %d: dropped node %s: %s", round_number, failure["node"], failure["reason"])
    if len(replies) < config.min_clients:
        raise FederationError(f"round {round_number}: {len(replies)} valid replies, min-clients is {config.min_clients}")
    if client_runs is not None:
        client_runs.log_round(replies, round_number)
    outcome = federation.evaluate(replies, round_number)
    outcome.metrics["clients_failed"] = len(failures)
    outcome.metrics["client_outlier_score"] = scores
    outcome.metrics["round_seconds"] = time.perf_counter() - round_started
    results["rounds"].append(outcome.metrics)
    mlflow.log_metrics(scalar_metrics(outcome.metrics), step=round_number)
    log.info("round %d: merged accuracy %.3f", round_number, outcome.metrics["merged_accuracy"])
    return outcome


def _finish_continual(results: dict[str, Any], config: RunConfig, client_runs: ClientRuns, out_dir: Path) -> None:
    """Accuracy matrices of whatever rounds finished, as numbers, metrics and figures."""
    summary = continual_summary(results["rounds"], config.num_clients, config.experiences)
    results |= summary
    out_dir.mkdir(parents=True, exist_ok=True)
    if summary["average_accuracy"] is not None:
        mlflow.log_metrics({"average_accuracy": summary["average_accuracy"], "forgetting": summary["forgetting"] or 0.0})
    title = f"{config.dataset}: merged space ({config.aggregation}), {config.experiences} experiences"
    for plot, name in ((plot_accuracy_matrix, "accuracy_matrix"), (plot_accuracy_curves, "accuracy_curves")):
        mlflow.log_artifact(str(plot(summary["accuracy_matrix"], title, out_dir / f"{name}.png")))
    client_runs.finish(summary, out_dir, failed=results["status"] == "failed")


def _log_figures(out_dir: Path, outcome: RoundOutcome, labels: np.ndarray, title: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    spaces = {"merged": outcome.merged} | ({"centralised": outcome.central} if outcome.central is not None else {})
    figures = (
        plot_spaces(spaces, labels, title, out_dir / "spaces.png"),
        plot_accuracies(outcome.metrics, title, out_dir / "accuracy.png"),
    )
    for path in figures:
        mlflow.log_artifact(str(path))
