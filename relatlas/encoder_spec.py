"""Which encoder each client trains, from one run-config string.

A spec names a registered encoder and its keyword options,
``name[:key=value[:key=value]]``: ``resnet8``, ``mlp:hidden=128``,
``cnn:dim=32``. ``dim`` is the client's embedding width (default: the run's
``embedding-dim``); every other option goes to the encoder's factory. A run
config carries scalars only, so the clients' specs are one comma-separated list,
cycled over the clients: client ``i`` gets spec ``i % len``. A deployed
SuperNode may override its own with ``--node-config "encoder='cnn:dim=32'"``;
the server sizes its reply limits for the widest ``dim`` of the run's list, which
only matters for embeddings that leave the client (``translated`` anchors, the
simulation's absolute baselines): the relative spaces are [N, m] at any width.
An encoder for text sets ``input_kind = "text"`` on its factory: its module then
takes a batch as a list of strings (``encoder_input_kind``).
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from typing import Any

from relatlas.registries import ENCODERS

TENSOR, TEXT = "tensor", "text"  # the kinds of input: float tensors [batch, *input_shape], or a list of strings
WIDTH_OPTION = "dim"
OPTION = re.compile(r"^([A-Za-z_]\w*)=(\S+)$")
Option = int | float | str


@dataclass(frozen=True)
class EncoderSpec:
    """One client's encoder: a registered name, its options and, if set, its own width."""

    name: str
    options: tuple[tuple[str, Option], ...] = ()
    dim: int | None = None

    @classmethod
    def parse(cls, text: str) -> EncoderSpec:
        """``"mlp:hidden=128:dim=32"`` -> ``EncoderSpec("mlp", (("hidden", 128),), 32)``; a one-line error if malformed."""
        if "," in text:
            raise ValueError(f"encoder spec {text!r} is a list; one client takes one spec name[:key=value...]")
        name, *parts = text.strip().split(":")
        if name not in ENCODERS:
            raise ValueError(f"unknown encoder {name!r} in {text!r}; registered: {', '.join(ENCODERS.names())}")
        options: dict[str, Option] = {}
        for part in parts:
            match = OPTION.match(part)
            if match is None:
                raise ValueError(f"encoder spec {text!r}: option {part!r} is not key=value (name[:key=value[:key=value]])")
            key, value = match.groups()
            if key in options:
                raise ValueError(f"encoder spec {text!r} sets option {key!r} twice")
            options[key] = _value(value)
        dim = options.pop(WIDTH_OPTION, None)
        if dim is not None and not (isinstance(dim, int) and dim > 0):
            raise ValueError(f"encoder spec {text!r}: {WIDTH_OPTION} must be a positive integer; got {dim!r}")
        return cls(name, tuple(options.items()), dim)

    @classmethod
    def parse_list(cls, text: str) -> tuple[EncoderSpec, ...]:
        """The run's comma-separated specs, in client order."""
        return tuple(cls.parse(part) for part in text.split(","))

    @classmethod
    def for_client(cls, text: str, index: int) -> EncoderSpec:
        """Client ``index``'s spec: the list is cycled over the clients."""
        specs = cls.parse_list(text)
        return specs[index % len(specs)]

    def width(self, default: int) -> int:
        """The client's embedding width: its own ``dim``, else the run's."""
        return self.dim if self.dim is not None else default

    def entry(self) -> Any:
        """The registered factory, its options checked against its signature (one-line error)."""
        factory = ENCODERS.get(self.name)
        try:
            inspect.signature(factory).bind((), 1, **dict(self.options))
        except TypeError as err:
            raise ValueError(f"encoder {str(self)!r}: {err}") from None
        return factory

    def __str__(self) -> str:
        extra = self.options + (((WIDTH_OPTION, self.dim),) if self.dim is not None else ())
        return ":".join([self.name, *(f"{key}={value}" for key, value in extra)])


def encoder_input_kind(factory: Any) -> str:
    """What an encoder factory's modules take: ``TEXT`` if it says so (``factory.input_kind = "text"``), else ``TENSOR``."""
    return str(getattr(factory, "input_kind", TENSOR))


def widest_embedding(text: str, default: int) -> int:
    """The widest embedding of a run's specs: what the server allows a client's embeddings."""
    return max(spec.width(default) for spec in EncoderSpec.parse_list(text))


def _value(text: str) -> Option:
    """An option's value: an int, else a float, else the text itself."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
