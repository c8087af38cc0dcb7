"""``csv:PATH`` and ``jsonl:PATH``: a table of texts and labels, one sample a row.

Options, in the grammar of encoder specs: ``text=COLUMN`` (default ``text``) and
``label=COLUMN`` (default ``label``), e.g. ``csv:reviews.csv:text=review:label=stars``.
A CSV file has a header row (read with Python's ``csv``); a JSON Lines file holds
one object a line (blank lines ignored). Labels are read as text and mapped to
0..C-1 in sorted order (numerically if every label is an integer), the names kept
in ``Dataset.classes``. The split is seeded and stratified, as for an npz file
without test arrays. The texts are held in memory as Python strings; a missing
column, a row without a label or a line that is not a JSON object is refused in
one line naming it. Texts need an encoder that takes text (the docs' Plug-in contract).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

from relatlas.benchmarks.datasets import TEST_FRACTION, Dataset, stratified_split
from relatlas.benchmarks.sources import DatasetError, class_labels, path_and_options, text_array

OPTIONS = {"text": "text", "label": "label"}


def csv_table(argument: str, *, root: str | None, seed: int) -> Dataset:
    """``csv:PATH[:text=COLUMN][:label=COLUMN]``."""
    return _table("csv", argument, seed)


def jsonl_table(argument: str, *, root: str | None, seed: int) -> Dataset:
    """``jsonl:PATH[:text=COLUMN][:label=COLUMN]``."""
    return _table("jsonl", argument, seed)


def _table(kind: str, argument: str, seed: int) -> Dataset:
    path, options = path_and_options(kind, argument, OPTIONS)
    file = Path(path)
    if not file.is_file():
        raise DatasetError(f"{kind} file {path!r} does not exist")
    columns = options["text"], options["label"]
    texts: list[str] = []
    names: list[str] = []
    try:
        with file.open(encoding="utf-8", newline="") as handle:
            for where, row in (_csv_rows if kind == "csv" else _jsonl_rows)(handle, path):
                missing = [c for c in columns if c not in row]
                if missing:
                    raise DatasetError(
                        f"{kind} file {path!r} has no column {missing[0]!r} ({where}); columns: {', '.join(map(str, row))}; "
                        f"name them with {kind}:{path}:text=COLUMN:label=COLUMN"
                    )
                text, label = row[columns[0]], row[columns[1]]
                if label is None or str(label).strip() == "":
                    raise DatasetError(f"{kind} file {path!r}: {where} has no label in column {columns[1]!r}")
                texts.append("" if text is None else str(text))
                names.append(str(label).strip())
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DatasetError(f"cannot read {kind} file {path!r}: {err}") from None
    if not texts:
        raise DatasetError(f"{kind} file {path!r} holds no rows")
    classes, labels = class_labels(names)
    inputs = text_array(texts)
    train, test = stratified_split(labels, TEST_FRACTION, seed)
    return Dataset(f"{kind}:{argument}", inputs[train], labels[train], inputs[test], labels[test], classes)


def _csv_rows(handle, path: str) -> Iterator[tuple[str, dict]]:  # noqa: ANN001 - a text file
    reader = csv.DictReader(handle)
    if reader.fieldnames is None:
        raise DatasetError(f"csv file {path!r} is empty: it needs a header row naming the columns")
    for row in reader:
        yield f"line {reader.line_num}", row


def _jsonl_rows(handle, path: str) -> Iterator[tuple[str, dict]]:  # noqa: ANN001 - a text file
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DatasetError(f"jsonl file {path!r}: line {number} is not JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise DatasetError(f"jsonl file {path!r}: line {number} is a JSON {type(row).__name__}, not an object")
        yield f"line {number}", row
