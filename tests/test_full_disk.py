"""A full disk under ``--out`` (a real, small tmpfs): the write that does not fit
leaves no temporary file, the run ends failed in MLflow and, where it can still
be written, in ``results.json``; the error names the file and the space it
needs; ``--resume`` completes once there is room (``relatlas/safe_files.py``)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import mlflow
import pytest
import torch

from relatlas.benchmarks.mlflow_logger import MLflowLogger
from relatlas.safe_files import DiskFullError, atomic_write, write_text_atomic
from relatlas.server.checkpoint import Checkpoint
from relatlas.server.cli import main
from relatlas.server.continual import ClientRuns

OPTIONS = ["--rounds", "2", "--epochs", "1", "--probe-epochs", "5", "--eval-samples", "200"]
# A checkpoint of OPTIONS' run is about 0.26 MB and the next round's is written beside it
# before the older goes: 0.4 MB holds round 1's, not round 2's as well.
ONE_CHECKPOINT = "400k"


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Callable[[str], Path]]:
    """``mount(size)``: a private tmpfs of ``size`` at one folder (remounted at the new
    size if called again), unmounted after the test; skipped where mounting is not permitted."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = []

    def mount(size: str) -> Path:
        options = f"size={size},mode=700" if not mounted else f"remount,size={size}"
        try:
            done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True, text=True)
        except FileNotFoundError:
            pytest.skip("a small tmpfs cannot be mounted here: no mount command")
        if done.returncode != 0 and not mounted:
            pytest.skip(f"a small tmpfs cannot be mounted here (needs root): {done.stderr.strip()}")
        assert done.returncode == 0, done.stderr
        mounted.append(size)
        return folder

    yield mount
    if mounted:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def _no_partial_files(folder: Path) -> bool:
    return not [path for path in folder.rglob("*") if path.name.endswith(".partial")]


def _mlflow_statuses(tracking_uri: str) -> list[str]:
    client = mlflow.MlflowClient(tracking_uri)
    return [run.info.status for run in client.search_runs([client.get_experiment_by_name("relatlas").experiment_id])]


def test_a_write_that_does_not_fit_names_the_file_and_the_space_and_leaves_no_partial_file(small_disk):
    disk = small_disk("64k")
    write_text_atomic(disk / "results.json", "old")
    with pytest.raises(DiskFullError) as raised:
        write_text_atomic(disk / "results.json", "x" * 100_000)
    assert raised.value.errno == errno.ENOSPC
    assert f"writing {disk / 'results.json'}: it needs 100,000 bytes" in str(raised.value)
    assert os.listdir(disk) == ["results.json"] and (disk / "results.json").read_text() == "old"
    with pytest.raises(DiskFullError, match="tensors.pt: it needs"), atomic_write(disk / "tensors.pt") as file:
        torch.save(torch.zeros(50_000), file)  # torch's own writer would fail with an unrelated RuntimeError
    assert os.listdir(disk) == ["results.json"]


def test_client_runs_are_closed_even_where_their_figures_do_not_fit(tmp_path, small_disk):
    disk = small_disk("64k")
    (disk / "filler").write_bytes(bytes(62_000))  # one page left: no figure fits
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    parent = client.create_run(client.create_experiment("full-disk"))
    runs = ClientRuns(parent.info.run_id)
    runs.loggers[0] = MLflowLogger.nested(parent.info.run_id, "client-0", client)
    with pytest.raises(DiskFullError, match="client0_accuracy_matrix.png: it needs"):
        runs.finish({"client_accuracy_matrix": [[[0.5, None], [0.4, 0.6]]]}, disk, failed=False)
    assert client.get_run(runs.loggers[0].run_id).info.status == "FINISHED"  # not left RUNNING
    assert _no_partial_files(disk)


@pytest.mark.faults
def test_a_run_that_fills_its_disk_ends_failed_in_one_line_and_resumes_once_space_is_freed(tmp_path, small_disk, capsys):
    out, tracking = small_disk(ONE_CHECKPOINT), f"sqlite:///{tmp_path}/mlflow.db"
    assert main(["run", *OPTIONS, "--out", str(out), "--tracking-uri", tracking]) == 1
    assert Checkpoint.load(out).round == 1, f"{ONE_CHECKPOINT} should hold one checkpoint of this run, not two"
    lines = capsys.readouterr().out.strip().splitlines()
    tensors = out / "checkpoint" / "tensors-2.pt"
    assert lines[-1].startswith(f"relatlas: run failed: DiskFullError: No space left on device writing {tensors}: it needs ")
    assert lines[-1].endswith(f"are free there; free space, then go on with --resume {out}")
    results = json.loads((out / "results.json").read_text())
    assert results["status"] == "failed" and str(tensors) in results["error"]
    assert _mlflow_statuses(tracking) == ["FAILED"]
    assert _no_partial_files(out)

    small_disk("2m")
    assert main(["run", "--resume", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["status"] == "completed" and len(results["rounds"]) == 2
    assert _mlflow_statuses(tracking) == ["FINISHED"]  # the same MLflow run, ended again
    assert _no_partial_files(out)


@pytest.mark.faults
def test_a_run_whose_results_cannot_be_written_either_still_ends_failed_in_mlflow(tmp_path, small_disk, capsys):
    out, tracking = small_disk("200k"), f"sqlite:///{tmp_path}/mlflow.db"
    (out / "filler").write_bytes(bytes(200_000))  # the one page left holds neither a checkpoint nor results.json
    assert main(["run", *OPTIONS, "--rounds", "1", "--out", str(out), "--tracking-uri", tracking]) == 1
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert f"writing {out / 'checkpoint' / 'tensors-1.pt'}: it needs " in line and line.endswith("; free space, then run again")
    assert not (out / "results.json").exists()
    assert _mlflow_statuses(tracking) == ["FAILED"]
    assert _no_partial_files(out)
