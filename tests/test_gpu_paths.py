"""The GPU paths on a CPU-only machine: the section says it is skipped, ``--precision``
reaches the client's task and is a warned no-op off CUDA, and the CUDA-only sizing
rules (projection blocks, data resident on the device) are pure functions tried here."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from flwr.app import ConfigRecord, Message, RecordDict

from relatlas.aggregation.block_rows import block_rows
from relatlas.benchmarks.perf import perf_table
from relatlas.benchmarks.perf_config import SECTIONS
from relatlas.benchmarks.perf_gpu import gpu_figures
from relatlas.clients import precision, protocol
from relatlas.clients.handler_scope import in_task_scope
from relatlas.clients.models import build_classifier
from relatlas.clients.precision import precision_scope
from relatlas.clients.task import Task
from relatlas.clients.training import SeededBatches, TrainConfig, fit, fits_on_device
from relatlas.registry import RegistryError
from relatlas.section_base import ConfigError
from relatlas.server.cli_run import add_config_options, config_from_args
from relatlas.server.config import RunConfig

CUDA, CPU = torch.device("cuda"), torch.device("cpu")
GIB = 1024**3
FACTS = {"round": 1, "partition_id": 0, "similarities": ("cosine",), "send_absolute": False, "run_key": "k",
         "keep_state": False}  # fmt: skip


@pytest.mark.skipif(torch.cuda.is_available(), reason="the skip line is for machines without CUDA")
def test_the_gpu_section_is_skipped_with_a_line_where_no_cuda_device_exists(capsys):
    figures = gpu_figures((64, 8, 16), (64, 8, 16), repeats=1)
    assert figures == {"skipped": "no CUDA device (torch.cuda.is_available() is false): the GPU figures are unmeasured"}
    assert capsys.readouterr().out == f"perf: gpu skipped: {figures['skipped']}\n"
    assert "gpu" in SECTIONS and perf_table({"gpu": figures}) == f"GPU figures: skipped, {figures['skipped']}."


@pytest.mark.usefixtures("flower_task_identity")
def test_precision_parses_reaches_the_task_and_refuses_other_values_in_one_line(caplog):
    import argparse

    parser = argparse.ArgumentParser()
    add_config_options(parser)
    config = config_from_args(parser.parse_args(["--precision", "bf16"]))
    assert config.precision == "bf16" and RunConfig().precision == "fp32"
    record = ConfigRecord(Task.of(config, **FACTS).to_record())
    assert Task.from_record(record).model.precision == "bf16"
    handled = in_task_scope(lambda msg, context: msg)  # a ClientApp handler, run in its task's precision
    msg = Message(RecordDict({protocol.TASK: record}), dst_node_id=7, message_type=protocol.TRAIN)
    precision._warn_off_cuda.cache_clear()
    with caplog.at_level(logging.WARNING):
        assert handled(msg, None) is msg
    assert "precision bf16 applies on CUDA only" in caplog.text
    with pytest.raises(ConfigError, match=r"^precision must be one of fp32, tf32, bf16; got 'fp16'$"):
        RunConfig.from_mapping({"precision": "fp16"})


def test_a_precision_off_cuda_is_a_warned_no_op_with_the_same_numbers(caplog):
    x = np.random.default_rng(0).normal(size=(96, 8)).astype(np.float32)
    y = np.arange(96) % 3

    def trained() -> tuple[dict[str, float], list[torch.Tensor]]:
        model = build_classifier((8,), 3, encoder="mlp", embedding_dim=4, seed=1)
        return fit(model, x, y, TrainConfig(epochs=2, batch_size=16, seed=2)), list(model.state_dict().values())

    plain, plain_weights = trained()
    precision._warn_off_cuda.cache_clear()  # warned once per process: maybe already, by another test
    with caplog.at_level(logging.WARNING), precision_scope("bf16", CPU):
        cast, cast_weights = trained()
    assert cast == plain and all(torch.equal(a, b) for a, b in zip(plain_weights, cast_weights, strict=True))
    assert "precision bf16 applies on CUDA only; this process computes on the cpu in fp32" in caplog.text
    with pytest.raises(RegistryError, match="unknown precision 'fp64'"), precision_scope("fp64", CPU):
        pass


def test_projection_blocks_are_sized_by_free_memory_on_cuda_only():
    def unasked() -> int:
        raise AssertionError("free memory read where it cannot change the blocks")

    assert block_rows(20_000, 256, 1024 * 256, CPU, unasked) == 1024  # the CPU keeps its budget
    assert block_rows(20_000, 256, 1024 * 256, CUDA, lambda: 80 * GIB) > 20_000  # one call: not launch-bound
    assert block_rows(20_000, 256, 1024 * 256, CUDA, lambda: 16 * 1024 * 256 * 4) == 4096  # a quarter of 16 blocks' bytes
    assert block_rows(20_000, 256, 1024 * 256, CUDA, lambda: 0) == 1024  # never below the budget
    assert block_rows(500, 256, 1024 * 256, CUDA, unasked) == 1024  # already one block


def test_training_data_is_held_on_the_device_only_within_half_its_free_memory():
    assert fits_on_device(4 * GIB, 8 * GIB) and not fits_on_device(4 * GIB + 1, 8 * GIB)


def test_an_epoch_on_the_device_takes_the_rows_the_cpu_path_takes():
    on_cpu, on_device = (SeededBatches(50, 16, torch.Generator().manual_seed(3)) for _ in range(2))
    assert [b.tolist() for b in on_cpu.order()] == [b.tolist() for b in on_device.order(CPU)]
