"""``wordnet``: a labelled text dataset that installs offline: WordNet 3.0's noun
definitions (glosses), each labelled with its lexicographer file, the broad
category WordNet files it under (``noun.animal``, ``noun.food``, ...).

It reads the Debian package ``wordnet-base`` (``apt-get install wordnet-base``;
WordNet 3.0 licence: use, copy, modify and distribute with its copyright notice),
``/usr/share/wordnet/data.noun``, or the folder ``--data-root`` names. Ten
categories of at least two thousand synsets each (``CATEGORIES``); ``wordnet:per-class=N``
draws ``N`` synsets of each (default 300, seeded), so a run stays small. A text
is the whole gloss, its definition and examples (``a member of the genus Canis ...;
"the dog barked all night"``), without the synset's own words. The split is
seeded and stratified, as for a text table.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from relatlas.benchmarks.datasets import TEST_FRACTION, Dataset, stratified_split
from relatlas.benchmarks.sources import DatasetError, text_array

DEBIAN_WORDNET = Path("/usr/share/wordnet")
CATEGORIES = {  # lexicographer file number -> name (WordNet's lexnames)
    4: "noun.act", 5: "noun.animal", 6: "noun.artifact", 8: "noun.body", 10: "noun.communication",
    13: "noun.food", 14: "noun.group", 15: "noun.location", 18: "noun.person", 20: "noun.plant",
}  # fmt: skip
PER_CLASS = 300
SYNSET = re.compile(r"^\d{8} (\d\d) n .*?\| (.*?)\s*$")  # offset, lexicographer file, type n, ..., | gloss


def wordnet(argument: str, *, root: str | None, seed: int) -> Dataset:
    """``wordnet[:per-class=N]``: ``N`` glosses of each of ``CATEGORIES``, labelled by category."""
    per_class = _per_class(argument)
    path = Path(root or DEBIAN_WORDNET) / "data.noun"
    if not path.is_file():
        raise DatasetError(f"dataset 'wordnet' needs {path}: install the Debian package wordnet-base or pass --data-root DIR")
    glosses: dict[int, list[str]] = {number: [] for number in CATEGORIES}
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            match = SYNSET.match(line)
            if match and int(match[1]) in glosses:
                glosses[int(match[1])].append(match[2])
    rng = np.random.default_rng(seed)
    texts: list[str] = []
    labels: list[int] = []
    for label, number in enumerate(CATEGORIES):
        if len(glosses[number]) < per_class:
            found = f"{len(glosses[number])} {CATEGORIES[number]} glosses"
            raise DatasetError(f"{path} holds {found}; per-class={per_class} asks more")
        chosen = rng.choice(len(glosses[number]), size=per_class, replace=False)
        texts += [glosses[number][i] for i in sorted(chosen)]
        labels += [label] * per_class
    inputs, targets = text_array(texts), np.array(labels, dtype=np.int64)
    train, test = stratified_split(targets, TEST_FRACTION, seed)
    name = "wordnet" + (f":{argument}" if argument else "")
    return Dataset(name, inputs[train], targets[train], inputs[test], targets[test], tuple(CATEGORIES.values()))


def _per_class(argument: str) -> int:
    if not argument:
        return PER_CLASS
    match = re.fullmatch(r"per-class=(\d+)", argument)
    if match is None or int(match[1]) < 1:
        raise DatasetError(f"wordnet:{argument}: the one option is per-class=N (N >= 1 glosses of each category)")
    return int(match[1])
