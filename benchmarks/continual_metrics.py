"""Continual-learning summaries of an accuracy matrix.

``matrix[i][j]`` is the accuracy on experience ``j`` after training on experience
``i`` (``None`` where not measured: ``j > i``, or a round a client missed).

- average accuracy: the mean of the last row over the experiences seen;
- forgetting (Chaudhry et al., 2018): for each earlier experience ``j < T``,
  the best accuracy it ever had before the end, ``max_{j <= l < T} matrix[l][j]``,
  minus its final accuracy ``matrix[T][j]``; averaged over ``j``.
"""

from __future__ import annotations

from collections.abc import Sequence

Matrix = list[list[float | None]]


def accuracy_matrix(rows: Sequence[Sequence[float] | None], experiences: int) -> Matrix:
    """A square ``experiences`` x ``experiences`` matrix from the rows measured so far
    (row i lists experiences ``0..i``; ``None`` for a round without a measurement)."""
    matrix: Matrix = []
    for i in range(experiences):
        row = rows[i] if i < len(rows) and rows[i] is not None else []
        matrix.append([float(row[j]) if j < len(row) else None for j in range(experiences)])
    return matrix


def _last_row(matrix: Matrix) -> int | None:
    filled = [i for i, row in enumerate(matrix) if row[i] is not None]
    return filled[-1] if filled else None


def average_accuracy(matrix: Matrix) -> float | None:
    last = _last_row(matrix)
    if last is None:
        return None
    values = [v for v in matrix[last][: last + 1] if v is not None]
    return sum(values) / len(values)


def forgetting(matrix: Matrix) -> float | None:
    """Mean drop from each earlier experience's best accuracy to its final one
    (``None`` before a second experience was measured)."""
    last = _last_row(matrix)
    if last is None or last == 0:
        return None
    drops = []
    for j in range(last):
        before = [matrix[i][j] for i in range(j, last) if matrix[i][j] is not None]
        if before and matrix[last][j] is not None:
            drops.append(max(before) - matrix[last][j])
    return sum(drops) / len(drops) if drops else None


def summarize(rows: Sequence[Sequence[float] | None], experiences: int) -> dict[str, object]:
    """``accuracy_matrix``, ``average_accuracy`` and ``forgetting`` of some rows."""
    matrix = accuracy_matrix(rows, experiences)
    return {"accuracy_matrix": matrix, "average_accuracy": average_accuracy(matrix), "forgetting": forgetting(matrix)}
