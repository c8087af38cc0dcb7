"""A pretrained backbone's weights, read from a file the user names: never
downloaded, never unpickled, checked against the architecture key by key so a
file that does not fit fails in one line naming the first key that differs.

Two formats, told apart by the file's suffix (``READERS``): ``*.safetensors``
(``safetensors.torch.load_file``: a JSON header and raw tensor bytes, no pickle
at all; the format to prefer) and anything else as ``torch.save``'s
(``torch.load(weights_only=True)``: tensors and plain containers only)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

import torch
from torch import Tensor, nn

from relatlas.benchmarks.datasets import first_few

READ_CHUNK = 1 << 20  # bytes hashed at a time: a weights file is tens of megabytes


def weights_path(text: str) -> Path:
    """The file an encoder spec's ``weights=PATH`` names; a one-line error unless it is a readable file."""
    path = Path(str(text)).expanduser()
    if not path.is_file():
        raise ValueError(
            f"weights file {str(path)!r} does not exist (give the state-dict file's path, absolute for a deployed node)"
        )
    return path.resolve()


def file_digest(path: Path) -> str:
    """SHA-256 of the file's bytes: the backbone's part of a feature cache's key
    (remembered per path, size and modification time: a model is built every round)."""
    info = path.stat()
    return _digest(str(path), info.st_size, info.st_mtime_ns)


@lru_cache(maxsize=16)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """The file's ``{name: tensor}`` state dict, read by its format's reader (``READERS``)
    without unpickling objects; a one-line error naming the file if it cannot be read as one."""
    format_name, read = READERS.get(path.suffix.lower(), TORCH_SAVE)
    try:
        state = read(path)
    except Exception as err:  # noqa: BLE001 - whatever the file holds, the user gets one line
        reason = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise ValueError(f"weights file {str(path)!r} is not a {format_name}: {reason}") from None
    if not isinstance(state, Mapping) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()):
        raise ValueError(
            f"weights file {str(path)!r} must hold a state dict {{name: tensor}} (model.state_dict()), got {type(state).__name__}"
        )
    return dict(state)


def _torch_load(path: Path) -> object:
    return torch.load(path, map_location="cpu", weights_only=True)


def _safetensors_load(path: Path) -> dict[str, Tensor]:
    from safetensors.torch import load_file

    return load_file(path, device="cpu")


TORCH_SAVE = ("torch state-dict file saved with torch.save", _torch_load)
READERS = {".safetensors": ("safetensors file (safetensors.torch.save_file)", _safetensors_load)}  # suffix -> (format, reader)


def load_checked(model: nn.Module, state: Mapping[str, Tensor], source: str) -> None:
    """Load ``state`` into ``model`` after checking that it fits: a one-line error
    naming the first key whose shape differs (both shapes), and the keys missing
    from the file or unknown to the architecture."""
    expected = model.state_dict()
    for key, tensor in state.items():
        if key in expected and tuple(tensor.shape) != tuple(expected[key].shape):
            raise ValueError(
                f"{source}: key {key!r} has shape {list(tensor.shape)} in the file, {list(expected[key].shape)} in the model"
                " (weights of another architecture or variant?)"
            )
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    if missing or unexpected:
        raise ValueError(
            f"{source}: {len(missing)} keys missing from the file ({first_few(missing) or '-'}), "
            f"{len(unexpected)} unknown to the architecture ({first_few(unexpected) or '-'})"
        )
    model.load_state_dict(state)
