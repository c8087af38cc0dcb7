"""Text encoders: a local Hugging Face model folder (frozen or fine-tuned), TF-IDF
with an MLP and a bag of hashed embeddings, and a federation of all three. The
model folder is a tiny random BERT with a tokenizer of a small vocabulary, written
by the test: no real weights are read and nothing downloads."""

from __future__ import annotations

import stat

import numpy as np
import pytest
import torch

from relatlas.clients.frozen_backbone import cache_frozen_features
from relatlas.clients.models import build_classifier
from relatlas.clients.training import TrainConfig, fit, predict
from relatlas.server.config import ConfigError, RunConfig
from relatlas.server.preflight import refuse_bad_input
from relatlas.server.simulation import run_simulation
from tests.conftest import read_results, small_run_config

transformers = pytest.importorskip("transformers", reason="the text extra (pip install 'relatlas[text]') is not installed")

WORDS = "cat dog horse bird fish car road truck wheel engine red blue green fast slow the a on ran sat".split()
ANIMALS = ["the cat sat", "a dog ran", "the horse ran fast", "a bird sat on the fish", "the slow dog", "a cat on a horse"]
VEHICLES = ["the car ran", "a road truck", "the red wheel", "a fast engine on the road", "the blue car", "a green truck"]


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    """A one-layer, 16-wide random BERT and its word-piece tokenizer, saved as a Hugging Face folder."""
    folder = tmp_path_factory.mktemp("tiny-bert")
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    tokenizer = transformers.BertTokenizerFast(vocab_file=str(vocab))
    config = transformers.BertConfig(
        vocab_size=len(WORDS) + 5, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=64,
    )  # fmt: skip
    torch.manual_seed(0)
    transformers.BertModel(config).save_pretrained(folder / "model")
    tokenizer.save_pretrained(folder / "model")
    return folder / "model"


def texts(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` texts of two classes (animals 0, vehicles 1), each ending with one more word of its class."""
    rows = [(f"{(ANIMALS, VEHICLES)[i % 2][i // 2 % 6]} {WORDS[i % 2 * 5 + i // 12 % 5]}", i % 2) for i in range(n)]
    x = np.empty(n, dtype=object)
    x[:] = [text for text, _ in rows]
    return x, np.array([label for _, label in rows], dtype=np.int64)


def classifier(spec: str):
    return build_classifier((), 2, embedding_dim=8, encoder=spec, seed=0)


def test_the_hf_encoder_mean_pools_token_states_over_the_mask(model_folder):
    model = classifier(f"hf:model={model_folder}")
    extractor = model.embedder.extractor
    alone = extractor(["the cat"])
    padded = extractor(["the cat", "a fast red car on the road"])[:1]  # padded to the longer text
    assert alone.shape == (1, 16) and torch.allclose(alone, padded, atol=1e-5)
    tokens = extractor.tokenizer(["the cat"], return_tensors="pt")
    assert torch.allclose(alone, extractor.transformer(**tokens).last_hidden_state.mean(dim=1), atol=1e-6)


def test_a_frozen_hf_model_trains_only_its_projection_and_finetune_trains_it_all(model_folder):
    x, y = texts(24)
    frozen, finetuned = classifier(f"hf:model={model_folder}"), classifier(f"hf:model={model_folder}:backbone=finetune")
    assert [name for name, _ in frozen.named_parameters()] == ["embedder.projection.weight", "embedder.projection.bias",
                                                               "head.weight", "head.bias"]  # fmt: skip
    word_embeddings = finetuned.embedder[0].transformer.embeddings.word_embeddings.weight
    before = word_embeddings.detach().clone()
    for model in (frozen, finetuned):
        fit(model, x, y, TrainConfig(epochs=2, batch_size=8))
    assert not torch.equal(word_embeddings, before)
    assert predict(frozen.embedder, x).shape == (24, 8)


def test_text_features_are_cached_once_and_read_by_a_fresh_model(model_folder, tmp_path):
    folder, (x, _) = tmp_path / "state" / "run" / "partition-0", texts(20)
    first = classifier(f"hf:model={model_folder}")
    cache_frozen_features(first, x, folder)
    (cache,) = folder.iterdir()
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    second = classifier(f"hf:model={model_folder}")
    computed = [0]
    second.embedder.extractor.register_forward_hook(lambda module, args, out: computed.__setitem__(0, computed[0] + 1))
    cache_frozen_features(second, x, folder)
    assert computed[0] == 0 and torch.equal(second.embedder.features(list(x)), first.embedder.features(list(x)))


@pytest.mark.parametrize(
    ("remove", "plant", "message"),
    [
        ("model.safetensors", None, r"has no weights: model.safetensors is missing$"),
        ("model.safetensors", "pytorch_model.bin", r"has no weights: .*pytorch_model.bin, a pickle, is not read"),
        ("config.json", None, r"has no config.json"),
    ],
)
def test_a_model_folder_without_weights_is_refused_in_one_line_before_training(
    model_folder, tmp_path, remove, plant, message
):  # fmt: skip
    broken = tmp_path / "broken"
    broken.mkdir()
    for file in model_folder.iterdir():
        if file.name != remove:
            (broken / file.name).write_bytes(file.read_bytes())
    if plant:
        (broken / plant).write_bytes(b"not read")
    _, table = _table(tmp_path, 40)
    config = RunConfig(
        dataset=table, split="same-classes", anchors=8, encoder=f"hf:model={broken}", out_dir=str(tmp_path / "out")
    )
    with pytest.raises(ConfigError, match=message) as info:
        refuse_bad_input(config)
    assert str(info.value).startswith("encoder: ") and "\n" not in str(info.value)


def test_tfidf_fits_on_the_client_s_own_texts_once_and_its_vocabulary_survives_in_the_state(tmp_path):
    own, y = texts(24)
    model = classifier("tfidf:features=64:hidden=16")
    assert torch.count_nonzero(predict(model.embedder[0], own)) == 0  # unfitted: no terms, all zeros
    fit(model, own, y, TrainConfig(epochs=2, batch_size=8))
    terms = model.embedder[0]._counts().vocabulary
    assert "cat" in terms and "truck" in terms and "zebra" not in terms
    fit(model, np.array(["zebra zebra zebra", "zebra"], dtype=object), np.array([0, 1]), TrainConfig(epochs=1))
    assert "zebra" not in model.embedder[0]._counts().vocabulary  # fitted once: later inputs keep the vocabulary
    torch.save(model.state_dict(), tmp_path / "state.pt")
    fresh = classifier("tfidf:features=64:hidden=16")
    fresh.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    public = np.array(["a cat and a truck", "zebra"], dtype=object)
    assert torch.equal(predict(fresh.embedder, public), predict(model.embedder, public))
    assert torch.count_nonzero(fresh.embedder[0](["zebra"])) == 0  # a word it never saw has no column


def test_the_bag_of_hashed_embeddings_is_a_function_of_the_words():
    model = classifier("bag:buckets=256:width=8")
    a, b, c = predict(model.embedder, np.array(["The cat sat", "the CAT sat!", "a red truck"], dtype=object))
    assert torch.allclose(a, b) and not torch.allclose(a, c)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("tfidf:features=0", r"tfidf encoder: features must be a positive integer; got 0"),
        ("bag:buckets=x", r"bag encoder: buckets must be a positive integer; got 'x'"),
        ("hf:model=/nowhere/at/all", r"hf model folder '/nowhere/at/all' does not exist"),
    ],
)
def test_bad_text_encoder_options_get_one_line_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        classifier(spec)


def _table(tmp_path, n: int):
    x, y = texts(n)
    rows = [f"{text},{('animal', 'vehicle')[label]}" for text, label in zip(x, y)]
    (tmp_path / "texts.csv").write_text("\n".join(["text,label", *rows]) + "\n")
    return x, f"csv:{tmp_path / 'texts.csv'}"


def test_three_different_text_feature_extractors_federate(model_folder, tmp_path, monkeypatch):
    """A pretrained transformer (frozen), TF-IDF and a bag of embeddings: one relative space each, merged."""
    monkeypatch.chdir(tmp_path)
    _, table = _table(tmp_path, 200)
    encoder = f"hf:model={model_folder},tfidf:features=64:hidden=16,bag:buckets=256:width=8"
    config = small_run_config(
        tmp_path, dataset=table, encoder=encoder, split="same-classes", anchors=8, epochs=5, rounds=2, **{"probe-epochs": 30}
    )
    refuse_bad_input(config)
    run_simulation(config)
    results = read_results(config)
    assert results["status"] == "completed" and results["failures"] == [] and results["classes"] == ["animal", "vehicle"]
    assert results["client_encoder_parameters"] == [16 * 64 + 64, 64 * 16 + 16 + 16 * 64 + 64, 256 * 8 + 8 * 64 + 64]
    assert 0.5 < results["merged_accuracy"] <= 1.0
