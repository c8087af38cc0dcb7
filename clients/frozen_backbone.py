"""A frozen pretrained backbone with a trained projection, whose features are
computed once per input and cached, not once per epoch. The backbone may take
images (``clients/backbones.py``) or texts (``clients/hf_text.py``).

In memory, each input row's features are kept under the digest of its bytes, so
every epoch after the first (and every prediction of the same rows) skips the
backbone. On disk, ``cache_frozen_features`` keeps the features of a client's
training inputs in the client's private state folder (``clients/checkpoint.py``),
so the rounds after the first, each a fresh model and perhaps a fresh process,
read them instead of recomputing. The file is named by content: the digest of the
weights file, the architecture and the input transform (the backbone's ``key``)
and of the inputs. It is written with ``relatlas/safe_files.py`` (0600, atomic, no
link followed) and read with ``torch.load(weights_only=True)`` through a descriptor
opened without following links. A file that is not what this module writes (a
link, another format, the wrong shape, non-finite values) is not trusted: its
features are recomputed and the file replaced, with a warning; a cache is never
worth refusing a client's round over.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from relatlas.benchmarks.sources import inputs_loader, is_array
from relatlas.safe_files import atomic_write, open_cached, private_dir

FEATURE_BATCH = 256  # rows per backbone pass when filling the cache
log = logging.getLogger("relatlas")


def row_digests(x: Tensor | Sequence[str]) -> list[bytes]:
    """A 16-byte digest of each row's bytes (each text's UTF-8): the key of its features."""
    if not isinstance(x, Tensor):
        return [hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest() for text in x]
    rows = x.detach().to("cpu", torch.float32).contiguous().reshape(len(x), -1).numpy()
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in rows]


class FrozenBackbone(nn.Module):
    """``extractor`` (input transform and backbone, fixed) then a trained linear
    projection from its ``width`` features to ``embedding_dim``. The extractor is
    not a submodule: it is not trained, not in the state dict the client keeps
    each round (the weights file holds it) and not counted as the client's parameters."""

    def __init__(self, extractor: nn.Module, width: int, embedding_dim: int, key: str) -> None:
        super().__init__()
        object.__setattr__(self, "extractor", extractor.eval().requires_grad_(False))
        self.projection = nn.Linear(width, embedding_dim)
        self.width, self.key = width, key
        self.memo: dict[bytes, Tensor] = {}

    def forward(self, x: Tensor | Sequence[str]) -> Tensor:
        return self.projection(self.features(x).to(self.projection.weight.device))

    @torch.no_grad()
    def features(self, x: Tensor | Sequence[str]) -> Tensor:
        """The backbone's ``[B, width]`` features of ``x`` (a tensor, or a list of texts for a text
        backbone): remembered rows from memory, the others computed on the projection's device."""
        digests = row_digests(x)
        missing = [i for i, digest in enumerate(digests) if digest not in self.memo]
        if missing:
            device = self.projection.weight.device
            rows = [x[i] for i in missing] if not isinstance(x, Tensor) else x[torch.tensor(missing, device=x.device)].to(device)
            computed = self.extractor.to(device)(rows).float().cpu()
            self.memo.update(zip((digests[i] for i in missing), computed, strict=True))
        return torch.stack([self.memo[digest] for digest in digests])


def cache_frozen_features(model: nn.Module, x: Sequence[Any], directory: Path) -> None:
    """Fill each frozen backbone of ``model`` with the features of ``x`` (a client's
    training inputs, an array or a lazily read source): read from ``directory``'s file
    for them, else computed and written there. Inputs not held whole are read a batch
    at a time, so a source larger than memory is never decoded at once."""
    frozen = [module for module in model.modules() if isinstance(module, FrozenBackbone)]
    if not frozen:
        return
    digests = [digest for chunk in _input_batches(x) for digest in row_digests(chunk)]
    for backbone in frozen:
        path = Path(directory) / f"features-{_cache_name(backbone.key, digests)}.pt"
        features = _read_features(path, len(digests), backbone.width)
        if features is None:
            features = torch.cat([backbone.features(chunk) for chunk in _input_batches(x)])
            private_dir(path.parent, trusted=path.parent.parent)  # the client's folder and its run's
            with atomic_write(path) as file:
                torch.save({"features": features}, file)
        backbone.memo.update(zip(digests, features, strict=True))


def _input_batches(x: Sequence[Any]) -> Iterator[Tensor | Sequence[str]]:
    """``x`` in batches of ``FEATURE_BATCH`` rows: float32 sliced from an array, else read through a
    ``DataLoader`` (texts stay lists of strings)."""
    if is_array(x):
        yield from torch.from_numpy(np.array(x, dtype=np.float32)).split(FEATURE_BATCH)  # a copy: cached arrays are read-only
    else:
        for batch in inputs_loader(x, FEATURE_BATCH, 0):
            yield batch if isinstance(batch, (list, tuple)) else torch.as_tensor(batch, dtype=torch.float32)


def _cache_name(key: str, digests: list[bytes]) -> str:
    """The content key of a cache file: the backbone's key and every input row's digest."""
    return hashlib.sha256(key.encode() + b"".join(digests)).hexdigest()[:32]


def _read_features(path: Path, rows: int, width: int) -> Tensor | None:
    """The cached ``[rows, width]`` features, or None when there is no usable file (warned unless absent)."""
    opened = open_cached(path, "feature cache")
    if opened is None:
        return None
    try:
        with opened as file:
            features = torch.load(file, map_location="cpu", weights_only=True)["features"]
        if not (features.dtype == torch.float32 and tuple(features.shape) == (rows, width) and torch.isfinite(features).all()):
            raise ValueError(f"{features.dtype} {list(features.shape)}, expected finite float32 [{rows}, {width}]")
    except Exception as err:  # noqa: BLE001 - planted or corrupt: recomputed, whatever it holds
        log.warning("feature cache %s is not one this client wrote (%s); recomputing it", path, type(err).__name__)
        return None
    return features
