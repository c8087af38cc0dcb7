"""Inputs that are not float arrays: image folders, text tables, torchvision-style
datasets; read through a DataLoader with the numbers of the array path."""

from __future__ import annotations

import csv
import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from relatlas.benchmarks.datasets import TEST_FRACTION, DatasetError, load_dataset, stratified_split
from relatlas.benchmarks.sources import LazyInputs, class_labels, first_batch, text_array, wire_array
from relatlas.benchmarks.torch_source import torch_dataset
from relatlas.clients.models import build_classifier, check_encoders
from relatlas.clients.training import TrainConfig, fit, predict
from relatlas.registries import DATASETS, ENCODERS
from relatlas.server.config import ConfigError, RunConfig
from relatlas.server.preflight import refuse_bad_input
from relatlas.server.simulation import run_simulation
from tests.conftest import read_results, small_run_config

CLASSES = ("cat", "dog", "owl")
EXAMPLES = Path(__file__).parents[1] / "examples"


@pytest.fixture(autouse=True)
def fresh_cache():
    yield
    load_dataset.cache_clear()


def image_folder(root, per_class: int = 10, side: int = 8, mode: str = "L"):
    """``root/<class>/<i>.png``: class c's images are bright in row block c, plus seeded noise."""
    rng = np.random.default_rng(0)
    for label, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 60, size=(side, side), dtype=np.uint8)
            pixels[label * side // 3 : (label + 1) * side // 3] += 180
            image = Image.fromarray(pixels, "L")
            (image if mode == "L" else image.convert(mode)).save(root / name / f"{i}.png")
    (root / "cat" / "notes.txt").write_text("not an image: ignored")
    return root


def test_an_image_folder_is_read_lazily_with_sorted_class_names(tmp_path):
    data = load_dataset(f"imagefolder:{image_folder(tmp_path / 'pets')}")
    assert data.classes == CLASSES and data.num_classes == 3 and data.input_shape == (1, 8, 8)
    assert isinstance(data.x_train, LazyInputs) and len(data.x_train) + len(data.x_test) == 30
    assert np.bincount(data.y_test).tolist() == [3, 3, 3]  # the seeded stratified 70/30 split
    first = data.x_train[0]
    assert first.dtype == np.float32 and 0.0 <= first.min() and first.max() <= 1.0
    assert np.argmax(first.mean(axis=(0, 2))) // 2 == data.y_train[0]  # its class's bright rows
    pool = wire_array(data.x_test[np.array([0, 2])])
    assert pool.shape == (2, 1, 8, 8) and np.array_equal(pool[1], data.x_test[2])


def test_image_folder_options_resize_and_convert(tmp_path):
    folder = image_folder(tmp_path / "pets", mode="RGB")
    assert load_dataset(f"imagefolder:{folder}").input_shape == (3, 8, 8)
    assert load_dataset(f"imagefolder:{folder}:size=4x6:mode=L").input_shape == (1, 4, 6)
    with pytest.raises(DatasetError, match="unknown option 'width'; options: size, mode"):
        load_dataset(f"imagefolder:{folder}:width=4")
    with pytest.raises(DatasetError, match="is not a folder"):
        load_dataset(f"imagefolder:{tmp_path / 'absent'}")


def _truncated(folder):
    data = (folder / "dog" / "3.png").read_bytes()
    (folder / "dog" / "3.png").write_bytes(data[: len(data) // 2])
    (folder / "owl" / "0.png").write_bytes(b"not a png")


def _empty_class(folder):
    (folder / "emu").mkdir()
    (folder / "emu" / "README").write_text("no images yet")


def _sizes_differ(folder):
    Image.new("L", (5, 7)).save(folder / "owl" / "big.png")


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (_truncated, r"2 of 30 images cannot be read, first .*dog/3\.png .*refuses rather than skips"),
        (_empty_class, r"class folder\(s\) emu hold no images \(\.jpg, .*\): add images or remove the folder"),
        (_sizes_differ, r"images differ in size \(7x5, 8x8\): pass imagefolder:.*:size=H or size=HxW"),
    ],
)
def test_a_broken_image_folder_is_refused_in_one_line_before_training(tmp_path, spoil, message):
    folder = image_folder(tmp_path / "pets")
    spoil(folder)
    config = RunConfig(dataset=f"imagefolder:{folder}", out_dir=str(tmp_path / "out"), tracking_uri=f"sqlite:///{tmp_path}/m.db")
    with pytest.raises(DatasetError, match=message) as err:
        refuse_bad_input(config)
    assert "\n" not in str(err.value)


def test_training_through_a_dataloader_gives_the_numbers_of_the_array_path():
    rng = np.random.default_rng(0)
    x, y = rng.random((50, 1, 4, 4), dtype=np.float32), np.arange(50) % 3
    trained = []
    for inputs, workers in ((x, 0), (LazyInputs.of(list(x)), 0), (LazyInputs.of(list(x)), 2)):
        model = build_classifier((1, 4, 4), 3, embedding_dim=8, encoder="mlp:hidden=16", seed=1)
        stats = fit(model, inputs, y, TrainConfig(epochs=2, batch_size=16, seed=3, workers=workers))
        trained.append((stats, predict(model.embedder, inputs, batch_size=7, workers=workers)))
    for stats, embedded in trained[1:]:
        assert stats == trained[0][0] and torch.equal(embedded, trained[0][1])


def write_table(tmp_path, kind: str) -> str:
    rows = [{"review": "great " * (1 + i % 3), "stars": str(10 if i % 2 else 2), "id": i} for i in range(20)]
    if kind == "jsonl":
        (tmp_path / "reviews.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    else:
        lines = ["id,review,stars"] + [f'{r["id"]},"{r["review"]}",{r["stars"]}' for r in rows]
        (tmp_path / "reviews.csv").write_text("\n".join(lines) + "\n")
    return str(tmp_path / f"reviews.{kind}")


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_a_text_table_loads_and_splits_with_named_columns(tmp_path, kind):
    path = write_table(tmp_path, kind)
    data = load_dataset(f"{kind}:{path}:text=review:label=stars")
    assert data.classes == ("2", "10")  # integer labels in numeric order
    assert len(data.x_train) == 14 and isinstance(data.x_train[0], str) and data.input_shape == ()
    assert all(text.startswith("great") for text in data.x_test)
    assert wire_array(data.x_test).dtype.kind == "U"  # what the server sends: no pickled objects
    with pytest.raises(DatasetError, match=rf"{kind} file .* has no column 'text' \(line \d\); columns: .*review.*stars"):
        load_dataset(f"{kind}:{path}:label=stars")


def awkward_table(tmp_path, kind: str) -> tuple[str, list[str], list[str]]:
    """A table whose rows span lines (quoted newlines, \\r\\n and bare \\r), with blank lines and
    multi-byte characters; its path, and its texts and labels read whole, as the loader read them before it streamed."""
    texts = [f"row {i}: caf\u00e9 \u20ac" + ('\nsecond line, "quoted"\r\nthird' if i % 3 == 0 else "") for i in range(30)]
    texts[4] = "bare\rreturn"
    names = [str(i % 3) for i in range(30)]
    path = tmp_path / f"awkward.{kind}"
    with path.open("w", encoding="utf-8", newline="") as file:
        if kind == "csv":
            writer = csv.writer(file, lineterminator="\r\n")
            writer.writerow(["id", "text", "label"])
            for i, (text, name) in enumerate(zip(texts, names, strict=True)):
                writer.writerow([i, text, name])
                file.write("\r\n" if i == 7 else "")  # a blank line between rows
        else:
            file.writelines(
                json.dumps({"text": t, "label": int(n)}) + ("\n\n" if i == 7 else "\n")
                for i, (t, n) in enumerate(zip(texts, names, strict=True))
            )
    with path.open(encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file)) if kind == "csv" else [json.loads(line) for line in file if line.strip()]
    return str(path), [row["text"] for row in rows], [str(row["label"]) for row in rows]


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_a_text_table_streams_the_texts_and_labels_it_held_whole(tmp_path, kind):
    path, texts, names = awkward_table(tmp_path, kind)
    assert texts[0].count("\n") == 2 and texts[4] == "bare\rreturn"  # the reference read them right
    data = load_dataset(f"{kind}:{path}", seed=5)
    classes, labels = class_labels(names)
    train, test = stratified_split(labels, TEST_FRACTION, 5)
    assert isinstance(data.x_train, LazyInputs) and data.classes == classes
    assert data.y_train.tolist() == labels[train].tolist() and data.y_test.tolist() == labels[test].tolist()
    assert [data.x_train[i] for i in range(len(train))] == [texts[r] for r in train]
    assert [data.x_test[i] for i in range(len(test))] == [texts[r] for r in test]
    assert wire_array(data.x_test).tolist() == [texts[r] for r in test]
    whole = text_array(texts)
    trained = []
    for x_train, x_test in ((whole[train], whole[test]), (data.x_train, data.x_test)):
        model = build_classifier((), 3, embedding_dim=4, encoder="tfidf:features=64:hidden=8", seed=1)
        stats = fit(model, x_train, data.y_train, TrainConfig(epochs=2, batch_size=8, seed=3))
        trained.append((stats, predict(model.embedder, x_test, batch_size=5)))
    assert trained[1][0] == trained[0][0] and torch.equal(trained[1][1], trained[0][1])


def test_a_streamed_text_is_read_from_the_file_when_asked_for(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("text,label\nabc,1\ndef,2\nghi,1\njkl,2\nmno,1\npqr,2\nstu,1\nvwx,2\n")
    data = load_dataset(f"csv:{path}")
    first = data.x_train[0]
    path.write_text(path.read_text().replace(first, first.upper()))  # the same bytes' length, other texts
    assert data.x_train[0] == first.upper()
    path.write_text("text,label\n")
    with pytest.raises(
        DatasetError, match=rf"csv file '{re.escape(str(path))}': the row at byte \d+ cannot be read again .*did the file change"
    ):
        data.x_train[0]


def test_a_jsonl_line_that_is_not_an_object_is_refused(tmp_path):
    (tmp_path / "t.jsonl").write_text('{"text": "a", "label": 1}\n[1, 2]\n')
    with pytest.raises(DatasetError, match=r"line 2 is a JSON list, not an object"):
        load_dataset(f"jsonl:{tmp_path / 't.jsonl'}")


@pytest.fixture
def text_encoder(monkeypatch):
    """The example's ``letters`` encoder of text, registered for one test."""
    monkeypatch.setattr(ENCODERS, "_entries", dict(ENCODERS._entries))
    spec = importlib.util.spec_from_file_location("text_encoder_plugin", EXAMPLES / "text_encoder_plugin.py")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))


def test_a_text_source_reaches_a_text_encoder_and_a_tensor_encoder_is_refused(tmp_path, text_encoder):
    path = write_table(tmp_path, "csv")
    spec = f"csv:{path}:text=review:label=stars"
    where = {"out_dir": str(tmp_path / "o"), "tracking_uri": f"sqlite:///{tmp_path}/m.db", "split": "same-classes", "anchors": 4}
    with pytest.raises(ConfigError, match=r"^encoder: encoder 'auto' takes tensor inputs, the dataset holds text; "
                                          r"encoders for text: hf, tfidf, bag, letters$"):  # fmt: skip
        refuse_bad_input(RunConfig(dataset=spec, **where))
    refuse_bad_input(RunConfig(dataset=spec, encoder="letters", **where))
    with pytest.raises(ValueError, match="'letters' takes text inputs, the dataset holds tensor; encoders for tensor: auto"):
        check_encoders("letters", torch.zeros(2, 3), 8)
    data = load_dataset(spec)
    model = build_classifier(data.input_shape, data.num_classes, embedding_dim=4, encoder="letters")
    fit(model, data.x_train, data.y_train, TrainConfig(epochs=1, batch_size=4))
    projected = predict(model.embedder, wire_array(data.x_test))  # as a client receives the pool
    assert projected.shape == (6, 4) and torch.isfinite(projected).all()
    assert first_batch(data.x_train, 2) == [data.x_train[0], data.x_train[1]]


def test_a_users_torchvision_style_dataset_is_read_lazily(monkeypatch):
    class Pairs(torch.utils.data.Dataset):
        classes = ["zero", "one"]

        def __init__(self) -> None:
            self.reads = 0

        def __len__(self) -> int:
            return 20

        def __getitem__(self, i: int):
            self.reads += 1
            return Image.new("L", (3, 3), color=10 * i), i % 2

    pairs = Pairs()
    pairs.targets = [i % 2 for i in range(20)]
    monkeypatch.setattr(DATASETS, "_entries", dict(DATASETS._entries))
    DATASETS.register("pairs", lambda argument, *, root, seed: torch_dataset("pairs", pairs, seed=seed))
    data = load_dataset("pairs")
    assert data.classes == ("zero", "one") and data.input_shape == (1, 3, 3) and len(data.x_test) == 6
    assert pairs.reads <= 5  # labels from `targets`; only the few inputs the checks decode, never all 20
    assert data.x_train[1][0, 0, 0] == pytest.approx(10 * data.x_train.rows[1] / 255)


def test_a_federation_on_an_image_folder_completes_and_records_the_class_names(tmp_path):
    folder = image_folder(tmp_path / "pets", per_class=40)
    config = small_run_config(
        tmp_path, dataset=f"imagefolder:{folder}", split="same-classes", anchors=12, **{"num-clients": 2, "probe-epochs": 5}
    )
    run_simulation(config)
    results = read_results(config)
    assert results["status"] == "completed" and results["failures"] == []
    assert results["classes"] == list(CLASSES) and results["payload_bytes_per_client"] == 36 * 12 * 4
    assert 0.5 < results["merged_accuracy"] <= 1.0
