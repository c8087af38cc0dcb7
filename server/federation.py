"""relatlas's own run of a federation: ``RelativeStrategy`` round by round,
with what a Flower ``Strategy.start`` loop does not do: the centralised
reference trains while the clients do, the wait checks for interruption, each
round is checkpointed (``--resume``), logged to MLflow and written to
``results.json``.

Flow: ``run_federation`` -> ``RunSetup.prepare`` -> per round
``RelativeStrategy.configure_train`` -> ``PulledReplies`` -> ``RelativeStrategy.aggregate_train``
(``replies.parse_reply``, ``evaluation.evaluate_round``, or each reply folded as it is pulled where
the round streams: ``streaming_round.py``); then MLflow and ``results.json``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from flwr.app import ArrayRecord, ConfigRecord
from flwr.serverapp import Grid

from relatlas.safe_files import private_dir
from relatlas.server import interruption
from relatlas.server.checkpoint import Checkpoint, check_resumable, restore_rng_states, rng_states
from relatlas.server.client_curves import client_curves
from relatlas.server.config import RunConfig
from relatlas.server.continual import ClientRuns, continual_summary
from relatlas.server.exchange import PulledReplies
from relatlas.server.interruption import Interrupted
from relatlas.server.plots import plot_accuracies, plot_accuracy_curves, plot_accuracy_matrix, plot_client_curves, plot_spaces
from relatlas.server.run_setup import RoundOutcome, RunSetup
from relatlas.server.strategy import RelativeStrategy
from relatlas.server.tracking import mlflow_run, scalar_metrics, write_results

log = logging.getLogger("relatlas")

PAPER_PROTOCOL_NOTE = (
    "owner_accuracy follows the paper's owner protocol, which picks each sample's source client by its label "
    "(label leakage); owner_shuffled_accuracy, its control, picks by label a client that does not own the class; "
    "merged_accuracy is the label-free merge and the headline number"
)


def run_federation(grid: Grid, config: RunConfig, strategy: RelativeStrategy | None = None) -> dict[str, Any]:
    """Run every round of ``config`` on ``grid`` (after the checkpoint's, with
    ``config.resume``); checkpoint after each; write and return the results.
    ``strategy``: relatlas's own by default; a baseline's (``server/algorithm_strategy.py``).

    ``results.json`` is rewritten after every round and when a round fails, so
    finished rounds are never lost.
    """
    started = time.perf_counter()
    out_dir = Path(config.out_dir)
    strategy = strategy or RelativeStrategy(config, RunSetup.prepare(config))
    resumed = Checkpoint.load(Path(config.resume)) if config.resume else None
    if resumed is not None:
        check_resumable(config, resumed)
        _restore(strategy.setup, resumed)
        strategy.rounds += resumed.rounds
        strategy.failures += resumed.failures
    results: dict[str, Any] = {
        "status": "running",
        "config": config.to_mapping(),
        "rounds": strategy.rounds,  # the same lists: they grow as rounds finish
        "failures": strategy.failures,
        "note": PAPER_PROTOCOL_NOTE,
    }
    classes = strategy.setup.classes or strategy.setup.dataset.classes  # the run's label list, else the source's names
    if classes:  # label i is classes[i]
        results["classes"] = list(classes)
    outcome = _last_outcome(resumed)
    with mlflow_run(config, resumed.mlflow_run_id if resumed else None) as run_id:
        results["mlflow_run_id"] = run_id
        client_runs = None
        if config.scenario == "continual":
            client_runs = ClientRuns(run_id, {int(p): r for p, r in resumed.client_runs.items()} if resumed else None)
            strategy.on_valid_replies = client_runs.log_round
        recorded = len(strategy.rounds), len(strategy.failures)
        try:
            for round_number in range(len(strategy.rounds) + 1, config.num_rounds + 1):  # after a checkpoint's rounds
                outcome = _run_round(grid, strategy, round_number)
                _checkpoint(strategy, round_number, run_id, client_runs, outcome).save(out_dir)
                write_results(out_dir, results)
                recorded = len(strategy.rounds), len(strategy.failures)
            if outcome is not None and outcome.merged is not None:
                title = f"{config.dataset}, {config.aggregation} merge"
                _log_figures(out_dir, outcome, strategy.setup.labels, title, client_curves(strategy.rounds))
            results["status"] = "completed"
        except Interrupted as err:  # the round in progress is not recorded; --resume goes on after the last whole one
            del strategy.rounds[recorded[0] :], strategy.failures[recorded[1] :]  # a round scored as the signal came
            results |= {"status": "interrupted", "error": str(err)}
            raise
        except Exception as err:
            results |= {"status": "failed", "error": f"{type(err).__name__}: {err}"}
            raise
        finally:
            if results["rounds"]:
                results |= results["rounds"][-1]
                results["client_curves"] = client_curves(results["rounds"])
            try:
                if client_runs is not None:
                    _finish_continual(results, config, client_runs, out_dir)
            finally:  # a figure that does not fit loses neither results.json nor the run's status
                results["wall_seconds"] = time.perf_counter() - started
                _record_results(out_dir, results)
    log.info("results in %s, MLflow run %s", out_dir / "results.json", run_id)
    return results


def _record_results(out_dir: Path, results: dict[str, Any]) -> None:
    """The final ``results.json``, logged to MLflow. Where it cannot be written (a full
    disk), a run that stops for another reason keeps that reason and a completed one
    fails with this one: either way the MLflow run does not end FINISHED."""
    try:
        path = write_results(out_dir, results)
    except OSError as err:
        _write_failed(results, err)
        return
    mlflow.log_artifact(str(path))


def _run_round(grid: Grid, strategy: RelativeStrategy, round_number: int) -> RoundOutcome:
    """One round of the strategy, the centralised reference training while the clients do; log to MLflow.

    After a signal no reply is merged and no round scored as it came is recorded, except a last round
    whose replies are all in: its clients dropped their state as they replied, so ``--resume`` could
    not redo it, and the run finishes recording it instead."""
    messages = list(strategy.configure_train(round_number, ArrayRecord(), ConfigRecord(), grid))
    pulled = PulledReplies(grid, messages, strategy.config.round_timeout, lambda: strategy.train_reference(round_number))
    streamed = strategy.streams  # each reply merged as it is pulled, then dropped; else all pulled first
    answers = pulled if streamed else list(pulled)
    if not streamed and not _whole_last_round(strategy, round_number, pulled):
        interruption.check()
    strategy.aggregate_train(round_number, answers)
    whole_last_round = _whole_last_round(strategy, round_number, pulled)
    if not whole_last_round:
        interruption.check()
    elif interruption.received():
        log.info("the signal came after the last round's replies: the run is recorded as complete")
    mlflow.log_metrics(scalar_metrics(strategy.outcome.metrics), step=round_number)
    return strategy.outcome


def _whole_last_round(strategy: RelativeStrategy, round_number: int, pulled: PulledReplies) -> bool:
    """Whether this is the last round and every one of its messages has been answered."""
    return round_number == strategy.config.num_rounds and pulled.complete


def _checkpoint(
    strategy: RelativeStrategy, round_number: int, run_id: str, client_runs: ClientRuns | None, outcome: RoundOutcome
) -> Checkpoint:
    """What ``_restore`` and ``_last_outcome`` need to go on after ``round_number``."""
    setup = strategy.setup
    rng, tensors = rng_states()
    if setup.central is not None:
        tensors |= {"central/" + name: value for name, value in setup.central.model.state_dict().items()}
    for name in ("merged", "central"):
        if getattr(outcome, name) is not None:
            tensors[f"outcome/{name}"] = getattr(outcome, name)
    return Checkpoint(
        round_number, setup.config.to_mapping(), setup.run_key, run_id, strategy.rounds, strategy.failures,
        {str(p): logger.run_id for p, logger in client_runs.loggers.items()} if client_runs else {}, rng, tensors,
    )  # fmt: skip


def _restore(setup: RunSetup, checkpoint: Checkpoint) -> None:
    """The centralised reference's weights and the RNG states after the checkpoint's round."""
    if setup.central is not None:
        prefix = "central/"
        state = {name.removeprefix(prefix): t for name, t in checkpoint.tensors.items() if name.startswith(prefix)}
        setup.central.model.load_state_dict(state)
    restore_rng_states(checkpoint.rng, checkpoint.tensors)


def _last_outcome(checkpoint: Checkpoint | None) -> RoundOutcome | None:
    """The checkpointed round's outcome, for the figures if no round is left to run."""
    if checkpoint is None or not checkpoint.rounds:
        return None
    tensors = checkpoint.tensors
    return RoundOutcome(checkpoint.rounds[-1], tensors.get("outcome/merged"), tensors.get("outcome/central"))


def _finish_continual(results: dict[str, Any], config: RunConfig, client_runs: ClientRuns, out_dir: Path) -> None:
    """Accuracy matrices of whatever rounds finished, as numbers, metrics and figures."""
    summary = continual_summary(results["rounds"], config.num_clients, config.experiences)
    results |= summary
    private_dir(out_dir)
    if summary["average_accuracy"] is not None:
        mlflow.log_metrics({"average_accuracy": summary["average_accuracy"], "forgetting": summary["forgetting"] or 0.0})
    title = f"{config.dataset}: merged space ({config.aggregation}), {config.experiences} experiences"
    try:
        for plot, name in ((plot_accuracy_matrix, "accuracy_matrix"), (plot_accuracy_curves, "accuracy_curves")):
            mlflow.log_artifact(str(plot(summary["accuracy_matrix"], title, out_dir / f"{name}.png")))
        client_runs.finish(summary, out_dir, failed=results["status"] == "failed")
    except OSError as err:
        _write_failed(results, err)


def _write_failed(results: dict[str, Any], err: OSError) -> None:
    """A file of the run's end that cannot be written (a full disk): it fails a
    completed run (re-raised: the MLflow run ends FAILED); a run stopping for
    another reason keeps that reason, and this one is logged."""
    if results["status"] == "completed":
        results |= {"status": "failed", "error": f"{type(err).__name__}: {err}"}
        raise err
    log.error("not written: %s", err)


def _log_figures(out_dir: Path, outcome: RoundOutcome, labels: np.ndarray, title: str, curves: dict[str, Any]) -> None:
    private_dir(out_dir)
    spaces = {"merged": outcome.merged} | ({"centralised": outcome.central} if outcome.central is not None else {})
    last = f"{title}, round {outcome.metrics['round']}"
    figures = (
        plot_spaces(spaces, labels, last, out_dir / "spaces.png"),
        plot_accuracies(outcome.metrics, last, out_dir / "accuracy.png"),
        plot_client_curves(curves, f"{title}, by round", out_dir / "client_curves.png"),
    )
    for path in figures:
        mlflow.log_artifact(str(path))
