"""``wordnet``: WordNet's noun glosses labelled by category, read from the Debian package wordnet-base."""

from __future__ import annotations

import numpy as np
import pytest

from relatlas.benchmarks.datasets import load_dataset
from relatlas.benchmarks.sources import DatasetError
from relatlas.benchmarks.wordnet_glosses import CATEGORIES, DEBIAN_WORDNET


def test_glosses_are_labelled_by_category_from_a_wordnet_folder(tmp_path):
    """data.noun's lines: offset, lexicographer file, n, words, pointers | gloss; other categories are left out."""
    lines = ["  1 This software and database is being provided to you"]
    for number in [*CATEGORIES, 3]:  # 3: noun.Tops, not one of the ten
        lines += [
            f'{number * 100 + i:08d} {number:02d} n 01 word 0 000 | gloss {i} of {number}; "an example"  ' for i in range(3)
        ]
    (tmp_path / "data.noun").write_text("\n".join(lines) + "\n")
    data = load_dataset("wordnet:per-class=3", root=str(tmp_path))
    texts = sorted([*data.x_train, *data.x_test])
    assert len(texts) == 30 and 'gloss 0 of 5; "an example"' in texts and not any(t.endswith("of 3") for t in texts)
    animal = data.classes.index("noun.animal")
    assert all(text.endswith(' of 5; "an example"') for text, label in zip(data.x_train, data.y_train) if label == animal)
    with pytest.raises(DatasetError, match=r"holds 3 noun.act glosses; per-class=4 asks more"):
        load_dataset("wordnet:per-class=4", root=str(tmp_path))
    with pytest.raises(DatasetError, match=r"the one option is per-class=N"):
        load_dataset("wordnet:per-class=0", root=str(tmp_path))


@pytest.mark.skipif(not (DEBIAN_WORDNET / "data.noun").is_file(), reason="Debian package wordnet-base not installed")
def test_the_debian_wordnet_gives_n_glosses_of_each_of_ten_categories():
    data = load_dataset("wordnet:per-class=20", seed=1)
    assert data.classes == tuple(CATEGORIES.values()) and len(data.x_train) + len(data.x_test) == 200
    assert np.bincount(np.concatenate([data.y_train, data.y_test])).tolist() == [20] * 10
    assert all(isinstance(text, str) and "|" not in text and text.strip() == text for text in data.x_train)
    again = load_dataset("wordnet:per-class=20", seed=1)
    assert list(again.x_train) == list(data.x_train)
