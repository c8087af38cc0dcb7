"""``csv:PATH`` and ``jsonl:PATH``: a table of texts and labels, one sample a row,
streamed: one pass reads the labels, each text is read from the file when asked for.

Options, in the grammar of encoder specs: ``text=COLUMN`` (default ``text``) and
``label=COLUMN`` (default ``label``), e.g. ``csv:reviews.csv:text=review:label=stars``.
A CSV file has a header row (read with Python's ``csv``); a JSON Lines file holds
one object a line (blank lines ignored). Labels are read as text and mapped to
0..C-1 in sorted order (numerically if every label is an integer), the names kept
in ``Dataset.classes``. The split is seeded and stratified, as for an npz file
without test arrays. A missing column, a row without a label or a line that is
not a JSON object is refused in one line naming it. Texts need an encoder that
takes text (the docs' Plug-in contract).

Loading parses every row once, keeping its label and the byte offset where it
starts (the labels are needed up front: every split is planned on them); the
inputs are ``LazyInputs`` of ``TableTexts``, which parses row ``i`` again from its
offset when a batch needs it, so a table larger than memory streams. The file is
read as bytes and split into lines as text mode with ``newline=""`` splits them
(``\\n``, ``\\r\\n``, ``\\r``), so offsets stay exact, also inside a CSV field
quoted over several lines.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from relatlas.benchmarks.datasets import TEST_FRACTION, Dataset, stratified_split
from relatlas.benchmarks.sources import DatasetError, LazyInputs, class_labels, path_and_options

OPTIONS = {"text": "text", "label": "label"}
LONE_CR = re.compile(rb"(?<=\r)(?!\n)")  # where a line ending in a bare \r (old Mac files) ends


def csv_table(argument: str, *, root: str | None, seed: int) -> Dataset:
    """``csv:PATH[:text=COLUMN][:label=COLUMN]``."""
    return _table("csv", _csv_rows, argument, seed)


def jsonl_table(argument: str, *, root: str | None, seed: int) -> Dataset:
    """``jsonl:PATH[:text=COLUMN][:label=COLUMN]``."""
    return _table("jsonl", _jsonl_rows, argument, seed)


class Lines:
    """The UTF-8 lines of a binary file from its current position, with the byte
    offset of the next one (``position``) and how many were read (``count``)."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle, self.position, self.count = handle, handle.tell(), 0
        self._pieces: list[bytes] = []

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        while not self._pieces:
            raw = self.handle.readline()
            if not raw:
                raise StopIteration
            lone_cr = raw.count(b"\r") > raw.count(b"\r\n")  # counted first: splitting by the pattern is slow
            self._pieces = [piece for piece in LONE_CR.split(raw) if piece] if lone_cr else [raw]
        piece = self._pieces.pop(0)
        self.position += len(piece)
        self.count += 1
        return piece.decode("utf-8")


Rows = Iterator[tuple[str, int, dict]]  # (where, the row's byte offset, {column: value})
Reader = Callable[[Lines, str, list[str] | None], tuple[list[str], Rows]]  # (lines, path, header) -> (header, rows)


@dataclass(frozen=True, eq=False)
class TableTexts:
    """Text ``i`` of a table: column ``column`` of the row starting at byte ``offsets[i]``, parsed by ``read`` when asked for."""

    kind: str
    read: Reader
    path: str
    offsets: np.ndarray
    column: str
    header: tuple[str, ...]  # a CSV file's column names (none for JSON Lines)

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, i: int) -> str:
        offset = int(self.offsets[i])
        try:
            with open(self.path, "rb") as handle:
                handle.seek(offset)
                _, rows = self.read(Lines(handle), self.path, list(self.header))
                _, _, row = next(rows)
                return _text(row[self.column])
        except (OSError, ValueError, KeyError, StopIteration, csv.Error) as err:
            raise DatasetError(
                f"{self.kind} file {self.path!r}: the row at byte {offset} cannot be read again ({err!r}); "
                "did the file change after it was loaded?"
            ) from None


def _table(kind: str, read: Reader, argument: str, seed: int) -> Dataset:
    path, options = path_and_options(kind, argument, OPTIONS)
    file = Path(path)
    if not file.is_file():
        raise DatasetError(f"{kind} file {path!r} does not exist")
    columns = options["text"], options["label"]
    offsets: list[int] = []
    names: list[str] = []
    try:
        with file.open("rb") as handle:
            header, rows = read(Lines(handle), path, None)
            for where, offset, row in rows:
                missing = [c for c in columns if c not in row]
                if missing:
                    raise DatasetError(
                        f"{kind} file {path!r} has no column {missing[0]!r} ({where}); columns: {', '.join(map(str, row))}; "
                        f"name them with {kind}:{path}:text=COLUMN:label=COLUMN"
                    )
                label = row[columns[1]]
                if label is None or str(label).strip() == "":
                    raise DatasetError(f"{kind} file {path!r}: {where} has no label in column {columns[1]!r}")
                offsets.append(offset)
                names.append(str(label).strip())
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DatasetError(f"cannot read {kind} file {path!r}: {err}") from None
    if not offsets:
        raise DatasetError(f"{kind} file {path!r} holds no rows")
    classes, labels = class_labels(names)
    texts = TableTexts(kind, read, str(file), np.array(offsets, dtype=np.int64), columns[0], tuple(header))
    inputs = LazyInputs.of(texts)
    train, test = stratified_split(labels, TEST_FRACTION, seed)
    return Dataset(f"{kind}:{argument}", inputs[train], labels[train], inputs[test], labels[test], classes)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _csv_rows(lines: Lines, path: str, header: list[str] | None) -> tuple[list[str], Rows]:
    """The CSV's column names (read from its first row unless given) and its rows from ``lines``."""
    reader = csv.DictReader(lines, fieldnames=header)
    if reader.fieldnames is None:
        raise DatasetError(f"csv file {path!r} is empty: it needs a header row naming the columns")
    return list(reader.fieldnames), ((f"line {reader.line_num}", offset, row) for offset, row in _with_offsets(lines, reader))


def _jsonl_rows(lines: Lines, path: str, header: list[str] | None) -> tuple[list[str], Rows]:
    """No column names (each object names its own) and the objects of ``lines``, blank lines skipped."""

    def objects() -> Iterator[dict]:
        for line in lines:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DatasetError(f"jsonl file {path!r}: line {lines.count} is not JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise DatasetError(f"jsonl file {path!r}: line {lines.count} is a JSON {type(row).__name__}, not an object")
            yield row

    return [], ((f"line {lines.count}", offset, row) for offset, row in _with_offsets(lines, objects()))


def _with_offsets(lines: Lines, records: Iterator[dict]) -> Iterator[tuple[int, dict]]:
    """Each of ``records`` (parsed from ``lines``, one or more lines each) with the byte offset of its first line."""
    while True:
        offset = lines.position
        record = next(records, None)
        if record is None:
            return
        yield offset, record
