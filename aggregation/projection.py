"""Relative projection: each sample described by its similarities to anchors.

Moschella et al. (ICLR 2023). The cosine projection is invariant to any
orthogonal map and positive rescaling applied to samples and anchors alike;
the distance-based projections are invariant to other transformation classes
(``aggregation/similarities.py``), which is what "From Bricks to Bridges" combines.
"""

from __future__ import annotations

from torch import Tensor

from relatlas.aggregation.block_rows import block_rows, cuda_free_bytes
from relatlas.registries import SIMILARITIES

# Memory budget for one block of the output, in elements (fp32: 256 MiB).
DEFAULT_BLOCK_ELEMENTS = 64 * 1024 * 1024


def relative_projection(
    x: Tensor,
    anchors: Tensor,
    similarity: str = "cosine",
    *,
    center: bool = False,
    block_elements: int = DEFAULT_BLOCK_ELEMENTS,
) -> Tensor:
    """Project ``x`` [N, d] onto ``anchors`` [m, d]; returns [N, m].

    Rows are processed in blocks of at most ``block_elements`` output entries,
    so memory stays bounded for large N x m (a similarity that allocates only its
    output, ``Similarity.output_only``, takes all rows at once); on CUDA, blocks as large as the
    device's free memory allows (``aggregation/block_rows.py``).

    Parameters
    ----------
    x, anchors
        Absolute embeddings of the samples and of the anchors, from the same encoder.
    similarity
        A name registered in ``relatlas.registries.SIMILARITIES``. Distances are returned as they are (larger means
        farther); downstream normalisation makes the sign irrelevant.
    center
        Subtract the anchors' mean from both sides first (translation invariance).
    """
    kernel = SIMILARITIES.get(similarity)
    if x.ndim != 2 or anchors.ndim != 2 or x.shape[1] != anchors.shape[1]:
        raise ValueError(f"expected x [N, d] and anchors [m, d], got {tuple(x.shape)} and {tuple(anchors.shape)}")
    if center:
        mean = anchors.mean(dim=0, keepdim=True)
        x, anchors = x - mean, anchors - mean
    prepared = kernel.prepare(anchors)
    rows = block_rows(x.shape[0], anchors.shape[0], block_elements, x.device, cuda_free_bytes(x.device), x.element_size())
    if rows >= x.shape[0] or kernel.output_only:
        return _block(similarity, kernel.compute(x, prepared), x.shape[0], anchors.shape[0])
    out = x.new_empty((x.shape[0], anchors.shape[0]))
    for start in range(0, x.shape[0], rows):
        block = x[start : start + rows]
        out[start : start + rows] = _block(similarity, kernel.compute(block, prepared), block.shape[0], anchors.shape[0])
    return out


def _block(similarity: str, computed: object, rows: int, anchors: int) -> Tensor:
    """A similarity's block of rows, refused in one line naming it unless it is ``[rows, anchors]``."""
    if not isinstance(computed, Tensor) or tuple(computed.shape) != (rows, anchors):
        got = list(computed.shape) if isinstance(computed, Tensor) else f"a {type(computed).__name__}"
        raise ValueError(
            f"similarity {similarity!r} returned {got} for {rows} rows and {anchors} anchors; expected [{rows}, {anchors}]"
        )
    return computed


def relative_subspaces(x: Tensor, anchors: Tensor, similarities: tuple[str, ...], *, center: bool = False) -> dict[str, Tensor]:
    """One relative projection per similarity, keyed by its name."""
    return {name: relative_projection(x, anchors, name, center=center) for name in similarities}
